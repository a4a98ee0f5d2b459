//! Counters the data path records. They are plain atomics owned by the route table, resolved
//! once when a pool is built, so recording is a relaxed add on the hot path; the memcached
//! `stats` command, the nutcracker-compatible stats port and the Prometheus exporter read them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connections open, requests queued).
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-pool counters. Field names follow nutcracker's stats where it has the concept.
#[derive(Default, Debug)]
pub struct PoolStats {
    pub client_connections: Gauge,
    pub total_connections: Counter,
    pub rejected_connections: Counter,
    pub client_eof: Counter,
    pub client_err: Counter,
    /// Error replies the proxy generated for a backend failure (nutcracker's `forward_error`).
    pub forward_error: Counter,
    pub server_ejects: Counter,
    /// Backend requests a multi-key request was split into.
    pub fragments: Counter,
    pub cmd_get: Counter,
    pub get_hits: Counter,
    pub get_misses: Counter,
    /// Keys of a multi-get whose server failed, answered as misses.
    pub get_lost: Counter,
    pub cmd_set: Counter,
    pub cmd_touch: Counter,
    pub cmd_delete: Counter,
    pub cmd_arith: Counter,
    pub cmd_flush: Counter,
    pub cmd_other: Counter,
    /// Requests the proxy refused (bad syntax, limits, unknown commands).
    pub client_protocol_errors: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
}

/// Per-server counters. Field names follow nutcracker's.
#[derive(Default, Debug)]
pub struct ServerStats {
    pub server_connections: Gauge,
    pub server_eof: Counter,
    pub server_err: Counter,
    pub server_timedout: Counter,
    pub requests: Counter,
    pub request_bytes: Counter,
    pub responses: Counter,
    pub response_bytes: Counter,
    /// Requests queued or written and not yet answered.
    pub in_flight: Gauge,
    pub connect_failures: Counter,
}
