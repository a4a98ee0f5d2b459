//! The route table: an immutable value built from the configuration, shared by every worker
//! behind an `Arc`, and replaced whole (never mutated) when the configuration changes.
//!
//! What must survive a reload is carried over explicitly: a server that stays in its pool
//! (same name, same address) keeps its [`Health`] (an ejected server stays ejected), and every
//! metric handle is resolved again from the same registry, so counters continue.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{EjectPolicy, Health};
use crate::coalesce::WriteEpochs;
use crate::config::{Config, PoolConfig};
use crate::protocol::memcache::Limits;
use crate::ring::{KeyRouter, RingNode};
use crate::stats::{Metrics, PoolStats, ServerStats};

/// Everything a worker needs to serve one pool.
pub struct PoolTable {
    pub config: PoolConfig,
    pub stats: Arc<PoolStats>,
    /// Indexed like `config.servers` (twemproxy's sorted order).
    pub server_stats: Vec<Arc<ServerStats>>,
    pub health: Vec<Arc<Health>>,
    /// Bumped whenever a server leaves or re-enters the ring; workers rebuild their router
    /// when it moves.
    pub epoch: Arc<AtomicU64>,
    pub policy: EjectPolicy,
    pub limits: Limits,
    /// Write epochs for read-your-writes under coalescing, shared by every worker.
    pub write_epochs: Arc<WriteEpochs>,
}

impl PoolTable {
    /// Builds a pool, reusing the health of servers that `previous` (the same pool in the
    /// running configuration) already had.
    pub fn build(config: PoolConfig, metrics: &Metrics, previous: Option<&PoolTable>) -> PoolTable {
        let server_stats = config
            .servers
            .iter()
            .map(|s| Arc::new(ServerStats::new(metrics, &config.name, &s.name)))
            .collect();
        let health = config
            .servers
            .iter()
            .map(|s| {
                previous
                    .and_then(|p| {
                        let i = p
                            .config
                            .servers
                            .iter()
                            .position(|o| o.name == s.name && o.addr == s.addr)?;
                        Some(p.health[i].clone())
                    })
                    .unwrap_or_default()
            })
            .collect();
        let policy = EjectPolicy {
            auto_eject: config.auto_eject_hosts,
            failure_limit: config.server_failure_limit,
            retry_timeout: config.server_retry_timeout,
        };
        PoolTable {
            stats: Arc::new(PoolStats::new(metrics, &config.name, config.redis)),
            server_stats,
            health,
            epoch: Arc::new(AtomicU64::new(0)),
            policy,
            limits: Limits::with_item_size_max(config.item_size_max),
            write_epochs: previous.map(|p| p.write_epochs.clone()).unwrap_or_default(),
            config,
        }
    }

    /// The key router for the servers live right now (ejected servers excluded from the ring,
    /// as twemproxy does).
    pub fn router(&self) -> KeyRouter {
        let nodes: Vec<RingNode<'_>> = self
            .config
            .servers
            .iter()
            .zip(&self.health)
            .map(|(s, h)| RingNode {
                name: s.name.as_bytes(),
                weight: s.weight,
                live: !h.is_ejected(),
            })
            .collect();
        KeyRouter::new(
            self.config.hash,
            self.config.hash_tag,
            self.config.distribution,
            &nodes,
        )
    }

    /// Connect timeout: the request timeout when one is set (a connect is part of a request's
    /// wait, as in twemproxy), else a bound so a black-holed server can't queue requests forever.
    pub fn connect_timeout(&self) -> Duration {
        self.config.timeout.unwrap_or(Duration::from_secs(10))
    }
}

/// All pools of one configuration generation.
pub struct RouteTable {
    pub generation: u64,
    pub pools: Vec<Arc<PoolTable>>,
    pub started: Instant,
}

impl RouteTable {
    pub fn build(config: &Config, metrics: &Metrics) -> RouteTable {
        RouteTable::rebuild(config, metrics, None)
    }

    /// The table for `config`, carrying over from `previous` what must survive a reload.
    pub fn rebuild(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&RouteTable>,
    ) -> RouteTable {
        let pools = config
            .pools
            .iter()
            .map(|p| {
                let old = previous.and_then(|t| t.pool(&p.name));
                Arc::new(PoolTable::build(p.clone(), metrics, old.map(|o| &**o)))
            })
            .collect();
        RouteTable {
            generation: previous.map_or(1, |t| t.generation + 1),
            pools,
            started: previous.map_or_else(Instant::now, |t| t.started),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolTable>> {
        self.pools.iter().find(|p| p.config.name == name)
    }
}
