//! Backend failures on a memcached pool: a dead, frozen or restarted server affects only the
//! keys routed to it, with explicit errors, and multi-gets keep the other servers' hits.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Memcached};

/// Three servers, md5 so that test keys spread and every server holds some.
fn fixture(extra: &str) -> Cluster<Memcached> {
    Cluster::memcached(3, &format!("hash: md5\n{extra}"))
}

impl Cluster<Memcached> {
    /// Stores `n` keys through the proxy; returns, per key, the server that holds it.
    fn seed(&self, n: usize) -> Vec<(String, usize)> {
        let mut c = self.client();
        (0..n)
            .map(|i| {
                let key = format!("key:{i}");
                c.expect(
                    format!("set {key} 0 0 {}\r\n{key}\r\n", key.len()).as_bytes(),
                    b"STORED\r\n",
                );
                let holder = (0..3)
                    .find(|&s| self.servers[s].get_direct(&key).is_some())
                    .expect("stored");
                (key, holder)
            })
            .collect()
    }
}

fn hit(key: &str) -> Vec<u8> {
    format!("VALUE {key} 0 {}\r\n{key}\r\nEND\r\n", key.len()).into_bytes()
}

/// Once a frozen server resumes, asks for `key` until it is served (timeouts while the late
/// replies drain are expected), and checks that the reply is the key's own: a late reply to a
/// timed-out request must never be handed to a later one.
fn served_again(c: &mut common::RawClient, key: &str) {
    assert!(common::wait_until(Duration::from_secs(5), || {
        c.send(format!("get {key}\r\n").as_bytes());
        let line = c.read_line();
        if line.starts_with(b"SERVER_ERROR") {
            return false;
        }
        let mut reply = line;
        reply.extend(c.read_until(b"END\r\n"));
        assert_eq!(reply, hit(key));
        true
    }));
}

#[test]
fn a_dead_server_fails_only_its_own_keys() {
    let mut f = fixture("timeout: 1000");
    let keys = f.seed(60);
    f.servers[1].kill();
    let mut c = f.client();
    for (key, holder) in &keys {
        c.send(format!("get {key}\r\n").as_bytes());
        if *holder == 1 {
            let line = c.read_line();
            assert!(
                line.starts_with(b"SERVER_ERROR "),
                "{key}: {}",
                common::show(&line)
            );
        } else {
            assert_eq!(c.read_exact_bytes(hit(key).len()), hit(key), "{key}");
        }
    }
    // A multi-get across all servers returns the live servers' hits, in order, and treats
    // the dead server's keys as misses; the connection stays open.
    let all: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut want = Vec::new();
    for (key, holder) in &keys {
        if *holder != 1 {
            want.extend_from_slice(format!("VALUE {key} 0 {}\r\n{key}\r\n", key.len()).as_bytes());
        }
    }
    want.extend_from_slice(b"END\r\n");
    c.expect(format!("get {}\r\n", all.join(" ")).as_bytes(), &want);
    c.send(b"stats\r\n");
    let stats = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    let lost = keys.iter().filter(|(_, h)| *h == 1).count();
    assert!(
        stats.contains(&format!("STAT proxy_get_lost {lost}\r\n")),
        "{stats}"
    );
}

#[test]
fn a_frozen_server_times_out_its_keys_only_and_recovers() {
    let f = fixture("timeout: 300");
    let keys = f.seed(30);
    f.servers[0].pause();
    let mut c = f.client();
    for (key, holder) in &keys {
        let start = Instant::now();
        c.send(format!("get {key}\r\n").as_bytes());
        if *holder == 0 {
            assert_eq!(
                c.read_line(),
                b"SERVER_ERROR Connection timed out\r\n",
                "{key}"
            );
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
                "{waited:?}"
            );
        } else {
            assert_eq!(c.read_exact_bytes(hit(key).len()), hit(key), "{key}");
            assert!(start.elapsed() < Duration::from_millis(250));
        }
    }
    f.servers[0].resume();
    // Late replies to the timed-out requests are dropped, never handed to later requests.
    let (key, _) = keys.iter().find(|(_, h)| *h == 0).unwrap();
    served_again(&mut c, key);
    for (key, _) in &keys {
        c.expect(format!("get {key}\r\n").as_bytes(), &hit(key));
    }
}

