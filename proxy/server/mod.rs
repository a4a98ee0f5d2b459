//! The process: binds every pool's listener, starts the workers, and hands each accepted client
//! to a worker in turn. Accepting on one thread keeps the listener logic (unix sockets, client
//! limits, accept errors) in one place; accepts are rare next to requests.

mod admin;
mod process;
mod worker;

use std::future::Future;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

pub use worker::{Handoff, Worker, WorkerPool};

use crate::config::Config;
use crate::net::{Accepted, ListenOptions, Listener};
use crate::stats::Metrics;
use crate::topology::{PoolTable, RouteTable};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("pool '{pool}': cannot listen on {addr}: {error}")]
    Bind {
        pool: String,
        addr: String,
        error: io::Error,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(io::Error),
    #[error("cannot listen on {what} {addr}: {error}")]
    Admin {
        what: &'static str,
        addr: String,
        error: io::Error,
    },
}

/// Process options from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub threads: usize,
    /// `/metrics` listener; None turns the endpoint and per-request latency recording off.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// nutcracker stats listener (host, port); None when the port is 0.
    pub stats_addr: Option<(String, u16)>,
}

/// Runs the proxy until `shutdown` resolves. Must be called inside a Tokio runtime (the
/// acceptor's); workers get runtimes of their own.
pub async fn run(
    config: Config,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let process = Arc::new(process::ProcessMetrics::new(&metrics));
    let table = Arc::new(RouteTable::build(&config, 1, &metrics));
    process.config_generation.set(table.generation as i64);
    if let Some(addr) = opts.metrics_addr {
        let listener =
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::Admin {
                    what: "--metrics-addr",
                    addr: addr.to_string(),
                    error,
                })?;
        info!(addr = %addr, "serving /metrics");
        tokio::spawn(admin::serve_metrics(
            listener,
            metrics.clone(),
            process.clone(),
        ));
    }
    if let Some((host, port)) = &opts.stats_addr {
        let listener = tokio::net::TcpListener::bind((host.as_str(), *port))
            .await
            .map_err(|error| StartError::Admin {
                what: "the stats port",
                addr: format!("{host}:{port}"),
                error,
            })?;
        tokio::spawn(admin::serve_stats(listener, table.clone()));
    }
    let mut listeners = Vec::with_capacity(table.pools.len());
    for pool in &table.pools {
        let cfg = &pool.config;
        let listener = Listener::bind(&cfg.listen, listen_options(pool))
            .await
            .map_err(|error| StartError::Bind {
                pool: cfg.name.clone(),
                addr: cfg.listen.to_string(),
                error,
            })?;
        info!(pool = %cfg.name, listen = %listener.local_addr(), servers = cfg.servers.len(), "pool listening");
        listeners.push(listener);
    }
    let record_latency = opts.metrics_addr.is_some();
    let workers: Vec<Worker> = (0..opts.threads.max(1))
        .map(|i| Worker::spawn(i, table.clone(), record_latency))
        .collect::<Result<_, _>>()
        .map_err(StartError::Threads)?;
    let senders: Arc<Vec<_>> = Arc::new(workers.iter().map(|w| w.tx.clone()).collect());
    for (index, listener) in listeners.into_iter().enumerate() {
        tokio::spawn(accept_loop(
            listener,
            index,
            table.pools[index].clone(),
            senders.clone(),
        ));
    }
    info!(threads = workers.len(), "shardproxy started");
    shutdown.await;
    info!("shutting down");
    Ok(())
}

fn listen_options(pool: &PoolTable) -> ListenOptions {
    ListenOptions {
        backlog: pool.config.backlog,
        reuseport: pool.config.reuseport,
        tcpkeepalive: pool.config.tcpkeepalive,
    }
}

async fn accept_loop(
    listener: Listener,
    index: usize,
    pool: Arc<PoolTable>,
    workers: Arc<Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>>,
) {
    let opts = listen_options(&pool);
    let limit = pool.config.client_connections as i64;
    let stats = &pool.stats;
    let mut next = index; // spread pools' first clients over different workers
    loop {
        let socket = match listener.accept(opts).await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: pause instead of spinning on a listener that stays ready.
                warn!(pool = %pool.config.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.total_connections.inc();
        if limit > 0 && stats.client_connections.get() >= limit {
            stats.rejected_connections.inc();
            refuse(socket, pool.config.redis);
            continue;
        }
        stats.client_connections.inc();
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        if worker
            .send(Handoff {
                pool: index,
                socket,
            })
            .is_err()
        {
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
