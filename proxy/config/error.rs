//! Error types of the configuration loader.
//!
//! Validation never stops at the first problem: an operator fixing a config file by hand wants
//! the whole list in one go, so every check pushes a [`ConfigError`] and the caller gets them
//! all in one [`ConfigErrors`].

use std::fmt;

/// One problem in the configuration, located as precisely as the input allows.
///
/// `pool` and `key` are separate fields (rather than only a formatted message) so that tests
/// and tooling can match on *where* the problem is without parsing English.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The pool (top-level key) the problem is in; `None` for file-level problems.
    pub pool: Option<String>,
    /// The setting within the pool, e.g. `hash` or `servers`; `None` for pool-level problems.
    pub key: Option<String>,
    /// What is wrong, quoting the offending value.
    pub reason: String,
}

impl ConfigError {
    /// A problem with the file as a whole (unreadable, not YAML, no pools).
    pub fn file(reason: impl Into<String>) -> Self {
        ConfigError {
            pool: None,
            key: None,
            reason: reason.into(),
        }
    }

    /// A problem with a pool that no single key is to blame for.
    pub fn pool(pool: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            pool: Some(pool.to_string()),
            key: None,
            reason: reason.into(),
        }
    }

    /// A problem with one setting of one pool.
    pub fn key(pool: &str, key: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            pool: Some(pool.to_string()),
            key: Some(key.to_string()),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pool) = &self.pool {
            write!(f, "pool '{pool}': ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key '{key}': ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in the order they were found (file order).
#[derive(Debug, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Renders one error per line, so a log shows each problem on its own line.
struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_pool_key_and_reason() {
        let e = ConfigError::key("p", "hash", "\"sha1\" is not a valid hash");
        assert_eq!(
            e.to_string(),
            "pool 'p': key 'hash': \"sha1\" is not a valid hash"
        );
        assert_eq!(
            ConfigError::pool("p", "is defined more than once").to_string(),
            "pool 'p': is defined more than once"
        );
        assert_eq!(ConfigError::file("no pools").to_string(), "no pools");
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::key("p", "a", "x"),
            ConfigError::key("q", "b", "y"),
        ]);
        assert_eq!(
            errors.to_string(),
            "pool 'p': key 'a': x\npool 'q': key 'b': y"
        );
    }
}
