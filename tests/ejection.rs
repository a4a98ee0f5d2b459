//! Ejection, probes and graceful shutdown against real memcached servers: a dead or frozen
//! server's keys move (with `auto_eject_hosts`) or fail fast and stay put (without), a
//! restarted server comes back only after it answers a probe, and SIGTERM loses no reply.

mod common;

use std::time::{Duration, Instant};

use common::{memcache_pool_yaml, Memcached, Proxy, RawClient};

struct Fixture {
    servers: Vec<Memcached>,
    proxy: Proxy,
    port: u16,
}

fn fixture(extra: &str) -> Fixture {
    let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let port = common::free_port();
    let list: Vec<(u16, u32, Option<&str>)> = servers
        .iter()
        .zip(["a", "b", "c"])
        .map(|(s, n)| (s.port, 1, Some(n)))
        .collect();
    let proxy = Proxy::start(&memcache_pool_yaml(
        "mc",
        port,
        &list,
        &format!("hash: md5\n{extra}"),
    ));
    Fixture {
        servers,
        proxy,
        port,
    }
}

impl Fixture {
    /// A key the full ring places on server `i`.
    fn key_on(&self, i: usize) -> String {
        let mut c = RawClient::connect_port(self.port);
        (0..500)
            .map(|n| format!("key{n}"))
            .find(|k| {
                c.expect(format!("set {k} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n");
                self.servers[i].get_direct(k).is_some()
            })
            .unwrap()
    }
}

/// `set` then `get` of `key`: the first reply line of each.
fn set_get(c: &mut RawClient, key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    c.send(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
    let stored = c.read_line();
    c.send(format!("get {key}\r\n").as_bytes());
    let first = c.read_line();
    if first.starts_with(b"VALUE") {
        c.read_until(b"END\r\n");
    }
    (stored, first)
}

#[test]
fn a_dead_server_is_ejected_and_probed_back_in() {
    let mut f = fixture(
        "auto_eject_hosts: true\nserver_failure_limit: 2\nserver_retry_timeout: 300\ntimeout: 500",
    );
    let key = f.key_on(1);
    f.servers[1].kill();
    let mut c = RawClient::connect_port(f.port);
    // Failures until the limit, then the key moves to a live server and works.
    let mut failures = 0;
    assert!(common::wait_until(Duration::from_secs(5), || {
        let (stored, got) = set_get(&mut c, &key, "moved");
        if stored == b"STORED\r\n" {
            return true;
        }
        assert!(
            stored.starts_with(b"SERVER_ERROR"),
            "{}",
            common::show(&stored)
        );
        failures += 1 + got.starts_with(b"SERVER_ERROR") as usize;
        false
    }));
    // twemproxy's rule: ejected once `server_failure_limit` requests have failed.
    assert_eq!(failures, 2, "failed requests before ejection");
    assert!(f.servers[0].get_direct(&key).is_some() || f.servers[2].get_direct(&key).is_some());
    // Probes keep failing while it is down: the key keeps working elsewhere.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(set_get(&mut c, &key, "still").0, b"STORED\r\n");
    // Restarted, it answers a probe and its keys route back to it.
    f.servers[1].restart();
    assert!(common::wait_until(Duration::from_secs(10), || {
        assert_eq!(set_get(&mut c, &key, "home").0, b"STORED\r\n");
        f.servers[1].get_direct(&key).as_deref() == Some(&b"home"[..])
    }));
    assert!(f.proxy.stderr_log().contains("server ejected"));
    assert!(f.proxy.stderr_log().contains("back in the ring"));
}

#[test]
fn a_frozen_server_times_out_then_is_ejected() {
    let f = fixture("auto_eject_hosts: true\nserver_failure_limit: 1\nserver_retry_timeout: 60000\ntimeout: 200");
    let (frozen, healthy) = (f.key_on(0), f.key_on(2));
    f.servers[0].pause();
    let mut c = RawClient::connect_port(f.port);
    c.send(format!("get {frozen}\r\n").as_bytes());
    assert_eq!(c.read_line(), b"SERVER_ERROR Connection timed out\r\n");
    // Ejected: its keys now go to the others, and the healthy server never noticed.
    assert_eq!(set_get(&mut c, &frozen, "elsewhere").0, b"STORED\r\n");
    assert_eq!(
        set_get(&mut c, &healthy, "ok").1,
        format!("VALUE {healthy} 0 2\r\n").into_bytes()
    );
    f.servers[0].resume();
}

#[test]
fn without_auto_eject_a_dead_server_fails_fast_and_its_keys_never_move() {
    let mut f = fixture("auto_eject_hosts: false\ntimeout: 2000");
    let key = f.key_on(1);
    f.servers[1].kill();
    let mut c = RawClient::connect_port(f.port);
    for _ in 0..20 {
        let start = Instant::now();
        let (stored, _) = set_get(&mut c, &key, "x");
        assert!(
            stored.starts_with(b"SERVER_ERROR Connection refused"),
            "{}",
            common::show(&stored)
        );
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "not fast: {:?}",
            start.elapsed()
        );
    }
    assert!(f.servers[0].get_direct(&key).is_none() && f.servers[2].get_direct(&key).is_none());
    f.servers[1].restart();
    assert!(common::wait_until(Duration::from_secs(5), || set_get(
        &mut c, &key, "back"
    )
    .0
        == b"STORED\r\n"));
    assert_eq!(f.servers[1].get_direct(&key).unwrap(), b"back");
}

#[test]
fn sigterm_answers_every_accepted_request_then_exits_0() {
    let mut f = fixture("timeout: 5000");
    let key = f.key_on(0);
    let mut clients: Vec<RawClient> = (0..5).map(|_| RawClient::connect_port(f.port)).collect();
    // Requests held at a frozen backend are in flight when SIGTERM arrives.
    f.servers[0].pause();
    for c in clients.iter_mut() {
        c.send(format!("get {key}\r\nget {key}\r\n").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(200));
    f.proxy.send_signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    // No new clients once draining.
    assert!(common::wait_until(Duration::from_secs(2), || {
        !common::accepts(&format!("127.0.0.1:{}", f.port))
    }));
    f.servers[0].resume();
    for c in clients.iter_mut() {
        let reply = format!("VALUE {key} 0 1\r\nx\r\nEND\r\n").into_bytes();
        for _ in 0..2 {
            assert_eq!(c.read_exact_bytes(reply.len()), reply);
        }
        assert!(c.is_closed());
    }
    let status = f
        .proxy
        .wait_exit(Duration::from_secs(5))
        .expect("proxy exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_redis_server_is_probed_with_auth_and_ping_before_it_returns() {
    use common::{redis_pool_yaml, resp_cmd, Redis};
    let mut servers: Vec<Redis> = (0..2)
        .map(|_| Redis::start_with(&["--requirepass", "pw"]))
        .collect();
    let port = common::free_port();
    let list: Vec<(u16, u32, Option<&str>)> = servers
        .iter()
        .zip(["a", "b"])
        .map(|(s, n)| (s.port, 1, Some(n)))
        .collect();
    let extra = "hash: md5\nredis_auth: pw\nauto_eject_hosts: true\nserver_failure_limit: 1\nserver_retry_timeout: 200\ntimeout: 500";
    let proxy = Proxy::start(&redis_pool_yaml("r", port, &list, extra));
    let mut c = RawClient::connect_port(port);
    c.send(&resp_cmd(&[b"AUTH", b"pw"]));
    assert_eq!(c.read_resp(), b"+OK\r\n");
    let set = |c: &mut RawClient, k: &str| {
        c.send(&resp_cmd(&[b"SET", k.as_bytes(), b"v"]));
        c.read_resp()
    };
    let key = (0..200).map(|i| format!("k{i}")).find(|k| {
        assert_eq!(set(&mut c, k), b"+OK\r\n");
        servers[1].get_direct(k).is_some()
    });
    let key = key.unwrap();
    servers[1].kill();
    assert!(set(&mut c, &key).starts_with(b"-ERR "));
    assert_eq!(
        set(&mut c, &key),
        b"+OK\r\n",
        "ejected after one failure, the key moved"
    );
    servers[1].restart();
    assert!(common::wait_until(Duration::from_secs(10), || {
        assert_eq!(set(&mut c, &key), b"+OK\r\n");
        servers[1].get_direct(&key).is_some()
    }));
    assert!(proxy.stderr_log().contains("back in the ring"));
}
