//! Turning one pool's YAML mapping into a [`PoolConfig`].
//!
//! Every entry is checked even after a failure, so that one run lists every bad setting.
//! Rules that involve two settings (`redis_auth` needs `redis: true`) are checked after all
//! entries, so they do not depend on the order the keys are written in.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::error::ConfigError;
use super::listen::ListenAddr;
use super::scalar::{self, boolean, number, text, verbatim};
use super::server;
use super::PoolConfig;
use crate::hash::HashKind;
use crate::ring::Distribution;

/// The names `hash:` accepts, for the error message (the hash module only maps name → kind).
pub const HASH_NAMES: [&str; 12] = [
    "one_at_a_time",
    "md5",
    "crc16",
    "crc32",
    "crc32a",
    "fnv1_64",
    "fnv1a_64",
    "fnv1_32",
    "fnv1a_32",
    "hsieh",
    "murmur",
    "jenkins",
];

/// The names `distribution:` accepts.
pub const DISTRIBUTION_NAMES: [&str; 3] = ["ketama", "modula", "random"];

/// Largest `item_size_max`: memcached's own ceiling for `-I` (1 GiB).
pub const ITEM_SIZE_MAX_LIMIT: u32 = 1 << 30;
/// Smallest `client_output_limit`: a few ordinary replies must fit.
pub const MIN_CLIENT_OUTPUT_LIMIT: u64 = 64 << 10;

/// What the cross-pool checks need even when the pool itself is invalid.
pub struct Outcome {
    /// The parsed `listen:`, so that a clash is reported even if another setting is bad.
    pub listen: Option<ListenAddr>,
    /// The pool, when it has no problem of its own.
    pub config: Option<PoolConfig>,
}

/// Checks and converts the settings of pool `name`, pushing every problem onto `errors`.
pub fn build(name: &str, settings: &Value, errors: &mut Vec<ConfigError>) -> Outcome {
    let failed = Outcome {
        listen: None,
        config: None,
    };
    let map = match settings {
        Value::Mapping(map) => map,
        Value::Null => {
            errors.push(ConfigError::pool(
                name,
                "has no settings (a pool needs at least listen and servers)",
            ));
            return failed;
        }
        other => {
            let why = scalar::kind_problem(other).unwrap_or_else(|| {
                format!("\"{}\" is not a mapping of settings", scalar::render(other))
            });
            errors.push(ConfigError::pool(name, why));
            return failed;
        }
    };
    let before = errors.len();
    let mut builder = Builder::new(name);
    builder.apply_all(map, errors);
    let listen = builder.listen.clone();
    let config = builder.finish(errors);
    Outcome {
        listen,
        config: config.filter(|_| errors.len() == before),
    }
}

struct Builder<'a> {
    name: &'a str,
    /// Holds the settings that have defaults; `listen` and `servers` are placeholders here.
    pool: PoolConfig,
    listen: Option<ListenAddr>,
    servers: Option<Vec<server::ServerConfig>>,
    /// `Some(valid)` once `redis:` is seen; an invalid one suppresses the `redis_auth` check.
    redis_seen_valid: Option<bool>,
    redis_auth_seen: bool,
    /// `client_output_limit` was given (otherwise it follows `item_size_max`).
    client_output_limit_seen: bool,
}

impl<'a> Builder<'a> {
    fn new(name: &'a str) -> Self {
        let placeholder = ListenAddr::Tcp {
            host: String::new(),
            port: 0,
        };
        Builder {
            name,
            pool: PoolConfig::new(name, placeholder, Vec::new()),
            listen: None,
            servers: None,
            redis_seen_valid: None,
            redis_auth_seen: false,
            client_output_limit_seen: false,
        }
    }

    fn apply_all(&mut self, map: &Mapping, errors: &mut Vec<ConfigError>) {
        for (key, value) in map {
            let key = match key {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Bool(_) | Value::Number(_) => scalar::render(key),
                Value::Null | Value::String(_) => {
                    errors.push(ConfigError::pool(
                        self.name,
                        "has a setting with an empty key",
                    ));
                    continue;
                }
                _ => {
                    errors.push(ConfigError::pool(
                        self.name,
                        "has a setting whose key is not a plain string",
                    ));
                    continue;
                }
            };
            if let Err(Reasons(reasons)) = self.apply(&key, value) {
                errors.extend(
                    reasons
                        .into_iter()
                        .map(|r| ConfigError::key(self.name, &key, r)),
                );
            }
        }
    }

