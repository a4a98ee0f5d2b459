//! One persistent connection to one backend server, owned by one worker thread.
//!
//! Sessions append canonical request bytes to the connection's write buffer and a [`Pending`]
//! record to its queue; the connection task writes whatever is buffered in one call, frames
//! the replies in order and hands each to the request at the head of the queue. Everything is
//! single-threaded (`Rc`/`RefCell` on a worker's `LocalSet`), so the hot path takes no lock
//! and crosses no thread.
//!
//! Timeouts follow the request, not the connection: a request that misses its deadline is
//! answered with `SERVER_ERROR Connection timed out` at once, its slot in the queue is kept so
//! that its late reply is read and dropped, and requests behind it are unaffected. Only a
//! server that stays silent for a whole further timeout is considered stuck, and then its
//! connection is closed and re-established.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::timer::timeout;
use crate::wait::LocalNotify;
use bytes::{Buf, BytesMut};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::sink::{ReplySink, Target};
use super::{BackendError, Framing, Handshake, HealthCtx, Skip};
use crate::config::ServerAddr;
use crate::net::Stream;
use crate::stats::ServerStats;

/// Requests queued on one connection before new ones are refused with `backend queue full`.
/// It bounds memory when a server stops answering; half of it already congests the connection.
const MAX_PENDING: usize = 64 * 1024;
/// Unwritten request bytes buffered on one connection past which it is congested. The session
/// that queued the request stops dispatching until the connection drains to half (of this, and
/// a quarter of `MAX_PENDING`): a large value in transit, or a flood of `noreply` requests,
/// makes its senders wait instead of other clients' requests failing. Requests already queued
/// keep their pool `timeout`; those a blocked client has not had dispatched wait in its socket.
const MAX_UNWRITTEN: usize = 64 * 1024 * 1024;
/// Read buffer headroom reserved before each read.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Per-pool settings every connection of the pool shares.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// Per-request deadline (twemproxy's `timeout`); `None` waits forever.
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// Largest value a reply may announce before the stream is declared corrupt.
    pub max_value: usize,
    /// Largest reply held for a client (the pool's `client_output_limit`): a larger one is
    /// read and dropped as it streams in, and its client is disconnected.
    pub max_reply: usize,
    pub preconnect: bool,
    /// `pool/server`, for logs.
    pub label: Arc<str>,
    /// Observe each request's latency (a clock read per request): off with `--metrics-addr off`.
    pub record_latency: bool,
    /// Where connection failures, timeouts and successes are reported (ejection).
    pub health: Arc<HealthCtx>,
    /// Sent first on every new connection (Redis AUTH/SELECT); its replies are checked and
    /// never reach a client.
    pub handshake: Option<Handshake>,
}

pub(super) struct Pending {
    pub(super) target: Target,
    pub(super) framing: Framing,
    deadline: Option<Instant>,
    /// When the request was queued, for the latency histogram.
    pub(super) sent: Option<Instant>,
}

enum Phase {
    /// No socket; the next request opens one.
    Idle,
    Connecting,
    Connected,
    /// The last connect failed: requests fail fast with the same error until `until`.
    Backoff {
        until: Instant,
        err: BackendError,
    },
}

pub(super) struct State {
    wbuf: BytesMut,
    pub(super) pending: VecDeque<Pending>,
    /// Leading entries of `pending` already answered with a timeout (their replies are dropped).
    pub(super) expired: usize,
    phase: Phase,
    failures: u32,
    shutdown: bool,
    /// A reply was found out of step by the session that received it: the connection is
    /// closed (its requests fail) instead of answering the requests behind with others' data.
    desync: bool,
    /// The socket while the connection serves requests (after any handshake): a session may
    /// then write to it directly (see [`super::flush_deferred`]).
    stream: Option<Rc<Stream>>,
    /// Whether the connection's deadline timer is armed (for the oldest request or earlier).
    timer_armed: bool,
    /// Sessions waiting for the write buffer to drain (the connection is congested).
    waiters: Vec<Rc<ReplySink>>,
}

impl State {
    #[inline]
    fn congested(&self) -> bool {
        self.wbuf.len() >= MAX_UNWRITTEN || self.pending.len() >= MAX_PENDING / 2
    }

