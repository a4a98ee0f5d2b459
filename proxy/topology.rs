//! The route table: an immutable value built from the configuration, shared by every worker
//! behind an `Arc`, and replaced whole (never mutated) when the configuration changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, PoolConfig};
use crate::protocol::memcache::Limits;
use crate::ring::{KeyRouter, RingNode};
use crate::stats::{Metrics, PoolStats, ServerStats};

/// Everything a worker needs to serve one pool.
pub struct PoolTable {
    pub config: PoolConfig,
    pub router: KeyRouter,
    pub stats: Arc<PoolStats>,
    /// Indexed like `config.servers` (twemproxy's sorted order).
    pub server_stats: Vec<Arc<ServerStats>>,
    pub limits: Limits,
}

impl PoolTable {
    pub fn build(config: PoolConfig, metrics: &Metrics) -> PoolTable {
        let nodes: Vec<RingNode<'_>> = config
            .servers
            .iter()
            .map(|s| RingNode {
                name: s.name.as_bytes(),
                weight: s.weight,
                live: true,
            })
            .collect();
        let router = KeyRouter::new(config.hash, config.hash_tag, config.distribution, &nodes);
        let server_stats = config
            .servers
            .iter()
            .map(|s| Arc::new(ServerStats::new(metrics, &config.name, &s.name)))
            .collect();
        let limits = Limits::with_item_size_max(config.item_size_max);
        PoolTable {
            router,
            stats: Arc::new(PoolStats::new(metrics, &config.name, config.redis)),
            server_stats,
            limits,
            config,
        }
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
    pub fn build(config: &Config, generation: u64, metrics: &Metrics) -> RouteTable {
        RouteTable {
            generation,
            pools: config
                .pools
                .iter()
                .cloned()
                .map(|p| Arc::new(PoolTable::build(p, metrics)))
                .collect(),
            started: Instant::now(),
        }
    }
}
