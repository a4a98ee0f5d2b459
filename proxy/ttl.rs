//! TTL jitter (`ttl_jitter: N` percent): relative expiry times of writes are shortened by a
//! random amount of up to N percent, so that keys written together (a cache warmed in one
//! batch, a page rendered at once) do not all expire in the same second and stampede the
//! database together. Shortening, never lengthening, keeps every key within the staleness the
//! application asked for. Absolute expiry times are left alone.

use bytes::Bytes;

use crate::protocol::resp::encode;

/// memcached treats an expiry above 30 days as an absolute Unix time.
const MEMCACHE_RELATIVE_MAX: i64 = 60 * 60 * 24 * 30;

/// TTL jitter for a memcached expiry: a relative expiry (1 s to 30 days) is shortened by a
/// random amount of up to `percent` percent, never below 1 s, so that keys written together
/// do not expire together (and no key outlives the TTL the application asked for). Absolute
/// times, 0 (never) and negative values (already expired) are left alone.
pub fn jitter_memcache(exptime: i64, percent: u8) -> i64 {
    if exptime <= 0 || exptime > MEMCACHE_RELATIVE_MAX {
        return exptime;
    }
    jitter(exptime, percent)
}

/// Shortens a relative time (seconds or milliseconds) by up to `percent` percent, keeping at
/// least 1.
pub fn jitter(ttl: i64, percent: u8) -> i64 {
    let span = ttl as u128 * percent.min(100) as u128 / 100;
    if span == 0 {
        return ttl;
    }
    let cut = (crate::ring::next_u32() as u128 * (span + 1)) >> 32;
    (ttl - cut as i64).max(1)
}

/// Redis commands with a relative expiry argument: the jittered request, re-encoded, or None
/// when nothing changes. `argv[0]` is the command name, `name` its lower-case form.
pub fn jitter_redis(name: &str, argv: &[&[u8]], percent: u8) -> Option<Bytes> {
    rewrite_redis_ttl(name, argv, |ttl| jitter(ttl, percent))
}

/// Finds the relative expiry argument of a Redis command and re-encodes the command with
/// `shorten` applied to it; None when the command has none or `shorten` leaves it unchanged.
/// Separate from the random draw so that tests can pin the new value.
fn rewrite_redis_ttl(
    name: &str,
    argv: &[&[u8]],
    shorten: impl FnOnce(i64) -> i64,
) -> Option<Bytes> {
    // Positions of relative times: fixed ones, or the argument after EX/PX.
    let fixed = match name {
        "setex" | "psetex" | "expire" | "pexpire" => Some(2),
        "set" | "getex" => None,
        _ => return None,
    };
    let at = match fixed {
        Some(i) => i,
        None => {
            let from = if name == "set" { 3 } else { 2 };
            (from..argv.len()).find(|&i| {
                argv[i].eq_ignore_ascii_case(b"ex") || argv[i].eq_ignore_ascii_case(b"px")
            })? + 1
        }
    };
    let value: i64 = std::str::from_utf8(argv.get(at)?).ok()?.parse().ok()?;
    if value <= 0 {
        return None;
    }
    let jittered = shorten(value);
    if jittered == value {
        return None;
    }
    let text = jittered.to_string();
    let mut out = Vec::with_capacity(argv.iter().map(|a| a.len() + 16).sum());
    encode::command(
        &mut out,
        argv.iter()
            .enumerate()
            .map(|(i, a)| if i == at { text.as_bytes() } else { *a }),
    );
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcache_jitter_shortens_relative_times_only() {
        for _ in 0..1000 {
            let t = jitter_memcache(1000, 10);
            assert!((900..=1000).contains(&t), "{t}");
        }
        assert_eq!(jitter_memcache(0, 50), 0);
        assert_eq!(jitter_memcache(-1, 50), -1);
        let absolute = 1_900_000_000;
        assert_eq!(jitter_memcache(absolute, 50), absolute);
        assert_eq!(jitter_memcache(1, 100), 1);
        let spread: std::collections::HashSet<i64> =
            (0..200).map(|_| jitter_memcache(10_000, 20)).collect();
        assert!(
            spread.len() > 50,
            "jitter should spread values, got {}",
            spread.len()
        );
    }

    #[test]
    fn redis_rewrites_only_relative_arguments() {
        let args = |s: &str| {
            s.split(' ')
                .map(|a| a.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        let run = |name: &str, s: &str| {
            let a = args(s);
            let v: Vec<&[u8]> = a.iter().map(|x| x.as_slice()).collect();
            rewrite_redis_ttl(name, &v, |t| t - 1).map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        assert_eq!(
            run("set", "SET k v EX 1000").as_deref(),
            Some("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$3\r\n999\r\n")
        );
        assert_eq!(
            run("setex", "SETEX k 100 v").as_deref(),
            Some("*4\r\n$5\r\nSETEX\r\n$1\r\nk\r\n$2\r\n99\r\n$1\r\nv\r\n")
        );
        assert_eq!(
            run("getex", "GETEX k px 60000").as_deref(),
            Some("*4\r\n$5\r\nGETEX\r\n$1\r\nk\r\n$2\r\npx\r\n$5\r\n59999\r\n")
        );
        assert!(run("set", "SET k v EXAT 1900000000").is_none());
        assert!(run("set", "SET k v").is_none());
        assert!(run("set", "SET k v EX 0").is_none());
        assert!(run("set", "SET k v EX soon").is_none());
        assert!(run("expireat", "EXPIREAT k 1900000000").is_none());
        assert!(run("getex", "GETEX k PERSIST").is_none());
    }

    #[test]
    fn redis_jitter_stays_within_the_percentage() {
        let argv: [&[u8]; 5] = [b"SET", b"k", b"v", b"EX", b"1000"];
        let mut rewritten = 0;
        for _ in 0..1000 {
            // None means the draw left the TTL unchanged, which is within bounds too.
            let Some(out) = jitter_redis("set", &argv, 50) else {
                continue;
            };
            rewritten += 1;
            let text = String::from_utf8(out.to_vec()).unwrap();
            let n: i64 = text.rsplit("\r\n").nth(1).unwrap().parse().unwrap();
            assert!((500..1000).contains(&n), "{text}");
        }
        // A draw of zero has probability 1/501 each time; 1000 draws all zero cannot happen.
        assert!(rewritten > 900, "{rewritten}");
        assert!(jitter_redis("set", &argv, 0).is_none());
    }
}
