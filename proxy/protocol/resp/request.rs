//! Client-side RESP2: arrays of bulk strings (what client libraries send) and inline commands
//! (what `telnet` and hand-typed input send), with Redis's own limits and error messages.
//!
//! The parser is resumable: a request that arrives in many reads (an MSET of a million
//! arguments, a 512 MiB value) is scanned once, not once per read, so a slow or hostile client
//! cannot make parsing quadratic. Memory follows what was actually received: a declared length
//! reserves nothing.
//!
//! Unlike Redis, the CRLF after each bulk string is checked (Redis skips those two bytes
//! unread, so `$4\r\nPINGXX` runs PING; behind a proxy that would desynchronise the stream).

use std::ops::Range;

use memchr::memchr;

/// Limits enforced while parsing. Defaults are Redis's own.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `proto-max-bulk-len`.
    pub max_bulk: usize,
    /// Redis refuses a multibulk count above 1024*1024.
    pub max_args: usize,
    /// `PROTO_INLINE_MAX_SIZE`.
    pub max_inline: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_bulk: 512 * 1024 * 1024,
        max_args: 1024 * 1024,
        max_inline: 64 * 1024,
    };
    /// Before AUTH Redis accepts at most 10 arguments of 16 KiB (CVE-2021-32675).
    pub const UNAUTHENTICATED: Limits = Limits {
        max_bulk: 16 * 1024,
        max_args: 10,
        max_inline: 64 * 1024,
    };
}

/// A protocol error: the reply to send before closing the connection (Redis closes too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// One step of parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A complete array request: argument ranges into the first `len` bytes of the buffer.
    Array {
        args: Vec<Range<usize>>,
        len: usize,
    },
    /// A complete inline request, re-encoded as a RESP array (its arguments may contain
    /// unescaped bytes that are not in the input).
    Inline {
        resp: Vec<u8>,
        len: usize,
    },
    /// An empty request (`*0`, `*-1`, a blank line): consume `len` bytes, reply nothing.
    Skip {
        len: usize,
    },
    Incomplete,
    Error(ProtocolError),
}

/// Resumable parser state for the request at the front of the buffer.
#[derive(Default, Debug)]
pub struct Parser {
    /// Declared argument count, once the `*N` line is read.
    count: Option<usize>,
    args: Vec<Range<usize>>,
    /// Bytes of the buffer already parsed into `args`.
    pos: usize,
}

impl Parser {
    /// Continues parsing the request at the start of `buf` (which must start where the
    /// previous complete request ended, and only grow between calls until a request completes).
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Step {
        if buf.is_empty() {
            return Step::Incomplete;
        }
        if buf[0] != b'*' {
            return inline(buf, limits);
        }
        let count = match self.count {
            Some(c) => c,
            None => {
                let Some((n, end)) = number_line(buf, 1, BAD_MULTIBULK, BIG_MULTIBULK) else {
                    return Step::Incomplete;
                };
                let n = match n {
                    Err(e) => return Step::Error(e),
                    Ok(n) if n <= 0 => return Step::Skip { len: end },
                    Ok(n) if n as usize > limits.max_args => {
                        return Step::Error(if limits.max_args < Limits::DEFAULT.max_args {
                            ProtocolError("Protocol error: unauthenticated multibulk length")
                        } else {
                            BAD_MULTIBULK
                        })
                    }
                    Ok(n) => n as usize,
                };
                self.count = Some(n);
                self.pos = end;
                self.args.clear();
                n
            }
        };
        while self.args.len() < count {
            let pos = self.pos;
            let Some(&first) = buf.get(pos) else {
                return Step::Incomplete;
            };
            if first != b'$' {
                return Step::Error(expected_dollar(first));
            }
            let Some((n, data)) = number_line(buf, pos + 1, BAD_BULK, BIG_BULK) else {
                return Step::Incomplete;
            };
            let len = match n {
                Ok(n) if n >= 0 && (n as usize) <= limits.max_bulk => n as usize,
                Ok(_) if limits.max_bulk < Limits::DEFAULT.max_bulk => {
                    return Step::Error(ProtocolError(
                        "Protocol error: unauthenticated bulk length",
                    ))
                }
                Ok(_) => return Step::Error(BAD_BULK),
                Err(e) => return Step::Error(e),
            };
            if buf.len() < data + len + 2 {
                return Step::Incomplete;
            }
            if &buf[data + len..data + len + 2] != b"\r\n" {
                return Step::Error(ProtocolError(
                    "Protocol error: bulk string not terminated by CRLF",
                ));
            }
            self.args.push(data..data + len);
            self.pos = data + len + 2;
        }
        let len = self.pos;
        self.count = None;
        self.pos = 0;
        Step::Array {
            args: std::mem::take(&mut self.args),
            len,
        }
    }

