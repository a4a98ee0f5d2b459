//! Worker threads. Each runs a single-threaded runtime that owns its client sessions *and* its
//! own backend connections, so a request never crosses a thread or takes a lock between the
//! client socket and the backend socket (twemproxy's model, once per core). The cost is
//! `server_connections` connections per server *per worker*.
//!
//! A worker follows the route table: when a new one is published it builds new pools, reusing
//! every server (and its warm connections) whose identity did not change, and swaps them into
//! the slots its sessions read from. When told to drain, it stops taking clients and lets its
//! sessions finish what they have accepted.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tracing::warn;

use crate::backend::{ConnSettings, Handshake, HealthCtx, Server, ServerIdentity};
use crate::coalesce::Flights;
use crate::net::Accepted;
use crate::ring::KeyRouter;
use crate::session;
use crate::topology::{PoolTable, RouteTable};

/// A pool as one worker sees it: the shared, immutable table plus this worker's connections
/// and its copy of the router for the servers live now.
pub struct WorkerPool {
    pub table: Arc<PoolTable>,
    pub servers: Vec<Rc<Server>>,
    pub started: Instant,
    router: RefCell<Rc<KeyRouter>>,
    epoch: Cell<u64>,
    /// Reads in flight that identical reads may join (this worker, this generation).
    pub flights: Rc<Flights>,
}

/// Largest value a backend reply may announce: memcached's own ceiling for `-I`.
const MAX_REPLY_VALUE: usize = 1 << 30;

impl WorkerPool {
    /// Builds the pool for `table`, taking over servers of `previous` whose identity is
    /// unchanged (their connections stay open and warm).
    pub fn new(
        table: Arc<PoolTable>,
        started: Instant,
        record_latency: bool,
        previous: Option<&WorkerPool>,
    ) -> Rc<Self> {
        let cfg = &table.config;
        let handshake = handshake(cfg);
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let identity = ServerIdentity {
                    name: s.name.clone(),
                    addr: s.addr.clone(),
                    connections: cfg.server_connections as usize,
                    timeout: cfg.timeout,
                    handshake: handshake.as_ref().map(|h| h.bytes.clone()),
                    policy: table.policy,
                    preconnect: cfg.preconnect,
                    max_reply: cfg.client_output_limit as usize,
                };
                if let Some(old) =
                    previous.and_then(|p| p.servers.iter().find(|o| o.identity == identity))
                {
                    return old.clone();
                }
                let label: Arc<str> = format!("{}/{}", cfg.name, s.name).into();
                let settings = ConnSettings {
                    timeout: cfg.timeout,
                    connect_timeout: table.connect_timeout(),
                    max_value: MAX_REPLY_VALUE,
                    max_reply: cfg.client_output_limit as usize,
                    preconnect: cfg.preconnect,
                    label: label.clone(),
                    record_latency,
                    health: Arc::new(HealthCtx {
                        health: table.health[i].clone(),
                        policy: table.policy,
                        epoch: table.epoch.clone(),
                        stats: table.server_stats[i].clone(),
                        pool_stats: table.stats.clone(),
                        label,
                    }),
                    handshake: handshake.clone(),
                };
                Rc::new(Server::new(
                    i,
                    identity,
                    settings,
                    table.server_stats[i].clone(),
                ))
            })
            .collect();
        let router = RefCell::new(Rc::new(table.router()));
        let epoch = Cell::new(table.epoch.load(Ordering::Acquire));
        Rc::new(WorkerPool {
            table,
            servers,
            started,
            router,
            epoch,
            flights: Rc::default(),
        })
    }

    /// Picks up ejections and re-admissions since the last call (one atomic load).
    #[inline]
    pub fn refresh(&self) {
        let epoch = self.table.epoch.load(Ordering::Acquire);
        if epoch != self.epoch.get() {
            self.epoch.set(epoch);
            *self.router.borrow_mut() = Rc::new(self.table.router());
        }
    }

    /// The server a key belongs to, or None when no server is available.
    #[inline]
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.router.borrow().server_for(key)
    }

    fn busy(&self) -> bool {
        self.servers.iter().any(|s| s.busy())
    }
}

