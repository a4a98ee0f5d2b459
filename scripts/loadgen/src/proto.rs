//! Requests and reply parsers for the memcached text protocol and RESP2. Pure functions over
//! byte slices (no IO), so the parsers can be tested by feeding replies split at every byte.
//!
//! Keys are `key:<n>`. The value stored for a key is derived from the key (`key:<n>:xxxx...`,
//! cut or padded to the value size), so every hit can be checked against the key it was asked
//! for: a reply delivered to the wrong request, or a value from the wrong key, is counted as
//! `wrong` instead of passing silently.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Memcache,
    Redis,
}

/// One request kind. `MGet` carries its keys in the key list passed alongside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
    MGet,
    /// memcached `version`, Redis `PING`.
    Ping,
}

/// What one complete, well-framed reply turned out to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// An error reply: memcached `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`; a RESP error,
    /// or (MGET) an array with at least one error element.
    pub error: bool,
    /// Keys asked for and not found.
    pub misses: u32,
    /// Well framed but not a possible answer to the request: a value that belongs to another key,
    /// an unexpected status (`NOT_STORED` to a plain `set`), more values than keys, a reply of
    /// the wrong RESP type or length.
    pub wrong: bool,
}

/// Parse state of the bytes at the start of the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed; parse again from the same start once they arrive.
    Incomplete,
    /// A complete reply of this many bytes.
    Done(usize, Outcome),
}

/// The byte stream cannot be a reply stream: the connection cannot be trusted any further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramingError(pub String);

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn framing(msg: impl Into<String>) -> FramingError {
    FramingError(msg.into())
}

/// A line without its CRLF longer than this is a framing error (memcached's and Redis's own
/// lines are short; this only stops a garbage stream from being buffered forever).
const MAX_LINE: usize = 64 * 1024;
/// Largest bulk or memcached data block accepted (Redis's proto-max-bulk-len default).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// RESP nesting accepted when skipping an unexpected reply.
const MAX_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Keys and values

/// `key:<n>` without allocation.
#[derive(Clone, Copy)]
pub struct Key {
    buf: [u8; 16],
    len: u8,
}

