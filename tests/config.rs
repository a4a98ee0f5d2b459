//! The configuration loader against the twemproxy conf-errors corpus and whole files.
//!
//! `tests/data/twemproxy/conf-errors/README.md` records, per file, what twemproxy 0.5.0 did
//! and what shardproxy must do. The README is read here too, so a file added to the corpus
//! without a verdict, or a verdict that changes, fails the test instead of going unchecked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shardproxy::config::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/twemproxy/conf-errors")
}

/// File name -> true if the README's shardproxy column says "accept".
fn readme_verdicts() -> BTreeMap<String, bool> {
    let readme = std::fs::read_to_string(corpus().join("README.md")).expect("README.md");
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let verdict = cells.get(cells.len().checked_sub(2)?)?;
            Some((file.to_string(), verdict.starts_with("accept")))
        })
        .collect()
}

fn load_ok(file: &str) -> Config {
    load(&corpus().join(file)).unwrap_or_else(|e| panic!("{file} rejected:\n{e}"))
}

/// For each file the README says to reject: the pool, the key and part of the reason.
const REJECTED: &[(&str, &str, &str, &str)] = &[
    (
        "authmc.yml",
        "p",
        "redis_auth",
        "is only valid for a redis pool",
    ),
    (
        "badhash.yml",
        "p",
        "hash",
        "\"sha1\" is not a valid hash (expected one of: one_at_a_time,",
    ),
    (
        "boolyes.yml",
        "p",
        "redis",
        "\"yes\" is not \"true\" or \"false\"",
    ),
    (
        "dupaddr.yml",
        "p",
        "servers",
        "has servers with same name '127.0.0.1:30001'",
    ),
    (
        "dupkey.yml",
        "p",
        "hash",
        "is given more than once (lines 3 and 4)",
    ),
    (
        "duplisten.yml",
        "q",
        "listen",
        "\"127.0.0.1:30160\" is already the listen address of pool 'p'",
    ),
    (
        "dupname.yml",
        "p",
        "servers",
        "has servers with same name 'a'",
    ),
    (
        "hashtag3.yml",
        "p",
        "hash_tag",
        "\"{}}\" is not a valid hash tag (expected exactly two",
    ),
    ("negtimeout.yml", "p", "timeout", "\"-1\" is not a number"),
    ("noservers.yml", "p", "servers", "is missing"),
    (
        "noweight.yml",
        "p",
        "servers",
        "\"127.0.0.1:30001\": has no port or no weight",
    ),
    ("sconn0.yml", "p", "server_connections", "cannot be 0"),
    ("sentinels.yml", "p", "sentinels", "is not a known setting"),
    ("unknown.yml", "p", "foo", "is not a known setting"),
    (
        "zeroweight.yml",
        "p",
        "servers",
        "\"127.0.0.1:30001:0\": has a zero weight",
    ),
];

#[test]
fn every_corpus_file_has_a_verdict_and_gets_it() {
    let verdicts = readme_verdicts();
    assert!(verdicts.len() >= 26, "README table not found: {verdicts:?}");
    let mut files: Vec<String> = std::fs::read_dir(corpus())
        .expect("corpus dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yml"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        verdicts.keys().cloned().collect::<Vec<_>>(),
        "README and files differ"
    );
    for (file, accept) in &verdicts {
        let result = load(&corpus().join(file));
        assert_eq!(result.is_ok(), *accept, "{file}: {result:?}");
        let in_table = REJECTED.iter().any(|(f, ..)| f == file);
        assert_eq!(in_table, !accept, "{file}: REJECTED table out of date");
    }
}

#[test]
fn rejected_files_name_pool_key_and_reason() {
    for &(file, pool, key, reason) in REJECTED {
        let ConfigErrors(errors) = load(&corpus().join(file)).expect_err(file);
        assert_eq!(
            errors.len(),
            1,
            "{file}: exactly one problem expected: {errors:#?}"
        );
        let e = &errors[0];
        assert_eq!(e.pool.as_deref(), Some(pool), "{file}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{file}: {e}");
        assert!(e.reason.contains(reason), "{file}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("pool '{pool}': key '{key}': ")),
            "{shown}"
        );
    }
}

