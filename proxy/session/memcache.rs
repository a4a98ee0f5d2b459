//! The memcached side of a client session: routes each parsed request to its server, splits
//! multi-gets per server, and assembles replies in request order.

use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{mc_stats, Flow, Handler, Owed, NO_CLASS};
use crate::backend::{BackendError, Framing, ReplySink, Target};
use crate::protocol::memcache::{self as mc, After, Command, Expect, Parsed, Request};
use crate::server::{PoolSlot, WorkerPool};
use crate::stats::kind;

/// A reply owed to the client, in request order.
pub(crate) enum Entry {
    /// Answered by the proxy itself.
    Ready(Bytes),
    /// One backend request, its reply passed through.
    Single { slot: u32 },
    /// A retrieval passed through whole to `server`; its reply is checked against the keys
    /// asked.
    Get {
        slot: u32,
        server: u32,
        asked: Asked,
    },
    /// A write whose key's coalescing epoch (`bucket`) is bumped again as it is answered.
    Written { slot: u32, bucket: u32 },
    /// A multi-get split over several servers.
    Multi(Box<super::mc_get::MultiGet>),
    /// A command sent to every server of the pool (flush_all, `stats items`, ...), its
    /// replies merged into one (see `mc_pool`).
    All {
        slots: Vec<u32>,
        merge: mc::PoolMerge,
    },
}

/// The keys of a retrieval passed through whole, to check its reply against: a short single
/// key is copied (holding the request's frame would keep the client's read buffer from being
/// reused while the reply is awaited), anything else keeps the frame.
pub(crate) enum Asked {
    Key { len: u8, bytes: [u8; ASKED_INLINE] },
    Frame(Bytes),
}

const ASKED_INLINE: usize = 22;

impl Asked {
    pub(super) fn new(frame: Bytes, keys: &[std::ops::Range<usize>]) -> Asked {
        match keys {
            [k] if k.len() <= ASKED_INLINE => {
                let mut bytes = [0; ASKED_INLINE];
                bytes[..k.len()].copy_from_slice(&frame[k.clone()]);
                Asked::Key {
                    len: k.len() as u8,
                    bytes,
                }
            }
            _ => Asked::Frame(frame),
        }
    }

    /// (hits, keys asked) of `reply`, or why it does not answer these keys.
    fn check(&self, reply: &[u8]) -> Result<(usize, usize), mc::BadReply> {
        match self {
            Asked::Key { len, bytes } => {
                mc::check_values(reply, std::iter::once(&bytes[..*len as usize]))
            }
            Asked::Frame(frame) => mc::check_values(reply, mc::retrieval_keys(frame)),
        }
    }
}

impl super::Held for Entry {
    #[inline]
    fn held(&self) -> usize {
        match self {
            Entry::Ready(bytes) => bytes.len(),
            // One line can name 100,000 keys: their bookkeeping counts too.
            Entry::Multi(m) => m.held(),
            _ => 0,
        }
    }
}

pub struct McSession {
    /// The pool as of the current batch, refreshed from `slot` (reloads) each turn.
    pub(super) pool: Rc<WorkerPool>,
    slot: Rc<PoolSlot>,
    pub(super) sink: Rc<ReplySink>,
    owed: Owed<Entry>,
    /// Bytes of a refused value still to be skipped.
    swallow: u64,
    /// Scratch space for per-key server indexes of a multi-get, reused across requests.
    pub(super) scratch: Vec<u32>,
    /// The key vector of the last request, reused by the next one.
    spare_keys: Vec<std::ops::Range<usize>>,
    /// A merged reply was cut short at `client_output_limit` (see `Handler::truncated`).
    pub(super) truncated: bool,
}

pub(super) const VALUES_FRAMING: Framing = Framing::Memcache(Expect::Values);

impl McSession {
    pub fn new(slot: Rc<PoolSlot>, sink: Rc<ReplySink>) -> McSession {
        McSession {
            pool: slot.current(),
            slot,
            sink,
            owed: Owed::default(),
            swallow: 0,
            scratch: Vec::new(),
            spare_keys: Vec::new(),
            truncated: false,
        }
    }

    pub(super) fn push(&mut self, entry: Entry) {
        self.owed.push(entry);
    }

    fn ready(&mut self, reply: &'static [u8]) {
        self.push(Entry::Ready(Bytes::from_static(reply)));
    }

