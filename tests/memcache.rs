//! memcached pools end to end: real memcached servers behind the proxy, asserted with raw
//! bytes, with an independent client (memcache-async), and by asking each server directly
//! which keys it holds.

mod common;

use std::collections::HashMap;

use common::{memcache_pool_yaml, Cluster, Memcached, Proxy, RawClient};

/// Three servers, md5 so that test keys spread (twemproxy's default fnv1a_64 puts sequential
/// keys on one server; the placement tests cover it).
fn pool(extra: &str) -> Cluster<Memcached> {
    Cluster::memcached(3, &format!("hash: md5\n{extra}"))
}

impl Cluster<Memcached> {
    /// Index of the one server holding `key` (panics if none or several do).
    fn holder(&self, key: &str) -> usize {
        let found: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].get_direct(key).is_some())
            .collect();
        assert_eq!(found.len(), 1, "{key} held by {found:?}");
        found[0]
    }

    /// A key stored on server `i`, found by storing candidates through the proxy.
    fn key_on(&self, i: usize, prefix: &str) -> String {
        let mut c = self.client();
        (0..200)
            .map(|n| format!("{prefix}{n}"))
            .find(|k| {
                c.expect(format!("set {k} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n");
                let on = self.holder(k) == i;
                c.expect(format!("delete {k}\r\n").as_bytes(), b"DELETED\r\n");
                on
            })
            .expect("some key maps to every server")
    }
}

