//! Backend-side RESP2 and RESP3: frames the replies a Redis server sends, no IO.
//!
//! Replies may nest (EVAL, SCAN, GEO, XREAD return arrays of arrays), so framing walks a
//! count stack rather than recursing; depth and lengths are bounded so that a corrupt stream
//! is detected instead of waited on. Replies are passed to clients byte for byte; the proxy
//! only looks inside them to merge split commands (MGET elements, summed integers).

use super::decimal;
use memchr::memchr;

/// The backend sent something that is not RESP2: its stream can't be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("backend protocol error: {0}")]
pub struct BadReply(pub &'static str);

/// Deepest nesting accepted in a reply (Redis's own replies nest a handful of levels; Lua can
/// return deeper tables, up to its own limits).
const MAX_DEPTH: usize = 1000;
/// Longest simple line (status, error, integer, length) accepted.
const MAX_LINE: usize = 64 * 1024;

/// Length of the complete reply at the start of `buf`, or None if more bytes are needed.
pub fn frame_reply(buf: &[u8], max_bulk: usize) -> Result<Option<usize>, BadReply> {
    let mut pos = 0;
    // Elements still expected at each open array level.
    let mut pending: Vec<i64> = Vec::new();
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(end) = line_end(buf, pos)? else {
            return Ok(None);
        };
        let text = &buf[pos + 1..end - 2];
        pos = end;
        match kind {
            b'+' | b'-' => {}
            b':' => {
                decimal(text).ok_or(BadReply("bad integer reply"))?;
            }
            // RESP3: null, double, boolean, big number.
            b'_' if text.is_empty() => {}
            b',' if !text.is_empty() => {}
            b'#' if text == b"t" || text == b"f" => {}
            b'(' if big_number(text) => {}
            // Bulk strings, and RESP3's verbatim strings and blob errors (never null).
            b'$' | b'=' | b'!' => {
                let n = decimal(text).ok_or(BadReply("bad bulk length"))?;
                if n >= 0 {
                    let n = n as usize;
                    if n > max_bulk {
                        return Err(BadReply("bulk length beyond the limit"));
                    }
                    if buf.len() < pos + n + 2 {
                        return Ok(None);
                    }
                    if &buf[pos + n..pos + n + 2] != b"\r\n" {
                        return Err(BadReply("bulk not terminated by CRLF"));
                    }
                    pos += n + 2;
                } else if n != -1 || kind != b'$' {
                    return Err(BadReply("bad bulk length"));
                }
            }
            // Arrays, and RESP3's sets, pushes, maps (pairs) and attributes (pairs, then the
            // element they describe: together they are one element).
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = decimal(text).ok_or(BadReply("bad array length"))?;
                if n < -1 || (n == -1 && kind != b'*') {
                    return Err(BadReply("bad array length"));
                }
                let elements = match kind {
                    b'%' => n.saturating_mul(2),
                    b'|' => n.saturating_mul(2).saturating_add(1),
                    _ => n,
                };
                if elements > 0 {
                    if pending.len() == MAX_DEPTH {
                        return Err(BadReply("reply nested too deeply"));
                    }
                    pending.push(elements);
                    continue;
                }
            }
            _ => return Err(BadReply("unknown reply type")),
        }
        // One element done: close every array it completes.
        loop {
            match pending.last_mut() {
                None => return Ok(Some(pos)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    pending.pop();
                }
            }
        }
    }
}

/// Reads and drops a reply as it streams in, for a reply too large to hold (larger than its
/// client may be owed): the connection stays in step without the reply ever being buffered
/// whole. Nesting needs no stack: each aggregate header adds its element count to the
/// elements still to come, and each element header takes one away. Fed the reply from its
/// first byte on.
#[derive(Debug)]
pub struct SkipReply {
    /// Elements (of any depth) still to come.
    elements: u64,
    /// Bytes of the current bulk string (with its CRLF) still to come.
    bulk_left: u64,
}

impl Default for SkipReply {
    fn default() -> Self {
        SkipReply {
            elements: 1,
            bulk_left: 0,
        }
    }
}

impl SkipReply {
    fn more(&mut self, n: u64) -> Result<(), BadReply> {
        self.elements = self
            .elements
            .checked_add(n)
            .ok_or(BadReply("aggregate length beyond the limit"))?;
        Ok(())
    }

    /// Consumes what it can of `buf`: the bytes used, and whether the reply ended.
    pub fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), BadReply> {
        let mut pos = 0;
        loop {
            let n = self.bulk_left.min((buf.len() - pos) as u64);
            pos += n as usize;
            self.bulk_left -= n;
            if self.bulk_left > 0 {
                return Ok((pos, false));
            }
            if self.elements == 0 {
                return Ok((pos, true));
            }
            let Some(end) = line_end(buf, pos)? else {
                return Ok((pos, false));
            };
            let kind = buf[pos];
            let n = decimal(&buf[pos + 1..end - 2]);
            pos = end;
            self.elements -= 1;
            match (kind, n) {
                (b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(', _) => {}
                // Bulk strings, and RESP3's verbatim strings and blob errors.
                (b'$' | b'=' | b'!', Some(n)) if n >= 0 => self.bulk_left = n as u64 + 2,
                (b'$' | b'*', Some(-1)) => {}
                // Arrays, and RESP3's sets and pushes; maps and attributes hold pairs.
                (b'*' | b'~' | b'>', Some(n)) if n >= 0 => self.more(n as u64)?,
                (b'%', Some(n)) if n >= 0 => self.more(2 * n as u64)?,
                // An attribute map comes before the element it describes.
                (b'|', Some(n)) if n >= 0 => self.more(2 * n as u64 + 1)?,
                _ => return Err(BadReply("malformed reply")),
            }
        }
    }
}

/// A RESP3 big number: an optional minus sign and at least one digit.
fn big_number(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// End (after CRLF) of the line starting at `pos`.
fn line_end(buf: &[u8], pos: usize) -> Result<Option<usize>, BadReply> {
    let window = &buf[pos..buf.len().min(pos + MAX_LINE)];
    match memchr(b'\n', window) {
        // A type byte, then CRLF at least: a bare `\r\n` is no reply.
        Some(i) if i >= 2 && window[i - 1] == b'\r' => Ok(Some(pos + i + 1)),
        Some(_) => Err(BadReply("line not terminated by CRLF")),
        None if window.len() == MAX_LINE => Err(BadReply("reply line too long")),
        None => Ok(None),
    }
}

/// The integer of a `:N` reply.
pub fn integer(reply: &[u8]) -> Option<i64> {
    reply
        .strip_prefix(b":")
        .and_then(|r| r.strip_suffix(b"\r\n"))
        .and_then(decimal)
}

/// Whether a reply is an error (`-...`).
pub fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

/// Whether a reply is the null bulk string (a miss for GET).
pub fn is_nil(reply: &[u8]) -> bool {
    reply == b"$-1\r\n"
}

/// The elements of a framed array reply, each as its own complete framed reply. None if the
/// reply is not an array.
pub fn array_elements(reply: &[u8]) -> Option<Vec<&[u8]>> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let end = memchr(b'\n', reply)? + 1;
    let n = decimal(&reply[1..end - 2])?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    let mut pos = end;
    for _ in 0..n.max(0) {
        let len = frame_reply(&reply[pos..], usize::MAX).ok()??;
        out.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some(out)
}
