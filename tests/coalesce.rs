//! Stampede protection end to end: a relay holds a real backend's replies so that many
//! identical reads are in flight at once; the backend's own counters show how many reached it.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    memcache_pool_yaml, redis_pool_yaml, resp_cmd, Memcached, Proxy, RawClient, Redis, Relay,
};

/// One memcached behind a relay that delays its replies, behind the proxy.
fn memcache_setup(delay_ms: u64, extra: &str) -> (Memcached, Relay, Proxy, u16) {
    let m = Memcached::start();
    let relay = Relay::start(m.port, Duration::from_millis(delay_ms));
    let port = common::free_port();
    let proxy = Proxy::start(&memcache_pool_yaml(
        "mc",
        port,
        &[(relay.port, 1, Some("m"))],
        extra,
    ));
    (m, relay, proxy, port)
}

/// `clients` threads send the same request at the same moment; returns each reply.
fn storm(port: u16, clients: usize, request: &'static [u8], reply_len: usize) -> Vec<Vec<u8>> {
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut c = RawClient::connect_port(port);
                barrier.wait();
                c.send(request);
                c.read_exact_bytes(reply_len)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Reads `request` once on each worker (the proxy runs two and hands out connections in turn),
/// so that its keys count as read recently everywhere: only then is the first read of a key
/// joinable (see proxy/coalesce/recent.rs).
fn warm(port: u16, request: &[u8], reply: &[u8]) {
    let mut clients = [RawClient::connect_port(port), RawClient::connect_port(port)];
    for c in &mut clients {
        c.send(request);
    }
    for c in &mut clients {
        assert_eq!(c.read_exact_bytes(reply.len()), reply);
    }
}

#[test]
fn a_hot_key_storm_reaches_memcached_a_handful_of_times() {
    let (m, _relay, _proxy, port) = memcache_setup(50, "timeout: 2000");
    m.set_direct("hot", b"value");
    let want = b"VALUE hot 0 5\r\nvalue\r\nEND\r\n";
    // A hot key is one read recently (a cold key's storm is only_a_key_read_recently_...).
    warm(port, b"get hot\r\n", want);
    for wave in 0..3 {
        let before = m.stat("cmd_get");
        let replies = storm(port, 100, b"get hot\r\n", want.len());
        assert!(
            replies.iter().all(|r| r == want),
            "wave {wave}: a client got another reply"
        );
        let reads = m.stat("cmd_get") - before;
        // One flight per worker (2) per wave, plus stragglers that arrive after a flight ended.
        assert!(
            reads <= 8,
            "wave {wave}: {reads} backend reads for 100 client reads"
        );
    }
}

/// Six reads of one key in flight at once, three per worker; returns the backend reads.
fn six_reads_in_flight(m: &Memcached, port: u16, want: &[u8]) -> u64 {
    let before = m.stat("cmd_get");
    let mut clients: Vec<RawClient> = (0..6).map(|_| RawClient::connect_port(port)).collect();
    for c in &mut clients {
        c.send(b"get k\r\n");
        // Each worker sees its three reads in this order.
        thread::sleep(Duration::from_millis(15));
    }
    for c in &mut clients {
        assert_eq!(c.read_until(b"END\r\n"), want);
    }
    m.stat("cmd_get") - before
}

#[test]
fn only_a_key_read_recently_has_its_first_read_joined() {
    let (m, _relay, _proxy, port) = memcache_setup(300, "timeout: 3000");
    m.set_direct("k", b"v");
    let want = b"VALUE k 0 1\r\nv\r\nEND\r\n";
    // Cold: on each worker the first read is sent alone, the second leads, the third joins.
    assert_eq!(six_reads_in_flight(&m, port, want), 4);
    // Now read recently on both workers: the first read leads, the other two join.
    assert_eq!(six_reads_in_flight(&m, port, want), 2);
}

#[test]
fn without_coalescing_every_read_reaches_the_backend() {
    let (m, _relay, _proxy, port) = memcache_setup(20, "coalesce: false\ntimeout: 5000");
    m.set_direct("hot", b"v");
    let before = m.stat("cmd_get");
    let replies = storm(
        port,
        30,
        b"get hot\r\n",
        b"VALUE hot 0 1\r\nv\r\nEND\r\n".len(),
    );
    assert_eq!(replies.len(), 30);
    assert_eq!(m.stat("cmd_get") - before, 30);
}

#[test]
fn multi_get_keys_join_and_lead_flights() {
    let (m, _relay, _proxy, port) = memcache_setup(100, "timeout: 2000");
    for k in ["a", "b", "c"] {
        m.set_direct(k, k.as_bytes());
    }
    let all = b"VALUE a 0 1\r\na\r\nVALUE b 0 1\r\nb\r\nVALUE c 0 1\r\nc\r\nEND\r\n";
    warm(port, b"get a b c\r\n", all);
    // A multi-get leads flights for a, b and c; single gets of b arriving meanwhile join.
    let mut multi = RawClient::connect_port(port);
    multi.send(b"get a b c\r\n");
    thread::sleep(Duration::from_millis(20));
    let before = m.stat("cmd_get");
    let joined = storm(port, 10, b"get b\r\n", b"VALUE b 0 1\r\nb\r\nEND\r\n".len());
    assert!(joined.iter().all(|r| r == b"VALUE b 0 1\r\nb\r\nEND\r\n"));
    assert_eq!(multi.read_until(b"END\r\n"), all);
    let sent = m.stat("cmd_get") - before;
    assert!(sent <= 1, "the joined reads were sent again: {sent}");
}

#[test]
fn a_read_after_a_write_never_joins_an_older_flight() {
    let (m, _relay, _proxy, port) = memcache_setup(150, "timeout: 3000");
    m.set_direct("k", b"old");
    warm(port, b"get k\r\n", b"VALUE k 0 3\r\nold\r\nEND\r\n");
    // a and c share a worker (connections are handed out in turn).
    let mut a = RawClient::connect_port(port);
    let mut b = RawClient::connect_port(port);
    let mut c = RawClient::connect_port(port);
    a.send(b"get k\r\n"); // starts a flight; its reply is held ~150 ms
    thread::sleep(Duration::from_millis(20));
    b.send(b"set k 0 0 3\r\nnew\r\n"); // forwarded while the flight is in flight
    thread::sleep(Duration::from_millis(20));
    c.send(b"get k\r\n"); // arrives after the write: must not take the old flight's reply
    assert_eq!(a.read_until(b"END\r\n"), b"VALUE k 0 3\r\nold\r\nEND\r\n");
    assert_eq!(b.read_line(), b"STORED\r\n");
    assert_eq!(c.read_until(b"END\r\n"), b"VALUE k 0 3\r\nnew\r\nEND\r\n");
}

#[test]
fn a_leader_that_disconnects_strands_nobody() {
    // Replies held 300 ms: every read below is in flight before the leader's reply returns.
    let (m, _relay, _proxy, port) = memcache_setup(300, "timeout: 3000");
    m.set_direct("k", b"v");
    let want = b"VALUE k 0 1\r\nv\r\nEND\r\n";
    warm(port, b"get k\r\n", want);
    let before = m.stat("cmd_get");
    let mut leader = RawClient::connect_port(port);
    leader.send(b"get k\r\n");
    thread::sleep(Duration::from_millis(10));
    // Connections are handed to the two workers in turn: one follower shares the leader's
    // worker and joins its read, the other leads its own.
    let mut followers = [RawClient::connect_port(port), RawClient::connect_port(port)];
    for f in &mut followers {
        f.send(b"get k\r\n");
    }
    thread::sleep(Duration::from_millis(10));
    drop(leader);
    for f in &mut followers {
        assert_eq!(f.read_until(b"END\r\n"), want);
    }
    let reads = m.stat("cmd_get") - before;
    assert_eq!(
        reads, 2,
        "3 reads, one joined: the leader's and the other worker's"
    );
}

#[test]
fn a_timeout_reaches_every_waiter_within_the_pool_timeout() {
    let (m, _relay, _proxy, port) = memcache_setup(600, "timeout: 200");
    m.set_direct("k", b"v");
    let start = Instant::now();
    let replies = storm(
        port,
        20,
        b"get k\r\n",
        b"SERVER_ERROR Connection timed out\r\n".len(),
    );
    assert!(replies
        .iter()
        .all(|r| r == b"SERVER_ERROR Connection timed out\r\n"));
    assert!(
        start.elapsed() < Duration::from_millis(550),
        "waited {:?}",
        start.elapsed()
    );
}

#[test]
fn redis_get_storms_are_coalesced_too() {
    let r = Redis::start();
    assert_eq!(r.cmd(&["SET", "hot", "value"]), b"+OK\r\n");
    let relay = Relay::start(r.port, Duration::from_millis(50));
    let port = common::free_port();
    let _proxy = Proxy::start(&redis_pool_yaml(
        "r",
        port,
        &[(relay.port, 1, None)],
        "timeout: 2000",
    ));
    let calls = || {
        let info = String::from_utf8(r.cmd(&["INFO", "commandstats"])).unwrap();
        info.lines()
            .find_map(|l| {
                l.strip_prefix("cmdstat_get:calls=")?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    static REQUEST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let request: &'static [u8] = REQUEST.get_or_init(|| resp_cmd(&[b"GET", b"hot"]));
    warm(port, request, b"$5\r\nvalue\r\n");
    let before = calls();
    let replies = storm(port, 100, request, b"$5\r\nvalue\r\n".len());
    assert!(replies.iter().all(|r| r == b"$5\r\nvalue\r\n"));
    assert!(
        calls() - before <= 8,
        "{} backend GETs for 100 client GETs",
        calls() - before
    );
}

#[test]
fn ttl_jitter_spreads_expiry_times() {
    let m = Memcached::start();
    let port = common::free_port();
    let _proxy = Proxy::start(&memcache_pool_yaml(
        "mc",
        port,
        &[(m.port, 1, None)],
        "ttl_jitter: 50",
    ));
    let mut c = RawClient::connect_port(port);
    let mut ttls = Vec::new();
    for i in 0..40 {
        c.expect(
            format!("set j{i} 0 1000 1\r\nx\r\n").as_bytes(),
            b"STORED\r\n",
        );
        // memcached's meta get reports the remaining TTL.
        let reply = String::from_utf8(m.raw(format!("mg j{i} t\r\n").as_bytes(), b"\r\n")).unwrap();
        let ttl: i64 = reply.trim().rsplit('t').next().unwrap().parse().unwrap();
        ttls.push(ttl);
    }
    assert!(ttls.iter().all(|t| (495..=1000).contains(t)), "{ttls:?}");
    let distinct: std::collections::HashSet<_> = ttls.iter().collect();
    assert!(
        distinct.len() > 10,
        "expiry times were not spread: {ttls:?}"
    );
    // Absolute times and "never" are untouched.
    c.expect(b"set never 0 0 1\r\nx\r\n", b"STORED\r\n");
    assert_eq!(m.raw(b"mg never t\r\n", b"\r\n"), b"HD t-1\r\n");
}