    /// Routes and forwards one request, recording the reply it owes.
    fn dispatch(&mut self, req: &mut Request, frame: Bytes) -> Flow {
        self.owed.class = req.cmd as u8;
        self.pool.table.stats.requests[req.cmd as usize].inc();
        let jitter = self.pool.table.config.ttl_jitter;
        if jitter > 0 && has_exptime(req.cmd) {
            req.exptime = crate::ttl::jitter_memcache(req.exptime, jitter);
        }
        match req.cmd {
            Command::Get | Command::Gets | Command::Gat | Command::Gats => {
                self.retrieval(req, frame)
            }
            Command::Version => {
                // Clients read the version to choose protocol features: ask a real server,
                // the same one twemproxy asks.
                let server = self.pool.server_for(b"placeholder");
                self.forward(server, Framing::Memcache(Expect::Version), false, |dst| {
                    dst.put_slice(b"version\r\n")
                });
            }
            Command::Verbosity => {
                if !req.noreply {
                    self.ready(b"OK\r\n");
                }
            }
            Command::FlushAll => self.flush_all(req),
            Command::Stats if req.args.is_empty() => {
                let reply = Bytes::from(mc_stats::render(&self.pool));
                self.push(Entry::Ready(reply));
            }
            Command::Stats => self.pool_stats(&frame[req.args.clone()]),
            Command::Quit => return Flow::Close,
            cmd => {
                let key = &frame[req.keys[0].clone()];
                let server = self.pool.server_for(key);
                let framing = Framing::Memcache(mc::expect_for(cmd));
                let encode = |dst: &mut BytesMut| mc::encode_keyed(req, &frame, dst);
                if server.is_some() && self.pool.table.config.coalesce {
                    // Every command left here changes the key: later reads must not join a
                    // read that started before it (see `coalesce`).
                    let bucket = self.pool.table.write_epochs.wrote(key);
                    self.forward_write(server, framing, req.noreply, bucket, encode);
                } else {
                    self.forward(server, framing, req.noreply, encode);
                }
            }
        }
        Flow::Continue
    }

    /// Sends one request to `server` (None: no server available) and owes its reply unless
    /// `noreply`.
    pub(super) fn forward(
        &mut self,
        server: Option<usize>,
        framing: Framing,
        noreply: bool,
        encode: impl FnOnce(&mut BytesMut),
    ) {
        let Some(server) = server else {
            if !noreply {
                let stats = &self.pool.table.stats;
                stats.forward_error.inc();
                stats.errors[kind::CONNECTION].inc();
                self.ready(b"SERVER_ERROR no server available\r\n");
            }
            return;
        };
        let conn = self.pool.servers[server].conn();
        if noreply {
            conn.send(framing, Target::Discard, encode);
        } else {
            let slot = self.sink.alloc();
            conn.send(framing, Target::Slot(self.sink.clone(), slot), encode);
            self.push(Entry::Single { slot });
        }
    }

    /// [`forward`](Self::forward) for a write whose key's epoch `bucket` is bumped again when
    /// its reply is handed to the client.
    fn forward_write(
        &mut self,
        server: Option<usize>,
        framing: Framing,
        noreply: bool,
        bucket: u32,
        encode: impl FnOnce(&mut BytesMut),
    ) {
        match server {
            Some(server) if !noreply => {
                let slot = self.sink.alloc();
                let target = Target::Slot(self.sink.clone(), slot);
                self.pool.servers[server]
                    .conn()
                    .send(framing, target, encode);
                self.push(Entry::Written { slot, bucket });
            }
            _ => self.forward(server, framing, noreply, encode),
        }
    }
}

/// Commands whose expiry time TTL jitter may shorten.
fn has_exptime(cmd: Command) -> bool {
    matches!(
        cmd,
        Command::Set
            | Command::Add
            | Command::Replace
            | Command::Cas
            | Command::Touch
            | Command::Gat
            | Command::Gats
    )
}