/// A request sent to an idle, connected backend connection is written by the client's own
/// session, without waking the connection's task; the connection's deadline timer must still
/// cover it. Right after an answered request the timer is still armed (for that request's
/// deadline); after a pause longer than the timeout it has fired and is disarmed.
#[test]
fn a_request_written_straight_to_an_idle_connection_still_times_out() {
    let f = fixture("timeout: 300");
    let keys = f.seed(30);
    let (key, _) = keys.iter().find(|(_, h)| *h == 0).unwrap();
    let mut c = f.client();
    for round in 0..4 {
        c.expect(format!("get {key}\r\n").as_bytes(), &hit(key));
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(500));
        }
        f.servers[0].pause();
        let start = Instant::now();
        c.send(format!("get {key}\r\n").as_bytes());
        assert_eq!(c.read_line(), b"SERVER_ERROR Connection timed out\r\n");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        f.servers[0].resume();
        // The late reply is dropped; the connection serves the key again.
        served_again(&mut c, key);
    }
}

#[test]
fn a_restarted_server_is_reconnected() {
    let mut f = fixture("timeout: 1000");
    let keys = f.seed(30);
    let (key, holder) = keys.iter().find(|(_, h)| *h == 2).unwrap().clone();
    f.servers[holder].restart();
    let mut c = f.client();
    assert!(common::wait_until(Duration::from_secs(5), || {
        c.send(format!("set {key} 0 0 1\r\nz\r\n").as_bytes());
        c.read_line() == b"STORED\r\n"
    }));
    c.expect(
        format!("get {key}\r\n").as_bytes(),
        format!("VALUE {key} 0 1\r\nz\r\nEND\r\n").as_bytes(),
    );
}

/// A fake memcached that answers each `get <key>` line with `reply(key, n)` (n counts the
/// gets): a broken server, which a real memcached cannot be made into. Serves one connection
/// at a time until the test ends; returns its port and the count of connections it accepted.
fn broken_server(
    reply: fn(&str, usize) -> Vec<u8>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut out = conn.try_clone().unwrap();
            let mut lines = BufReader::new(conn);
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|r| r > 0) {
                let key = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if out.write_all(&reply(&key, n)).is_err() {
                    break;
                }
                n += 1;
                line.clear();
            }
        }
    });
    (port, accepted)
}

/// Issue 12, item 10: a reply that names another key, or repeats a `VALUE`, is a backend
/// protocol error for that request, never passed to the client, and the connection that
/// carried it is re-established (the replies behind it cannot be trusted).
#[test]
fn a_reply_for_keys_not_asked_for_is_a_protocol_error() {
    let (port, accepted) = broken_server(|key, n| match n % 3 {
        0 => b"VALUE other 0 1\r\nx\r\nEND\r\n".to_vec(),
        1 => {
            let mut r = format!("VALUE {key} 0 1\r\nx\r\n")
                .repeat(1000)
                .into_bytes();
            r.extend_from_slice(b"END\r\n");
            r
        }
        _ => format!("VALUE {key} 0 1\r\nx\r\nEND\r\n").into_bytes(),
    });
    for coalesce in ["true", "false"] {
        let listen = common::free_port();
        let yaml = common::memcache_pool_yaml(
            "broken",
            listen,
            &[(port, 1, None)],
            &format!("coalesce: {coalesce}"),
        );
        let _proxy = common::Proxy::start(&yaml);
        let mut c = common::RawClient::connect_port(listen);
        let error =
            b"SERVER_ERROR backend protocol error: VALUE for a key that was not asked for\r\n";
        // The fake counts gets across both proxies: find the phase by asking until the good
        // reply comes, then check the two bad ones that follow it.
        for _ in 0..3 {
            c.send(b"get k\r\n");
            if c.read_line() == b"VALUE k 0 1\r\n" {
                assert_eq!(c.read_line(), b"x\r\n");
                assert_eq!(c.read_line(), b"END\r\n");
                break;
            }
        }
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        c.expect(b"get k\r\n", error);
        c.expect(b"get k\r\n", error);
        c.expect(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n");
        let reconnects = accepted.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert_eq!(
            reconnects, 2,
            "one new connection after each reply out of step"
        );
    }
}