/// Redis pools authenticate and select their database on every new backend connection
/// (twemproxy's `redis_auth` and `redis_db`).
fn handshake(cfg: &crate::config::PoolConfig) -> Option<Handshake> {
    use crate::protocol::resp::encode;
    if !cfg.redis {
        return None;
    }
    let mut bytes = Vec::new();
    let mut replies = 0;
    if let Some(password) = &cfg.redis_auth {
        encode::command(&mut bytes, [&b"AUTH"[..], password.as_bytes()].into_iter());
        replies += 1;
    }
    if cfg.redis_db > 0 {
        let db = cfg.redis_db.to_string();
        encode::command(&mut bytes, [&b"SELECT"[..], db.as_bytes()].into_iter());
        replies += 1;
    }
    (replies > 0).then(|| Handshake {
        bytes: bytes.into(),
        replies,
    })
}

/// Where a session finds its pool: swapped by the worker on reload, marked removed when the
/// pool leaves the configuration (its sessions then drain).
pub struct PoolSlot {
    current: RefCell<Rc<WorkerPool>>,
    /// The pool left the configuration, or the worker is draining: sessions stop reading.
    stopping: Cell<bool>,
    on_stop: Notify,
}

impl PoolSlot {
    pub fn current(&self) -> Rc<WorkerPool> {
        self.current.borrow().clone()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once the pool has left the configuration or the worker drains. Sessions poll
    /// it on every turn, so after registering once it only reads a flag.
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped {
            slot: self,
            notified: Box::pin(self.on_stop.notified()),
            registered: false,
        }
    }

    fn stop(&self) {
        self.stopping.set(true);
        self.on_stop.notify_waiters();
    }
}

/// See [`PoolSlot::stopped`].
pub struct Stopped<'a> {
    slot: &'a PoolSlot,
    notified: std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>,
    registered: bool,
}

impl std::future::Future for Stopped<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.slot.stopping.get() {
            return std::task::Poll::Ready(());
        }
        if !self.registered {
            // Registers this task's waker; `stop` sets the flag before waking it.
            self.registered = true;
            if self.notified.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    }
}

/// A client connection handed from the acceptor to a worker.
pub struct Handoff {
    pub pool: Arc<str>,
    pub socket: Accepted,
    /// The pool's counters, to release the connection slot if the client can't be served.
    pub stats: Arc<crate::stats::PoolStats>,
}

/// The acceptor's handle on a worker thread.
pub struct Worker {
    pub tx: mpsc::UnboundedSender<Handoff>,
    pub thread: JoinHandle<()>,
}

/// What a worker is told from outside: the current route table, and when to drain.
#[derive(Clone)]
pub struct Control {
    pub table: watch::Receiver<Arc<RouteTable>>,
    pub drain: watch::Receiver<bool>,
    pub drain_timeout: Duration,
    pub record_latency: bool,
}

impl Worker {
    pub fn spawn(id: usize, control: Control) -> io::Result<Worker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("shardproxy-w{id}"))
            .spawn(move || run(control, rx))?;
        Ok(Worker { tx, thread })
    }
}

fn run(control: Control, rx: mpsc::UnboundedReceiver<Handoff>) {
    // Timers come from a timerfd (see `timer`), not from tokio's time driver, whose clock
    // reads and wheel polls on every park cost about 800 instructions per unloaded request.
    let timer_fd = match crate::timer::create_fd() {
        Ok(fd) => Some(fd),
        Err(e) => {
            warn!(error = %e, "timerfd unavailable; using tokio's timers");
            None
        }
    };
    let mut builder = tokio::runtime::Builder::new_current_thread();
    match timer_fd {
        Some(_) => builder.enable_io(),
        None => builder.enable_all(),
    };
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime failed to start");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    // The worker's own loop runs as a task of its own: the future given to `block_on` is
    // polled whenever any task of the worker wakes (every request), so it must be cheap. A
    // `LocalNotify` is a flag check there; awaiting the task's `JoinHandle` cost about 150
    // instructions per poll.
    let finished = Rc::new(crate::wait::LocalNotify::default());
    let done = finished.clone();
    local.block_on(&rt, async move {
        let _timers = match timer_fd.map(crate::timer::start).transpose() {
            Ok(service) => service,
            Err(e) => {
                tracing::error!(error = %e, "worker timers failed to start");
                return;
            }
        };
        tokio::task::spawn_local(async move {
            // Notifies on drop, so that a panic in the loop ends the worker too.
            let _done = NotifyOnDrop(done);
            serve(control, rx).await;
        });
        finished.notified().await;
    });
}

