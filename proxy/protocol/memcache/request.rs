//! Client-side memcached text protocol: bytes in, [`Request`]s out, no IO.
//!
//! The parser is stricter than memcached where memcached's leniency is dangerous behind a
//! proxy (backend connections are shared, so anything a backend misreads lands on *other*
//! clients), and as forgiving as memcached everywhere else, so that applications see the
//! replies they already handle:
//! - numbers are read as memcached reads them (`number.rs`: a sign, a trailing `\r`, values
//!   truncated to 32 bits) and forwarded as plain decimals, except data lengths of 2^31 - 2
//!   and more: memcached refuses those or silently wraps them (2^32+2 becomes 2), and the rest
//!   of such a "value" would run as commands on a shared connection;
//! - a refused storage command (or `ms`) has its data block skipped whenever its length can be
//!   read, and the connection is closed when it cannot, or when a data block turns out not to
//!   end where its length said: no byte a client sent as data is ever parsed as a command
//!   (memcached itself runs such blocks as commands);
//! - a refused request that said `noreply` gets no reply, as from memcached;
//! - keys may hold any byte memcached stores as sent (tabs, 0x10, 0x7f: memaslap's keys start
//!   with such bytes), but not NUL, which memcached truncates a key at (the proxy would route
//!   one key and the server would store another), nor CR (see [`has_bad_byte`]);
//! - a binary-protocol request gets a binary `Unknown command` response before the connection
//!   closes, so binary clients (memjs) fail at once instead of waiting for a reply;
//! - every line has a length limit, `get` lines included (memcached buffers those without end).
//!
//! Requests are re-encoded canonically by the session before they are forwarded, so nothing a
//! client writes reaches a backend unparsed.

use std::ops::Range;

use bytes::Bytes;
use memchr::memchr;

use super::{number, Limits};

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
/// A key holding NUL or CR (the control characters memcached would not store as sent).
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
    if buf.first() == Some(&super::binary::REQUEST_MAGIC) {
        // Binary-protocol magic: a different framing entirely. Answer the request in its own
        // protocol (so the client fails fast instead of waiting), then close.
        return match super::binary::unknown_command(buf) {
            Some(reply) => Parsed::Reject(Reject {
                reply,
                consumed: buf.len(),
                after: After::Close,
            }),
            None => Parsed::Incomplete,
        };
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
                String::from_utf8_lossy(&line[verb.clone()])
            );
            // `ms <key> <datalen> ...` carries a data block: skip it (one request, one
            // reply, and none of its data run as commands), or close if its length is unreadable.
            let after = if &line[verb] == b"ms" {
                let len = tokens.nth(1).and_then(|t| number::strtoull(&line[t]));
                len.map_or(After::Close, |l| After::Swallow(l.saturating_add(2)))
            } else {
                After::Continue
            };
            return Parsed::Reject(Reject {
                reply: Bytes::from(reply),
                consumed: header_len,
                after,
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
        let mut more = false;
        for tok in tokens.by_ref() {
            if n == MAX_TOKENS {
                more = true;
                break;
            }
            args[n] = tok;
            n += 1;
        }
        parse_other(&mut req, line, &args[..n], more, limits)
    };
    if let Err(bad) = outcome {
        // memcached stays silent about a refused request that asked for no reply.
        let reply = if req.noreply { &b""[..] } else { bad.reply };
        return reject(reply, header_len, bad.after);
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
        // memcached consumes <bytes>+2, reports the chunk and reads on, running the rest of a
        // miscounted value as commands. Where the value really ends cannot be known, so the
        // proxy answers as memcached does and closes the connection.
        let reply = if req.noreply { &b""[..] } else { BAD_CHUNK };
        return reject(reply, total, After::Close);
    }
    req.data = header_len..header_len + len;
    Parsed::Request(req, total)
}

/// Why a request is refused, and what happens to the bytes after its command line.
struct Bad {
    reply: &'static [u8],
    after: After,
}

impl Bad {
    fn reply(reply: &'static [u8]) -> Bad {
        Bad {
            reply,
            after: After::Continue,
        }
    }

    /// A refused storage command: its data block (`declared` bytes plus CRLF) is skipped when
    /// its length could be read, so that no byte of it is ever parsed as a command; when it
    /// could not, nothing after the line can be trusted and the connection is closed.
    fn storage(reply: &'static [u8], declared: Option<u64>) -> Bad {
        Bad {
            reply,
            after: match declared {
                Some(len) => After::Swallow(len + 2),
                None => After::Close,
            },
        }
    }
}

fn is_retrieval_prefix(buf: &[u8]) -> bool {
    let trimmed = &buf[buf.iter().take_while(|&&b| b == b' ').count()..];
    [&b"get "[..], b"gets ", b"gat ", b"gats "]
        .iter()
        .any(|p| trimmed.starts_with(p))
}

fn parse_retrieval(req: &mut Request, tokens: &mut Tokens<'_>, limits: &Limits) -> Result<(), Bad> {
    let line = tokens.line;
    if matches!(req.cmd, Command::Gat | Command::Gats) {
        let t = tokens.next().ok_or(Bad::reply(ERROR))?;
        let exptime = number::strtol_i32(&line[t]).ok_or(Bad::reply(BAD_EXPTIME))?;
        req.exptime = i64::from(exptime);
        // `gat <exptime>` with no key is answered `END` by memcached (the session does too).
        for key in tokens.by_ref() {
            check_key(&line[key.clone()], limits)?;
            req.keys.push(key);
        }
        return Ok(());
    }
    for key in tokens.by_ref() {
        check_key(&line[key.clone()], limits)?;
        req.keys.push(key);
    }
    if req.keys.is_empty() {
        return Err(Bad::reply(ERROR));
    }
    Ok(())
}

