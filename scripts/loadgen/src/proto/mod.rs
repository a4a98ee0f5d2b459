//! Requests and reply parsers for the memcached text protocol and RESP2. Pure functions over
//! byte slices (no IO), so the parsers can be tested by feeding replies split at every byte.
//!
//! Keys are `key:<n>`. The value stored for a key is derived from the key (`key:<n>:xxxx...`,
//! cut or padded to the value size), so every hit can be checked against the key it was asked
//! for: a reply delivered to the wrong request, or a value from the wrong key, is counted as
//! `wrong` instead of passing silently.

mod keys;
mod memcache;
mod resp;
#[cfg(test)]
mod tests;

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

/// Appends one request. `keys` holds one key for Get/Set, the keys of an MGet, none for Ping.
pub fn encode(proto: Proto, op: Op, keys: &[u32], value_size: usize, out: &mut Vec<u8>) {
    match proto {
        Proto::Memcache => memcache::encode(op, keys, value_size, out),
        Proto::Redis => resp::encode(op, keys, value_size, out),
    }
}

/// Parses the reply to (`op`, `keys`) at the start of `buf`.
pub fn parse_reply(proto: Proto, op: Op, keys: &[u32], buf: &[u8]) -> Result<Parse, FramingError> {
    match proto {
        Proto::Memcache => memcache::parse(op, keys, buf),
        Proto::Redis => resp::parse(op, keys, buf),
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
