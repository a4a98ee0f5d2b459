//! Backend-side memcached text protocol: frames the replies a server sends back, no IO.
//!
//! A reply can only be framed knowing what was asked (`get a b` is answered by any number of
//! `VALUE` blocks and `END`; `set` by one line), so the backend connection hands the parser the
//! [`Expect`] recorded with each request. Each reply is also checked against what that request
//! may legitimately receive: on a shared connection a reply of the wrong shape means the stream
//! is out of step, and passing it on would give one client's data to another. The connection is
//! then closed instead (as memcached's own proxy and Envoy do).

use std::ops::Range;

use memchr::memchr;

use super::request::parse_u64;

/// The reply shape a forwarded request expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `VALUE` blocks then `END` (get, gets, gat, gats).
    Values,
    /// `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND`.
    Storage,
    /// `DELETED` or `NOT_FOUND`.
    Delete,
    /// A decimal number or `NOT_FOUND` (incr, decr).
    Arith,
    /// `TOUCHED` or `NOT_FOUND`.
    Touch,
    /// `VERSION <text>`.
    Version,
    /// `OK` (flush_all, verbosity).
    Ok,
    /// `STAT` or `ITEM` lines then `END` (`stats <arg>`, `stats cachedump`).
    Stats,
    /// `RESET` (`stats reset`).
    Reset,
}

/// The backend sent something no request could have produced: its stream can't be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend protocol error: {0}")]
pub struct BadReply(pub &'static str);

/// Longest reply line accepted from a backend (a `VALUE` line is at most ~300 bytes; error
/// lines are short). A longer one means the stream is not memcached's.
const MAX_REPLY_LINE: usize = 8192;

/// Returns the length of the complete reply at the start of `buf`, or `None` if more bytes are
/// needed. `max_value` bounds the data length a `VALUE` line may announce, so a corrupt length
/// can't make the proxy wait for (or buffer) gigabytes.
pub fn frame_reply(
    buf: &[u8],
    expect: Expect,
    max_value: usize,
) -> Result<Option<usize>, BadReply> {
    let Some(first) = line(buf, 0)? else {
        return Ok(None);
    };
    let text = trim_cr(&buf[..first]);
    if is_error(text) {
        return Ok(Some(first));
    }
    let ok = match expect {
        Expect::Values => return frame_values(buf, max_value),
        Expect::Stats => return frame_stats(buf),
        Expect::Storage => matches!(text, b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND"),
        Expect::Delete => matches!(text, b"DELETED" | b"NOT_FOUND"),
        Expect::Arith => text == b"NOT_FOUND" || parse_u64(text).is_some(),
        Expect::Touch => matches!(text, b"TOUCHED" | b"NOT_FOUND"),
        Expect::Version => text.starts_with(b"VERSION "),
        Expect::Ok => text == b"OK",
        Expect::Reset => text == b"RESET",
    };
    if ok {
        Ok(Some(first))
    } else {
        Err(BadReply("unexpected reply line"))
    }
}

fn frame_values(buf: &[u8], max_value: usize) -> Result<Option<usize>, BadReply> {
    let mut pos = 0;
    loop {
        let Some(end) = line(buf, pos)? else {
            return Ok(None);
        };
        let text = trim_cr(&buf[pos..end]);
        if text == b"END" {
            return Ok(Some(end));
        }
        let header = parse_value_line(text).ok_or(BadReply("malformed VALUE line"))?;
        if header.len > max_value {
            return Err(BadReply("VALUE length beyond the item size limit"));
        }
        let block_end = end + header.len + 2;
        if buf.len() < block_end {
            return Ok(None);
        }
        if &buf[block_end - 2..block_end] != b"\r\n" {
            return Err(BadReply("VALUE data not terminated by CRLF"));
        }
        pos = block_end;
    }
}

/// Largest `stats` reply accepted from a server: memcached caps a `stats cachedump` at 2 MiB
/// and its other stats replies are a few KiB, so a longer one is not memcached's.
const MAX_STATS_REPLY: usize = 4 * 1024 * 1024;

fn frame_stats(buf: &[u8]) -> Result<Option<usize>, BadReply> {
    let mut pos = 0;
    loop {
        if pos > MAX_STATS_REPLY {
            return Err(BadReply("stats reply beyond 4 MiB"));
        }
        let Some(end) = line(buf, pos)? else {
            return Ok(None);
        };
        let text = trim_cr(&buf[pos..end]);
        if text == b"END" {
            return Ok(Some(end));
        }
        if !text.starts_with(b"STAT ") && !text.starts_with(b"ITEM ") {
            return Err(BadReply("malformed stats line"));
        }
        pos = end;
    }
}

/// Reads and drops a `VALUE ... END` reply as it streams in, for a reply too large to hold
/// (larger than its client may be owed): the connection stays in step without the reply ever
/// being buffered whole. Fed the reply from its first byte on.
#[derive(Debug, Default)]
pub struct SkipValues {
    /// Bytes of the current data block (with its CRLF) still to come.
    data_left: usize,
}

impl SkipValues {
    /// Consumes what it can of `buf`: the bytes used, and whether the reply ended.
    pub fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), BadReply> {
        let mut pos = 0;
        loop {
            let n = self.data_left.min(buf.len() - pos);
            pos += n;
            self.data_left -= n;
            if self.data_left > 0 {
                return Ok((pos, false));
            }
            let Some(end) = line(buf, pos)? else {
                return Ok((pos, false));
            };
            let text = trim_cr(&buf[pos..end]);
            pos = end;
            if text == b"END" {
                return Ok((pos, true));
            }
            let header = parse_value_line(text).ok_or(BadReply("malformed VALUE line"))?;
            self.data_left = header
                .len
                .checked_add(2)
                .ok_or(BadReply("VALUE length beyond the item size limit"))?;
        }
    }
}

/// Reads and drops a `stats` reply (`STAT`/`ITEM` lines, `END`) too large for its client,
/// as [`SkipValues`] does for values: a `stats cachedump` can reach 2 MiB per server.
#[derive(Debug, Default)]
pub struct SkipStats;

impl SkipStats {
    /// Consumes what it can of `buf`: the bytes used, and whether the reply ended.
    pub fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), BadReply> {
        let mut pos = 0;
        while let Some(end) = line(buf, pos)? {
            let text = trim_cr(&buf[pos..end]);
            pos = end;
            if text == b"END" {
                return Ok((pos, true));
            }
        }
        Ok((pos, false))
    }
}

