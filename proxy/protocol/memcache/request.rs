//! Client-side memcached text protocol: bytes in, [`Request`]s out, no IO.
//!
//! The parser is stricter than memcached where memcached's leniency is dangerous behind a
//! proxy (backend connections are shared, so anything a backend misreads lands on *other*
//! clients), and as forgiving as memcached everywhere else, so that applications see the
//! replies they already handle:
//! - data lengths must be plain decimals below 2^31: memcached silently wraps 2^32+2 to 2, and
//!   the rest of such a "value" would then run as commands on a shared connection;
//! - keys may not hold control bytes: memcached truncates a key at NUL, so the proxy would route
//!   one key and the server would store another;
//! - every line has a length limit, `get` lines included (memcached buffers those without end).
//!
//! Requests are re-encoded canonically by the session before they are forwarded, so nothing a
//! client writes reaches a backend unparsed.

use std::ops::Range;

use bytes::Bytes;
use memchr::memchr;

use super::Limits;

/// The memcached commands the proxy understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Verbosity,
    FlushAll,
    Stats,
    Quit,
}

impl Command {
    /// The verb as sent on the wire.
    pub fn verb(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Gat => "gat",
            Command::Gats => "gats",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Delete => "delete",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Touch => "touch",
            Command::Version => "version",
            Command::Verbosity => "verbosity",
            Command::FlushAll => "flush_all",
            Command::Stats => "stats",
            Command::Quit => "quit",
        }
    }

    /// Retrievals may carry many keys and are answered with `VALUE` blocks and `END`.
    pub fn is_retrieval(self) -> bool {
        matches!(
            self,
            Command::Get | Command::Gets | Command::Gat | Command::Gats
        )
    }

    /// Storage commands carry a data block after the command line.
    pub fn is_storage(self) -> bool {
        matches!(
            self,
            Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas
        )
    }

    fn from_verb(verb: &[u8]) -> Option<Command> {
        Some(match verb {
            b"get" => Command::Get,
            b"gets" => Command::Gets,
            b"gat" => Command::Gat,
            b"gats" => Command::Gats,
            b"set" => Command::Set,
            b"add" => Command::Add,
            b"replace" => Command::Replace,
            b"append" => Command::Append,
            b"prepend" => Command::Prepend,
            b"cas" => Command::Cas,
            b"delete" => Command::Delete,
            b"incr" => Command::Incr,
            b"decr" => Command::Decr,
            b"touch" => Command::Touch,
            b"version" => Command::Version,
            b"verbosity" => Command::Verbosity,
            b"flush_all" => Command::FlushAll,
            b"stats" => Command::Stats,
            b"quit" => Command::Quit,
            _ => return None,
        })
    }
}

/// memcached commands that exist but cannot be served through a sharding proxy: they get an
/// explicit error instead of memcached's generic `ERROR`, so the operator sees why.
const UNSUPPORTED: &[&[u8]] = &[
    b"mg",
    b"ms",
    b"md",
    b"ma",
    b"mn",
    b"me",
    b"watch",
    b"lru_crawler",
    b"slabs",
    b"lru",
    b"extstore",
    b"cache_memlimit",
    b"shutdown",
    b"misbehave",
    b"debugtime",
    b"quit_all",
];

/// One parsed request. Ranges index the request's own frame (the bytes `consumed` reported by
/// [`parse`]), so keys and values are slices of the client's read buffer, never copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cmd: Command,
    /// Keys in request order: exactly one, except for retrievals.
    pub keys: Vec<Range<usize>>,
    pub flags: u32,
    /// Expiry for storage, touch and gat; arithmetic delta for incr and decr; delay for
    /// flush_all.
    pub exptime: i64,
    pub delta: u64,
    pub cas: u64,
    /// The value of a storage command, without its trailing CRLF.
    pub data: Range<usize>,
    pub noreply: bool,
    /// Whether flush_all carried its optional delay.
    pub has_arg: bool,
    /// Arguments of `stats`, verbatim.
    pub args: Range<usize>,
}