impl Key {
    pub fn new(n: u32) -> Key {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut buf = [0u8; 16];
        buf[..4].copy_from_slice(b"key:");
        let nd = digits.len() - i;
        buf[4..4 + nd].copy_from_slice(&digits[i..]);
        Key {
            buf,
            len: (4 + nd) as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The first bytes of this key's value: `key:<n>:`.
    fn value_prefix(&self) -> ([u8; 17], usize) {
        let mut p = [0u8; 17];
        let n = self.len as usize;
        p[..n].copy_from_slice(self.as_bytes());
        p[n] = b':';
        (p, n + 1)
    }
}

/// Appends the value of key `n`: `key:<n>:` then `x`, cut or padded to `size` bytes.
pub fn push_value(out: &mut Vec<u8>, n: u32, size: usize) {
    let (p, plen) = Key::new(n).value_prefix();
    let take = plen.min(size);
    out.extend_from_slice(&p[..take]);
    out.resize(out.len() + (size - take), b'x');
}

/// True if `data` can be the value of key `n` (its prefix matches; values written with another
/// size still match).
fn value_matches(data: &[u8], n: u32) -> bool {
    let (p, plen) = Key::new(n).value_prefix();
    let m = plen.min(data.len());
    data[..m] == p[..m]
}

/// Parses `key:<n>`; None for any other key.
fn key_number(key: &[u8]) -> Option<u32> {
    let digits = key.strip_prefix(b"key:")?;
    parse_u64(digits).and_then(|v| u32::try_from(v).ok())
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(rest) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        None => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

fn push_decimal(out: &mut Vec<u8>, v: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Appends one request. `keys` holds one key for Get/Set, the keys of an MGet, none for Ping.
pub fn encode(proto: Proto, op: Op, keys: &[u32], value_size: usize, out: &mut Vec<u8>) {
    match proto {
        Proto::Memcache => match op {
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
        },
        Proto::Redis => {
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
    }
}

// ---------------------------------------------------------------------------------------------
// Replies

/// Parses the reply to (`op`, `keys`) at the start of `buf`.
pub fn parse_reply(proto: Proto, op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
    match proto {
        Proto::Memcache => parse_memcache(op, keys, buf),
        Proto::Redis => parse_resp(op, keys, buf),
    }
}

/// The line starting at `from` without its CRLF, and the position after the CRLF.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, FramingError> {
    let rest = &buf[from..];
    match rest.iter().position(|&b| b == b'\n') {
        None if rest.len() > MAX_LINE => {
            Err(framing(format!("no line end in {} bytes", rest.len())))
        }
        None => Ok(None),
        Some(0) => Err(framing("bare LF (expected CRLF)")),
        Some(i) if rest[i - 1] != b'\r' => Err(framing("line ends in LF without CR")),
        Some(i) => Ok(Some((&rest[..i - 1], from + i + 1))),
    }
}

fn is_mc_error(l: &[u8]) -> bool {
    l == b"ERROR"
        || l.starts_with(b"ERROR ")
        || l.starts_with(b"CLIENT_ERROR")
        || l.starts_with(b"SERVER_ERROR")
}

fn shown(l: &[u8]) -> String {
    let cut = &l[..l.len().min(120)];
    let mut s = String::new();
    for &b in cut {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if l.len() > cut.len() {
        s.push_str("...");
    }
    s
}

/// Escaped text of at most 120 bytes of `b`, for error messages.
pub fn escape(b: &[u8]) -> String {
    shown(b)
}

fn parse_memcache(op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
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

fn parse_resp(op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
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

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// One expected request and the outcome its reply must give.
    struct Case {
        op: Op,
        keys: Vec<u32>,
        want: Outcome,
    }

    fn case(op: Op, keys: &[u32], want: Outcome) -> Case {
        Case {
            op,
            keys: keys.to_vec(),
            want,
        }
    }

    const OK: Outcome = Outcome {
        error: false,
        misses: 0,
        wrong: false,
    };
    const ERR: Outcome = Outcome {
        error: true,
        misses: 0,
        wrong: false,
    };
    const WRONG: Outcome = Outcome {
        error: false,
        misses: 0,
        wrong: true,
    };
    fn miss(n: u32) -> Outcome {
        Outcome { misses: n, ..OK }
    }

    /// Feeds `chunks` one after another into a buffer, parsing replies in order as the load
    /// generator does; returns the outcomes, or the first framing error.
    fn drive(proto: Proto, cases: &[Case], chunks: &[&[u8]]) -> Result<Vec<Outcome>, FramingError> {
        let mut buf = Vec::new();
        let mut start = 0;
        let mut got = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while got.len() < cases.len() {
                let c = &cases[got.len()];
                match parse_reply(proto, c.op, &c.keys, &buf[start..])? {
                    Parse::Incomplete => break,
                    Parse::Done(n, o) => {
                        assert!(n > 0);
                        start += n;
                        got.push(o);
                    }
                }
            }
        }
        assert_eq!(start, buf.len(), "bytes left over after all replies");
        Ok(got)
    }

    /// The stream parsed whole, split in two at every byte, and fed one byte at a time must all
    /// give the expected outcomes.
    fn check_splits(proto: Proto, cases: &[Case], stream: &[u8]) {
        let want: Vec<Outcome> = cases.iter().map(|c| c.want).collect();
        assert_eq!(
            drive(proto, cases, &[stream]).unwrap(),
            want,
            "whole stream"
        );
        for i in 0..=stream.len() {
            let got = drive(proto, cases, &[&stream[..i], &stream[i..]]).unwrap();
            assert_eq!(got, want, "split at byte {i}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(drive(proto, cases, &bytes).unwrap(), want, "byte by byte");
    }

    /// A framing error must be reported whole and at every split, never a hang (Incomplete
    /// forever) nor a success.
    fn check_framing_error(proto: Proto, cases: &[Case], stream: &[u8]) {
        assert!(drive(proto, cases, &[stream]).is_err(), "whole stream");
        for i in 0..=stream.len() {
            assert!(
                drive(proto, cases, &[&stream[..i], &stream[i..]]).is_err(),
                "split at {i}"
            );
        }
    }

    fn value(n: u32, size: usize) -> Vec<u8> {
        let mut v = Vec::new();
        push_value(&mut v, n, size);
        v
    }

    fn mc_value(n: u32, size: usize) -> Vec<u8> {
        let mut out = format!("VALUE key:{n} 0 {size}\r\n").into_bytes();
        out.extend_from_slice(&value(n, size));
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(Key::new(0).as_bytes(), b"key:0");
        assert_eq!(Key::new(u32::MAX).as_bytes(), b"key:4294967295");
        assert_eq!(value(12, 10), b"key:12:xxx");
        assert_eq!(value(12, 3), b"key");
        assert_eq!(value(12, 0), b"");
        assert!(value_matches(&value(7, 100), 7));
        assert!(value_matches(&value(7, 5), 7));
        assert!(!value_matches(&value(71, 100), 7));
        assert!(!value_matches(&value(7, 100), 71));
        assert_eq!(key_number(b"key:42"), Some(42));
        assert_eq!(key_number(b"key:"), None);
        assert_eq!(key_number(b"foo:1"), None);
    }

    #[test]
    fn memcache_requests() {
        let mut out = Vec::new();
        encode(Proto::Memcache, Op::Get, &[5], 3, &mut out);
        encode(Proto::Memcache, Op::MGet, &[1, 2], 3, &mut out);
        encode(Proto::Memcache, Op::Set, &[9], 8, &mut out);
        encode(Proto::Memcache, Op::Ping, &[], 3, &mut out);
        assert_eq!(
            out,
            b"get key:5\r\nget key:1 key:2\r\nset key:9 0 0 8\r\nkey:9:xx\r\nversion\r\n".to_vec()
        );
    }

    #[test]
    fn redis_requests() {
        let mut out = Vec::new();
        encode(Proto::Redis, Op::Get, &[5], 3, &mut out);
        encode(Proto::Redis, Op::MGet, &[1, 22], 3, &mut out);
        encode(Proto::Redis, Op::Set, &[9], 8, &mut out);
        encode(Proto::Redis, Op::Ping, &[], 3, &mut out);
        let want = "*2\r\n$3\r\nGET\r\n$5\r\nkey:5\r\n\
                    *3\r\n$4\r\nMGET\r\n$5\r\nkey:1\r\n$6\r\nkey:22\r\n\
                    *3\r\n$3\r\nSET\r\n$5\r\nkey:9\r\n$8\r\nkey:9:xx\r\n\
                    *1\r\n$4\r\nPING\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn memcache_replies_split_everywhere() {
        let mut stream = Vec::new();
        let mut cases = Vec::new();
        // a hit, with a value containing CRLF-like bytes at the data's end
        stream.extend(mc_value(1, 100));
        stream.extend_from_slice(b"END\r\n");
        cases.push(case(Op::Get, &[1], OK));
        // a miss
        stream.extend_from_slice(b"END\r\n");
        cases.push(case(Op::Get, &[2], miss(1)));
        // set, then a multi-get with one miss and a cas field, out of order
        stream.extend_from_slice(b"STORED\r\n");
        cases.push(case(Op::Set, &[3], OK));
        stream.extend(mc_value(6, 4));
        stream.extend_from_slice(b"VALUE key:4 123 100 999\r\n");
        stream.extend_from_slice(&value(4, 100));
        stream.extend_from_slice(b"\r\nEND\r\n");
        cases.push(case(Op::MGet, &[4, 5, 6], miss(1)));
        // error replies of each kind, one in the middle of a multi-get
        stream.extend_from_slice(b"SERVER_ERROR Connection timed out\r\n");
        cases.push(case(Op::Get, &[1], ERR));
        stream.extend(mc_value(7, 10));
        stream.extend_from_slice(b"SERVER_ERROR Connection reset by peer\r\n");
        cases.push(case(Op::MGet, &[7, 8], ERR));
        stream.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
        cases.push(case(Op::Set, &[1], ERR));
        stream.extend_from_slice(b"ERROR\r\n");
        cases.push(case(Op::Ping, &[], ERR));
        stream.extend_from_slice(b"VERSION 1.6.18\r\n");
        cases.push(case(Op::Ping, &[], OK));
        // wrong: another key's value, a value for a key not asked, NOT_STORED to a set
        stream.extend_from_slice(b"VALUE key:1 0 100\r\n");
        stream.extend_from_slice(&value(2, 100));
        stream.extend_from_slice(b"\r\nEND\r\n");
        cases.push(case(Op::Get, &[1], WRONG));
        stream.extend(mc_value(9, 100));
        stream.extend_from_slice(b"END\r\n");
        cases.push(case(Op::Get, &[1], Outcome { misses: 0, ..WRONG }));
        stream.extend_from_slice(b"NOT_STORED\r\n");
        cases.push(case(Op::Set, &[1], WRONG));
        // an empty value
        stream.extend_from_slice(b"VALUE key:3 0 0\r\n\r\nEND\r\n");
        cases.push(case(Op::Get, &[3], OK));
        check_splits(Proto::Memcache, &cases, &stream);
    }

    #[test]
    fn memcache_framing_errors() {
        let get = [case(Op::Get, &[1], OK)];
        let set = [case(Op::Set, &[1], OK)];
        check_framing_error(Proto::Memcache, &get, b"VALUE key:1 0 3\r\nabcd\r\nEND\r\n");
        check_framing_error(Proto::Memcache, &get, b"VALUE key:1 0 x\r\n");
        check_framing_error(Proto::Memcache, &get, b"VALUE key:1\r\n");
        check_framing_error(
            Proto::Memcache,
            &get,
            b"VALUE key:1 0 3 4 5\r\nabc\r\nEND\r\n",
        );
        check_framing_error(Proto::Memcache, &get, b"STORED\r\n");
        check_framing_error(Proto::Memcache, &get, b"END\n");
        check_framing_error(Proto::Memcache, &set, b"END\r\n");
        check_framing_error(Proto::Memcache, &set, b"\r\n");
        check_framing_error(Proto::Memcache, &[case(Op::Ping, &[], OK)], b"PONG\r\n");
        // no line end for too long: an error, not an endless Incomplete
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(parse_reply(Proto::Memcache, Op::Get, &[1], &long).is_err());
    }

    #[test]
    fn resp_replies_split_everywhere() {
        let bulk = |n: u32, size: usize| {
            let mut b = format!("${size}\r\n").into_bytes();
            b.extend_from_slice(&value(n, size));
            b.extend_from_slice(b"\r\n");
            b
        };
        let mut stream = Vec::new();
        let mut cases = Vec::new();
        stream.extend(bulk(1, 100));
        cases.push(case(Op::Get, &[1], OK));
        stream.extend_from_slice(b"$-1\r\n");
        cases.push(case(Op::Get, &[2], miss(1)));
        stream.extend_from_slice(b"+OK\r\n");
        cases.push(case(Op::Set, &[3], OK));
        stream.extend_from_slice(b"+PONG\r\n");
        cases.push(case(Op::Ping, &[], OK));
        stream.extend_from_slice(b"*3\r\n");
        stream.extend(bulk(4, 100));
        stream.extend_from_slice(b"$-1\r\n");
        stream.extend(bulk(6, 0));
        cases.push(case(Op::MGet, &[4, 5, 6], miss(1)));
        // errors: top level, and an MGET element (a proxy's lost server)
        stream.extend_from_slice(b"-ERR Connection timed out\r\n");
        cases.push(case(Op::Get, &[1], ERR));
        stream.extend_from_slice(b"-ERR wrong number of arguments for 'mget' command\r\n");
        cases.push(case(Op::MGet, &[1, 2], ERR));
        stream.extend_from_slice(b"*2\r\n-ERR Connection refused\r\n");
        stream.extend(bulk(8, 3));
        cases.push(case(Op::MGet, &[7, 8], ERR));
        // wrong: another key's value, MGET elements out of order or missing, wrong type
        stream.extend(bulk(2, 100));
        cases.push(case(Op::Get, &[1], WRONG));
        stream.extend_from_slice(b"*2\r\n");
        stream.extend(bulk(8, 10));
        stream.extend(bulk(7, 10));
        cases.push(case(Op::MGet, &[7, 8], WRONG));
        stream.extend_from_slice(b"*1\r\n");
        stream.extend(bulk(7, 10));
        cases.push(case(Op::MGet, &[7, 8], WRONG));
        stream.extend_from_slice(b":1\r\n");
        cases.push(case(Op::Set, &[1], WRONG));
        stream.extend_from_slice(b"*-1\r\n");
        cases.push(case(Op::MGet, &[1], WRONG));
        // nested arrays are skipped whole; an error inside is still an error
        stream.extend_from_slice(b"*2\r\n*2\r\n:1\r\n-ERR x\r\n+OK\r\n");
        cases.push(case(
            Op::Get,
            &[1],
            Outcome {
                error: true,
                misses: 0,
                wrong: true,
            },
        ));
        check_splits(Proto::Redis, &cases, &stream);
    }

    #[test]
    fn resp_framing_errors() {
        let get = [case(Op::Get, &[1], OK)];
        check_framing_error(Proto::Redis, &get, b"$3\r\nabcd\r\n");
        check_framing_error(Proto::Redis, &get, b"$-2\r\n");
        check_framing_error(Proto::Redis, &get, b"$x\r\n");
        check_framing_error(Proto::Redis, &get, b"%1\r\n");
        check_framing_error(Proto::Redis, &get, b"\r\n");
        check_framing_error(Proto::Redis, &get, b"+OK\n");
        check_framing_error(Proto::Redis, &get, b":12a\r\n");
        check_framing_error(Proto::Redis, &[case(Op::MGet, &[1], OK)], b"*1\r\n!3\r\n");
        // too deep nesting is refused, not a stack overflow
        let deep = "*1\r\n".repeat(MAX_DEPTH + 5) + ":1\r\n";
        assert!(parse_reply(Proto::Redis, Op::Get, &[1], deep.as_bytes()).is_err());
    }
}