/// End (exclusive, after `\n`) of the line starting at `pos`.
fn line(buf: &[u8], pos: usize) -> Result<Option<usize>, BadReply> {
    let window = &buf[pos..buf.len().min(pos + MAX_REPLY_LINE)];
    match memchr(b'\n', window) {
        Some(i) => Ok(Some(pos + i + 1)),
        None if window.len() == MAX_REPLY_LINE => Err(BadReply("reply line too long")),
        None => Ok(None),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `ERROR`, `CLIENT_ERROR <msg>` or `SERVER_ERROR <msg>`: legitimate answers to any request.
pub fn is_error(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

struct ValueHeader<'a> {
    key: &'a [u8],
    len: usize,
}

/// `VALUE <key> <flags> <bytes> [<cas unique>]`
fn parse_value_line(text: &[u8]) -> Option<ValueHeader<'_>> {
    let rest = text.strip_prefix(b"VALUE ")?;
    let mut parts = rest.split(|&b| b == b' ');
    let key = parts.next().filter(|k| !k.is_empty())?;
    parse_u64(parts.next()?).filter(|&f| f <= u32::MAX as u64)?;
    let len = parse_u64(parts.next()?)? as usize;
    if let Some(cas) = parts.next() {
        parse_u64(cas)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(ValueHeader { key, len })
}

/// One `VALUE` block of a framed retrieval reply: the key and the block's byte range (from
/// `VALUE` through the data's CRLF), for merging multi-get fragments back in request order.
pub struct ValueBlock<'a> {
    pub key: &'a [u8],
    pub block: Range<usize>,
}

/// Iterates the `VALUE` blocks of a reply already validated by [`frame_reply`].
pub fn value_blocks(reply: &[u8]) -> impl Iterator<Item = ValueBlock<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let end = pos + memchr(b'\n', &reply[pos..])? + 1;
        let header = parse_value_line(trim_cr(&reply[pos..end]))?;
        let block = pos..end + header.len + 2;
        pos = block.end;
        Some(ValueBlock {
            key: header.key,
            block,
        })
    })
}

/// Checks a framed retrieval reply against the keys of the request it answers, in request
/// order: every `VALUE` must name a key that was asked for, in that order, each at most once
/// (the keys of a request passed through whole are distinct). A server out of step could
/// otherwise hand one client another key's value, or a reply of any size. Returns (hits, keys
/// asked). The reply's syntax was checked when it was framed; this only reads each block's key
/// and length.
pub fn check_values<'a>(
    reply: &[u8],
    mut asked: impl Iterator<Item = &'a [u8]>,
) -> Result<(usize, usize), BadReply> {
    const NOT_ASKED: BadReply = BadReply("VALUE for a key that was not asked for");
    let (mut pos, mut hits, mut keys) = (0, 0, 0);
    while let Some(header) = reply[pos..].strip_prefix(b"VALUE ") {
        // `<key> <flags> <bytes>[ <cas>]\r\n`, already validated by the framing.
        // Short lines: a plain scan beats memchr's setup.
        let space = |from: usize| header[from..].iter().position(|&b| b == b' ');
        let key_end = space(0).ok_or(NOT_ASKED)?;
        let flags_end = key_end + 1 + space(key_end + 1).ok_or(NOT_ASKED)?;
        let digits = header[flags_end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = flags_end
            + 1
            + digits
            + header[flags_end + 1 + digits..]
                .iter()
                .position(|&b| b == b'\n')
                .ok_or(NOT_ASKED)?;
        let len = header[flags_end + 1..flags_end + 1 + digits]
            .iter()
            .fold(0usize, |n, &d| {
                n.wrapping_mul(10).wrapping_add(usize::from(d - b'0'))
            });
        let key = &header[..key_end];
        loop {
            keys += 1;
            if asked.next().ok_or(NOT_ASKED)? == key {
                break;
            }
        }
        hits += 1;
        pos = pos
            .wrapping_add(6 + end + 1)
            .wrapping_add(len)
            .wrapping_add(2)
            .min(reply.len());
    }
    Ok((hits, keys + asked.count()))
}

/// The keys of a retrieval request as the client sent it (`get k1 k2`, `gat <exptime> k1`).
pub fn retrieval_keys(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let line = trim_cr(&frame[..memchr(b'\n', frame).map_or(frame.len(), |i| i + 1)]);
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let verb = tokens.next().unwrap_or_default();
    if verb == b"gat" || verb == b"gats" {
        tokens.next();
    }
    tokens
}

/// Whether a framed reply is an error line rather than a normal answer.
pub fn reply_is_error(reply: &[u8]) -> bool {
    is_error(trim_cr(reply))
}