impl Request {
    fn new(cmd: Command, keys: Vec<Range<usize>>) -> Request {
        Request {
            cmd,
            keys,
            flags: 0,
            exptime: 0,
            delta: 0,
            cas: 0,
            data: 0..0,
            noreply: false,
            has_arg: false,
            args: 0..0,
        }
    }
}

/// What the session does after replying to a rejected request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Framing is intact: parse the next request.
    Continue,
    /// Drop this many more bytes (a value we refused, plus its CRLF) before parsing again.
    Swallow(u64),
    /// Framing is lost or the client is hostile: close after flushing earlier replies.
    Close,
}

/// A request the proxy answers itself with an error, never forwarding a byte of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reply: Bytes,
    pub consumed: usize,
    pub after: After,
}

/// Result of one parse step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Request(Request, usize),
    Reject(Reject),
    Incomplete,
}

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const BAD_KEY: &[u8] = b"CLIENT_ERROR key contains a control character\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELETE: &[u8] =
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";

fn reject(reply: &'static [u8], consumed: usize, after: After) -> Parsed {
    Parsed::Reject(Reject {
        reply: Bytes::from_static(reply),
        consumed,
        after,
    })
}

/// Largest data length memcached itself accepts (`vlen + 2` must fit an int).
const MAX_DATA_LEN: u64 = (i32::MAX - 2) as u64;
/// memcached parses at most 24 tokens for anything but retrievals.
const MAX_TOKENS: usize = 8;

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Parsed {
    parse_reusing(buf, limits, Vec::new())
}

/// [`parse`], storing the keys in `keys` (cleared first): a session hands back the vector of
/// its previous request, so that parsing allocates nothing.
pub fn parse_reusing(buf: &[u8], limits: &Limits, mut keys: Vec<Range<usize>>) -> Parsed {
    keys.clear();
    if buf.first() == Some(&0x80) {
        // Binary-protocol magic: a different framing entirely; nothing sensible can follow.
        return reject(b"", buf.len(), After::Close);
    }
    let line_end = match memchr(b'\n', &buf[..buf.len().min(limits.max_get_line + 1)]) {
        Some(i) => i,
        None => {
            let limit = if is_retrieval_prefix(buf) {
                limits.max_get_line
            } else {
                limits.max_line
            };
            return if buf.len() > limit {
                reject(LINE_TOO_LONG, buf.len(), After::Close)
            } else {
                Parsed::Incomplete
            };
        }
    };
    let header_len = line_end + 1;
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.max_line && !is_retrieval_prefix(line) {
        return reject(LINE_TOO_LONG, header_len, After::Close);
    }
    if line.starts_with(b"POST ") || line.starts_with(b"Host: ") {
        // Cross-protocol attack (an HTTP request smuggled at a cache port): close, as Redis does.
        return reject(b"", header_len, After::Close);
    }
    let mut tokens = Tokens { line, pos: 0 };
    let Some(verb) = tokens.next() else {
        return reject(ERROR, header_len, After::Continue);
    };
    let Some(cmd) = Command::from_verb(&line[verb.clone()]) else {
        if UNSUPPORTED.contains(&&line[verb.clone()]) {
            let reply = format!(
                "CLIENT_ERROR command '{}' is not supported by shardproxy\r\n",
                String::from_utf8_lossy(&line[verb])
            );
            return Parsed::Reject(Reject {
                reply: Bytes::from(reply),
                consumed: header_len,
                after: After::Continue,
            });
        }
        return reject(ERROR, header_len, After::Continue);
    };
    let mut req = Request::new(cmd, keys);
    let outcome = if cmd.is_retrieval() {
        parse_retrieval(&mut req, &mut tokens, limits)
    } else {
        let mut args = [0..0, 0..0, 0..0, 0..0, 0..0, 0..0, 0..0, 0..0];
        let mut n = 0;
        for tok in tokens.by_ref() {
            if n == MAX_TOKENS {
                return reject(ERROR, header_len, After::Continue);
            }
            args[n] = tok;
            n += 1;
        }
        parse_other(&mut req, line, &args[..n], limits)
    };
    match outcome {
        Ok(()) => {}
        Err(Bad::Reply(reply)) => return reject(reply, header_len, After::Continue),
        Err(Bad::Swallow(reply, n)) => return reject(reply, header_len, After::Swallow(n)),
    }
    if !cmd.is_storage() {
        return Parsed::Request(req, header_len);
    }
    let len = req.data.end; // parse_other stores the declared length here until the block arrives
    let total = header_len + len + 2;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    if &buf[header_len + len..total] != b"\r\n" {
        // memcached consumes exactly <bytes>+2 and reports the chunk; we do the same, so a
        // client that miscounted stays in step with what memcached would have done.
        return reject(BAD_CHUNK, total, After::Continue);
    }
    req.data = header_len..header_len + len;
    Parsed::Request(req, total)
}

