//! The Redis side of a client session: checks each command against Redis's command table,
//! routes it by its keys, splits the multi-key commands that can be split (MGET, MSET, DEL,
//! UNLINK, TOUCH, EXISTS) and merges their replies, and answers connection commands itself
//! (see `redis_local`).

use std::ops::Range;
use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{redis_local, Flow, Handler, Owed, NO_CLASS};
use crate::backend::{BackendError, Framing, ReplySink, Target};
use crate::coalesce::{cmd, Wrote};
use crate::protocol::resp::commands::{self, cat, flag, CommandSpec, KeyError};
use crate::protocol::resp::{encode, reply, Limits, Parser, Step};
use crate::server::{PoolSlot, WorkerPool};
use crate::stats::kind;

/// A reply owed to the client, in request order.
pub(crate) enum Entry {
    Ready(Bytes),
    /// One backend request passed through; `get` marks a GET (for hit/miss counts), `wrote`
    /// the keys a write changed (their coalescing epochs are bumped again as it is answered).
    Single {
        slot: u32,
        get: bool,
        wrote: Wrote,
    },
    /// MGET split over servers: each key's fragment, in request order ([`REPEAT`] marks a
    /// key that repeats an earlier one: its index, fetched once).
    Mget {
        keys: Vec<u32>,
        slots: Vec<u32>,
    },
    /// DEL, UNLINK, TOUCH, EXISTS split over servers: integer replies summed.
    Sum {
        slots: Vec<u32>,
        wrote: Wrote,
    },
    /// MSET split over servers, or SCRIPT FLUSH sent to all: `+OK` when every one said so.
    AllOk {
        slots: Vec<u32>,
        wrote: Wrote,
    },
    /// SCRIPT LOAD or EXISTS sent to every server of the pool, merged as `merge` says.
    Everywhere {
        slots: Vec<u32>,
        merge: super::redis_merge::Everywhere,
    },
}

impl super::Held for Entry {
    #[inline]
    fn held(&self) -> usize {
        match self {
            Entry::Ready(bytes) => bytes.len(),
            Entry::Mget { keys, slots } => (keys.capacity() + slots.capacity()) * 4,
            _ => 0,
        }
    }
}

pub struct RedisSession {
    /// The pool as of the current batch, refreshed from `slot` (reloads) each turn.
    pub(super) pool: Rc<WorkerPool>,
    slot: Rc<PoolSlot>,
    pub(super) sink: Rc<ReplySink>,
    owed: Owed<Entry>,
    parser: Parser,
    pub(super) authenticated: bool,
    pub(super) name: Option<Bytes>,
    pub(super) id: u64,
    keys: Vec<usize>,
    /// A reply was cut short, or not built, because it would exceed `client_output_limit`
    /// (see `Handler::truncated`).
    pub(super) truncated: bool,
}

/// How a multi-key command that can be split is split and merged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    Mget,
    Mset,
    Sum,
}

