//! Observability end to end: known traffic through real backends, then the exact counters
//! scraped from `/metrics` (checked by a real Prometheus parser too) and the nutcracker stats
//! JSON (checked by a JSON parser).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{memcache_pool_yaml, redis_pool_yaml, Memcached, Proxy, RawClient, Redis};

/// `GET path` over HTTP/1.1; returns (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// One expected sample: metric name, label pairs it must carry, value.
type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Asserts each row, naming the row that differs.
fn expect_samples(text: &str, rows: &[Row]) {
    for &(name, labels, want) in rows {
        assert_eq!(sample(text, name, labels), want, "{name} {labels:?}");
    }
}

/// The value of the sample `name` whose labels include every `labels` pair; it must exist.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    common::metric_value(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// A real Prometheus text-format parser must accept the whole exposition.
fn assert_parses(text: &str) {
    let mut child = Command::new("python3")
        .args(["-c", "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nn = sum(1 for _ in p(sys.stdin.read()))\nprint(n)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Prometheus's own linter, where installed (Debian package `prometheus`).
    if let Ok(mut lint) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        lint.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = lint.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool check metrics: {report}");
    }
}

#[test]
fn memcached_traffic_is_counted_exactly() {
    let mut servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let (port, mport, sport) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let list: Vec<(u16, u32, Option<&str>)> = servers
        .iter()
        .zip(["a", "b", "c"])
        .map(|(s, name)| (s.port, 1, Some(name)))
        .collect();
    let yaml = memcache_pool_yaml("mc", port, &list, "hash: md5\ntimeout: 200");
    let _proxy = Proxy::start_with(
        &yaml,
        &[
            "--metrics-addr",
            &format!("127.0.0.1:{mport}"),
            "--stats-port",
            &sport.to_string(),
            "-a",
            "127.0.0.1",
        ],
    );
    let mut c = RawClient::connect_port(port);
    // Keys on server a (index 0), b (1) and c (2), found by probing the backends directly.
    let key_on = |i: usize, c: &mut RawClient| -> String {
        (0..500)
            .map(|n| format!("k{i}-{n}"))
            .find(|k| {
                c.expect(format!("set {k} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n");
                let here = servers[i].get_direct(k).is_some();
                c.expect(format!("delete {k}\r\n").as_bytes(), b"DELETED\r\n");
                here
            })
            .unwrap()
    };
    let (ka, kb, kc) = (key_on(0, &mut c), key_on(1, &mut c), key_on(2, &mut c));
    let (_, before) = http_get(mport, "/metrics");
    let base = |name: &str, labels: &[(&str, &str)]| sample(&before, name, labels);
    let (sets0, gets0) = (
        base("shardproxy_requests_total", &[("command", "set")]),
        base("shardproxy_requests_total", &[("command", "get")]),
    );
    c.expect(
        format!("set {ka} 0 0 2\r\nhi\r\n").as_bytes(),
        b"STORED\r\n",
    );
    c.expect(
        format!("get {ka}\r\n").as_bytes(),
        format!("VALUE {ka} 0 2\r\nhi\r\nEND\r\n").as_bytes(),
    );
    c.expect(format!("get {kb}\r\n").as_bytes(), b"END\r\n");
    c.expect(
        format!("get {ka} {kb}\r\n").as_bytes(),
        format!("VALUE {ka} 0 2\r\nhi\r\nEND\r\n").as_bytes(),
    );
    c.expect(b"bogus\r\n", b"ERROR\r\n");
    servers[1].pause();
    c.expect(
        format!("get {kb}\r\n").as_bytes(),
        b"SERVER_ERROR Connection timed out\r\n",
    );
    servers[1].resume();
    servers[2].kill();
    c.send(format!("get {kc}\r\n").as_bytes());
    assert!(c
        .read_line()
        .starts_with(b"SERVER_ERROR Connection refused"));
    let (status, text) = http_get(mport, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_parses(&text);
    let m = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        m(
            "shardproxy_requests_total",
            &[("pool", "mc"), ("command", "set")]
        ) - sets0,
        1.0
    );
    assert_eq!(
        m(
            "shardproxy_requests_total",
            &[("pool", "mc"), ("command", "get")]
        ) - gets0,
        5.0
    );
    expect_samples(
        &text,
        &[
            ("shardproxy_hits_total", &[("pool", "mc")], 2.0),
            ("shardproxy_misses_total", &[("pool", "mc")], 2.0),
            (
                "shardproxy_errors_total",
                &[("pool", "mc"), ("kind", "client_protocol")],
                1.0,
            ),
            (
                "shardproxy_errors_total",
                &[("pool", "mc"), ("kind", "timeout")],
                1.0,
            ),
            (
                "shardproxy_errors_total",
                &[("pool", "mc"), ("kind", "connection")],
                1.0,
            ),
            (
                "shardproxy_errors_total",
                &[("pool", "mc"), ("kind", "ejected")],
                0.0,
            ),
            (
                "shardproxy_server_timeouts_total",
                &[("pool", "mc"), ("server", "b")],
                1.0,
            ),
            (
                "shardproxy_server_timeouts_total",
                &[("pool", "mc"), ("server", "a")],
                0.0,
            ),
        ],
    );
    assert!(
        m(
            "shardproxy_server_connect_failures_total",
            &[("server", "c")]
        ) >= 1.0
    );
    assert_eq!(m("shardproxy_client_connections", &[("pool", "mc")]), 1.0);
    assert!(
        m(
            "shardproxy_server_request_duration_seconds_count",
            &[("server", "a")]
        ) >= 3.0
    );
    assert!(m("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m("process_open_fds", &[]) >= 5.0);
    assert_eq!(m("shardproxy_config_generation", &[]), 1.0);
    assert_eq!(
        m(
            "shardproxy_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        http_get(mport, "/health"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert!(http_get(mport, "/nope").0.contains("404"));
    // No metric ever carries a key.
    assert!(!text.contains(&ka) && !text.contains(&kb));

    // nutcracker's stats port: one JSON document with nutcracker's field names.
    let mut s = TcpStream::connect(("127.0.0.1", sport)).unwrap();
    let mut json = String::new();
    s.read_to_string(&mut json).unwrap();
    let check = "import json,sys\nd=json.load(sys.stdin)\np=d['mc']\nassert d['total_connections']>=1 and 'curr_connections' in d and 'uptime' in d\nfor k in ['client_eof','client_err','client_connections','server_ejects','forward_error','fragments']: assert k in p, k\nfor k in ['server_eof','server_err','server_timedout','server_connections','server_ejected_at','requests','request_bytes','responses','response_bytes','in_queue','out_queue']: assert k in p['b'], k\nassert p['b']['server_timedout']==1, p['b']\nprint('ok')";
    let mut child = Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{json}");
}

#[test]
fn redis_hits_and_misses_come_from_replies() {
    let servers: Vec<Redis> = (0..2).map(|_| Redis::start()).collect();
    let (port, mport) = (common::free_port(), common::free_port());
    let list: Vec<(u16, u32, Option<&str>)> = servers.iter().map(|s| (s.port, 1, None)).collect();
    let _proxy = Proxy::start_with(
        &redis_pool_yaml("r", port, &list, "hash: md5"),
        &["--metrics-addr", &format!("127.0.0.1:{mport}")],
    );
    let mut c = RawClient::connect_port(port);
    c.expect(&common::resp_cmd(&[b"SET", b"a", b"1"]), b"+OK\r\n");
    c.expect(&common::resp_cmd(&[b"GET", b"a"]), b"$1\r\n1\r\n");
    c.expect(&common::resp_cmd(&[b"GET", b"b"]), b"$-1\r\n");
    c.send(&common::resp_cmd(&[b"MGET", b"a", b"b", b"c", b"a"]));
    c.read_resp();
    c.expect(
        &common::resp_cmd(&[b"LPUSH", b"a", b"x"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    let (_, text) = http_get(mport, "/metrics");
    assert_parses(&text);
    expect_samples(
        &text,
        &[
            ("shardproxy_hits_total", &[("pool", "r")], 3.0),
            ("shardproxy_misses_total", &[("pool", "r")], 3.0),
            (
                "shardproxy_errors_total",
                &[("pool", "r"), ("kind", "backend_error")],
                1.0,
            ),
            (
                "shardproxy_requests_total",
                &[("pool", "r"), ("command", "string")],
                4.0,
            ),
            (
                "shardproxy_requests_total",
                &[("pool", "r"), ("command", "list")],
                1.0,
            ),
            (
                "shardproxy_responses_total",
                &[("pool", "r"), ("command", "string")],
                4.0,
            ),
        ],
    );
}