enum Bad {
    Reply(&'static [u8]),
    Swallow(&'static [u8], u64),
}

fn is_retrieval_prefix(buf: &[u8]) -> bool {
    let trimmed = &buf[buf.iter().take_while(|&&b| b == b' ').count()..];
    [&b"get "[..], b"gets ", b"gat ", b"gats "]
        .iter()
        .any(|p| trimmed.starts_with(p))
}

fn parse_retrieval(req: &mut Request, tokens: &mut Tokens<'_>, limits: &Limits) -> Result<(), Bad> {
    if matches!(req.cmd, Command::Gat | Command::Gats) {
        let t = tokens.next().ok_or(Bad::Reply(ERROR))?;
        req.exptime = parse_exptime(&tokens.line[t]).ok_or(Bad::Reply(BAD_EXPTIME))?;
    }
    let line = tokens.line;
    for key in tokens.by_ref() {
        check_key(&line[key.clone()], limits)?;
        req.keys.push(key);
    }
    if req.keys.is_empty() {
        return Err(Bad::Reply(ERROR));
    }
    Ok(())
}

/// Everything but retrievals: `spans` are the argument tokens after the verb.
fn parse_other(
    req: &mut Request,
    line: &[u8],
    spans: &[Range<usize>],
    limits: &Limits,
) -> Result<(), Bad> {
    let mut words: [&[u8]; MAX_TOKENS] = [b""; MAX_TOKENS];
    for (w, r) in words.iter_mut().zip(spans) {
        *w = &line[r.clone()];
    }
    let args = &words[..spans.len()];
    let key_at = |i: usize| spans[i].clone();
    let noreply_at = |i: usize| args.get(i).is_some_and(|a| *a == b"noreply");
    match req.cmd {
        Command::Set
        | Command::Add
        | Command::Replace
        | Command::Append
        | Command::Prepend
        | Command::Cas => {
            let want = if req.cmd == Command::Cas { 5 } else { 4 };
            if args.len() != want && !(args.len() == want + 1 && noreply_at(want)) {
                return Err(Bad::Reply(ERROR));
            }
            req.noreply = args.len() == want + 1;
            let flags = parse_u64(args[1]).filter(|&f| f <= u32::MAX as u64);
            let exptime = parse_exptime(args[2]);
            let len = parse_u64(args[3]).filter(|&l| l <= MAX_DATA_LEN);
            let cas = if req.cmd == Command::Cas {
                parse_u64(args[4])
            } else {
                Some(0)
            };
            let (Some(flags), Some(exptime), Some(len), Some(cas)) = (flags, exptime, len, cas)
            else {
                // The length cannot be trusted, so the data block cannot be skipped: like
                // memcached, the client's next line is read as a command.
                return Err(Bad::Reply(BAD_FORMAT));
            };
            if args[0].len() > limits.max_key_len {
                return Err(Bad::Swallow(BAD_FORMAT, len + 2));
            }
            if has_control(args[0]) {
                return Err(Bad::Swallow(BAD_KEY, len + 2));
            }
            if len > limits.item_size_max as u64 {
                return Err(Bad::Swallow(TOO_LARGE, len + 2));
            }
            req.keys.push(key_at(0));
            (req.flags, req.exptime, req.cas) = (flags as u32, exptime, cas);
            req.data = 0..len as usize;
        }
        Command::Delete => {
            let valid = match args.len() {
                1 => true,
                2 => args[1] == b"0" || noreply_at(1),
                3 => args[1] == b"0" && noreply_at(2),
                _ => false,
            };
            if !valid {
                return Err(Bad::Reply(if args.is_empty() { ERROR } else { BAD_DELETE }));
            }
            check_key(args[0], limits)?;
            req.keys.push(key_at(0));
            req.noreply = noreply_at(args.len() - 1);
        }
        Command::Incr | Command::Decr | Command::Touch => {
            if args.len() != 2 && !(args.len() == 3 && noreply_at(2)) {
                return Err(Bad::Reply(ERROR));
            }
            check_key(args[0], limits)?;
            if req.cmd == Command::Touch {
                req.exptime = parse_exptime(args[1]).ok_or(Bad::Reply(BAD_EXPTIME))?;
            } else {
                req.delta = parse_u64(args[1]).ok_or(Bad::Reply(BAD_DELTA))?;
            }
            req.keys.push(key_at(0));
            req.noreply = args.len() == 3;
        }
        Command::FlushAll => {
            req.noreply = args.last().is_some_and(|a| *a == b"noreply");
            match &args[..args.len() - req.noreply as usize] {
                [] => {}
                [delay] => {
                    req.exptime = parse_exptime(delay).ok_or(Bad::Reply(BAD_EXPTIME))?;
                    req.has_arg = true;
                }
                _ => return Err(Bad::Reply(ERROR)),
            }
        }
        Command::Verbosity => {
            // memcached answers `OK` to one or two arguments whatever they are (the level is
            // not validated), and stays silent when the last is `noreply`.
            if !(1..=2).contains(&args.len()) {
                return Err(Bad::Reply(ERROR));
            }
            req.noreply = args.last().is_some_and(|a| *a == b"noreply");
        }
        Command::Stats => {
            if let (Some(first), Some(last)) = (spans.first(), spans.last()) {
                req.args = first.start..last.end;
            }
        }
        // memcached ignores whatever follows these verbs.
        Command::Version | Command::Quit => {}
        Command::Get | Command::Gets | Command::Gat | Command::Gats => {
            unreachable!("retrievals parsed apart")
        }
    }
    Ok(())
}

fn check_key(key: &[u8], limits: &Limits) -> Result<(), Bad> {
    if key.len() > limits.max_key_len {
        return Err(Bad::Reply(BAD_FORMAT));
    }
    if has_control(key) {
        return Err(Bad::Reply(BAD_KEY));
    }
    Ok(())
}

/// memcached keys may not contain whitespace or control characters (the protocol says so;
/// the server does not check, and truncates at NUL).
fn has_control(key: &[u8]) -> bool {
    key.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// A plain unsigned decimal, as memcached's `safe_strtoull` reads it, without wrap-around.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add((b - b'0') as u64)
        } else {
            None
        }
    })
}

/// An expiry time: a signed decimal that fits memcached's 32-bit int (negative means "already
/// expired", which memcached accepts).
fn parse_exptime(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let v = parse_u64(digits)? as i64;
    let v = if neg { -v } else { v };
    (i32::MIN as i64..=i32::MAX as i64)
        .contains(&v)
        .then_some(v)
}

/// Space-separated tokens of a command line, as byte ranges (memcached splits on spaces only).
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl Iterator for Tokens<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while self.pos < self.line.len() && self.line[self.pos] == b' ' {
            self.pos += 1;
        }
        if self.pos == self.line.len() {
            return None;
        }
        let start = self.pos;
        self.pos += memchr(b' ', &self.line[start..]).unwrap_or(self.line.len() - start);
        Some(start..self.pos)
    }
}
