//! The top level of the file: the map of pool names, and the checks across pools.
//!
//! twemproxy stops at the first bad pool; here every pool is checked, and the cross-pool
//! rules (unique names, unique listen addresses) are checked too, so one run of
//! `shardproxy -t` lists everything that needs fixing.

use serde_yaml::Value;

use super::error::ConfigError;
use super::listen::ListenAddr;
use super::pool;
use super::scalar;
use super::PoolConfig;

/// Validates the parsed YAML tree, returning the valid pools in file order. Problems are
/// pushed onto `errors`; the pools are only meaningful if `errors` stays empty.
pub fn pools(root: &Value, errors: &mut Vec<ConfigError>) -> Vec<PoolConfig> {
    let map = match root {
        Value::Mapping(map) => map,
        Value::Null => {
            errors.push(ConfigError::file("the configuration defines no pools"));
            return Vec::new();
        }
        other => {
            errors.push(ConfigError::file(format!(
                "expected a mapping from pool names to pool settings at the top level, found \"{}\"",
                scalar::render(other)
            )));
            return Vec::new();
        }
    };
    if map.is_empty() {
        errors.push(ConfigError::file("the configuration defines no pools"));
    }
    let mut pools = Vec::with_capacity(map.len());
    let mut seen_names: Vec<String> = Vec::with_capacity(map.len());
    let mut listens: Vec<(String, ListenAddr)> = Vec::with_capacity(map.len());
    for (key, settings) in map {
        let Some(name) = pool_name(key, errors) else {
            continue;
        };
        // yaml_serde already refused repeated keys, but `1:` and `"1":` are different YAML
        // keys with the same name.
        if seen_names.contains(&name) {
            errors.push(ConfigError::pool(&name, "is defined more than once"));
        }
        let outcome = pool::build(&name, settings, errors);
        if let Some(listen) = outcome.listen {
            if let Some((other, _)) = listens.iter().find(|(_, l)| l.clashes_with(&listen)) {
                errors.push(ConfigError::key(
                    &name,
                    "listen",
                    format!("\"{listen}\" is already the listen address of pool '{other}'"),
                ));
            }
            listens.push((name.clone(), listen));
        }
        pools.extend(outcome.config);
        seen_names.push(name);
    }
    pools
}

/// A pool name is any non-empty scalar, as in twemproxy (a number is used as written).
fn pool_name(key: &Value, errors: &mut Vec<ConfigError>) -> Option<String> {
    let name = match key {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => scalar::render(key),
        Value::Null => String::new(),
        _ => {
            errors.push(ConfigError::file(format!(
                "a pool name must be a plain string, found \"{}\"",
                scalar::render(key)
            )));
            return None;
        }
    };
    if name.is_empty() {
        errors.push(ConfigError::file("a pool has an empty name"));
        return None;
    }
    Some(name)
}
