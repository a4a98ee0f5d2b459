//! RESP2 (Redis): requests, and the parser of their replies.

use super::keys::{parse_i64, push_decimal, push_value, value_matches, Key};
use super::{framing, line, shown, FramingError, Op, Outcome, Parse, MAX_BULK, MAX_DEPTH};

/// Appends one RESP request. `keys` holds one key for Get/Set, the keys of an MGet, none for Ping.
pub fn encode(op: Op, keys: &[u32], value_size: usize, out: &mut Vec<u8>) {
    let bulk = |out: &mut Vec<u8>, s: &[u8]| {
        out.push(b'$');
        push_decimal(out, s.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    };
    match op {
        Op::Get => {
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
            bulk(out, Key::new(keys[0]).as_bytes());
        }
        Op::MGet => {
            out.push(b'*');
            push_decimal(out, keys.len() + 1);
            out.extend_from_slice(b"\r\n$4\r\nMGET\r\n");
            for &k in keys {
                bulk(out, Key::new(k).as_bytes());
            }
        }
        Op::Set => {
            out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
            bulk(out, Key::new(keys[0]).as_bytes());
            out.push(b'$');
            push_decimal(out, value_size);
            out.extend_from_slice(b"\r\n");
            push_value(out, keys[0], value_size);
            out.extend_from_slice(b"\r\n");
        }
        Op::Ping => out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"),
    }
}

/// The head of one RESP value. A bulk string comes whole (data included).
enum Head<'a> {
    Simple(&'a [u8]),
    Error,
    Int,
    Bulk(Option<&'a [u8]>),
    Array(Option<usize>),
}

fn resp_head(buf: &[u8], pos: usize) -> Result<Option<(Head<'_>, usize)>, FramingError> {
    let Some((l, next)) = line(buf, pos)? else {
        return Ok(None);
    };
    let Some((&t, body)) = l.split_first() else {
        return Err(framing("empty line where a RESP value was expected"));
    };
    let len = |body: &[u8]| -> Result<Option<usize>, FramingError> {
        match parse_i64(body) {
            Some(-1) => Ok(None),
            Some(n) if n >= 0 && n as usize <= MAX_BULK => Ok(Some(n as usize)),
            _ => Err(framing(format!("bad RESP length: {}", shown(l)))),
        }
    };
    Ok(Some(match t {
        b'+' => (Head::Simple(body), next),
        b'-' => (Head::Error, next),
        b':' => {
            if parse_i64(body).is_none() {
                return Err(framing(format!("bad RESP integer: {}", shown(l))));
            }
            (Head::Int, next)
        }
        b'$' => match len(body)? {
            None => (Head::Bulk(None), next),
            Some(n) => {
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err(framing(format!("bulk of {n} bytes not followed by CRLF")));
                }
                (Head::Bulk(Some(&buf[next..next + n])), next + n + 2)
            }
        },
        b'*' => (Head::Array(len(body)?), next),
        _ => return Err(framing(format!("not a RESP2 value: {}", shown(l)))),
    }))
}

/// Skips the elements of an array whose head was just read; Some((end, contains_error)).
fn skip_elements(
    buf: &[u8],
    mut pos: usize,
    n: usize,
    depth: usize,
) -> Result<Option<(usize, bool)>, FramingError> {
    if depth > MAX_DEPTH {
        return Err(framing("RESP arrays nested too deep"));
    }
    let mut error = false;
    for _ in 0..n {
        let Some((head, next)) = resp_head(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        match head {
            Head::Error => error = true,
            Head::Array(Some(m)) => {
                let Some((end, e)) = skip_elements(buf, pos, m, depth + 1)? else {
                    return Ok(None);
                };
                pos = end;
                error |= e;
            }
            _ => {}
        }
    }
    Ok(Some((pos, error)))
}

/// Parses the reply to (`op`, `keys`) at the start of `buf`.
pub fn parse(op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
    let Some((head, next)) = resp_head(buf, 0)? else {
        return Ok(Parse::Incomplete);
    };
    let mut out = Outcome::default();
    let mut end = next;
    match head {
        Head::Error => out.error = true,
        Head::Array(Some(n)) if op == Op::MGet => {
            out.wrong = n != keys.len();
            let mut pos = next;
            for i in 0..n {
                let Some((el, after)) = resp_head(buf, pos)? else {
                    return Ok(Parse::Incomplete);
                };
                pos = after;
                match el {
                    Head::Bulk(Some(data)) => {
                        if keys.get(i).is_none_or(|&k| !value_matches(data, k)) {
                            out.wrong = true;
                        }
                    }
                    Head::Bulk(None) => out.misses += 1,
                    Head::Error => out.error = true,
                    Head::Array(Some(m)) => {
                        let Some((e, err)) = skip_elements(buf, pos, m, 1)? else {
                            return Ok(Parse::Incomplete);
                        };
                        pos = e;
                        out.error |= err;
                        out.wrong = true;
                    }
                    _ => out.wrong = true,
                }
            }
            end = pos;
        }
        Head::Array(Some(n)) => {
            let Some((e, err)) = skip_elements(buf, next, n, 1)? else {
                return Ok(Parse::Incomplete);
            };
            end = e;
            out.error = err;
            out.wrong = true;
        }
        Head::Bulk(Some(data)) if op == Op::Get => out.wrong = !value_matches(data, keys[0]),
        Head::Bulk(None) if op == Op::Get => out.misses = 1,
        Head::Simple(s) if op == Op::Set => out.wrong = s != b"OK",
        Head::Simple(s) if op == Op::Ping => out.wrong = s != b"PONG",
        _ => out.wrong = true,
    }
    Ok(Parse::Done(end, out))
}