impl RedisSession {
    pub fn new(slot: Rc<PoolSlot>, sink: Rc<ReplySink>, id: u64) -> RedisSession {
        let pool = slot.current();
        let authenticated = pool.table.config.redis_auth.is_none();
        RedisSession {
            pool,
            slot,
            sink,
            owed: Owed::default(),
            parser: Parser::default(),
            authenticated,
            name: None,
            id,
            keys: Vec::new(),
            truncated: false,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.owed.push(entry);
    }

    pub(super) fn ready(&mut self, reply: Bytes) {
        self.push(Entry::Ready(reply));
    }

    pub(super) fn error(&mut self, message: &str) {
        let mut out = Vec::with_capacity(message.len() + 3);
        encode::error(&mut out, message);
        self.ready(out.into());
    }

    fn dispatch(&mut self, args: &[Range<usize>], frame: Bytes) -> Flow {
        let argv: Vec<&[u8]> = args.iter().map(|r| &frame[r.clone()]).collect();
        let stats = &self.pool.table.stats;
        self.owed.class = NO_CLASS;
        let Some(mut spec) = commands::lookup(argv[0]) else {
            if argv[0].eq_ignore_ascii_case(b"post") || argv[0].eq_ignore_ascii_case(b"host:") {
                return Flow::Close; // an HTTP request at a Redis port: close, as Redis does
            }
            stats.errors[kind::CLIENT_PROTOCOL].inc();
            self.error(&redis_local::unknown_command(&argv));
            return Flow::Continue;
        };
        if !self.authenticated && !matches!(spec.name, "auth" | "hello" | "quit") {
            self.ready(Bytes::from_static(b"-NOAUTH Authentication required.\r\n"));
            return Flow::Continue;
        }
        if spec.is_container() && argv.len() > 1 {
            match commands::lookup_sub(spec, argv[1]) {
                Some(sub) => spec = sub,
                // CLIENT and COMMAND subcommands are all answered by the proxy, including
                // ones newer than the command table.
                None if spec.name == "client" || spec.name == "command" => {}
                None => {
                    stats.errors[kind::CLIENT_PROTOCOL].inc();
                    self.error(&format!(
                        "ERR unknown subcommand '{}'. Try {} HELP.",
                        String::from_utf8_lossy(argv[1]),
                        spec.name.to_ascii_uppercase()
                    ));
                    return Flow::Continue;
                }
            }
        }
        if !spec.arity_ok(argv.len()) {
            stats.errors[kind::CLIENT_PROTOCOL].inc();
            self.error(&format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            ));
            return Flow::Continue;
        }
        self.owed.class = class_of(spec);
        stats.requests[self.owed.class as usize].inc();
        if let Some(flow) = redis_local::answer(self, spec, &argv) {
            return flow;
        }
        match spec.name {
            "mget" => self.split(Split::Mget, &argv, frame.clone(), 1, 1),
            "mset" => self.split(Split::Mset, &argv, frame.clone(), 1, 2),
            "del" | "unlink" | "touch" | "exists" => {
                self.split(Split::Sum, &argv, frame.clone(), 1, 1)
            }
            _ => self.keyed(spec, &argv, frame.clone()),
        }
        Flow::Continue
    }

    /// A command routed whole to the server of its keys.
    fn keyed(&mut self, spec: &CommandSpec, argv: &[&[u8]], frame: Bytes) {
        if let Some(reason) = unsupported(spec, argv, self.pool.table.config.allow_scripts) {
            self.pool.table.stats.errors[kind::CLIENT_PROTOCOL].inc();
            self.error(&format!(
                "ERR command '{}' is not supported by shardproxy: {reason}",
                spec.name.replace('|', " ")
            ));
            return;
        }
        if let Some(merge) = super::redis_merge::everywhere(spec) {
            self.everywhere(merge, frame);
            return;
        }
        let server = match spec.single_key() {
            Some(i) => self.pool.server_for(argv[i]),
            None => {
                let mut keys = std::mem::take(&mut self.keys);
                keys.clear();
                let found = commands::keys(spec, argv, &mut keys);
                let routed = match found {
                    Err(KeyError::BadNumKeys) => {
                        Err("ERR Number of keys can't be greater than number of args")
                    }
                    // A script or function called with no key runs on the server its SHA (or
                    // function name) hashes to: EVAL of a body and EVALSHA of its SHA reach the
                    // same server, so a client's EVALSHA-then-EVAL fallback loads it there.
                    Ok(()) if keys.is_empty() && spec.in_category(cat::SCRIPTING) => {
                        Ok(match spec.name {
                            "eval" | "eval_ro" => {
                                let sha = sha1_smol::Sha1::from(argv[1]).digest().to_string();
                                self.pool.server_for(sha.as_bytes())
                            }
                            _ => self.pool.server_for(&argv[1].to_ascii_lowercase()),
                        })
                    }
                    Ok(()) if keys.is_empty() => {
                        Err("ERR shardproxy cannot route a command without keys")
                    }
                    Ok(()) => {
                        let first = self.pool.server_for(argv[keys[0]]);
                        if keys.iter().all(|&k| self.pool.server_for(argv[k]) == first) {
                            Ok(first)
                        } else {
                            Err("CROSSSLOT Keys in request don't hash to the same server (use a hash tag)")
                        }
                    }
                };
                self.keys = keys;
                match routed {
                    Ok(server) => server,
                    Err(message) => {
                        self.pool.table.stats.errors[kind::CLIENT_PROTOCOL].inc();
                        self.error(message);
                        return;
                    }
                }
            }
        };
        let get = spec.name == "get";
        let Some(server) = server else {
            let stats = &self.pool.table.stats;
            stats.forward_error.inc();
            stats.errors[kind::EJECTED].inc();
            self.error("ERR no server available");
            return;
        };
        let pool = self.pool.clone();
        let cfg = &pool.table.config;
        let epochs = &pool.table.write_epochs;
        let wrote = if cfg.coalesce && writes(spec) {
            // Later reads of these keys must not join a read that started before this write.
            match spec.single_key() {
                Some(i) => Wrote::Bucket(epochs.wrote(argv[i])),
                None => Wrote::of(self.keys.iter().map(|&k| epochs.wrote(argv[k])).collect()),
            }
        } else {
            Wrote::Nothing
        };
        let frame = match cfg.ttl_jitter {
            0 => frame,
            pct => crate::ttl::jitter_redis(spec.name, argv, pct).unwrap_or(frame),
        };
        let slot = self.sink.alloc();
        if get && cfg.coalesce {
            let epochs = &pool.table.write_epochs;
            if let Some(read) = pool
                .flights
                .candidate(epochs, server, cmd::REDIS_GET, argv[1])
            {
                if let Some(first) = pool.flights.read(&read, &self.sink, slot) {
                    pool.table.stats.joined(first);
                    self.push(Entry::Single { slot, get, wrote });
                    return;
                }
            }
        }
        let target = Target::Slot(self.sink.clone(), slot);
        pool.servers[server]
            .conn()
            .send(Framing::Resp, target, |dst| dst.put_slice(&frame));
        self.push(Entry::Single { slot, get, wrote });
    }