    /// Applies one setting; the errors are reasons, the caller adds pool and key.
    fn apply(&mut self, key: &str, value: &Value) -> Result<(), Reasons> {
        let p = &mut self.pool;
        match key {
            "listen" => self.listen = Some(text(value).and_then(|t| ListenAddr::parse(&t))?),
            "hash" => {
                p.hash =
                    text(value).and_then(|t| named(&t, "hash", &HASH_NAMES, HashKind::from_name))?
            }
            "hash_tag" => p.hash_tag = Some(hash_tag(value)?),
            "distribution" => {
                p.distribution = text(value).and_then(|t| {
                    named(
                        &t,
                        "distribution",
                        &DISTRIBUTION_NAMES,
                        Distribution::from_name,
                    )
                })?
            }
            // twemproxy: absent, or 0, means wait forever (`msg_tmo_insert` skips <= 0).
            "timeout" => p.timeout = Some(number(value)?).filter(|&ms| ms > 0).map(millis),
            "backlog" => p.backlog = number(value)?,
            "client_connections" => p.client_connections = number(value)?,
            "redis" => {
                let redis = boolean(value);
                self.redis_seen_valid = Some(redis.is_ok());
                p.redis = redis?;
            }
            "redis_auth" => {
                self.redis_auth_seen = true;
                p.redis_auth = Some(verbatim(value)?);
            }
            "redis_db" => p.redis_db = number(value)?,
            "preconnect" => p.preconnect = boolean(value)?,
            "auto_eject_hosts" => p.auto_eject_hosts = boolean(value)?,
            "server_connections" => match number(value)? {
                0 => return Err("cannot be 0".to_string().into()),
                n => p.server_connections = n,
            },
            "server_retry_timeout" => p.server_retry_timeout = millis(number(value)?),
            "server_failure_limit" => p.server_failure_limit = number(value)?,
            "tcpkeepalive" => p.tcpkeepalive = boolean(value)?,
            "reuseport" => p.reuseport = boolean(value)?,
            "servers" => self.servers = Some(server::parse_list(value).map_err(Reasons)?),
            "allow_flush_all" => p.allow_flush_all = boolean(value)?,
            "allow_scripts" => p.allow_scripts = boolean(value)?,
            "coalesce" => p.coalesce = boolean(value)?,
            "ttl_jitter" => match number(value)? {
                n @ 0..=100 => p.ttl_jitter = n as u8,
                n => {
                    return Err(
                        format!("{n} is out of range (expected a percentage, 0..=100)").into(),
                    )
                }
            },
            // 0 would time out every request the moment it arrives in two reads.
            "client_timeout" => match number(value)? {
                0 => return Err("cannot be 0".to_string().into()),
                ms => p.client_timeout = millis(ms),
            },
            "client_output_limit" => match scalar::size(value)? {
                n @ MIN_CLIENT_OUTPUT_LIMIT.. => {
                    p.client_output_limit = n;
                    self.client_output_limit_seen = true;
                }
                n => {
                    return Err(format!(
                        "{n} is too small (at least {MIN_CLIENT_OUTPUT_LIMIT} bytes)"
                    )
                    .into())
                }
            },
            "item_size_max" => match number(value)? {
                n @ 1..=ITEM_SIZE_MAX_LIMIT => p.item_size_max = n,
                n => {
                    return Err(
                        format!("{n} is out of range (expected 1..={ITEM_SIZE_MAX_LIMIT})").into(),
                    )
                }
            },
            _ => return Err(unknown(key).into()),
        }
        Ok(())
    }

    /// Checks what needs all settings, and fills in `listen` and `servers`.
    fn finish(mut self, errors: &mut Vec<ConfigError>) -> Option<PoolConfig> {
        let name = self.name;
        if self.redis_auth_seen && self.redis_seen_valid != Some(false) && !self.pool.redis {
            errors.push(ConfigError::key(
                name,
                "redis_auth",
                "is only valid for a redis pool (add redis: true)",
            ));
        }
        if self.listen.is_none() && !errors.iter().any(|e| is_about(e, name, "listen")) {
            errors.push(ConfigError::key(
                name,
                "listen",
                "is missing (e.g. listen: 127.0.0.1:22121)",
            ));
        }
        if self.servers.is_none() && !errors.iter().any(|e| is_about(e, name, "servers")) {
            errors.push(ConfigError::key(
                name,
                "servers",
                "is missing (a pool needs at least one server)",
            ));
        }
        let pool = &mut self.pool;
        if !self.client_output_limit_seen {
            // The default leaves room for two values of the largest size a pool stores.
            pool.client_output_limit = pool
                .client_output_limit
                .max(2 * u64::from(pool.item_size_max));
        }
        // A memcached client must be able to read one value of the largest size stored.
        if !pool.redis && pool.client_output_limit < u64::from(pool.item_size_max) + 1024 {
            errors.push(ConfigError::key(
                name,
                "client_output_limit",
                format!(
                    "{} is smaller than one value of item_size_max ({}) and its header",
                    pool.client_output_limit, pool.item_size_max
                ),
            ));
        }
        self.pool.listen = self.listen?;
        self.pool.servers = self.servers?;
        Some(self.pool)
    }
}

/// The reasons one setting is wrong: usually one, one per bad entry for `servers`.
struct Reasons(Vec<String>);

impl From<String> for Reasons {
    fn from(reason: String) -> Self {
        Reasons(vec![reason])
    }
}

/// True if `error` already complains about `key` of `pool` (so "missing" would be noise).
fn is_about(error: &ConfigError, pool: &str, key: &str) -> bool {
    error.pool.as_deref() == Some(pool) && error.key.as_deref() == Some(key)
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// Looks up a name (case-sensitive, as twemproxy) and lists the valid ones when it fails.
fn named<T>(
    text: &str,
    what: &str,
    names: &[&str],
    lookup: fn(&str) -> Option<T>,
) -> Result<T, String> {
    lookup(text).ok_or_else(|| {
        format!(
            "\"{text}\" is not a valid {what} (expected one of: {})",
            names.join(", ")
        )
    })
}

/// Exactly two bytes, the opening and closing tag characters (twemproxy compares bytes).
fn hash_tag(value: &Value) -> Result<[u8; 2], String> {
    let tag = text(value)?;
    match tag.as_bytes() {
        &[open, close] => Ok([open, close]),
        _ => Err(format!(
            "\"{tag}\" is not a valid hash tag (expected exactly two characters, e.g. \"{{}}\")"
        )),
    }
}

fn unknown(key: &str) -> String {
    match key {
        "sentinels" => "is not a known setting (Redis Sentinel is not supported)".to_string(),
        _ => "is not a known setting".to_string(),
    }
}