#[test]
fn valid_yaml_twemproxy_refused_means_the_same_as_plain_ok() {
    let ok = load_ok("ok.yml");
    for file in ["docstart.yml", "flowseq.yml", "t1.yml"] {
        assert_eq!(load_ok(file), ok, "{file}");
    }
}

#[test]
fn accepted_files_parse_to_the_expected_values() {
    let p = &load_ok("ok.yml").pools[0];
    assert_eq!(p.name, "p");
    let listen = ListenAddr::Tcp {
        host: "127.0.0.1".into(),
        port: 30160,
    };
    assert_eq!(p.listen, listen);
    assert_eq!(p.servers[0].name, "127.0.0.1:30001");

    for file in ["ipv6.yml", "ipv6b.yml"] {
        let p = load_ok(file).pools.remove(0);
        assert_eq!(
            p.listen,
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 30160
            },
            "{file}"
        );
        assert_eq!(p.listen.to_string(), "[::1]:30160");
        let addr = ServerAddr::Tcp {
            host: "::1".into(),
            port: 30001,
        };
        assert_eq!(p.servers[0].addr, addr, "{file}");
        assert_eq!(p.servers[0].name, "::1:30001", "{file}");
    }

    let p = load_ok("unixlisten.yml").pools.remove(0);
    let path = PathBuf::from("/var/run/shardproxy-test.sock");
    assert_eq!(
        p.listen,
        ListenAddr::Unix {
            path,
            mode: Some(0o600)
        }
    );

    let server = load_ok("unixserver.yml").pools.remove(0).servers.remove(0);
    assert_eq!(server.addr, ServerAddr::Unix(PathBuf::from("/tmp/x.sock")));
    assert_eq!((server.name.as_str(), server.weight), ("name1", 1));

    let server = load_ok("hostname.yml").pools.remove(0).servers.remove(0);
    assert_eq!(
        server.addr,
        ServerAddr::Tcp {
            host: "localhost".into(),
            port: 30001
        }
    );

    assert!(load_ok("reuseport.yml").pools[0].reuseport);
    assert!(load_ok("tcpkeepalive.yml").pools[0].tcpkeepalive);
}

#[test]
fn defaults_when_keys_are_absent() {
    let p = &load_ok("ok.yml").pools[0];
    assert_eq!(p.hash, shardproxy::hash::HashKind::Fnv1a_64);
    assert_eq!(p.hash_tag, None);
    assert_eq!(p.distribution, shardproxy::ring::Distribution::Ketama);
    assert_eq!(p.timeout, None);
    assert_eq!((p.backlog, p.client_connections, p.redis_db), (512, 0, 0));
    assert!(!p.redis && p.redis_auth.is_none());
    assert!(!p.preconnect && !p.auto_eject_hosts && !p.tcpkeepalive && !p.reuseport);
    assert_eq!((p.server_connections, p.server_failure_limit), (1, 2));
    assert_eq!(p.server_retry_timeout, Duration::from_millis(30_000));
    assert!(p.allow_flush_all);
    assert_eq!(p.item_size_max, 1_048_576);
    assert_eq!(p.client_timeout, Duration::from_millis(30_000));
}

#[test]
fn servers_are_in_twemproxy_order_with_default_names() {
    let text = "p:\n  listen: 127.0.0.1:22121\n  servers:\n   - localhost:30001:1\n   \
                - 127.0.0.1:30002:3\n   - 127.0.0.1:11211:1\n   - /tmp/mc.sock:2\n   \
                - 10.0.0.9:30009:1 zz\n";
    let p = parse(text).expect("valid").pools.remove(0);
    let names: Vec<&str> = p.servers.iter().map(|s| s.name.as_str()).collect();
    // Shorter name first, then bytewise; 11211 is left out of the name, a unix server's
    // default name ends in ':' (twemproxy quirks, kept for identical placement).
    assert_eq!(
        names,
        [
            "zz",
            "127.0.0.1",
            "/tmp/mc.sock:",
            "127.0.0.1:30002",
            "localhost:30001"
        ]
    );
    assert_eq!(
        p.servers[1].addr,
        ServerAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 11211
        }
    );
    assert_eq!(p.servers[3].weight, 3);
}

