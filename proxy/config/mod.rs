//! Loading and validating a twemproxy `nutcracker.yml`, plus shardproxy's extension keys.
//!
//! The file is the same as twemproxy 0.5.0's so that a deployment can switch proxies without
//! touching it: same keys, same defaults, same `servers` syntax, same default server names and
//! the same server order (which decides where keys land). Where the two differ it is on
//! purpose: valid YAML that twemproxy 0.5.0 refuses is accepted (`---`, flow sequences,
//! `[::1]:port`, `reuseport`), and the only values refused beyond twemproxy's rules are those
//! YAML would silently alter (an unquoted `redis_auth: 1e3`, see `scalar::verbatim`).
//!
//! shardproxy's own keys (`allow_flush_all`, `allow_scripts`, `item_size_max`,
//! `client_timeout`, `coalesce`, `ttl_jitter`) sit beside
//! twemproxy's in the pool mapping; nutcracker would refuse them as unknown, so a file that
//! uses them is shardproxy-only.
//!
//! Validation reports *every* problem at once, each naming the pool, the key and the reason,
//! because a proxy that fails to start on the first typo and then on the next is painful to
//! configure. Nothing here touches the network: host names stay text until connect time.

mod error;
mod listen;
mod locate;
mod pool;
mod scalar;
mod server;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use crate::hash::HashKind;
use crate::ring::Distribution;

pub use self::error::{ConfigError, ConfigErrors};
pub use self::listen::ListenAddr;
pub use self::pool::{DISTRIBUTION_NAMES, HASH_NAMES, ITEM_SIZE_MAX_LIMIT};
pub use self::server::{ServerAddr, ServerConfig};

/// twemproxy's `listen(2)` backlog default.
pub const DEFAULT_BACKLOG: u32 = 512;
/// twemproxy's default number of connections per backend.
pub const DEFAULT_SERVER_CONNECTIONS: u32 = 1;
/// How long an ejected backend stays out, twemproxy's default.
pub const DEFAULT_SERVER_RETRY_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Consecutive failures before ejection, twemproxy's default.
pub const DEFAULT_SERVER_FAILURE_LIMIT: u32 = 2;
/// memcached's default `-I`: a larger value would be refused by the backend anyway.
pub const DEFAULT_ITEM_SIZE_MAX: u32 = 1024 * 1024;
/// How long a client may leave a request half-sent. Generous enough for a 1 MiB value on a
/// slow link, short enough that a slowloris cannot hold connections for long (memcached
/// itself never reaps a client stalled mid-value).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Redis's `client-output-buffer-limit` for pub/sub clients, the one class it limits by
/// default: 32 MiB per client.
pub const DEFAULT_CLIENT_OUTPUT_LIMIT: u64 = 32 << 20;

/// A whole configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// In file order, which is the order pools are started and reported in.
    pub pools: Vec<PoolConfig>,
}

/// One pool: a listener and the servers it shards over.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub listen: ListenAddr,
    /// Hashes the key (or its hash-tag part). Default fnv1a_64, twemproxy's (flawed) default.
    pub hash: HashKind,
    /// Only the bytes between these two characters are hashed, when both are present.
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// Per-request timeout; `None` waits forever (twemproxy: absent or 0).
    pub timeout: Option<Duration>,
    pub backlog: u32,
    /// 0 = unlimited. twemproxy parses and then ignores it; shardproxy may enforce it.
    pub client_connections: u32,
    /// Redis (RESP) pool rather than memcached ASCII.
    pub redis: bool,
    /// Password clients must `AUTH` with and the proxy sends to backends; redis pools only.
    pub redis_auth: Option<String>,
    /// When > 0, `SELECT`ed on every new backend connection.
    pub redis_db: u32,
    pub preconnect: bool,
    pub auto_eject_hosts: bool,
    /// Connections per backend; at least 1.
    pub server_connections: u32,
    pub server_retry_timeout: Duration,
    pub server_failure_limit: u32,
    /// SO_KEEPALIVE on accepted client sockets (where twemproxy sets it).
    pub tcpkeepalive: bool,
    /// SO_REUSEPORT on the listener (twemproxy after 0.5.0).
    pub reuseport: bool,
    /// In twemproxy order (shorter name first, then bytewise): the index is the server index
    /// used by modula, ketama tie-breaking and stats, so it must match twemproxy's.
    pub servers: Vec<ServerConfig>,
    /// shardproxy extension: `false` makes the proxy refuse `flush_all`, which would
    /// otherwise wipe every backend of the pool.
    pub allow_flush_all: bool,
    /// shardproxy extension (`allow_scripts:`, Redis pools): `false` makes the proxy refuse
    /// EVAL, FCALL, SCRIPT and FUNCTION. A script runs on the server its declared keys hash
    /// to, but Redis lets it read and write any key of that server (and SELECT its other
    /// databases), so a script can reach keys that belong to other clients of the pool.
    pub allow_scripts: bool,
    /// shardproxy extension: the largest value forwarded, 1..=1 GiB.
    pub item_size_max: u32,
    /// shardproxy extension (`client_timeout:`, ms, > 0): a client that leaves a request
    /// incomplete for longer is sent an error and closed.
    pub client_timeout: Duration,
    /// shardproxy extension (`coalesce:`): identical reads of a key read recently, in flight to
    /// the same server, share one backend request (default true).
    pub coalesce: bool,
    /// shardproxy extension (`ttl_jitter:`, percent): relative expiry times of writes are
    /// shortened by a random amount up to this fraction, so keys written together do not
    /// expire together (default 0, off).
    pub ttl_jitter: u8,
    /// shardproxy extension (`client_output_limit:`, bytes): reply bytes a client may be owed
    /// and not have read (replies received and waiting plus unsent output) before it is
    /// disconnected, like Redis's `client-output-buffer-limit`. It bounds the proxy's memory
    /// per client whatever the request shape (one multi-get can ask for gigabytes).
    pub client_output_limit: u64,
}

impl PoolConfig {
    /// A pool with every optional setting at its default; the single place defaults live.
    pub fn new(name: &str, listen: ListenAddr, servers: Vec<ServerConfig>) -> PoolConfig {
        PoolConfig {
            name: name.to_string(),
            listen,
            hash: HashKind::Fnv1a_64,
            hash_tag: None,
            distribution: Distribution::Ketama,
            timeout: None,
            backlog: DEFAULT_BACKLOG,
            client_connections: 0,
            redis: false,
            redis_auth: None,
            redis_db: 0,
            preconnect: false,
            auto_eject_hosts: false,
            server_connections: DEFAULT_SERVER_CONNECTIONS,
            server_retry_timeout: DEFAULT_SERVER_RETRY_TIMEOUT,
            server_failure_limit: DEFAULT_SERVER_FAILURE_LIMIT,
            tcpkeepalive: false,
            reuseport: false,
            servers,
            allow_flush_all: true,
            allow_scripts: true,
            item_size_max: DEFAULT_ITEM_SIZE_MAX,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            coalesce: true,
            ttl_jitter: 0,
            client_output_limit: DEFAULT_CLIENT_OUTPUT_LIMIT,
        }
    }
}

/// Parses and validates configuration text, returning every problem found.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let pools = match yaml::load(text, &mut errors) {
        Some(root) => validate::pools(&root, &mut errors),
        None => Vec::new(),
    };
    if errors.is_empty() {
        Ok(Config { pools })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads and validates a configuration file; an unreadable file is reported as a
/// [`ConfigError`] too, so callers have a single error path.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(err) => Err(ConfigErrors(vec![ConfigError::file(format!(
            "cannot read {}: {err}",
            path.display()
        ))])),
    }
}
