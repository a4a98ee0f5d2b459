//! Real clients, at the versions users install today, through a pool of three servers: each
//! runs a workload of its own (strings, hashes, lists, pipelines, multi-key commands across
//! servers, scripts and locks, expiry; for memcached cas, incr, touch, multi-get, flush_all)
//! with its default settings, and must finish with every answer right.
//!
//! The clients live in environments `scripts/clients-setup` makes under `target/clients/`
//! (`scripts/test` runs it first); versions are pinned in `tests/clients/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Cluster, Memcached};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients")
}

/// Whether the matrix is installed. `scripts/test` (and so CI) always installs it, and there a
/// missing matrix fails; a plain `cargo test` without it skips these tests, saying so.
fn installed() -> bool {
    let dir = clients_dir();
    let present = dir.join("current/bin/python").exists()
        && dir.join("redis4/bin/python").exists()
        && dir.join("node/node_modules").exists();
    if !present {
        assert!(
            std::env::var("CI").is_err() && std::env::var("SHARDPROXY_CLIENTS").is_err(),
            "the client matrix is not installed: run scripts/clients-setup"
        );
        eprintln!("skipped: the client matrix is not installed (run scripts/clients-setup)");
    }
    present
}

fn workload(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(file)
}

/// Runs `program args`, and returns the checks it counted; panics with its output unless it
/// exited 0 with a last line `ok N`.
fn run(what: &str, program: &Path, args: &[&str]) -> u32 {
    let out = Command::new(program)
        .args(args)
        .env("NODE_PATH", clients_dir().join("node/node_modules"))
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let checks = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("ok "))
        .and_then(|n| n.parse().ok());
    match (out.status.success(), checks) {
        (true, Some(n)) => {
            eprintln!("{what}: {n} checks\n{stdout}");
            n
        }
        _ => panic!(
            "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        ),
    }
}

fn redis_py(venv: &str, port: u16, protocol: &str) -> u32 {
    let python = clients_dir().join(venv).join("bin/python");
    let script = workload("python/redis_workload.py");
    let port = port.to_string();
    let what = format!("redis-py ({venv}, protocol {protocol})");
    run(
        &what,
        &python,
        &[script.to_str().unwrap(), &port, "--protocol", protocol],
    )
}

#[test]
fn redis_py_current_and_4x_run_their_workload() {
    if !installed() {
        return;
    }
    let pool = Cluster::redis(3, "hash: md5");
    // redis-py 8 by default asks for RESP3 and falls back to RESP2 when refused.
    assert!(redis_py("current", pool.port, "default") > 30);
    assert!(redis_py("current", pool.port, "2") > 30);
    assert!(redis_py("redis4", pool.port, "default") > 30);
    // The workload's keys really spread over the pool.
    for s in &pool.servers {
        assert!(s.info_field("db0").is_some(), "a server holds no key");
    }
}

#[test]
fn ioredis_runs_its_workload() {
    if !installed() {
        return;
    }
    let pool = Cluster::redis(3, "hash: md5");
    let node = common::find_program("node");
    let script = workload("node/redis_workload.js");
    assert!(
        run(
            "ioredis",
            &node,
            &[script.to_str().unwrap(), &pool.port.to_string()]
        ) > 20
    );
}

#[test]
fn pymemcache_and_python_memcached_run_their_workload() {
    if !installed() {
        return;
    }
    let pool: Cluster<Memcached> = Cluster::memcached(3, "hash: md5\nitem_size_max: 1048576");
    let python = clients_dir().join("current/bin/python");
    let script = workload("python/memcache_workload.py");
    let port = pool.port.to_string();
    for client in ["pymemcache", "python-memcached"] {
        let n = run(client, &python, &[script.to_str().unwrap(), &port, client]);
        assert!(n > 10, "{client}: {n} checks");
    }
}
