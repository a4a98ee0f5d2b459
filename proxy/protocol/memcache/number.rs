//! Numbers in memcached command lines, read exactly as memcached 1.6 reads them.
//!
//! memcached parses numeric tokens with C's `strtol`/`strtoul`/`strtoull` wrapped in its
//! `safe_strto*` helpers (`util.c`): leading white space and a sign are accepted, the digits
//! may be followed by one white-space byte and anything after it (a `\r` left by a `\r\r\n`
//! line ending, say), and a value that fits the C type but not the field is *truncated*
//! (`*out = l`): an exptime in milliseconds, `1796537489000`, is stored as the 32-bit int it
//! wraps to. The proxy reads numbers the same way so that a line memcached accepts means the
//! same thing through the proxy, and then forwards the value canonically (plain decimal), so
//! the server never sees the odd spelling. Where memcached's truncation would be dangerous
//! (a data length that wraps), the caller refuses the value instead.

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The sign, magnitude (None when it overflows u64) and validity of a token as `strto*` and
/// the `safe_strto*` end check see it: at least one digit, then the end of the token or a
/// white-space byte.
fn scan(s: &[u8]) -> Option<(bool, Option<u64>)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    if s.get(i + digits).is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    let magnitude = s[i..i + digits].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    });
    Some((neg, magnitude))
}

/// `strtol` into a 64-bit `long`, as `safe_strtol` calls it: None where it reports an error
/// (no digits, junk after them, or `ERANGE`).
pub fn strtol(s: &[u8]) -> Option<i64> {
    let (neg, magnitude) = scan(s)?;
    let m = magnitude?;
    if neg {
        (m <= 1 << 63).then(|| (m as i64).wrapping_neg())
    } else {
        i64::try_from(m).ok()
    }
}

/// `safe_strtol` storing into an `int32_t`: the long value truncated to 32 bits, as memcached
/// stores exptimes (`1796537489000` becomes `1176704104`).
pub fn strtol_i32(s: &[u8]) -> Option<i32> {
    strtol(s).map(|v| v as i32)
}

/// `safe_strtoull`: an unsigned 64-bit value. A minus sign is accepted the way `strtoull`
/// accepts it (the value is negated modulo 2^64) unless the result looks negative as a signed
/// number, which memcached refuses.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, magnitude) = scan(s)?;
    let m = magnitude?;
    let v = if neg { m.wrapping_neg() } else { m };
    ((v as i64) >= 0 || !s.contains(&b'-')).then_some(v)
}

/// `safe_strtoul` storing into a `uint32_t` (client flags): read as `strtoull`, then
/// truncated to 32 bits (`4294967301` is stored as 5).
pub fn strtoul_u32(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_memcached_reads() {
        assert_eq!(strtol(b"9"), Some(9));
        assert_eq!(strtol(b"+9"), Some(9));
        assert_eq!(strtol(b"-9"), Some(-9));
        assert_eq!(strtol(b"007"), Some(7));
        // One white-space byte ends the number; what follows it is ignored.
        assert_eq!(strtol(b"1\r"), Some(1));
        assert_eq!(strtol(b"1\rjunk"), Some(1));
        assert_eq!(strtol(b"\t5"), Some(5));
        assert_eq!(strtol(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(strtol(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn refuses_what_memcached_refuses() {
        for bad in [
            &b""[..],
            b"-",
            b"+",
            b"x1",
            b"1x",
            b"1.5",
            b" ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(strtol(bad), None, "{bad:?}");
        }
        assert_eq!(strtoull(b"-1"), None);
        assert_eq!(strtoull(b"18446744073709551616"), None);
        assert_eq!(strtoul_u32(b"-5"), None);
    }

    #[test]
    fn truncates_like_an_int32_store() {
        assert_eq!(strtol_i32(b"1796537489000"), Some(1796537489000i64 as i32));
        assert_eq!(strtol_i32(b"4294967298"), Some(2));
        assert_eq!(strtoul_u32(b"4294967301"), Some(5));
        assert_eq!(strtoul_u32(b"-0"), Some(0));
        assert_eq!(strtoull(b"18446744073709551615"), Some(u64::MAX));
        // strtoull negates modulo 2^64; the result 1 is not negative, so it stands.
        assert_eq!(strtoull(b"-18446744073709551615"), Some(1));
    }
}
