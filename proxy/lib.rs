//! shardproxy: a sharding proxy for memcached and Redis, drop-in compatible with twemproxy.
//!
//! # Layout
//! - [`config`]: `nutcracker.yml` parsing and validation (every problem reported at once).
//! - [`hash`], [`ring`]: twemproxy's 12 key hashes and its ketama/modula/random distributions,
//!   bit for bit, so keys land where twemproxy put them.
//! - [`protocol`]: pure codecs, bytes in and frames out, no IO.
//! - [`topology`]: the immutable route table built from a configuration.
//! - [`backend`]: persistent, pipelined backend connections.
//! - [`session`]: client connections: parse, route, split, merge, reply in order.
//! - [`server`]: listeners, worker threads, the accept loop.
//! - [`stats`]: counters recorded on the data path.
//! - [`coalesce`]: identical reads in flight share one backend request.
//! - [`ttl`]: TTL jitter for writes.
//! - [`logging`]: the log, its level and file changeable by signals while running.
//! - [`timer`], [`wait`]: the workers' timers (a timerfd, not tokio's time driver) and
//!   single-waiter notifications.

pub mod backend;
pub mod cli;
pub mod coalesce;
pub mod config;
pub mod hash;
pub mod logging;
pub mod net;
pub mod protocol;
pub mod ring;
pub mod server;
pub mod session;
pub mod stats;
pub mod timer;
pub mod topology;
pub mod ttl;
pub mod wait;
