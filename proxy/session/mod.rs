//! Client sessions: one task per client connection, on the worker that accepted it.
//!
//! The driver here is protocol-neutral. Each turn it parses *every* complete request in the
//! read buffer and dispatches them as a batch (backends are kicked once per batch, not once per
//! request), moves every reply that is ready, in request order, into the write buffer, and
//! writes it with one call. A [`Handler`] supplies the protocol.
//!
//! Memory is bounded per client, in bytes whatever the request shape:
//! - reading stops while too many requests are in flight or too many reply bytes wait for a
//!   client that does not read (the kernel then pushes back on the client);
//! - how many requests are in flight is learnt like a TCP window: 32 until the first replies
//!   come back, then as many as fit 4 MiB at the average size of this client's replies, so
//!   a pipeline of reads of large values never commits a shared backend connection to
//!   gigabytes of replies ahead of other clients' requests;
//! - reply bytes owed and not yet written (replies waiting in the sink, replies the proxy
//!   built, what the socket would not take) are capped by the pool's `client_output_limit`:
//!   past it the client is disconnected and counted, and replies still arriving for it are
//!   dropped;
//! - a request that stays incomplete too long closes the connection, which stops slowloris
//!   clients that hold a value half-sent.

mod mc_get;
mod mc_pool;
mod mc_stats;
pub mod memcache;
pub mod redis;
mod redis_local;
mod redis_merge;
mod repeats;

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::backend::ReplySink;
use crate::net::{Readiness, Stream};
use crate::server::PoolSlot;

/// Most requests (a multi-get counts once) a client may have in flight, however small its
/// replies: the ceiling of the learnt window.
const MAX_IN_FLIGHT: usize = 1024;
/// Requests a client may have in flight before its first replies show how large they are.
const INITIAL_WINDOW: usize = 32;
/// Reply bytes a client may have in flight, at the average size of its replies so far (and at
/// most a quarter of its `client_output_limit`).
const WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// Reply bytes waiting for a slow reader before the proxy stops reading from it.
const MAX_UNSENT: usize = 4 * 1024 * 1024;
/// First read buffer; it grows to fit a large value and is released when the client is idle,
/// so that idle connections hold no buffer at all.
const READ_CHUNK: usize = 16 * 1024;

/// What the driver does after the handler consumed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stopped at the in-flight cap with complete requests left in the buffer: the driver
    /// resumes them as soon as replies drain (they will not arrive on the socket again).
    Backlog,
    /// Stop reading; close once the replies already owed are written.
    Close,
    /// A backend connection is congested by the last request (a large value in transit):
    /// the rest waits in the buffer until it drains (`backend::take_congested`).
    Blocked,
}

/// Class of replies not counted per command (refused requests).
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// An owed reply that may hold bytes of its own (a reply the proxy built).
pub(crate) trait Held {
    fn held(&self) -> usize;
}

/// The replies a session owes its client, oldest first, each tagged with the command class
/// it is counted under when sent.
pub(crate) struct Owed<E> {
    entries: VecDeque<(u8, E)>,
    /// Class of the request being dispatched; entries pushed now carry it.
    pub class: u8,
    /// Bytes the entries hold themselves (counted against `client_output_limit`).
    held: usize,
}

impl<E> Default for Owed<E> {
    fn default() -> Self {
        Owed {
            entries: VecDeque::new(),
            class: NO_CLASS,
            held: 0,
        }
    }
}