    /// A command sent as it is to every server of the pool (`SCRIPT LOAD`, `EXISTS`, `FLUSH`),
    /// so that a script loaded through the proxy runs wherever its keys route it.
    fn everywhere(&mut self, merge: super::redis_merge::Everywhere, frame: Bytes) {
        let pool = self.pool.clone();
        let slots: Vec<u32> = pool
            .servers
            .iter()
            .map(|server| {
                let slot = self.sink.alloc();
                let target = Target::Slot(self.sink.clone(), slot);
                server
                    .conn()
                    .send(Framing::Resp, target, |dst| dst.put_slice(&frame));
                slot
            })
            .collect();
        self.push(match merge {
            super::redis_merge::Everywhere::AllOk => Entry::AllOk {
                slots,
                wrote: Wrote::Nothing,
            },
            merge => Entry::Everywhere { slots, merge },
        });
    }

    /// MGET / MSET / DEL-like: one request per server, keys (and values) in request order.
    fn split(&mut self, how: Split, argv: &[&[u8]], frame: Bytes, first: usize, step: usize) {
        let stats = &self.pool.table.stats;
        let servers: Vec<u32> = (first..argv.len())
            .step_by(step)
            .map(|i| self.pool.server_for(argv[i]).map_or(u32::MAX, |s| s as u32))
            .collect();
        let writes = matches!(
            argv[0].to_ascii_lowercase().as_slice(),
            b"mset" | b"del" | b"unlink"
        );
        let mut wrote = Wrote::Nothing;
        if writes && self.pool.table.config.coalesce {
            let epochs = &self.pool.table.write_epochs;
            wrote = Wrote::of(
                (first..argv.len())
                    .step_by(step)
                    .zip(&servers)
                    .filter(|(_, &s)| s != u32::MAX)
                    .map(|(i, _)| epochs.wrote(argv[i]))
                    .collect(),
            );
        }
        let repeats = (how == Split::Mget && servers.len() > 1)
            .then(|| super::repeats::first_occurrences(servers.len(), |i| argv[first + i * step]))
            .flatten();
        if servers.iter().all(|&s| s == servers[0]) && servers[0] != u32::MAX && repeats.is_none() {
            let slot = self.sink.alloc();
            self.pool.servers[servers[0] as usize].conn().send(
                Framing::Resp,
                Target::Slot(self.sink.clone(), slot),
                |dst| dst.put_slice(&frame),
            );
            self.push(match how {
                Split::Mget => Entry::Mget {
                    keys: vec![0; servers.len()],
                    slots: vec![slot],
                },
                _ => Entry::Single {
                    slot,
                    get: false,
                    wrote,
                },
            });
            return;
        }
        let mut order: Vec<u32> = Vec::new();
        let keys: Vec<u32> = servers
            .iter()
            .enumerate()
            .map(|(i, &s)| match repeats.as_ref().and_then(|r| r[i]) {
                Some(first) => super::redis_merge::REPEAT | first,
                None => match order.iter().position(|&o| o == s) {
                    Some(i) => i as u32,
                    None => {
                        order.push(s);
                        (order.len() - 1) as u32
                    }
                },
            })
            .collect();
        stats.fragments.add(order.len() as u64);
        let mut slots = Vec::with_capacity(order.len());
        for (frag, &server) in order.iter().enumerate() {
            let slot = self.sink.alloc();
            slots.push(slot);
            let target = Target::Slot(self.sink.clone(), slot);
            if server == u32::MAX {
                target.deliver(Err(BackendError::Io("no server available".into())));
                continue;
            }
            let mine: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, &f)| f == frag as u32)
                .map(|(i, _)| i)
                .collect();
            self.pool.servers[server as usize]
                .conn()
                .send(Framing::Resp, target, |dst| {
                    encode::array_header(dst, 1 + mine.len() * step);
                    encode::bulk(dst, argv[0]);
                    for &k in &mine {
                        for arg in &argv[first + k * step..first + (k + 1) * step] {
                            encode::bulk(dst, arg);
                        }
                    }
                });
        }
        self.push(match how {
            Split::Mget => Entry::Mget { keys, slots },
            Split::Sum => Entry::Sum { slots, wrote },
            Split::Mset => Entry::AllOk { slots, wrote },
        });
    }
}

