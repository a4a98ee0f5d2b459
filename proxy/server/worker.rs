//! Worker threads. Each runs a single-threaded runtime that owns its client sessions *and* its
//! own backend connections, so a request never crosses a thread or takes a lock between the
//! client socket and the backend socket (twemproxy's model, once per core). The cost is
//! `server_connections` connections per server *per worker*.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::warn;

use crate::backend::{ConnSettings, Handshake, Server};
use crate::net::Accepted;
use crate::session;
use crate::topology::{PoolTable, RouteTable};

/// A pool as one worker sees it: the shared, immutable table plus this worker's connections.
pub struct WorkerPool {
    pub table: Arc<PoolTable>,
    pub servers: Vec<Server>,
    pub started: Instant,
}

/// Largest value a backend reply may announce: memcached's own ceiling for `-I`.
const MAX_REPLY_VALUE: usize = 1 << 30;

impl WorkerPool {
    pub fn new(table: Arc<PoolTable>, started: Instant, record_latency: bool) -> Rc<WorkerPool> {
        let cfg = &table.config;
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let settings = ConnSettings {
                    timeout: cfg.timeout,
                    connect_timeout: table.connect_timeout(),
                    max_value: MAX_REPLY_VALUE,
                    preconnect: cfg.preconnect,
                    label: format!("{}/{}", cfg.name, s.name).into(),
                    handshake: handshake(cfg),
                    record_latency,
                };
                Server::new(
                    i,
                    s.addr.clone(),
                    cfg.server_connections as usize,
                    settings,
                    table.server_stats[i].clone(),
                )
            })
            .collect();
        Rc::new(WorkerPool {
            table,
            servers,
            started,
        })
    }

    /// The server a key belongs to, or None when no server is available.
    #[inline]
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.table.router.server_for(key)
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

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for server in &self.servers {
            for conn in server.conns() {
                conn.shutdown();
            }
        }
    }
}

/// A client connection handed from the acceptor to a worker.
pub struct Handoff {
    pub pool: usize,
    pub socket: Accepted,
}

/// The acceptor's handle on a worker thread.
pub struct Worker {
    pub tx: mpsc::UnboundedSender<Handoff>,
    pub thread: JoinHandle<()>,
}

impl Worker {
    pub fn spawn(id: usize, table: Arc<RouteTable>, record_latency: bool) -> io::Result<Worker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("shardproxy-w{id}"))
            .spawn(move || run(table, rx, record_latency))?;
        Ok(Worker { tx, thread })
    }
}

fn run(table: Arc<RouteTable>, mut rx: mpsc::UnboundedReceiver<Handoff>, record_latency: bool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime failed to start");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pools: Vec<Rc<WorkerPool>> = table
            .pools
            .iter()
            .map(|p| WorkerPool::new(p.clone(), table.started, record_latency))
            .collect();
        while let Some(handoff) = rx.recv().await {
            let pool = pools[handoff.pool].clone();
            match handoff.socket.into_stream() {
                Ok(stream) => {
                    tokio::task::spawn_local(session::serve(stream, pool));
                }
                Err(e) => {
                    pool.table.stats.client_connections.dec();
                    warn!(error = %e, "could not register client socket");
                }
            }
        }
    });
}
