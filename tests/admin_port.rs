//! One admin port per instance (issue 13): `/metrics` is served on the stats port by default,
//! beside nutcracker's stats JSON, so that two proxies on one host need nothing but their own
//! `-s` to start side by side.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, memcache_pool_yaml, wait_until, Memcached, TempDir};

/// The whole answer of the stats port to a client that sends `request` (maybe nothing).
fn ask(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the stats port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to the end");
    String::from_utf8_lossy(&out).into_owned()
}

/// A proxy started with its default `--metrics-addr` (the harness's `Proxy` turns metrics off
/// unless told otherwise, so this one is started by hand).
struct Instance {
    child: Child,
    _dir: TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(backend: &Memcached, stats: u16) -> (Instance, u16) {
    let dir = TempDir::new("admin-port");
    let listen = free_port();
    let config = dir.join("p.yml");
    std::fs::write(
        &config,
        memcache_pool_yaml("p", listen, &[(backend.port, 1, None)], ""),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .arg("-c")
        .arg(&config)
        .args([
            "-s",
            &stats.to_string(),
            "-a",
            "127.0.0.1",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardproxy");
    assert!(
        wait_until(Duration::from_secs(10), || common::tcp_listening(listen)
            && common::tcp_listening(stats)),
        "proxy did not listen"
    );
    (Instance { child, _dir: dir }, listen)
}

#[test]
fn metrics_and_stats_json_share_the_stats_port() {
    let backend = Memcached::start();
    let stats = free_port();
    let (_proxy, listen) = start(&backend, stats);
    let mut c = common::RawClient::connect_port(listen);
    c.expect(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    // nutcracker's clients send nothing and read the JSON.
    let json = ask(stats, b"");
    assert!(json.starts_with("{\"service\":\"shardproxy\""), "{json}");
    assert!(json.contains("\"p\": {"), "{json}");
    // An HTTP GET gets HTTP.
    let metrics = ask(stats, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(
        metrics.contains("shardproxy_requests_total{command=\"set\",pool=\"p\"} 1"),
        "{metrics}"
    );
    let health = ask(stats, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("ok\n"),
        "{health}"
    );
    // `GET /` gets the JSON over HTTP (curl host:22222).
    let root = ask(stats, b"GET / HTTP/1.0\r\n\r\n");
    assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
    assert!(
        root.contains("\r\n\r\n{\"service\":\"shardproxy\""),
        "{root}"
    );
    // Anything else still gets the JSON.
    assert!(ask(stats, b"stats\r\n").starts_with("{\"service\""));
}

#[test]
fn two_instances_start_side_by_side_with_their_own_stats_ports() {
    let backend = Memcached::start();
    let (first, second) = (free_port(), free_port());
    let (_a, _) = start(&backend, first);
    let (_b, _) = start(&backend, second);
    for port in [first, second] {
        let metrics = ask(port, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    }
}
