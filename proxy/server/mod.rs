//! The process: binds every pool's listener, starts the workers, hands each accepted client
//! to a worker in turn, reloads the configuration on SIGHUP/SIGUSR1 or when the file changes,
//! handles the other signals twemproxy does (see `signals`), probes ejected servers, and
//! drains on shutdown. All of this runs on the acceptor thread; requests
//! never do.

mod admin;
mod listeners;
mod prober;
mod process;
mod signals;
mod worker;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

pub use worker::{Control, Handoff, PoolSlot, Worker, WorkerPool};

use crate::config::{self, Config};
use crate::logging::Logging;
use crate::stats::Metrics;
use crate::topology::RouteTable;
use listeners::Listeners;

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

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAt {
    /// On the stats port: an HTTP `GET` there gets HTTP, anything else the stats JSON.
    StatsPort,
    Addr(std::net::SocketAddr),
}

/// Process options from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub threads: usize,
    /// `/metrics` listener; None turns the endpoint and per-request latency recording off.
    pub metrics_addr: Option<MetricsAt>,
    /// nutcracker stats listener (host, port); None when the port is 0.
    pub stats_addr: Option<(String, u16)>,
    /// The configuration file, re-read on SIGHUP and when its content changes.
    pub config_path: PathBuf,
    /// How often the file is checked for changes; None disables watching.
    pub watch_interval: Option<Duration>,
    /// How long shutdown waits for accepted requests to be answered.
    pub drain_timeout: Duration,
    /// The installed logger, for SIGHUP (reopen its file) and SIGTTIN/SIGTTOU (its level);
    /// None when the embedding program logs its own way.
    pub logging: Option<Arc<Logging>>,
}

/// Runs the proxy until `shutdown` resolves, then drains. Must be called inside a Tokio
/// runtime (the acceptor's); workers get runtimes of their own.
pub async fn run(
    config: Config,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let process = Arc::new(process::ProcessMetrics::new(&metrics));
    let table = Arc::new(RouteTable::build(&config, &metrics));
    process.config_generation.set(table.generation as i64);
    let (table_tx, table_rx) = watch::channel(table.clone());
    let (drain_tx, drain_rx) = watch::channel(false);
    if let Some(MetricsAt::Addr(addr)) = opts.metrics_addr {
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
        let http = matches!(opts.metrics_addr, Some(MetricsAt::StatsPort))
            .then(|| (metrics.clone(), process.clone()));
        if http.is_some() {
            info!(addr = %format!("{host}:{port}"), "serving /metrics on the stats port");
        }
        tokio::spawn(admin::serve_stats(listener, table_rx.clone(), http));
    }
    let control = Control {
        table: table_rx.clone(),
        drain: drain_rx,
        drain_timeout: opts.drain_timeout,
        record_latency: opts.metrics_addr.is_some(),
    };
    let workers: Vec<Worker> = (0..opts.threads.max(1))
        .map(|i| Worker::spawn(i, control.clone()))
        .collect::<Result<_, _>>()
        .map_err(StartError::Threads)?;
    let senders = Arc::new(workers.iter().map(|w| w.tx.clone()).collect::<Vec<_>>());
    let mut listeners = Listeners::new(senders, table_rx.clone());
    let plan = listeners
        .prepare(&table)
        .await
        .map_err(|(pool, addr, error)| StartError::Bind { pool, addr, error })?;
    listeners.commit(plan);
    tokio::spawn(prober::run(table_rx.clone()));
    info!(
        threads = workers.len(),
        generation = table.generation,
        "shardproxy started"
    );

    let mut reloader = Reloader {
        opts: &opts,
        metrics: &metrics,
        process: &process,
        table_tx,
        last: read(&opts),
    };
    let mut signals = signals::Signals::install();
    let mut tick = tokio::time::interval(opts.watch_interval.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = signals.next() => match event {
                signals::Event::Hangup => {
                    // First, so that the reload's own lines go to the new file.
                    if let Some(Err(e)) = opts.logging.as_ref().map(|l| l.reopen()) {
                        error!(error = %e, "log file not reopened; still writing the old one");
                    }
                    reloader.reload(&mut listeners, "SIGHUP").await
                }
                signals::Event::Reload => reloader.reload(&mut listeners, "SIGUSR1").await,
                signals::Event::Ignored => info!("SIGUSR2 ignored"),
                signals::Event::LogLevel(delta) => match opts.logging.as_ref().map(|l| l.adjust(delta)) {
                    Some(Ok(level)) => info!(level, "log level changed"),
                    Some(Err(e)) => error!(error = %e, "log level not changed"),
                    None => {}
                },
            },
            _ = tick.tick(), if opts.watch_interval.is_some() => {
                if reloader.changed() {
                    reloader.reload(&mut listeners, "file changed").await;
                }
            }
        }
    }

    info!("shutting down: closing listeners and draining clients");
    listeners.close_all();
    let _ = drain_tx.send(true);
    let threads: Vec<_> = workers.into_iter().map(|w| w.thread).collect();
    let joined =
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())));
    if tokio::time::timeout(opts.drain_timeout + Duration::from_secs(1), joined)
        .await
        .is_err()
    {
        warn!("workers did not stop in time");
    }
    info!("stopped");
    Ok(())
}

/// The file's content, to notice changes (including a Kubernetes ConfigMap's symlink swap,
/// which replaces the file without touching its directory entry's mtime).
fn read(opts: &Options) -> Option<Vec<u8>> {
    std::fs::read(&opts.config_path).ok()
}

struct Reloader<'a> {
    opts: &'a Options,
    metrics: &'a Metrics,
    process: &'a process::ProcessMetrics,
    table_tx: watch::Sender<Arc<RouteTable>>,
    /// Content of the last file seen (applied or rejected), so a bad file is reported once.
    last: Option<Vec<u8>>,
}

impl Reloader<'_> {
    fn changed(&mut self) -> bool {
        let now = read(self.opts);
        if now.is_some() && now != self.last {
            self.last = now;
            return true;
        }
        false
    }

    /// Parses and validates the file off the data path; if it is valid, builds the new route
    /// table, binds the listeners of new pools, then publishes the table to every worker at
    /// once. Any failure leaves the running configuration in place.
    async fn reload(&mut self, listeners: &mut Listeners, why: &str) {
        self.last = read(self.opts);
        let path = self.opts.config_path.display();
        let outcome = |result: &str| self.process.reloads.with_label_values(&[result]).inc();
        let config = match config::load(&self.opts.config_path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    error!(file = %path, problem = %e, "configuration reload rejected");
                }
                outcome("failure");
                return;
            }
        };
        let old = self.table_tx.borrow().clone();
        let table = Arc::new(RouteTable::rebuild(&config, self.metrics, Some(&old)));
        let plan = match listeners.prepare(&table).await {
            Ok(plan) => plan,
            Err((pool, addr, e)) => {
                error!(pool = %pool, listen = %addr, error = %e, "configuration reload rejected: cannot listen");
                outcome("failure");
                return;
            }
        };
        let _ = self.table_tx.send(table.clone());
        listeners.commit(plan);
        self.process.config_generation.set(table.generation as i64);
        outcome("success");
        info!(
            trigger = why,
            generation = table.generation,
            pools = table.pools.len(),
            "configuration reloaded"
        );
    }
}