/// Loads a twemproxy golden placement file: key -> server name.
fn placement(name: &str) -> Vec<(String, String)> {
    let path = format!("{}/tests/data/twemproxy/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .skip(1)
        .map(|l| {
            let (k, s) = l.split_once(',').expect("key,server");
            (k.to_string(), s.to_string())
        })
        .collect()
}

/// Keys go to exactly the servers twemproxy 0.5.0 chose, stored through the proxy and found
/// on the backends themselves.
fn check_placement(csv: &str, servers_yaml: &[(u32, &str)], hash: &str) {
    let servers: Vec<Memcached> = servers_yaml.iter().map(|_| Memcached::start()).collect();
    let port = common::free_port();
    let list: Vec<(u16, u32, Option<&str>)> = servers
        .iter()
        .zip(servers_yaml)
        .map(|(s, (w, name))| (s.port, *w, Some(*name)))
        .collect();
    let _proxy = Proxy::start(&memcache_pool_yaml(
        "p",
        port,
        &list,
        &format!("hash: {hash}\ndistribution: ketama"),
    ));
    let by_name: HashMap<&str, &Memcached> =
        servers_yaml.iter().map(|(_, n)| *n).zip(&servers).collect();
    let expected = placement(csv);
    let mut c = RawClient::connect_port(port);
    for (key, _) in &expected {
        c.send(format!("set {key} 0 0 {}\r\n{key}\r\n", key.len()).as_bytes());
    }
    for _ in &expected {
        assert_eq!(c.read_line(), b"STORED\r\n");
    }
    for (key, server) in &expected {
        for (name, backend) in &by_name {
            let held = backend.get_direct(key).is_some();
            assert_eq!(
                held,
                name == server,
                "{key}: expected on {server}, found on {name}: {held}"
            );
        }
    }
}

#[test]
fn placement_matches_twemproxy_fnv1a_64() {
    // The golden run named servers by address; naming them the same way here gives the
    // same ring whatever ports this run's servers got.
    check_placement(
        "placement_ketama_fnv1a64.csv",
        &[
            (1, "127.0.0.1:30001"),
            (1, "127.0.0.1:30002"),
            (1, "127.0.0.1:30003"),
        ],
        "fnv1a_64",
    );
}

#[test]
fn placement_matches_twemproxy_md5_named_weighted() {
    check_placement(
        "placement_ketama_md5_named_weighted.csv",
        &[(1, "alpha"), (2, "beta"), (3, "gamma")],
        "md5",
    );
}

#[test]
fn every_command_round_trips() {
    let p = pool("");
    let mut c = p.client();
    c.expect(b"set k 5 0 5\r\nhello\r\n", b"STORED\r\n");
    c.expect(b"get k\r\n", b"VALUE k 5 5\r\nhello\r\nEND\r\n");
    c.expect(b"add k 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    c.expect(b"replace k 0 0 2\r\nhi\r\n", b"STORED\r\n");
    c.expect(b"append k 0 0 2\r\n!!\r\n", b"STORED\r\n");
    c.expect(b"prepend k 0 0 2\r\n<<\r\n", b"STORED\r\n");
    c.expect(b"get k\r\n", b"VALUE k 0 6\r\n<<hi!!\r\nEND\r\n");
    c.send(b"gets k\r\n");
    let line = String::from_utf8(c.read_line()).unwrap();
    let cas: u64 = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(line.starts_with("VALUE k 0 6 "), "{line}");
    assert_eq!(c.read_until(b"END\r\n"), b"<<hi!!\r\nEND\r\n");
    c.expect(
        format!("cas k 0 0 1 {}\r\nA\r\n", cas + 1000).as_bytes(),
        b"EXISTS\r\n",
    );
    c.expect(
        format!("cas k 0 0 1 {cas}\r\nA\r\n").as_bytes(),
        b"STORED\r\n",
    );
    c.expect(b"cas nokey 0 0 1 1\r\nA\r\n", b"NOT_FOUND\r\n");
    c.expect(b"set n 0 0 2\r\n10\r\n", b"STORED\r\n");
    c.expect(b"incr n 5\r\n", b"15\r\n");
    c.expect(b"decr n 20\r\n", b"0\r\n");
    c.expect(
        b"incr k 1\r\n",
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
    c.expect(b"incr nokey 1\r\n", b"NOT_FOUND\r\n");
    c.expect(b"touch n 100\r\n", b"TOUCHED\r\n");
    c.expect(b"touch nokey 100\r\n", b"NOT_FOUND\r\n");
    // memcached pads a decremented number that got shorter with spaces.
    c.expect(b"gat 100 n\r\n", b"VALUE n 0 2\r\n0 \r\nEND\r\n");
    c.send(b"gats 100 n\r\n");
    assert!(c.read_until(b"END\r\n").starts_with(b"VALUE n 0 2 "));
    c.expect(b"delete n\r\n", b"DELETED\r\n");
    c.expect(b"delete n\r\n", b"NOT_FOUND\r\n");
    c.expect(b"get n\r\n", b"END\r\n");
    c.expect(b"verbosity 1\r\n", b"OK\r\n");
    c.send(b"version\r\n");
    assert!(c.read_line().starts_with(b"VERSION 1."));
    c.send(b"stats\r\n");
    let stats = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    assert!(
        stats.contains("STAT cmd_get ") && stats.contains("STAT curr_connections 1\r\n"),
        "{stats}"
    );
    c.send(b"quit\r\n");
    assert!(c.is_closed());
}

#[test]
fn noreply_is_silent_and_still_applied() {
    let p = pool("");
    let mut c = p.client();
    c.send(b"set a 0 0 1 noreply\r\n1\r\nincr a 4 noreply\r\nadd a 0 0 1 noreply\r\nx\r\ntouch a 10 noreply\r\n");
    c.expect(b"get a\r\n", b"VALUE a 0 1\r\n5\r\nEND\r\n");
    c.send(b"delete a noreply\r\n");
    c.expect(b"get a\r\n", b"END\r\n");
}

#[test]
fn multi_get_splits_per_server_and_merges_in_request_order() {
    let p = pool("");
    let keys: Vec<String> = (0..3).map(|i| p.key_on(i, &format!("s{i}-"))).collect();
    let mut c = p.client();
    for (i, k) in keys.iter().enumerate() {
        c.expect(
            format!("set {k} {i} 0 1\r\n{i}\r\n").as_bytes(),
            b"STORED\r\n",
        );
    }
    // A miss before a hit on the same server: twemproxy reorders this; we must not.
    let miss_on_2 = p.key_on(2, "miss-");
    let req = format!(
        "get {} {} {miss_on_2} {} {}\r\n",
        keys[2], keys[0], keys[1], keys[2]
    );
    let want = format!(
        "VALUE {k2} 2 1\r\n2\r\nVALUE {k0} 0 1\r\n0\r\nVALUE {k1} 1 1\r\n1\r\nVALUE {k2} 2 1\r\n2\r\nEND\r\n",
        k0 = keys[0],
        k1 = keys[1],
        k2 = keys[2]
    );
    c.expect(req.as_bytes(), want.as_bytes());
    // One round trip per server: 3 backend gets for one client multi-get.
    let before: u64 = p.servers.iter().map(|s| s.stat("cmd_get")).sum();
    let all = format!(
        "VALUE {k0} 0 1\r\n0\r\nVALUE {k1} 1 1\r\n1\r\nVALUE {k2} 2 1\r\n2\r\nEND\r\n",
        k0 = keys[0],
        k1 = keys[1],
        k2 = keys[2]
    );
    c.expect(
        format!("get {} {} {}\r\n", keys[0], keys[1], keys[2]).as_bytes(),
        all.as_bytes(),
    );
    let after: u64 = p.servers.iter().map(|s| s.stat("cmd_get")).sum();
    assert_eq!(after - before, 3);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let p = pool("");
    let mut c = p.client();
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(
            format!(
                "set key{i} 0 0 {}\r\nvalue{i}\r\n",
                format!("value{i}").len()
            )
            .as_bytes(),
        );
        want.extend_from_slice(b"STORED\r\n");
    }
    for i in 0..500 {
        batch.extend_from_slice(format!("get key{i}\r\n").as_bytes());
        want.extend_from_slice(
            format!(
                "VALUE key{i} 0 {}\r\nvalue{i}\r\nEND\r\n",
                format!("value{i}").len()
            )
            .as_bytes(),
        );
    }
    c.expect(&batch, &want);
}

#[test]
fn large_binary_values_pass_unchanged() {
    let p = pool("");
    let mut c = p.client();
    // memcached -I 1m stores values up to 1 MiB less its item header.
    let value: Vec<u8> = (0..1024 * 1024 - 512)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    c.expect(&req, b"STORED\r\n");
    let mut want = format!("VALUE big 0 {}\r\n", value.len()).into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\nEND\r\n");
    c.expect(b"get big\r\n", &want);
    assert_eq!(p.servers[p.holder("big")].get_direct("big").unwrap(), value);
}

#[test]
fn flush_all_reaches_every_server_unless_disabled() {
    let p = pool("");
    let keys: Vec<String> = (0..3).map(|i| p.key_on(i, "f")).collect();
    let mut c = p.client();
    for k in &keys {
        c.expect(format!("set {k} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n");
    }
    c.expect(b"flush_all\r\n", b"OK\r\n");
    for (i, k) in keys.iter().enumerate() {
        c.expect(format!("get {k}\r\n").as_bytes(), b"END\r\n");
        assert_eq!(p.servers[i].get_direct(k), None);
    }
    assert!(p.servers.iter().all(|s| s.stat("cmd_flush") == 1));
    let locked = pool("allow_flush_all: false");
    let mut c = locked.client();
    c.expect(b"set f 0 0 1\r\nx\r\n", b"STORED\r\n");
    c.expect(
        b"flush_all\r\n",
        b"SERVER_ERROR flush_all is disabled for this pool\r\n",
    );
    c.expect(b"get f\r\n", b"VALUE f 0 1\r\nx\r\nEND\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_client_library_works() {
    let p = tokio::task::spawn_blocking(|| pool("")).await.unwrap();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    let mut client = memcache_async::ascii::Protocol::new(stream);
    client.add("lib:a", b"alpha", 0).await.unwrap();
    for i in 0..50 {
        client
            .add(&format!("lib:{i}"), format!("v{i}").as_bytes(), 0)
            .await
            .unwrap();
    }
    assert_eq!(client.get("lib:a").await.unwrap(), b"alpha");
    assert!(
        client.add("lib:a", b"again", 0).await.is_err(),
        "add of an existing key is refused"
    );
    let keys: Vec<String> = (0..50).map(|i| format!("lib:{i}")).collect();
    let found = client.get_multi(&keys).await.unwrap();
    assert_eq!(found.len(), 50);
    for i in 0..50 {
        assert_eq!(found[&format!("lib:{i}")], format!("v{i}").as_bytes());
    }
    assert!(client.increment("lib:nope", 1).await.is_err());
    assert!(client.version().await.unwrap().starts_with("1."));
}

#[test]
fn several_pools_and_a_unix_socket_listener() {
    let a = Memcached::start();
    let b = Memcached::start();
    let dir = common::TempDir::new("unix");
    let sock = dir.join("mc.sock");
    let port = common::free_port();
    let yaml = format!(
        "{}second:\n  listen: {} 0600\n  servers:\n   - 127.0.0.1:{}:1\n",
        memcache_pool_yaml("first", port, &[(a.port, 1, None)], ""),
        sock.display(),
        b.port
    );
    let _proxy = Proxy::start(&yaml);
    RawClient::connect_port(port).expect(b"set k 0 0 1\r\na\r\n", b"STORED\r\n");
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || sock.exists()
    ));
    use std::io::{Read, Write};
    let mut u = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    u.write_all(b"set k 0 0 1\r\nb\r\n").unwrap();
    let mut buf = [0u8; 8];
    u.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"STORED\r\n");
    assert_eq!(a.get_direct("k").unwrap(), b"a");
    assert_eq!(b.get_direct("k").unwrap(), b"b");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn pipelines_deeper_than_the_in_flight_cap_are_all_answered() {
    // More requests than the proxy keeps in flight per client (1024), sent before any reply
    // is read: the rest must be dispatched as replies drain, not wait for more input.
    let p = pool("");
    let mut c = p.client();
    let batch: Vec<u8> = (0..3000)
        .flat_map(|i| format!("set deep{i} 0 0 1\r\nv\r\n").into_bytes())
        .collect();
    c.send(&batch);
    for _ in 0..3000 {
        assert_eq!(c.read_line(), b"STORED\r\n");
    }
}