    /// Wakes the sessions waiting for a congested connection once it has drained well below
    /// the limits (not just under them, so that they do not stop again after one request).
    #[inline(always)]
    pub(super) fn wake_drained(&mut self) {
        if !self.waiters.is_empty() {
            self.wake_drained_slow();
        }
    }

    #[cold]
    fn wake_drained_slow(&mut self) {
        if self.wbuf.len() <= MAX_UNWRITTEN / 2 && self.pending.len() <= MAX_PENDING / 4 {
            for sink in self.waiters.drain(..) {
                sink.wake();
            }
        }
    }
}

/// A connection handle: cheap to share between the sessions of one worker.
pub struct BackendConn {
    addr: ServerAddr,
    pub(super) settings: ConnSettings,
    pub(super) stats: Arc<ServerStats>,
    pub(super) state: RefCell<State>,
    wake: LocalNotify,
}

impl BackendConn {
    /// Creates the handle and its task on the current worker's `LocalSet`.
    pub fn spawn(
        addr: ServerAddr,
        settings: ConnSettings,
        stats: Arc<ServerStats>,
    ) -> Rc<BackendConn> {
        let conn = Rc::new(BackendConn {
            addr,
            settings,
            stats,
            state: RefCell::new(State {
                wbuf: BytesMut::new(),
                pending: VecDeque::new(),
                expired: 0,
                phase: Phase::Idle,
                failures: 0,
                shutdown: false,
                desync: false,
                stream: None,
                timer_armed: false,
                waiters: Vec::new(),
            }),
            wake: LocalNotify::default(),
        });
        tokio::task::spawn_local(conn.clone().run());
        conn
    }

    /// Queues one request: `encode` appends its bytes, and its reply (or error) goes to `target`.
    pub fn send(
        self: &Rc<Self>,
        framing: Framing,
        target: Target,
        encode: impl FnOnce(&mut BytesMut),
    ) {
        let mut st = self.state.borrow_mut();
        if let Phase::Backoff { until, err } = &st.phase {
            if Instant::now() < *until {
                let err = err.clone();
                drop(st);
                // Each request failed fast counts, as each failed request does in twemproxy:
                // a dead server is ejected after `server_failure_limit` failed requests.
                self.settings.health.failure();
                target.deliver(Err(err));
                return;
            }
            st.phase = Phase::Idle;
        }
        if st.pending.len() >= MAX_PENDING {
            drop(st);
            target.deliver(Err(BackendError::Overloaded));
            return;
        }
        let before = st.wbuf.len();
        encode(&mut st.wbuf);
        if st.congested() {
            super::batch::congested(self.clone());
        }
        self.stats.requests.inc();
        self.stats
            .request_bytes
            .add((st.wbuf.len() - before) as u64);
        self.stats.in_flight.inc();
        let record = self.settings.record_latency;
        let now = (self.settings.timeout.is_some() || record).then(Instant::now);
        let deadline = self.settings.timeout.zip(now).map(|(t, now)| now + t);
        let sent = now.filter(|_| record);
        st.pending.push_back(Pending {
            target,
            framing,
            deadline,
            sent,
        });
        if st.pending.len() == 1 && before == 0 {
            // The connection was idle. If it is connected and a timer covers the new request,
            // the session writes the request itself once its batch is dispatched: waking the
            // connection's task just to write would cost a task switch per request.
            if st.stream.is_some() && (st.timer_armed || self.settings.timeout.is_none()) {
                drop(st);
                super::batch::defer(self.clone());
            } else {
                self.wake.notify();
            }
        } else if before == 0 || st.pending.len() == 1 {
            self.wake.notify();
        }
    }