fn put_error(out: &mut BytesMut, err: &BackendError, stats: &crate::stats::PoolStats) {
    stats.forward_error.inc();
    stats.errors[err.kind()].inc();
    out.put_slice(b"SERVER_ERROR ");
    out.put_slice(err.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

impl Handler for McSession {
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
            Entry::Single { slot } | Entry::Get { slot, .. } | Entry::Written { slot, .. } => {
                self.sink.is_done(*slot)
            }
            Entry::Multi(m) => m.done(&self.sink),
            Entry::All { slots, .. } => slots.iter().all(|&s| self.sink.is_done(s)),
        }
    }

    /// Writes one finished entry's reply.
    fn emit(&mut self, entry: Entry, out: &mut BytesMut) {
        let stats = &self.pool.table.stats;
        match entry {
            Entry::Ready(bytes) => out.put_slice(&bytes),
            Entry::Single { slot } => match self.sink.take(slot) {
                Ok(reply) => {
                    if mc::response::reply_is_error(&reply) {
                        stats.errors[kind::BACKEND_ERROR].inc();
                    }
                    out.put_slice(&reply);
                }
                Err(e) => put_error(out, &e, stats),
            },
            Entry::Get {
                slot,
                server,
                asked,
            } => match self.sink.take(slot) {
                Ok(reply) if mc::response::reply_is_error(&reply) => {
                    stats.errors[kind::BACKEND_ERROR].inc();
                    out.put_slice(&reply);
                }
                Ok(reply) => match asked.check(&reply) {
                    Ok((hits, asked)) => {
                        stats.get_hits.add(hits as u64);
                        stats.get_misses.add((asked - hits) as u64);
                        out.put_slice(&reply);
                    }
                    Err(e) => {
                        // The server answered another request's key: its connection is out of
                        // step, and the replies behind this one cannot be trusted either.
                        if let Some(s) = self.pool.servers.get(server as usize) {
                            s.desynced();
                        }
                        put_error(out, &BackendError::Protocol(e.0), stats)
                    }
                },
                Err(e) => put_error(out, &e, stats),
            },
            Entry::Written { slot, bucket } => {
                crate::coalesce::Wrote::Bucket(bucket).answered(&self.pool.table.write_epochs);
                match self.sink.take(slot) {
                    Ok(reply) => {
                        if mc::response::reply_is_error(&reply) {
                            stats.errors[kind::BACKEND_ERROR].inc();
                        }
                        out.put_slice(&reply);
                    }
                    Err(e) => put_error(out, &e, stats),
                }
            }
            Entry::Multi(m) => self.emit_multi(*m, out),
            Entry::All { slots, merge } => self.emit_all(slots, merge, out),
        }
    }

    fn stats(&self) -> &crate::stats::PoolStats {
        &self.pool.table.stats
    }

    fn handle_input(&mut self, input: &mut BytesMut, max_in_flight: usize) -> Flow {
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() as u64);
                input.advance(n as usize);
                self.swallow -= n;
                if self.swallow > 0 {
                    return Flow::Continue;
                }
            }
            if input.is_empty() {
                return Flow::Continue;
            }
            if self.owed.len() >= max_in_flight {
                return Flow::Backlog;
            }
            let spare = std::mem::take(&mut self.spare_keys);
            match mc::parse_reusing(input, &self.pool.table.limits, spare) {
                Parsed::Incomplete => return Flow::Continue,
                Parsed::Request(req, consumed) => {
                    let frame = input.split_to(consumed).freeze();
                    let mut req = req;
                    let flow = self.dispatch(&mut req, frame);
                    self.spare_keys = req.keys;
                    if flow == Flow::Close {
                        return Flow::Close;
                    }
                    if crate::backend::congested_now() {
                        return Flow::Blocked;
                    }
                }
                Parsed::Reject(reject) => {
                    self.pool.table.stats.errors[kind::CLIENT_PROTOCOL].inc();
                    self.owed.class = NO_CLASS;
                    input.advance(reject.consumed.min(input.len()));
                    if !reject.reply.is_empty() {
                        self.push(Entry::Ready(reject.reply));
                    }
                    match reject.after {
                        After::Continue => {}
                        After::Swallow(n) => self.swallow = n,
                        After::Close => return Flow::Close,
                    }
                }
            }
        }
    }

    fn fail(&mut self, message: &'static str) {
        self.owed.class = NO_CLASS;
        let reply = format!("CLIENT_ERROR {message}\r\n");
        self.push(Entry::Ready(Bytes::from(reply)));
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
        self.swallow > 0 || !input.is_empty()
    }
}