fn put_error(out: &mut BytesMut, e: &BackendError, stats: &crate::stats::PoolStats) {
    stats.forward_error.inc();
    stats.errors[e.kind()].inc();
    encode::error(out, &format!("ERR {e}"));
}

/// The `command` label of a Redis command: the data type it works on (see
/// [`crate::stats::class::REDIS`]).
fn class_of(spec: &CommandSpec) -> u8 {
    const BY_CATEGORY: [(u32, u8); 12] = [
        (cat::STRING, 0),
        (cat::BITMAP, 1),
        (cat::HASH, 2),
        (cat::LIST, 3),
        (cat::SET, 4),
        (cat::SORTEDSET, 5),
        (cat::STREAM, 6),
        (cat::HYPERLOGLOG, 7),
        (cat::GEO, 8),
        (cat::KEYSPACE, 9),
        (cat::SCRIPTING, 10),
        (cat::CONNECTION, 11),
    ];
    BY_CATEGORY
        .iter()
        .find(|(c, _)| spec.in_category(*c))
        .map_or(12, |&(_, i)| i)
}

/// Whether a command changes its keys: Redis's `write` flag, and scripts and functions not
/// marked read-only (EVAL carries no `write` flag, but its script may write any key it names).
fn writes(spec: &CommandSpec) -> bool {
    spec.has_flag(flag::WRITE)
        || (spec.in_category(cat::SCRIPTING) && !spec.has_flag(flag::READONLY))
}

/// Why a command cannot be served through a sharding proxy, if it cannot.
fn unsupported(spec: &CommandSpec, argv: &[&[u8]], allow_scripts: bool) -> Option<&'static str> {
    // Checked first so that every scripting command (EVAL*, FCALL*, SCRIPT *, FUNCTION *)
    // gets the same reason: a script can reach keys it did not declare (see README).
    if !allow_scripts && spec.in_category(cat::SCRIPTING) {
        return Some("scripts are disabled for this pool (allow_scripts: false)");
    }
    let blocks = match spec.name {
        // XREAD and XREADGROUP only block with BLOCK; without it they are plain reads.
        "xread" | "xreadgroup" => argv.iter().any(|a| a.eq_ignore_ascii_case(b"block")),
        _ => spec.has_flag(flag::BLOCKING) || spec.in_category(cat::BLOCKING),
    };
    if blocks {
        return Some("blocking commands would stall a backend connection shared by other clients");
    }
    if spec.in_category(cat::PUBSUB) {
        return Some("publish/subscribe needs a dedicated connection");
    }
    if spec.in_category(cat::TRANSACTION) {
        return Some("transactions cannot span the servers of a pool");
    }
    match spec.name {
        "move" | "migrate" | "swapdb" => {
            return Some("databases and instances are managed by the proxy")
        }
        "client" | "command" => return Some("unknown subcommand"),
        _ => {}
    }
    if spec.key_specs.is_empty() && super::redis_merge::everywhere(spec).is_none() {
        return Some("it has no key to route by");
    }
    None
}