/// Everything but retrievals: `spans` are the argument tokens after the verb (`more`: the line
/// had more than [`MAX_TOKENS`]). Token counts, `noreply` detection and number parsing follow
/// memcached 1.6's `process_command_ascii` and the `process_*_command` functions it calls.
fn parse_other(
    req: &mut Request,
    line: &[u8],
    spans: &[Range<usize>],
    more: bool,
    limits: &Limits,
) -> Result<(), Bad> {
    let mut words: [&[u8]; MAX_TOKENS] = [b""; MAX_TOKENS];
    for (w, r) in words.iter_mut().zip(spans) {
        *w = &line[r.clone()];
    }
    let args = &words[..spans.len()];
    let key_at = |i: usize| spans[i].clone();
    // memcached's `set_noreply_maybe`: the last token is exactly `noreply`.
    let last_is_noreply = !more && args.last().is_some_and(|a| *a == b"noreply");
    match req.cmd {
        Command::Set
        | Command::Add
        | Command::Replace
        | Command::Append
        | Command::Prepend
        | Command::Cas => {
            // The length memcached would read, if it can be read at all: what a refused
            // line's data block is skipped by.
            let declared = args
                .get(3)
                .and_then(|a| number::strtol(a))
                .and_then(|l| u64::try_from(l).ok());
            let want = if req.cmd == Command::Cas { 5 } else { 4 };
            // A sixth (cas: seventh) token that is not `noreply` is ignored, as memcached does.
            if more || !(want..=want + 1).contains(&args.len()) {
                return Err(Bad::storage(ERROR, declared));
            }
            req.noreply = last_is_noreply;
            if args[0].len() > limits.max_key_len {
                return Err(Bad::storage(BAD_FORMAT, declared));
            }
            let flags = number::strtoul_u32(args[1]);
            let exptime = number::strtol_i32(args[2]);
            let cas = if req.cmd == Command::Cas {
                number::strtoull(args[4])
            } else {
                Some(0)
            };
            let (Some(flags), Some(exptime), Some(len), Some(cas)) =
                (flags, exptime, declared, cas)
            else {
                return Err(Bad::storage(BAD_FORMAT, declared));
            };
            if len > MAX_DATA_LEN {
                // memcached refuses these, or wraps them to 32 bits and reads the rest of the
                // value as commands; the proxy refuses and skips all that the client announced.
                return Err(Bad::storage(BAD_FORMAT, declared));
            }
            if has_bad_byte(args[0]) {
                return Err(Bad::storage(BAD_KEY, declared));
            }
            if len > limits.item_size_max as u64 {
                return Err(Bad::storage(TOO_LARGE, declared));
            }
            req.keys.push(key_at(0));
            (req.flags, req.exptime, req.cas) = (flags, i64::from(exptime), cas);
            req.data = 0..len as usize;
        }
        Command::Delete => {
            if args.is_empty() || args.len() > 3 || more {
                return Err(Bad::reply(ERROR));
            }
            if args.len() > 1 {
                req.noreply = last_is_noreply;
                let hold_is_zero = args[1] == b"0";
                let valid = (args.len() == 2 && (hold_is_zero || req.noreply))
                    || (args.len() == 3 && hold_is_zero && req.noreply);
                if !valid {
                    return Err(Bad::reply(BAD_DELETE));
                }
            }
            check_key(args[0], limits)?;
            req.keys.push(key_at(0));
        }
        Command::Incr | Command::Decr | Command::Touch => {
            if !(2..=3).contains(&args.len()) || more {
                return Err(Bad::reply(ERROR));
            }
            req.noreply = last_is_noreply;
            check_key(args[0], limits)?;
            if req.cmd == Command::Touch {
                let exptime = number::strtol_i32(args[1]).ok_or(Bad::reply(BAD_EXPTIME))?;
                req.exptime = i64::from(exptime);
            } else {
                req.delta = number::strtoull(args[1]).ok_or(Bad::reply(BAD_DELTA))?;
            }
            req.keys.push(key_at(0));
        }
        Command::FlushAll => {
            if args.len() > 2 || more {
                return Err(Bad::reply(ERROR));
            }
            req.noreply = last_is_noreply;
            // memcached reads a delay from the first argument unless the only one is
            // `noreply`; a further argument is ignored.
            if args.len() > usize::from(req.noreply) {
                let delay = number::strtol_i32(args[0]).ok_or(Bad::reply(BAD_EXPTIME))?;
                req.exptime = i64::from(delay);
                req.has_arg = true;
            }
        }
        Command::Verbosity => {
            if !(1..=2).contains(&args.len()) || more {
                return Err(Bad::reply(ERROR));
            }
            req.noreply = last_is_noreply;
            number::strtoul_u32(args[0]).ok_or(Bad::reply(BAD_FORMAT))?;
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
        return Err(Bad::reply(BAD_FORMAT));
    }
    if has_bad_byte(key) {
        return Err(Bad::reply(BAD_KEY));
    }
    Ok(())
}

/// Whether a key holds NUL, which memcached truncates a key at (the proxy would route one key
/// and the server store another), or CR: memcached 1.6 stores a CR, but a key ending in one is
/// written back as `VALUE k\r 0 1\r\r\n`, and `get k\r\r\n` differs from `get k\r\n` only
/// by memcached stripping one `\r`, so clients that trim line endings read another key. Space
/// and LF cannot be in a token. Every other byte (tab, 0x01..0x1f, 0x7f) memcached stores as
/// sent, though the protocol text forbids them; memaslap's keys start with 0x10.
fn has_bad_byte(key: &[u8]) -> bool {
    memchr::memchr2(0, b'\r', key).is_some()
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