#[test]
fn a_file_with_several_problems_reports_all_of_them() {
    let text = "alpha:\n  listen: 127.0.0.1:22121\n  hash: sha1\n  hash: md5\n  redis: yes\n  \
                server_connections: 0\n  servers:\n   - 127.0.0.1:30001\n   - 127.0.0.1:30002:0\n\
                beta:\n  listen: 127.0.0.1:22121\n  redis_auth: secret\n  timeout: -5\n  \
                sentinels: [127.0.0.1:26379:1]\n  servers: [a:1:1 x, b:2:1 x]\n\
                gamma:\n  distribution: vnode\n";
    let ConfigErrors(errors) = parse(text).expect_err("invalid");
    let mut found: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e.pool.clone().unwrap_or_default(),
                e.key.clone().unwrap_or_default(),
            )
        })
        .collect();
    found.sort();
    let expected = [
        ("alpha", "hash"),               // repeated
        ("alpha", "hash"),               // sha1
        ("alpha", "redis"),              // yes
        ("alpha", "server_connections"), // 0
        ("alpha", "servers"),            // no weight
        ("alpha", "servers"),            // zero weight
        ("beta", "listen"),              // same as alpha
        ("beta", "redis_auth"),          // not a redis pool
        ("beta", "sentinels"),           // unknown
        ("beta", "servers"),             // same name
        ("beta", "timeout"),             // negative
        ("gamma", "distribution"),       // vnode
        ("gamma", "listen"),             // missing
        ("gamma", "servers"),            // missing
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    assert_eq!(found, expected, "{}", ConfigErrors(errors.clone()));
    // Display: one problem per line, each naming pool and key.
    let shown = ConfigErrors(errors).to_string();
    assert_eq!(shown.lines().count(), expected.len());
    assert!(
        shown
            .lines()
            .all(|l| l.starts_with("pool '") && l.contains("key '")),
        "{shown}"
    );
}

#[test]
fn unreadable_file_is_a_config_error() {
    let ConfigErrors(errors) = load(Path::new("/nonexistent/nutcracker.yml")).expect_err("missing");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].pool.as_ref(), errors[0].key.as_ref()),
        (None, None)
    );
    assert!(
        errors[0].reason.contains("/nonexistent/nutcracker.yml"),
        "{}",
        errors[0]
    );
}

#[test]
fn twemproxys_example_and_the_demo_config_load_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = load(&root.join("config/nutcracker.yml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = example.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "beta", "gamma", "delta", "omega"],
        "file order"
    );
    let omega = &example.pools[4];
    assert_eq!(
        omega.listen,
        ListenAddr::Unix {
            path: "/tmp/gamma".into(),
            mode: None
        }
    );
    assert_eq!(omega.hash, shardproxy::hash::HashKind::Hsieh);
    assert_eq!(omega.servers[0].weight, 100_000);
    let beta = &example.pools[1];
    assert_eq!((beta.hash_tag, beta.redis), (Some(*b"{}"), true));
    assert_eq!(beta.timeout, Some(Duration::from_millis(400)));
    let demo = load(&root.join("config/demo.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(demo.pools.len(), 2);
}

/// config/shardproxy.yml documents the extension keys; it must load and mean what it says.
#[test]
fn shardproxys_own_example_loads_with_its_extension_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = load(&root.join("config/shardproxy.yml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sessions", "objects"]);
    let (sessions, objects) = (&config.pools[0], &config.pools[1]);
    assert!(!sessions.redis && !sessions.allow_flush_all && sessions.allow_scripts);
    assert_eq!(
        (sessions.ttl_jitter, sessions.client_timeout),
        (10, Duration::from_millis(10_000))
    );
    assert!(objects.redis && !objects.allow_scripts && objects.allow_flush_all);
    assert_eq!(objects.ttl_jitter, 5);
    assert_eq!(
        (sessions.client_output_limit, objects.client_output_limit),
        (32 << 20, 64 << 20)
    );
}
