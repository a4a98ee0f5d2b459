//! Server health and ejection (twemproxy's `auto_eject_hosts`, `server_failure_limit`,
//! `server_retry_timeout`), shared by every worker so that all of them route a key the same
//! way.
//!
//! A server is ejected after `server_failure_limit` consecutive failures (a refused or broken
//! connection, or a request timeout); any reply resets the count. An ejected server leaves the
//! ring: ketama recomputes the points over the live servers, exactly as twemproxy does, so with
//! equal weights only its keys move. Unlike twemproxy, which puts a server back blindly when
//! `server_retry_timeout` expires (and fails the next request to it), shardproxy probes it
//! (memcached `version`, Redis `PING`) and re-admits it only when it answers. A server that is
//! ejected again soon after re-admission is flapping: each flap doubles its retry interval, up
//! to 32 times `server_retry_timeout`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::stats::{PoolStats, ServerStats};

/// Ejection settings of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EjectPolicy {
    pub auto_eject: bool,
    pub failure_limit: u32,
    pub retry_timeout: Duration,
}

/// Health of one server, shared by all workers (and kept across reloads while the server
/// stays in the pool).
#[derive(Debug)]
pub struct Health {
    failures: AtomicU32,
    ejected: AtomicBool,
    /// Milliseconds since `origin` from which the next probe may run.
    retry_at_ms: AtomicU64,
    /// Milliseconds since `origin` of the last re-admission, for flap detection.
    readmitted_ms: AtomicU64,
    flaps: AtomicU32,
    origin: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            readmitted_ms: AtomicU64::new(0),
            flaps: AtomicU32::new(0),
            origin: Instant::now(),
        }
    }
}

/// What a connection reports to [`Health`], with what it needs to act on it.
#[derive(Debug)]
pub struct HealthCtx {
    pub health: Arc<Health>,
    pub policy: EjectPolicy,
    /// Bumped whenever a server of the pool leaves or re-enters the ring.
    pub epoch: Arc<AtomicU64>,
    pub stats: Arc<ServerStats>,
    pub pool_stats: Arc<PoolStats>,
    pub label: Arc<str>,
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Whether an ejected server is due for a probe.
    pub fn probe_due(&self) -> bool {
        self.is_ejected() && self.now_ms() >= self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Puts the next probe off after a failed one.
    pub fn probe_failed(&self, policy: &EjectPolicy) {
        self.retry_at_ms.store(
            self.now_ms() + self.retry_interval(policy).as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    fn retry_interval(&self, policy: &EjectPolicy) -> Duration {
        policy.retry_timeout * (1u32 << self.flaps.load(Ordering::Relaxed).min(5))
    }
}

impl HealthCtx {
    /// A reply arrived: the server works.
    #[inline]
    pub fn success(&self) {
        if self.health.failures.load(Ordering::Relaxed) != 0 {
            self.health.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A connection failed or a request timed out.
    pub fn failure(&self) {
        if !self.policy.auto_eject {
            return;
        }
        let h = &self.health;
        let n = h.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.policy.failure_limit.max(1) || h.ejected.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = h.now_ms();
        let since_readmit = now.saturating_sub(h.readmitted_ms.load(Ordering::Relaxed));
        let readmitted = h.readmitted_ms.load(Ordering::Relaxed) > 0;
        if readmitted && since_readmit < 10 * self.policy.retry_timeout.as_millis() as u64 {
            h.flaps.fetch_add(1, Ordering::Relaxed);
        } else {
            h.flaps.store(0, Ordering::Relaxed);
        }
        let retry = h.retry_interval(&self.policy);
        h.retry_at_ms
            .store(now + retry.as_millis() as u64, Ordering::Relaxed);
        self.stats.ejections.inc();
        self.stats.ejected.set(1);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.stats.ejected_at.set(unix as i64);
        self.pool_stats.server_ejects.inc();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        warn!(server = %self.label, failures = n, retry_in_ms = retry.as_millis() as u64, "server ejected");
    }

    /// A probe succeeded: the server re-enters the ring.
    pub fn readmit(&self) {
        let h = &self.health;
        h.failures.store(0, Ordering::Relaxed);
        h.readmitted_ms.store(h.now_ms().max(1), Ordering::Relaxed);
        if h.ejected.swap(false, Ordering::AcqRel) {
            self.stats.ejected.set(0);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            info!(server = %self.label, "server answered its probe and is back in the ring");
        }
    }
}