struct NotifyOnDrop(Rc<crate::wait::LocalNotify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify();
    }
}

async fn serve(mut control: Control, mut rx: mpsc::UnboundedReceiver<Handoff>) {
    {
        let mut slots: HashMap<String, Rc<PoolSlot>> = HashMap::new();
        let table = control.table.borrow_and_update().clone();
        apply(&mut slots, &table, control.record_latency);
        let sessions = Rc::new(Cell::new(0usize));
        let idle = Rc::new(Notify::new());
        loop {
            tokio::select! {
                // Table changes and drain first: a handoff is served by the newest table.
                biased;
                changed = control.table.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let table = control.table.borrow_and_update().clone();
                    apply(&mut slots, &table, control.record_latency);
                }
                r = control.drain.changed() => {
                    if r.is_err() || *control.drain.borrow() {
                        break;
                    }
                }
                handoff = rx.recv() => {
                    let Some(handoff) = handoff else { break };
                    // A client of a pool that a reload just added can arrive before this worker
                    // has applied that reload: apply it first.
                    if control.table.has_changed().unwrap_or(false) {
                        let table = control.table.borrow_and_update().clone();
                        apply(&mut slots, &table, control.record_latency);
                    }
                    let stats = handoff.stats;
                    let Some(slot) = slots.get(&*handoff.pool).cloned() else {
                        stats.client_connections.dec(); // the pool is gone: close the client
                        continue;
                    };
                    match handoff.socket.into_stream() {
                        Ok(stream) => {
                            sessions.set(sessions.get() + 1);
                            let (sessions, idle) = (sessions.clone(), idle.clone());
                            tokio::task::spawn_local(async move {
                                session::serve(stream, slot).await;
                                sessions.set(sessions.get() - 1);
                                idle.notify_one();
                            });
                        }
                        Err(e) => {
                            stats.client_connections.dec();
                            warn!(error = %e, "could not register client socket");
                        }
                    }
                }
            }
        }
        // Draining: sessions answer what they accepted, then backends flush what is queued.
        for slot in slots.values() {
            slot.stop();
        }
        let deadline = tokio::time::Instant::now() + control.drain_timeout;
        while sessions.get() > 0 {
            if crate::timer::timeout_at(deadline, idle.notified())
                .await
                .is_err()
            {
                warn!(
                    sessions = sessions.get(),
                    "drain timeout: closing remaining client connections"
                );
                return;
            }
        }
        while slots.values().any(|s| s.current().busy()) && tokio::time::Instant::now() < deadline {
            crate::timer::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Makes the worker's pools match `table`.
fn apply(slots: &mut HashMap<String, Rc<PoolSlot>>, table: &Arc<RouteTable>, record_latency: bool) {
    for pool in &table.pools {
        let name = &pool.config.name;
        match slots.get(name) {
            Some(slot) => {
                let next = WorkerPool::new(
                    pool.clone(),
                    table.started,
                    record_latency,
                    Some(&slot.current()),
                );
                *slot.current.borrow_mut() = next;
            }
            None => {
                let wp = WorkerPool::new(pool.clone(), table.started, record_latency, None);
                let slot = PoolSlot {
                    current: RefCell::new(wp),
                    stopping: Cell::new(false),
                    on_stop: Notify::new(),
                };
                slots.insert(name.clone(), Rc::new(slot));
            }
        }
    }
    slots.retain(|name, slot| {
        let keep = table.pool(name).is_some();
        if !keep {
            slot.stop();
        }
        keep
    });
}
