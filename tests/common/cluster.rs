//! [`Cluster`]: the fixture most end-to-end tests start from, one pool of real backends
//! behind one proxy.
//!
//! Written once here so that every test file builds its pool the same way (same pool names,
//! unnamed servers of weight 1) and only says what differs: how many backends, and which pool
//! keys to add. Tests that need named or weighted servers, or several pools, still build
//! their YAML with [`memcache_pool_yaml`] / [`redis_pool_yaml`] directly.

use super::{free_port, memcache_pool_yaml, redis_pool_yaml, Memcached, Proxy, RawClient, Redis};

/// `servers` behind one pool of `proxy`, which listens on `127.0.0.1:port`. Dropping it kills
/// the proxy and every backend. `S` is [`Memcached`] or [`Redis`]; protocol-specific helpers
/// live in `impl Cluster<Memcached>` / `impl Cluster<Redis>` blocks in the test files.
pub struct Cluster<S> {
    pub servers: Vec<S>,
    pub proxy: Proxy,
    pub port: u16,
}

/// The signature shared by [`memcache_pool_yaml`] and [`redis_pool_yaml`].
type PoolYaml = fn(&str, u16, &[(u16, u32, Option<&str>)], &str) -> String;

impl<S> Cluster<S> {
    /// Starts a proxy with one pool `name` over `servers` (at `port_of` each), unnamed with
    /// weight 1; `extra` holds more pool keys, as for [`memcache_pool_yaml`].
    fn assemble(
        servers: Vec<S>,
        port_of: fn(&S) -> u16,
        yaml: PoolYaml,
        name: &str,
        extra: &str,
    ) -> Self {
        let port = free_port();
        let list: Vec<(u16, u32, Option<&str>)> =
            servers.iter().map(|s| (port_of(s), 1, None)).collect();
        let proxy = Proxy::start(&yaml(name, port, &list, extra));
        Cluster {
            servers,
            proxy,
            port,
        }
    }

    /// A new raw connection to the proxy.
    pub fn client(&self) -> RawClient {
        RawClient::connect_port(self.port)
    }
}

impl Cluster<Memcached> {
    /// `n` fresh memcached servers behind pool `mc`.
    pub fn memcached(n: usize, extra: &str) -> Self {
        let servers = (0..n).map(|_| Memcached::start()).collect();
        Self::assemble(servers, |s| s.port, memcache_pool_yaml, "mc", extra)
    }
}

impl Cluster<Redis> {
    /// `n` fresh redis-servers behind pool `r` (`redis: true` is added to `extra`).
    pub fn redis(n: usize, extra: &str) -> Self {
        Self::redis_with((0..n).map(|_| Redis::start()).collect(), extra)
    }

    /// Pool `r` over servers the test has already started, e.g. with a password or filled
    /// past their memory limit.
    pub fn redis_with(servers: Vec<Redis>, extra: &str) -> Self {
        Self::assemble(servers, |s| s.port, redis_pool_yaml, "r", extra)
    }

    /// Index of the one backend holding `key`, asked of each backend directly (so a test
    /// checks where a write really landed, not where the proxy says it did).
    pub fn holder(&self, key: &str) -> usize {
        let found = self.holders(key);
        assert_eq!(found.len(), 1, "{key} held by {found:?}");
        found[0]
    }

    /// Indexes of every backend holding `key` (none, one, or more after a misrouted write).
    pub fn holders(&self, key: &str) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| self.servers[i].cmd(&["EXISTS", key]) == b":1\r\n")
            .collect()
    }
}
