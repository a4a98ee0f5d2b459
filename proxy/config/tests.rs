//! Whole-file tests of [`super::parse`]: one per rule, plus defaults and error collection.

use std::time::Duration;

use super::*;

const SERVERS: &str = "  servers:\n   - 127.0.0.1:30001:1\n";

/// A one-pool file with `extra` settings added before `servers:`.
fn pool_with(extra: &str) -> String {
    format!("p:\n  listen: 127.0.0.1:30160\n{extra}{SERVERS}")
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("rejected:\n{e}\n--- input ---\n{text}"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("accepted: {config:?}\n--- input ---\n{text}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// Asserts exactly one error, about `key` of pool `p`, whose reason contains `reason`.
fn rejects(extra: &str, key: &str, reason: &str) {
    let errors = errors(&pool_with(extra));
    assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
    let e = &errors[0];
    assert_eq!(
        (e.pool.as_deref(), e.key.as_deref()),
        (Some("p"), Some(key)),
        "{e}"
    );
    assert!(e.reason.contains(reason), "{extra}: {e}");
}

#[test]
fn defaults_when_keys_are_absent() {
    let config = ok(&pool_with(""));
    let p = &config.pools[0];
    let servers = vec![ServerConfig::parse("127.0.0.1:30001:1").unwrap()];
    let listen = ListenAddr::parse("127.0.0.1:30160").unwrap();
    assert_eq!(*p, PoolConfig::new("p", listen, servers));
    assert_eq!(p.hash, crate::hash::HashKind::Fnv1a_64);
    assert_eq!(p.distribution, crate::ring::Distribution::Ketama);
    assert_eq!((p.timeout, p.backlog, p.server_connections), (None, 512, 1));
    assert_eq!(p.server_retry_timeout, Duration::from_millis(30_000));
    assert_eq!((p.server_failure_limit, p.item_size_max), (2, 1_048_576));
    assert!(p.allow_flush_all && !p.redis && !p.preconnect && !p.auto_eject_hosts);
    assert!(p.allow_scripts);
    assert_eq!(p.client_timeout, Duration::from_millis(30_000));
    assert!(p.coalesce);
    assert_eq!(p.ttl_jitter, 0);
}

#[test]
fn every_setting_is_read() {
    let extra = "  hash: md5\n  hash_tag: \"{}\"\n  distribution: modula\n  timeout: 400\n  \
                 backlog: 1024\n  client_connections: 10\n  redis: true\n  redis_auth: pw\n  \
                 redis_db: 3\n  preconnect: true\n  auto_eject_hosts: true\n  \
                 server_connections: 4\n  server_retry_timeout: 2000\n  \
                 server_failure_limit: 5\n  tcpkeepalive: true\n  reuseport: true\n  \
                 allow_flush_all: false\n  allow_scripts: false\n  item_size_max: 2048\n  \
                 client_timeout: 300\n";
    let p = ok(&pool_with(extra)).pools.remove(0);
    assert_eq!(p.hash, crate::hash::HashKind::Md5);
    assert_eq!(p.hash_tag, Some(*b"{}"));
    assert_eq!(p.distribution, crate::ring::Distribution::Modula);
    assert_eq!(p.timeout, Some(Duration::from_millis(400)));
    assert_eq!((p.backlog, p.client_connections, p.redis_db), (1024, 10, 3));
    assert_eq!(p.redis_auth.as_deref(), Some("pw"));
    assert!(p.redis && p.preconnect && p.auto_eject_hosts && p.tcpkeepalive && p.reuseport);
    assert_eq!((p.server_connections, p.server_failure_limit), (4, 5));
    assert_eq!(p.server_retry_timeout, Duration::from_millis(2000));
    assert!(!p.allow_flush_all && !p.allow_scripts);
    assert_eq!(p.item_size_max, 2048);
    assert_eq!(p.client_timeout, Duration::from_millis(300));
}

#[test]
fn timeout_zero_means_forever() {
    assert_eq!(ok(&pool_with("  timeout: 0\n")).pools[0].timeout, None);
    rejects("  timeout: -1\n", "timeout", "\"-1\" is not a number");
}

#[test]
fn value_rules() {
    rejects(
        "  hash: sha1\n",
        "hash",
        "\"sha1\" is not a valid hash (expected one of: one_at_a_time, md5",
    );
    rejects("  hash: MD5\n", "hash", "not a valid hash");
    rejects(
        "  distribution: vnode\n",
        "distribution",
        "expected one of: ketama, modula, random",
    );
    rejects(
        "  hash_tag: \"{}}\"\n",
        "hash_tag",
        "exactly two characters",
    );
    rejects("  hash_tag: \"{\"\n", "hash_tag", "exactly two characters");
    rejects(
        "  redis: yes\n",
        "redis",
        "\"yes\" is not \"true\" or \"false\"",
    );
    rejects(
        "  preconnect: 1\n",
        "preconnect",
        "is not \"true\" or \"false\"",
    );
    rejects("  backlog: 1.5\n", "backlog", "is not a number");
    rejects(
        "  server_connections: 0\n",
        "server_connections",
        "cannot be 0",
    );
    rejects("  item_size_max: 0\n", "item_size_max", "out of range");
    rejects("  client_timeout: 0\n", "client_timeout", "cannot be 0");
    rejects("  ttl_jitter: 101\n", "ttl_jitter", "out of range");
    rejects("  coalesce: yes\n", "coalesce", "is not");
    rejects(
        "  item_size_max: 1073741825\n",
        "item_size_max",
        "out of range",
    );
    rejects("  redis_db: 4294967296\n", "redis_db", "too large");
    rejects("  hash:\n", "hash", "empty value");
    rejects("  hash: ''\n", "hash", "empty value");
    rejects("  hash: [md5]\n", "hash", "found a sequence");
    rejects("  foo: 1\n", "foo", "is not a known setting");
    rejects(
        "  sentinels:\n   - 127.0.0.1:30002:1\n",
        "sentinels",
        "not a known setting",
    );
}

#[test]
fn allow_scripts_is_exactly_true_or_false() {
    let redis = |value: &str| pool_with(&format!("  redis: true\n  allow_scripts: {value}\n"));
    assert!(ok(&redis("true")).pools[0].allow_scripts);
    assert!(!ok(&redis("false")).pools[0].allow_scripts);
    assert!(!ok(&redis("\"false\"")).pools[0].allow_scripts);
    for bad in ["no", "0", "off", "1.5", "disabled"] {
        rejects(
            &format!("  redis: true\n  allow_scripts: {bad}\n"),
            "allow_scripts",
            &format!("\"{bad}\" is not \"true\" or \"false\""),
        );
    }
    rejects("  allow_scripts:\n", "allow_scripts", "has an empty value");
}

#[test]
fn item_size_max_bounds_are_inclusive() {
    assert_eq!(
        ok(&pool_with("  item_size_max: 1\n")).pools[0].item_size_max,
        1
    );
    let max = ok(&pool_with("  item_size_max: 1073741824\n")).pools[0].item_size_max;
    assert_eq!(max, 1 << 30);
}

#[test]
fn client_output_limit_defaults_and_bounds() {
    let pool = |extra: &str| ok(&pool_with(extra)).pools[0].client_output_limit;
    assert_eq!(pool(""), 32 << 20);
    assert_eq!(pool("  client_output_limit: 64mb\n"), 64 << 20);
    assert_eq!(pool("  client_output_limit: 2mb\n"), 2 << 20);
    // Unset, it leaves room for two of the largest values.
    assert_eq!(pool("  item_size_max: 67108864\n"), 128 << 20);
    rejects(
        "  client_output_limit: 1kb\n",
        "client_output_limit",
        "too small",
    );
    rejects(
        "  client_output_limit: 1mb\n  item_size_max: 2000000\n",
        "client_output_limit",
        "smaller than one value",
    );
    rejects(
        "  client_output_limit: lots\n",
        "client_output_limit",
        "not a size",
    );
}

#[test]
fn redis_auth_needs_redis_whatever_the_order() {
    rejects(
        "  redis_auth: x\n",
        "redis_auth",
        "only valid for a redis pool",
    );
    rejects(
        "  redis: false\n  redis_auth: x\n",
        "redis_auth",
        "only valid for a redis pool",
    );
    ok(&pool_with("  redis_auth: x\n  redis: true\n"));
    // An invalid `redis:` is one problem, not two.
    rejects(
        "  redis: yes\n  redis_auth: x\n",
        "redis",
        "not \"true\" or \"false\"",
    );
}

#[test]
fn listen_and_servers_are_required() {
    let missing = errors("p:\n  hash: md5\n");
    let keys: Vec<_> = missing.iter().map(|e| e.key.as_deref()).collect();
    assert_eq!(keys, [Some("listen"), Some("servers")]);
    assert!(missing[1].reason.contains("is missing"));
    let empty = errors("p:\n  listen: 127.0.0.1:1\n  servers: []\n");
    assert_eq!(empty.len(), 1);
    assert!(empty[0].reason.contains("lists no servers"));
    let bad = errors("p:\n  listen: nowhere\n  servers: []\n");
    assert_eq!(
        bad.len(),
        2,
        "a bad value is not also reported as missing: {bad:?}"
    );
}

#[test]
fn duplicate_keys_are_reported_with_lines() {
    rejects(
        "  hash: md5\n  hash: md5\n",
        "hash",
        "is given more than once (lines 3 and 4)",
    );
}

#[test]
fn pools_with_same_name_or_listen() {
    let text = format!(
        "p:\n  listen: 127.0.0.1:1\n{SERVERS}1:\n  listen: '[::1]:2'\n{SERVERS}\
                        '1':\n  listen: ::1:2\n{SERVERS}"
    );
    let errors = errors(&text);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "pool '1': is defined more than once",
            "pool '1': key 'listen': \"[::1]:2\" is already the listen address of pool '1'",
        ]
    );
}

#[test]
fn file_level_problems() {
    for text in ["", "# nothing\n", "{}", "---\n"] {
        let errors = errors(text);
        assert_eq!(
            errors[0].reason, "the configuration defines no pools",
            "{text:?}"
        );
    }
    assert!(errors("- a\n")[0].reason.contains("at the top level"));
    assert!(errors("a: [1\n")[0].reason.starts_with("invalid YAML"));
    assert!(errors("a: 1\n---\nb: 2\n")[0]
        .reason
        .starts_with("invalid YAML"));
    let e = &errors("p:\n")[0];
    assert_eq!((e.pool.as_deref(), e.key.as_deref()), (Some("p"), None));
    assert!(errors("p: 5\n")[0]
        .reason
        .contains("is not a mapping of settings"));
    assert!(errors("~:\n  listen: a:1\n")[0]
        .reason
        .contains("empty name"));
    assert!(errors("p:\n  !foo x: 1\n")
        .iter()
        .any(|e| e.pool.as_deref() == Some("p")));
}

#[test]
fn problems_in_every_pool_are_all_reported() {
    let text = "a:\n  listen: 127.0.0.1:1\n  hash: sha1\n  redis: yes\n  servers:\n   - x:1:0\n   \
                - y:1\nb:\n  listen: 127.0.0.1:1\n  timeout: -1\n  timeout: 5\n  servers: [z:1:1]\n";
    let errors = errors(text);
    let mut found: Vec<_> = errors
        .iter()
        .map(|e| (e.pool.as_deref(), e.key.as_deref()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (Some("a"), Some("hash")),
            (Some("a"), Some("redis")),
            (Some("a"), Some("servers")),
            (Some("a"), Some("servers")),
            (Some("b"), Some("listen")),
            (Some("b"), Some("timeout")),
            (Some("b"), Some("timeout")),
        ],
        "{errors:#?}"
    );
}

#[test]
fn hash_names_match_the_hash_module() {
    for name in HASH_NAMES {
        assert!(crate::hash::HashKind::from_name(name).is_some(), "{name}");
    }
    for name in DISTRIBUTION_NAMES {
        assert!(
            crate::ring::Distribution::from_name(name).is_some(),
            "{name}"
        );
    }
}

#[test]
fn odd_inputs_do_not_panic() {
    let inputs = [
        "\u{feff}p: 1",
        "p:\n  listen: \"\\u0000:1\"\n",
        "? [a, b]\n: 1\n",
        "p: &a\n  x: *a\n",
        "p:\n  servers:\n  - {a: 1, a: 2}\n",
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - \" :1:1\"\n   - \"/:1\"\n   - \"[]:1:1\"\n",
        "&a [*a]",
        "p:\n  1: 1\n  1: 2\n  true: 1\n  true: 1\n",
        ":\n",
        "p:\n  timeout: 99999999999999999999999\n",
    ];
    for text in inputs {
        let _ = parse(text);
    }
}