impl Handler for RedisSession {
    type Entry = Entry;

    fn owed(&self) -> &Owed<Entry> {
        &self.owed
    }

    fn owed_mut(&mut self) -> &mut Owed<Entry> {
        &mut self.owed
    }

    fn entry_done(&self, entry: &Entry) -> bool {
        match entry {
            Entry::Ready(_) => true,
            Entry::Single { slot, .. } => self.sink.is_done(*slot),
            Entry::Mget { slots, .. }
            | Entry::Sum { slots, .. }
            | Entry::AllOk { slots, .. }
            | Entry::Everywhere { slots, .. } => slots.iter().all(|&s| self.sink.is_done(s)),
        }
    }

    fn emit(&mut self, entry: Entry, out: &mut BytesMut) {
        let stats = &self.pool.table.stats;
        match entry {
            Entry::Ready(bytes) => out.put_slice(&bytes),
            Entry::Single { slot, get, wrote } => match self.sink.take(slot) {
                Ok(r) => {
                    // Before the client can see the reply (see `coalesce`).
                    wrote.answered(&self.pool.table.write_epochs);
                    if reply::is_error(&r) {
                        stats.errors[kind::BACKEND_ERROR].inc();
                    } else if get {
                        if reply::is_nil(&r) {
                            stats.get_misses.inc()
                        } else {
                            stats.get_hits.inc()
                        }
                    }
                    out.put_slice(&r);
                }
                Err(e) => {
                    wrote.answered(&self.pool.table.write_epochs);
                    put_error(out, &e, stats)
                }
            },
            Entry::Mget { keys, slots } => self.emit_mget(keys, slots, out),
            Entry::Sum { slots, wrote } => self.emit_sum(slots, wrote, out),
            Entry::AllOk { slots, wrote } => self.emit_all_ok(slots, wrote, out),
            Entry::Everywhere { slots, merge } => self.emit_everywhere(slots, merge, out),
        }
    }

    fn stats(&self) -> &crate::stats::PoolStats {
        &self.pool.table.stats
    }

    fn handle_input(&mut self, input: &mut BytesMut, max_in_flight: usize) -> Flow {
        loop {
            if input.is_empty() {
                return Flow::Continue;
            }
            if self.owed.len() >= max_in_flight {
                return Flow::Backlog;
            }
            let limits = if self.authenticated {
                Limits::DEFAULT
            } else {
                Limits::UNAUTHENTICATED
            };
            match self.parser.parse(input, &limits) {
                Step::Incomplete => return Flow::Continue,
                Step::Skip { len } => input.advance(len),
                Step::Error(e) => {
                    self.pool.table.stats.errors[kind::CLIENT_PROTOCOL].inc();
                    self.error(&format!("ERR {}", e.0));
                    input.clear();
                    return Flow::Close;
                }
                Step::Array { args, len } => {
                    let frame = input.split_to(len).freeze();
                    let flow = self.dispatch(&args, frame);
                    self.parser.recycle(args);
                    if flow == Flow::Close {
                        return Flow::Close;
                    }
                    if crate::backend::congested_now() {
                        return Flow::Blocked;
                    }
                }
                Step::Inline { resp, len } => {
                    input.advance(len);
                    let frame = Bytes::from(resp);
                    let Step::Array { args, .. } =
                        Parser::default().parse(&frame, &Limits::DEFAULT)
                    else {
                        unreachable!("an inline request re-encodes as a valid array");
                    };
                    if self.dispatch(&args, frame) == Flow::Close {
                        return Flow::Close;
                    }
                    if crate::backend::congested_now() {
                        return Flow::Blocked;
                    }
                }
            }
        }
    }

    fn fail(&mut self, message: &'static str) {
        self.error(&format!("ERR {message}"));
    }

    fn refresh(&mut self) {
        super::refresh_pool(&mut self.pool, &self.slot);
    }

    fn config(&self) -> &crate::config::PoolConfig {
        &self.pool.table.config
    }

    fn truncated(&self) -> bool {
        self.truncated
    }

    fn mid_request(&self, input: &BytesMut) -> bool {
        self.parser.in_progress() || !input.is_empty()
    }
}