impl<E: Held> Owed<E> {
    #[inline]
    pub fn push(&mut self, entry: E) {
        self.held += entry.held();
        self.entries.push_back((self.class, entry));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The protocol side of a session.
pub(crate) trait Handler {
    /// A reply owed to the client.
    type Entry: Held;
    fn owed(&self) -> &Owed<Self::Entry>;
    fn owed_mut(&mut self) -> &mut Owed<Self::Entry>;
    /// Whether an owed reply is complete (every backend answer it needs has arrived).
    fn entry_done(&self, entry: &Self::Entry) -> bool;
    /// Writes a complete reply.
    fn emit(&mut self, entry: Self::Entry, out: &mut BytesMut);
    /// The pool's counters (replies are counted per command class as they are sent).
    fn stats(&self) -> &crate::stats::PoolStats;
    /// Parses and dispatches every complete request at the front of `input`, consuming it.
    /// Must stop early (leaving input) once `in_flight()` reaches `max_in_flight`
    /// ([`Flow::Backlog`]), and after a request that left a backend connection congested
    /// ([`Flow::Blocked`]).
    fn handle_input(&mut self, input: &mut BytesMut, max_in_flight: usize) -> Flow;
    /// Whether the oldest reply owed to the client is complete.
    fn front_ready(&self) -> bool {
        self.owed()
            .entries
            .front()
            .is_some_and(|(_, e)| self.entry_done(e))
    }
    /// Writes the oldest reply owed (call only when [`front_ready`](Self::front_ready)).
    fn emit_front(&mut self, out: &mut BytesMut) {
        if let Some((class, entry)) = self.owed_mut().entries.pop_front() {
            self.owed_mut().held -= entry.held();
            if let Some(c) = self.stats().responses.get(class as usize) {
                c.inc();
            }
            self.emit(entry, out);
        }
    }
    /// Appends, in request order, the replies that are ready, stopping once `out` holds
    /// `limit` bytes (the rest stay queued until the client reads).
    fn drain_replies(&mut self, out: &mut BytesMut, limit: usize) {
        while out.len() < limit && self.front_ready() {
            self.emit_front(out);
        }
    }
    /// Requests dispatched whose replies are not yet drained.
    fn in_flight(&self) -> usize {
        self.owed().len()
    }
    /// Queues a final error reply (after the replies already owed) before the driver closes;
    /// the handler wraps `message` in its protocol's error form.
    fn fail(&mut self, message: &'static str);
    /// Picks up a reloaded pool and ejections before the next batch of requests.
    fn refresh(&mut self);
    /// The pool's configuration as of the current batch.
    fn config(&self) -> &crate::config::PoolConfig;
    /// Whether a reply was cut short, or not built, because it would exceed
    /// `client_output_limit` (a merged multi-get, an ECHO of a huge argument): the client is
    /// disconnected before any of it is written.
    fn truncated(&self) -> bool;
    /// Whether the handler is partway through a request (more bytes are owed by the client).
    fn mid_request(&self, input: &BytesMut) -> bool {
        !input.is_empty()
    }
}

/// Switches a session to the slot's current pool (after a reload) and picks up ejections.
fn refresh_pool(pool: &mut Rc<crate::server::WorkerPool>, slot: &PoolSlot) {
    let current = slot.current();
    if !Rc::ptr_eq(&current, pool) {
        *pool = current;
    }
    pool.refresh();
}

/// Serves one client connection until it closes, the pool is removed, or the worker drains.
pub async fn serve(stream: Stream, slot: Rc<PoolSlot>) {
    let pool = slot.current();
    let stats = pool.table.stats.clone();
    let body_timeout = pool.table.config.client_timeout;
    let sink = Rc::new(ReplySink::default());
    let ctx = Ctx {
        stream: &stream,
        sink: &sink,
        slot: &slot,
        body_timeout,
        stats: &stats,
    };
    let result = if pool.table.config.redis {
        let id = stats.total_connections.get();
        drive(
            ctx,
            redis::RedisSession::new(slot.clone(), sink.clone(), id),
        )
        .await
    } else {
        drive(ctx, memcache::McSession::new(slot.clone(), sink.clone())).await
    };
    // Replies still on their way are dropped as they arrive, and those waiting are freed now.
    sink.close();
    if let Err(e) = result {
        debug!(error = %e, "client connection error");
        stats.client_err.inc();
    }
    stats.client_connections.dec();
}

/// What the driver works with besides the handler.
struct Ctx<'a> {
    stream: &'a Stream,
    sink: &'a Rc<ReplySink>,
    slot: &'a PoolSlot,
    body_timeout: Duration,
    stats: &'a crate::stats::PoolStats,
}

async fn drive<H: Handler>(ctx: Ctx<'_>, mut h: H) -> io::Result<()> {
    let Ctx {
        stream,
        sink,
        slot,
        body_timeout,
        stats,
    } = ctx;
    // Stop reading once the worker drains or the pool leaves the configuration; requests
    // already read are still answered.
    let mut stopping = slot.stopping();
    // Built once, not per turn of the loop: resolves when the worker drains or the pool goes.
    let mut stop = slot.stopped();
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let mut closing = false;
    let mut eof = false;
    let mut incomplete_since: Option<Instant> = None;
    let mut backlog = false;
    // The in-flight window (see the module docs) and what it is learnt from.
    let mut window = INITIAL_WINDOW;
    let mut avg_reply: Option<usize> = None;
    // A congested backend connection this session waits for before dispatching more.
    let mut blocked: Option<Rc<crate::backend::BackendConn>> = None;
    loop {
        h.refresh();
        let limit = h.config().client_output_limit as usize;
        if let Some(conn) = &blocked {
            if conn.congested() {
                // Woken by a reply, or drained and congested again by another session: wait
                // for the next drain (waiters are woken once each).
                conn.wake_when_drained(sink);
            } else {
                blocked = None;
            }
        }
        if blocked.is_none()
            && !closing
            && !rbuf.is_empty()
            && h.in_flight() < window
            && wbuf.len() < MAX_UNSENT
        {
            match h.handle_input(&mut rbuf, window) {
                Flow::Close => closing = true,
                // Complete requests wait in the buffer: they will not arrive again.
                Flow::Backlog | Flow::Blocked => backlog = !rbuf.is_empty(),
                Flow::Continue => backlog = false,
            }
            // One write per idle backend connection for the whole batch.
            crate::backend::flush_deferred();
            if let Some(conn) = crate::backend::take_congested() {
                conn.wake_when_drained(sink);
                blocked = Some(conn);
            }
        }
        // At end of stream, answer every complete request first; what remains is a fragment.
        if (eof || stopping) && !backlog {
            closing = true;
        }
        if wbuf.capacity() == 0 && h.front_ready() {
            wbuf = take_buffer();
        }
        let (owed_before, out_before) = (h.in_flight(), wbuf.len());
        h.drain_replies(&mut wbuf, MAX_UNSENT);
        // Draining stops at MAX_UNSENT, or when the next reply is not ready.
        let more_ready = wbuf.len() >= MAX_UNSENT;
        let replies = owed_before - h.in_flight();
        if let Some(size) = (wbuf.len() - out_before).checked_div(replies) {
            let avg = avg_reply.map_or(size, |a| (a * 7 + size) / 8);
            avg_reply = Some(avg);
            let budget = WINDOW_BYTES.min(limit / 4);
            window = (budget / avg.max(1)).clamp(1, MAX_IN_FLIGHT);
        }
        // A reply cut short because it would not fit is never written.
        if sink.overflowed() || h.truncated() {
            output_limit_reached(stats, h.config());
            return Ok(());
        }
        while !wbuf.is_empty() {
            match stream.try_write(&wbuf) {
                Ok(n) => {
                    stats.bytes_written.add(n as u64);
                    wbuf.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // Counted once the socket took what it would: a client that reads is not owed it.
        if wbuf.len() + sink.held() + h.owed().held > limit {
            output_limit_reached(stats, h.config());
            return Ok(());
        }
        if closing && h.in_flight() == 0 && wbuf.is_empty() {
            return Ok(());
        }
        // Idle connections hold no buffers: they go back to the worker's pool.
        if rbuf.is_empty() && rbuf.capacity() > 0 && h.in_flight() == 0 {
            give_buffer(std::mem::take(&mut rbuf));
        }
        if wbuf.is_empty() && wbuf.capacity() > 0 {
            give_buffer(std::mem::take(&mut wbuf));
        }
        let throttled = h.in_flight() >= window || wbuf.len() >= MAX_UNSENT || blocked.is_some();
        if backlog && !throttled && !closing {
            continue; // replies drained: dispatch the requests already buffered
        }
        if more_ready && wbuf.is_empty() && h.front_ready() {
            // The socket took all that was drained while more replies wait (draining stops
            // at MAX_UNSENT): no event would come for them, so drain again now.
            continue;
        }
        // Slowloris guard: a request may not stay incomplete longer than the body timeout.
        incomplete_since = match (
            closing || throttled || backlog,
            h.mid_request(&rbuf),
            incomplete_since,
        ) {
            (false, true, None) => Some(Instant::now()),
            (false, true, since) => since,
            _ => None,
        };
        let want_read = !closing && !eof && !throttled;
        let want_write = !wbuf.is_empty();
        let deadline = incomplete_since.map(|t| t + body_timeout);
        tokio::select! {
            biased;
            ready = stream.ready(want_read, want_write), if want_read || want_write => {
                let mut ready = ready?;
                if want_read && ready.is_readable() {
                    eof = read(&mut ready, &mut rbuf, stats)?;
                    if eof {
                        stats.client_eof.inc();
                    }
                }
            }
            _ = sink.changed(), if h.in_flight() > 0 || blocked.is_some() => {}
            _ = &mut stop, if !stopping => stopping = true,
            _ = crate::wait::sleep_until(deadline), if deadline.is_some() => {
                h.fail("timed out waiting for the rest of the request");
                rbuf.clear();
                closing = true;
            }
        }
    }
}

/// A client is owed more than `client_output_limit`: it is disconnected (the caller returns),
/// counted, and logged at most once a minute per pool with the count so far, so that a client
/// that reconnects in a loop cannot flood the log.
#[cold]
fn output_limit_reached(stats: &crate::stats::PoolStats, config: &crate::config::PoolConfig) {
    use std::sync::atomic::Ordering;
    stats.output_limit.inc();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = stats.output_limit_logged.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && stats
            .output_limit_logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!(
            pool = %config.name,
            limit = config.client_output_limit,
            disconnected = stats.output_limit.get(),
            "client disconnected: owed more reply bytes than client_output_limit"
        );
    }
}

thread_local! {
    /// Buffers of this worker's idle sessions, reused by the next session with work: an idle
    /// connection holds no buffer, and a busy one does not allocate one per request.
    static BUFFERS: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per worker; more idle ones are freed.
const POOLED_BUFFERS: usize = 64;

fn take_buffer() -> BytesMut {
    BUFFERS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Keeps an emptied buffer for reuse if its memory is no longer shared with frames still in
/// flight and it is of the usual size; otherwise frees it.
fn give_buffer(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() <= 4 * READ_CHUNK && buf.try_reclaim(READ_CHUNK) {
        BUFFERS.with(|b| {
            let mut pool = b.borrow_mut();
            if pool.len() < POOLED_BUFFERS {
                pool.push(buf);
            }
        });
    }
}

/// Reads what the socket has; returns true at end of stream.
fn read(
    ready: &mut Readiness<'_>,
    rbuf: &mut BytesMut,
    stats: &crate::stats::PoolStats,
) -> io::Result<bool> {
    loop {
        if rbuf.capacity() == 0 {
            *rbuf = take_buffer();
        } else if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        match ready.read(rbuf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                stats.bytes_read.add(n as u64);
                // Drained (readiness cleared), or enough to work on for now.
                if !ready.is_readable() || rbuf.len() >= 4 * READ_CHUNK {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