    /// Writes what is buffered now, from the caller's task; if the socket does not take all of
    /// it (or fails), the connection's task is woken to finish the job or handle the error.
    pub(super) fn flush_now(&self) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let written = match &st.stream {
            Some(stream) => loop {
                if st.wbuf.is_empty() {
                    break true;
                }
                match stream.try_write(&st.wbuf) {
                    Ok(n) => st.wbuf.advance(n),
                    Err(_) => break false,
                }
            },
            None => false,
        };
        st.wake_drained();
        if !written {
            self.wake.notify();
        }
    }

    /// Whether too many requests are unwritten or unanswered (see [`MAX_UNWRITTEN`]).
    pub fn congested(&self) -> bool {
        self.state.borrow().congested()
    }

    /// Wakes `sink`'s session once the connection is no longer congested.
    pub fn wake_when_drained(&self, sink: &Rc<ReplySink>) {
        let mut st = self.state.borrow_mut();
        if !st.congested() {
            drop(st);
            sink.wake();
        } else if !st.waiters.iter().any(|w| Rc::ptr_eq(w, sink)) {
            st.waiters.push(sink.clone());
        }
    }

    /// Whether requests are queued or unanswered.
    pub fn busy(&self) -> bool {
        !self.state.borrow().pending.is_empty()
    }

    /// Stops the task once the requests already queued are answered (the server left the
    /// route table).
    /// Closes the connection and fails its requests: a session found a reply on it that
    /// answers another request (see [`BackendError::Protocol`]), so the replies behind it
    /// cannot be trusted either.
    pub fn desynced(&self) {
        self.state.borrow_mut().desync = true;
        self.wake.notify();
    }

    pub fn shutdown(&self) {
        self.state.borrow_mut().shutdown = true;
        self.wake.notify();
    }

    async fn run(self: Rc<Self>) {
        let mut connect_now = self.settings.preconnect;
        loop {
            loop {
                let (idle, shutdown) = {
                    let st = self.state.borrow();
                    (st.pending.is_empty(), st.shutdown)
                };
                if idle && shutdown {
                    return;
                }
                if !idle || connect_now {
                    break;
                }
                self.wake.notified().await;
            }
            connect_now = false;
            self.state.borrow_mut().phase = Phase::Connecting;
            let err = match timeout(self.settings.connect_timeout, Stream::connect(&self.addr))
                .await
            {
                Ok(Ok(stream)) => {
                    let stream = Rc::new(stream);
                    {
                        let mut st = self.state.borrow_mut();
                        st.phase = Phase::Connected;
                        st.failures = 0;
                    }
                    self.stats.server_connections.inc();
                    debug!(server = %self.settings.label, "backend connected");
                    let err = match &self.settings.handshake {
                        None => self.serve(&stream).await,
                        Some(h) => {
                            match timeout(
                                self.settings.connect_timeout,
                                super::handshake::handshake(&stream, h),
                            )
                            .await
                            {
                                Ok(Ok(())) => self.serve(&stream).await,
                                Ok(Err(e)) => {
                                    warn!(server = %self.settings.label, error = %e, "backend handshake failed");
                                    e
                                }
                                Err(_) => BackendError::Timeout,
                            }
                        }
                    };
                    self.stats.server_connections.dec();
                    {
                        let mut st = self.state.borrow_mut();
                        st.phase = Phase::Idle;
                        st.stream = None;
                        st.timer_armed = false;
                    }
                    if self.busy() && !matches!(err, BackendError::Handshake(_)) {
                        // A connection lost with requests on it counts against the server
                        // (an idle connection the server closed does not).
                        self.settings.health.failure();
                    }
                    if matches!(err, BackendError::Handshake(_)) {
                        // Wrong credentials stay wrong: back off instead of retrying the
                        // handshake for every request.
                        self.connect_failed(err)
                    } else {
                        err
                    }
                }
                Ok(Err(e)) => self.connect_failed(BackendError::io(&e)),
                Err(_) => self.connect_failed(BackendError::Timeout),
            };
            self.fail_all(err);
        }
    }

    fn connect_failed(&self, err: BackendError) -> BackendError {
        self.stats.connect_failures.inc();
        self.settings.health.failure();
        let mut st = self.state.borrow_mut();
        st.failures = st.failures.saturating_add(1);
        // Exponential backoff, 25 ms doubling to 1 s, so that a dead server costs one failed
        // connect per interval instead of one per request (no SYN storm).
        let backoff = Duration::from_millis(25u64 << st.failures.min(6).saturating_sub(1))
            .min(Duration::from_secs(1));
        if st.failures == 1 {
            warn!(server = %self.settings.label, error = %err, "backend connect failed");
        }
        st.phase = Phase::Backoff {
            until: Instant::now() + backoff,
            err: err.clone(),
        };
        err
    }

    /// Answers every queued request with `err` and discards unwritten bytes.
    fn fail_all(&self, err: BackendError) {
        let pending = {
            let mut st = self.state.borrow_mut();
            st.wbuf.clear();
            st.wake_drained();
            st.expired = 0;
            std::mem::take(&mut st.pending)
        };
        if pending.is_empty() {
            return;
        }
        self.stats.in_flight.add(-(pending.len() as i64));
        self.stats.server_err.inc();
        for p in pending {
            p.target.deliver(Err(err.clone()));
        }
    }

    /// Runs a connected socket until it fails; returns why.
    async fn serve(&self, stream: &Rc<Stream>) -> BackendError {
        self.state.borrow_mut().stream = Some(stream.clone());
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut skipping: Option<Skip> = None;
        // One timer for the connection, armed for the oldest request's deadline and left alone
        // until it fires: deadlines only grow (each is its send time plus the pool timeout), so
        // it never fires late, at worst early, once, and then moves on to the oldest request
        // still waiting. Re-arming it per request cost a timer-wheel insert and removal each.
        let mut timer = crate::timer::sleep_until(Instant::now());
        loop {
            let want_write = match self.flush(stream) {
                Ok(more) => more,
                Err(e) => return BackendError::io(&e),
            };
            let mut armed = self.state.borrow().timer_armed;
            if !armed {
                if let Some(deadline) = self.next_deadline() {
                    timer.reset(deadline);
                    armed = true;
                    self.state.borrow_mut().timer_armed = true;
                }
            }
            tokio::select! {
                biased;
                ready = stream.ready(true, want_write) => {
                    let mut ready = match ready {
                        Ok(r) => r,
                        Err(e) => return BackendError::io(&e),
                    };
                    if ready.is_readable() {
                        if let Err(e) = self.read(&mut ready, &mut rbuf, &mut skipping) {
                            return e;
                        }
                    }
                }
                _ = self.wake.notified() => {
                    if std::mem::take(&mut self.state.borrow_mut().desync) {
                        warn!(server = %self.settings.label, "backend reply out of step; reconnecting");
                        return BackendError::Protocol("reply out of step with its request");
                    }
                }
                _ = &mut timer, if armed => {
                    self.state.borrow_mut().timer_armed = false;
                    if let Err(e) = self.expire() {
                        return e;
                    }
                }
            }
        }
    }

    /// Writes buffered requests; returns whether bytes remain (the socket is full).
    fn flush(&self, stream: &Stream) -> io::Result<bool> {
        let mut st = self.state.borrow_mut();
        let result = loop {
            if st.wbuf.is_empty() {
                break Ok(false);
            }
            match stream.try_write(&st.wbuf) {
                Ok(n) => st.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(true),
                Err(e) => break Err(e),
            }
        };
        st.wake_drained();
        result
    }

    fn next_deadline(&self) -> Option<Instant> {
        let st = self.state.borrow();
        match st.pending.get(st.expired) {
            Some(p) => p.deadline,
            None if st.expired > 0 => {
                let timeout = self.settings.timeout?;
                st.pending
                    .front()
                    .and_then(|p| p.deadline)
                    .map(|d| d + timeout)
            }
            None => None,
        }
    }

    /// Answers requests past their deadline; fails the connection if the oldest one has had
    /// no reply for a further full timeout.
    fn expire(&self) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        while st.expired < st.pending.len() {
            let idx = st.expired;
            let p = &mut st.pending[idx];
            if p.deadline.is_none_or(|d| d > now) {
                break;
            }
            let target = std::mem::replace(&mut p.target, Target::Discard);
            st.expired += 1;
            self.stats.server_timedout.inc();
            self.settings.health.failure();
            target.deliver(Err(BackendError::Timeout));
        }
        let stuck = match (
            st.pending.front().and_then(|p| p.deadline),
            self.settings.timeout,
        ) {
            (Some(d), Some(t)) if st.expired > 0 => d + t <= now,
            _ => false,
        };
        if stuck {
            warn!(server = %self.settings.label, "backend unresponsive; reconnecting");
            return Err(BackendError::Timeout);
        }
        Ok(())
    }
}
