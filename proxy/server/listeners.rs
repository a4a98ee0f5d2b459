//! Pool listeners and their accept loops, kept in step with the route table.
//!
//! Listeners are keyed by address, not pool name: a reload that keeps a pool's `listen`
//! keeps its socket (no connection refused during a reload, not even for a renamed pool); a
//! new address is bound *before* the new table is published, so a reload that cannot listen
//! fails as a whole; an address no longer configured is closed after the table is published.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::worker::Handoff;
use crate::config::ListenAddr;
use crate::net::{Accepted, ListenOptions, Listener};
use crate::topology::{PoolTable, RouteTable};

type Senders = Arc<Vec<mpsc::UnboundedSender<Handoff>>>;

pub struct Listeners {
    workers: Senders,
    table: watch::Receiver<Arc<RouteTable>>,
    active: HashMap<ListenAddr, JoinHandle<()>>,
}

/// Listeners bound for a table that is about to be published.
pub struct Plan {
    bound: Vec<(ListenAddr, Listener)>,
    keep: Vec<ListenAddr>,
}

fn options(pool: &PoolTable) -> ListenOptions {
    ListenOptions {
        backlog: pool.config.backlog,
        reuseport: pool.config.reuseport,
        tcpkeepalive: pool.config.tcpkeepalive,
    }
}

impl Listeners {
    pub fn new(workers: Senders, table: watch::Receiver<Arc<RouteTable>>) -> Listeners {
        Listeners {
            workers,
            table,
            active: HashMap::new(),
        }
    }

    /// Binds every address of `table` not listened on yet. On failure returns the pool, the
    /// address and the error; nothing already running is touched.
    pub async fn prepare(&self, table: &RouteTable) -> Result<Plan, (String, String, io::Error)> {
        let mut plan = Plan {
            bound: Vec::new(),
            keep: Vec::new(),
        };
        for pool in &table.pools {
            let addr = &pool.config.listen;
            if self.active.contains_key(addr) {
                plan.keep.push(addr.clone());
                continue;
            }
            match Listener::bind(addr, options(pool)).await {
                Ok(l) => {
                    info!(pool = %pool.config.name, listen = %l.local_addr(), servers = pool.config.servers.len(), "pool listening");
                    plan.bound.push((addr.clone(), l));
                }
                Err(e) => return Err((pool.config.name.clone(), addr.to_string(), e)),
            }
        }
        Ok(plan)
    }

    /// Starts the new listeners and closes those the table no longer has.
    pub fn commit(&mut self, plan: Plan) {
        self.active.retain(|addr, task| {
            let keep = plan.keep.contains(addr);
            if !keep {
                task.abort();
                remove_socket_file(addr);
                info!(listen = %addr, "listener closed");
            }
            keep
        });
        for (addr, listener) in plan.bound {
            let start = self.active.len();
            let task = tokio::spawn(accept_loop(
                listener,
                addr.clone(),
                self.table.clone(),
                self.workers.clone(),
                start,
            ));
            self.active.insert(addr, task);
        }
    }

    /// Stops accepting on every listener (shutdown).
    pub fn close_all(&mut self) {
        for (addr, task) in self.active.drain() {
            task.abort();
            remove_socket_file(&addr);
        }
    }
}

fn remove_socket_file(addr: &ListenAddr) {
    if let ListenAddr::Unix { path, .. } = addr {
        let _ = std::fs::remove_file(path);
    }
}

/// Pause after a failed accept. A listener whose accept fails (EMFILE: the process is out of
/// file descriptors) stays readable, so retrying at once would spin a core; 50 ms keeps the
/// retries cheap and still picks clients up soon after descriptors are freed.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

async fn accept_loop(
    listener: Listener,
    addr: ListenAddr,
    table: watch::Receiver<Arc<RouteTable>>,
    workers: Senders,
    mut next: usize,
) {
    // Failed accepts since the last one that worked. The conditions behind them last (fds stay
    // exhausted until clients leave), so one episode is logged twice, when it starts and when
    // it ends, instead of 20 lines a second; the metric counts every failure.
    let mut failures: u64 = 0;
    loop {
        let pool = table
            .borrow()
            .pools
            .iter()
            .find(|p| p.config.listen == addr)
            .cloned();
        let Some(pool) = pool else { return };
        let socket = match listener.accept(options(&pool)).await {
            Ok(s) => s,
            Err(e) => {
                pool.stats.accept_errors.inc();
                if failures == 0 {
                    warn!(
                        pool = %pool.config.name,
                        error = %e,
                        retry_ms = ACCEPT_RETRY.as_millis() as u64,
                        "accept failed; retrying quietly until a client is accepted"
                    );
                }
                failures += 1;
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if failures > 0 {
            let plural = if failures == 1 { "" } else { "s" };
            info!(pool = %pool.config.name, "accepting again after {failures} failure{plural}");
            failures = 0;
        }
        // The table may have changed while we waited: hand the client to the current pool.
        let pool = table
            .borrow()
            .pools
            .iter()
            .find(|p| p.config.listen == addr)
            .cloned()
            .unwrap_or(pool);
        let stats = &pool.stats;
        stats.total_connections.inc();
        let limit = pool.config.client_connections as i64;
        if limit > 0 && stats.client_connections.get() >= limit {
            stats.rejected_connections.inc();
            refuse(socket, pool.config.redis);
            continue;
        }
        stats.client_connections.inc();
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        let handoff = Handoff {
            pool: pool.config.name.as_str().into(),
            socket,
            stats: pool.stats.clone(),
        };
        if worker.send(handoff).is_err() {
            stats.client_connections.dec();
            error!("worker thread has stopped");
        }
    }
}

/// Tells a client over `client_connections` why it is turned away, with the line the backend
/// itself would send, then closes.
fn refuse(socket: Accepted, redis: bool) {
    let msg: &[u8] = if redis {
        b"-ERR max number of clients reached\r\n"
    } else {
        b"ERROR Too many open connections\r\n"
    };
    let _ = match socket {
        Accepted::Tcp(mut s) => s.write(msg),
        Accepted::Unix(mut s) => s.write(msg),
    };
}
