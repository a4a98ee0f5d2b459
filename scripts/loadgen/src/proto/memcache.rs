//! The memcached text protocol: requests, and the parser of their replies.

use super::keys::{key_number, parse_u64, push_decimal, push_value, value_matches, Key};
use super::{framing, line, shown, FramingError, Op, Outcome, Parse, MAX_BULK};

/// Appends one memcached request. `keys` holds one key for Get/Set, the keys of an MGet, none
/// for Ping.
pub fn encode(op: Op, keys: &[u32], value_size: usize, out: &mut Vec<u8>) {
    match op {
        Op::Get | Op::MGet => {
            out.extend_from_slice(b"get");
            for &k in keys {
                out.push(b' ');
                out.extend_from_slice(Key::new(k).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        Op::Set => {
            out.extend_from_slice(b"set ");
            out.extend_from_slice(Key::new(keys[0]).as_bytes());
            out.extend_from_slice(b" 0 0 ");
            push_decimal(out, value_size);
            out.extend_from_slice(b"\r\n");
            push_value(out, keys[0], value_size);
            out.extend_from_slice(b"\r\n");
        }
        Op::Ping => out.extend_from_slice(b"version\r\n"),
    }
}

fn is_mc_error(l: &[u8]) -> bool {
    l == b"ERROR"
        || l.starts_with(b"ERROR ")
        || l.starts_with(b"CLIENT_ERROR")
        || l.starts_with(b"SERVER_ERROR")
}

/// Parses the reply to (`op`, `keys`) at the start of `buf`.
pub fn parse(op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
    let mut pos = 0;
    let mut out = Outcome::default();
    let mut found = 0usize;
    loop {
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(Parse::Incomplete);
        };
        match op {
            Op::Get | Op::MGet => {
                if l == b"END" {
                    out.misses = keys.len().saturating_sub(found) as u32;
                    return Ok(Parse::Done(next, out));
                }
                if let Some(rest) = l.strip_prefix(b"VALUE ") {
                    let mut fields = rest.split(|&b| b == b' ');
                    let (key, flags, len) = match (fields.next(), fields.next(), fields.next()) {
                        (Some(k), Some(f), Some(n)) if !k.is_empty() => (k, f, n),
                        _ => return Err(framing(format!("bad VALUE line: {}", shown(l)))),
                    };
                    let cas = fields.next();
                    let well_formed = parse_u64(flags).is_some()
                        && cas.is_none_or(|c| parse_u64(c).is_some())
                        && fields.next().is_none();
                    let len = match parse_u64(len) {
                        Some(n) if well_formed && n as usize <= MAX_BULK => n as usize,
                        _ => return Err(framing(format!("bad VALUE line: {}", shown(l)))),
                    };
                    let end = next + len;
                    if buf.len() < end + 2 {
                        return Ok(Parse::Incomplete);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(framing(format!(
                            "data block of {len} bytes not followed by CRLF (VALUE line: {})",
                            shown(l)
                        )));
                    }
                    let data = &buf[next..end];
                    let ok = match key_number(key) {
                        Some(n) => keys.contains(&n) && value_matches(data, n),
                        None => false,
                    };
                    found += 1;
                    if !ok || found > keys.len() {
                        out.wrong = true;
                    }
                    pos = end + 2;
                    continue;
                }
                if is_mc_error(l) {
                    out.error = true;
                    return Ok(Parse::Done(next, out));
                }
                return Err(framing(format!(
                    "unexpected line in a get reply: {}",
                    shown(l)
                )));
            }
            Op::Set => {
                if l == b"STORED" {
                } else if l == b"NOT_STORED" || l == b"EXISTS" || l == b"NOT_FOUND" {
                    out.wrong = true;
                } else if is_mc_error(l) {
                    out.error = true;
                } else {
                    return Err(framing(format!("unexpected reply to set: {}", shown(l))));
                }
                return Ok(Parse::Done(next, out));
            }
            Op::Ping => {
                if is_mc_error(l) {
                    out.error = true;
                } else if !l.starts_with(b"VERSION ") {
                    return Err(framing(format!(
                        "unexpected reply to version: {}",
                        shown(l)
                    )));
                }
                return Ok(Parse::Done(next, out));
            }
        }
    }
}
