//! Hot reload against real memcached servers: servers added and removed under traffic, only
//! the keys the ring says move do move, a bad file changes nothing, pools come and go.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{memcache_pool_yaml, Memcached, Proxy, RawClient};
use shardproxy::hash::HashKind;
use shardproxy::ring::{Distribution, KeyRouter, RingNode};

const NAMES: [&str; 5] = ["s0", "s1", "s2", "s3", "s4"];

fn yaml(port: u16, servers: &[Memcached], count: usize) -> String {
    let list: Vec<(u16, u32, Option<&str>)> = servers[..count]
        .iter()
        .zip(NAMES)
        .map(|(s, n)| (s.port, 1, Some(n)))
        .collect();
    memcache_pool_yaml("mc", port, &list, "hash: md5\ntimeout: 2000")
}

/// The ring's own prediction: the index (into NAMES) of the server owning `key` with the first
/// `count` servers.
fn owner(key: &str, count: usize) -> usize {
    let nodes = RingNode::equal(&NAMES[..count]);
    let router = KeyRouter::new(HashKind::Md5, None, Distribution::Ketama, &nodes);
    let idx = router.server_for(key.as_bytes()).unwrap();
    // KeyRouter indexes servers in twemproxy's sorted order; NAMES are already sorted.
    idx
}

fn reload(proxy: &Proxy, yaml: &str) {
    proxy.write_config(yaml);
    proxy.send_signal(libc::SIGHUP);
}

/// Waits until the proxy routes by the new table: a key that must move is found where the
/// new ring puts it.
fn wait_applied(port: u16, servers: &[Memcached], count: usize) {
    let probe = (0..1000)
        .map(|i| format!("probe{i}"))
        .find(|k| owner(k, count) != owner(k, count.max(2) - 1) || count == 1)
        .unwrap();
    let mut c = RawClient::connect_port(port);
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            c.expect(
                format!("set {probe} 0 0 1\r\nx\r\n").as_bytes(),
                b"STORED\r\n",
            );
            servers[owner(&probe, count)].get_direct(&probe).is_some()
        }),
        "reload not applied"
    );
}

#[test]
fn only_the_keys_the_ring_moves_move() {
    let servers: Vec<Memcached> = (0..5).map(|_| Memcached::start()).collect();
    let port = common::free_port();
    let proxy = Proxy::start(&yaml(port, &servers, 4));
    let keys: Vec<String> = (0..2000).map(|i| format!("user:{i}")).collect();
    let mut c = RawClient::connect_port(port);
    for k in &keys {
        c.send(format!("set {k} 0 0 1\r\nv\r\n").as_bytes());
    }
    for _ in &keys {
        assert_eq!(c.read_line(), b"STORED\r\n");
    }
    // Add a fifth server: exactly the keys whose owner changed are now misses.
    reload(&proxy, &yaml(port, &servers, 5));
    wait_applied(port, &servers, 5);
    let moved: Vec<&String> = keys.iter().filter(|k| owner(k, 4) != owner(k, 5)).collect();
    assert!(
        moved.iter().all(|k| owner(k, 5) == 4),
        "every moved key moves to the new server"
    );
    let fraction = moved.len() as f64 / keys.len() as f64;
    assert!(
        (0.12..0.30).contains(&fraction),
        "moved {fraction}, expected about 1/5"
    );
    for k in &keys {
        c.send(format!("get {k}\r\n").as_bytes());
        let reply = c.read_until(b"END\r\n");
        let hit = reply.starts_with(b"VALUE");
        assert_eq!(hit, owner(k, 4) == owner(k, 5), "{k}: hit {hit}");
    }
    // Remove it again: only its keys move back, everything else still hits.
    reload(&proxy, &yaml(port, &servers, 4));
    wait_applied(port, &servers, 4);
    for k in &keys {
        c.send(format!("get {k}\r\n").as_bytes());
        assert!(
            c.read_until(b"END\r\n").starts_with(b"VALUE"),
            "{k} lost after removing the added server"
        );
    }
}

#[test]
fn reload_under_traffic_fails_no_request() {
    let servers: Vec<Memcached> = (0..4).map(|_| Memcached::start()).collect();
    let port = common::free_port();
    let proxy = Proxy::start(&yaml(port, &servers, 3));
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = RawClient::connect_port(port);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (format!("t{t}:{}", i % 500), format!("v{t}-{i}"));
                    c.send(format!("set {k} 0 0 {}\r\n{v}\r\nget {k}\r\n", v.len()).as_bytes());
                    let stored = c.read_line();
                    let got = c.read_until(b"END\r\n");
                    let want = format!("VALUE {k} 0 {}\r\n{v}\r\nEND\r\n", v.len());
                    if stored != b"STORED\r\n" || (got != want.as_bytes() && got != b"END\r\n") {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{}: {}", common::show(&stored), common::show(&got));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for count in [4, 3, 4, 2, 3] {
        std::thread::sleep(Duration::from_millis(150));
        reload(&proxy, &yaml(port, &servers, count));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert!(
        done.load(Ordering::Relaxed) > 500,
        "too little traffic to mean anything"
    );
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "requests failed or got another request's value during reloads"
    );
}

#[test]
fn an_invalid_file_keeps_the_running_configuration() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let (port, mport) = (common::free_port(), common::free_port());
    let proxy = Proxy::start_with(
        &yaml(port, &servers, 2),
        &["--metrics-addr", &format!("127.0.0.1:{mport}")],
    );
    let mut c = RawClient::connect_port(port);
    c.expect(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n");
    reload(
        &proxy,
        "mc:\n  listen: 127.0.0.1:1\n  hash: sha1\n  servers: []\n",
    );
    assert!(common::wait_until(Duration::from_secs(5), || proxy
        .stderr_log()
        .contains("configuration reload rejected")));
    assert!(
        proxy.stderr_log().contains("hash"),
        "the log names the problem:\n{}",
        proxy.stderr_log()
    );
    c.expect(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n");
    RawClient::connect_port(port).expect(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n");
    let metrics = scrape(mport);
    assert!(
        metrics.contains("shardproxy_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("shardproxy_config_generation 1"));
    // `-t` checks a file without touching the running proxy.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .args(["-t", "-c"])
        .arg(proxy.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pools_are_added_and_removed_by_a_reload() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let (p1, p2) = (common::free_port(), common::free_port());
    let first = memcache_pool_yaml("one", p1, &[(servers[0].port, 1, None)], "");
    let second = memcache_pool_yaml("two", p2, &[(servers[1].port, 1, None)], "");
    let proxy = Proxy::start(&first);
    let mut old = RawClient::connect_port(p1);
    old.expect(b"set k 0 0 1\r\n1\r\n", b"STORED\r\n");
    // Add pool "two" (a new listener) by editing the file: the watcher picks it up.
    proxy.write_config(&format!("{first}{second}"));
    assert!(common::wait_until(Duration::from_secs(5), || {
        common::accepts(&format!("127.0.0.1:{p2}"))
    }));
    RawClient::connect_port(p2).expect(b"set k 0 0 1\r\n2\r\n", b"STORED\r\n");
    assert_eq!(servers[1].get_direct("k").unwrap(), b"2");
    // Remove pool "one": its listener closes and its idle client is drained and closed.
    reload(&proxy, &second);
    assert!(common::wait_until(Duration::from_secs(5), || {
        !common::accepts(&format!("127.0.0.1:{p1}"))
    }));
    assert!(old.is_closed());
    RawClient::connect_port(p2).expect(b"get k\r\n", b"VALUE k 0 1\r\n2\r\nEND\r\n");
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