    /// Hands back the argument vector of a finished request so its allocation is reused.
    pub fn recycle(&mut self, mut args: Vec<Range<usize>>) {
        if !self.in_progress() {
            args.clear();
            self.args = args;
        }
    }

    /// Whether a request is partly parsed (more bytes are owed).
    pub fn in_progress(&self) -> bool {
        self.count.is_some()
    }
}

fn expected_dollar(got: u8) -> ProtocolError {
    // Redis names the byte it got; the common cases get their own static message.
    match got {
        b'*' => ProtocolError("Protocol error: expected '$', got '*'"),
        b'+' => ProtocolError("Protocol error: expected '$', got '+'"),
        b':' => ProtocolError("Protocol error: expected '$', got ':'"),
        b'-' => ProtocolError("Protocol error: expected '$', got '-'"),
        _ => ProtocolError("Protocol error: expected '$', got something else"),
    }
}

/// Parses the decimal after a type byte at `start`, up to CRLF. Returns the value (or the
/// protocol error) and the offset after the CRLF; None if the line is incomplete.
fn number_line(
    buf: &[u8],
    start: usize,
    invalid: ProtocolError,
    too_big: ProtocolError,
) -> Option<(Result<i64, ProtocolError>, usize)> {
    let window = &buf[start..buf.len().min(start + 32)];
    let Some(nl) = memchr(b'\n', window) else {
        return (window.len() == 32).then_some((Err(too_big), buf.len()));
    };
    let end = start + nl + 1;
    let Some(digits) = window[..nl].strip_suffix(b"\r") else {
        return Some((Err(invalid), end));
    };
    Some((super::decimal(digits).ok_or(invalid), end))
}

const BAD_MULTIBULK: ProtocolError = ProtocolError("Protocol error: invalid multibulk length");
const BIG_MULTIBULK: ProtocolError = ProtocolError("Protocol error: too big mbulk count string");
const BAD_BULK: ProtocolError = ProtocolError("Protocol error: invalid bulk length");
const BIG_BULK: ProtocolError = ProtocolError("Protocol error: too big bulk count string");

/// An inline command: space-separated words with Redis's quoting rules (`sdssplitargs`).
fn inline(buf: &[u8], limits: &Limits) -> Step {
    let Some(nl) = memchr(b'\n', &buf[..buf.len().min(limits.max_inline + 1)]) else {
        return if buf.len() > limits.max_inline {
            Step::Error(ProtocolError("Protocol error: too big inline request"))
        } else {
            Step::Incomplete
        };
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(words) = split_args(line) else {
        return Step::Error(ProtocolError(
            "Protocol error: unbalanced quotes in request",
        ));
    };
    if words.is_empty() {
        return Step::Skip { len: nl + 1 };
    }
    let mut resp = Vec::with_capacity(line.len() + 16 * words.len());
    super::encode::array_header(&mut resp, words.len());
    for w in &words {
        super::encode::bulk(&mut resp, w);
    }
    Step::Inline { resp, len: nl + 1 }
}

/// Splits an inline command line into arguments: whitespace separates, `"..."` understands
/// `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`. A closing quote must be followed by
/// whitespace or the end. None means unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(out);
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    match c {
                        b'\\'
                            if i + 3 < line.len()
                                && line[i + 1] == b'x'
                                && line[i + 2].is_ascii_hexdigit()
                                && line[i + 3].is_ascii_hexdigit() =>
                        {
                            let hex = std::str::from_utf8(&line[i + 2..i + 4]).ok()?;
                            word.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 4;
                        }
                        b'\\' if i + 1 < line.len() => {
                            word.push(match line[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => other,
                            });
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            if i < line.len() && !line[i].is_ascii_whitespace() {
                                return None;
                            }
                            break;
                        }
                        _ => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 2;
                    } else if c == b'\'' {
                        i += 1;
                        if i < line.len() && !line[i].is_ascii_whitespace() {
                            return None;
                        }
                        break;
                    } else {
                        word.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        out.push(word);
    }
}
