//! Issue 13, item 7: `stats <arg>` answered for the pool as a whole, against three real
//! memcached servers: `items`/`slabs`/`sizes` merged (counts summed per name, other values from
//! the first server that has them), `settings` from the first server, `cachedump`
//! concatenated, `reset` sent to every server; `memcdump` lists the pool's keys.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, Memcached};

/// Fields that are not counts (ages, times, slab class geometry): the proxy takes the first
/// server's value, as the test's expectation does.
const NOT_COUNTS: &[&str] = &[
    "age",
    "age_hot",
    "age_warm",
    "evicted_time",
    "chunk_size",
    "chunks_per_page",
];

/// `STAT name value` lines of a framed reply, in order.
fn stat_lines(reply: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(reply.to_vec()).expect("utf-8 stats");
    assert!(text.ends_with("END\r\n"), "{text}");
    text.lines()
        .take_while(|l| *l != "END")
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            assert_eq!(parts.next(), Some("STAT"), "{l}");
            let name = parts.next().expect("name").to_string();
            (name, parts.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// What the pool's reply should hold, from each server's own reply.
fn expected_merge(replies: &[Vec<u8>]) -> BTreeMap<String, String> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for reply in replies {
        for (name, value) in stat_lines(reply) {
            let field = name.rsplit(':').next().unwrap_or(&name).to_string();
            match merged.get_mut(&name) {
                None => {
                    merged.insert(name, value);
                }
                Some(sum) if !NOT_COUNTS.contains(&field.as_str()) => {
                    if let (Ok(a), Ok(b)) = (sum.parse::<u64>(), value.parse::<u64>()) {
                        *sum = (a + b).to_string();
                    }
                }
                Some(_) => {}
            }
        }
    }
    merged
}

/// md5 spreads sequential keys over the servers (twemproxy's default `fnv1a_64` does not).
const SPREAD: &str = "hash: md5";

/// The servers in the pool's order, twemproxy's: names (`127.0.0.1:<port>`) sorted by length,
/// then bytes. "First server" and the order of concatenated replies follow it.
fn pool_order(f: &Cluster<Memcached>) -> Vec<&Memcached> {
    let mut servers: Vec<&Memcached> = f.servers.iter().collect();
    servers.sort_by_key(|s| (s.port.to_string().len(), s.port));
    servers
}

/// Waits until every item of every server is in its cold LRU: memcached's `stats cachedump`
/// lists only those.
fn wait_cold(f: &Cluster<Memcached>) {
    let field_sum = |text: &str, field: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.strip_prefix("STAT items:"))
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| name.rsplit(':').next() == Some(field))
            .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
            .sum()
    };
    let all_cold = || {
        f.servers.iter().all(|s| {
            let items = s.raw(b"stats items\r\n", b"END\r\n");
            let text = String::from_utf8_lossy(&items);
            field_sum(&text, "number") == field_sum(&text, "number_cold")
        })
    };
    assert!(common::wait_until(Duration::from_secs(10), all_cold));
}

/// Stores keys through the proxy until every server holds at least one.
fn fill(f: &Cluster<Memcached>, n: usize) -> Vec<String> {
    let mut c = f.client();
    let keys: Vec<String> = (0..n).map(|i| format!("key{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let value = "v".repeat(1 + i * 37 % 3000);
        c.expect(
            format!("set {k} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
            b"STORED\r\n",
        );
    }
    let held: Vec<u64> = f.servers.iter().map(|s| s.stat("curr_items")).collect();
    assert!(
        held.iter().all(|&n| n > 0),
        "a server holds nothing: {held:?}"
    );
    keys
}

#[test]
fn items_slabs_and_sizes_are_summed_over_the_pool() {
    let f = Cluster::memcached(3, SPREAD);
    fill(&f, 60);
    for sub in ["items", "slabs", "sizes"] {
        let request = format!("stats {sub}\r\n");
        // Ages tick with the clock: the proxy's reply must match the merge of the servers'
        // replies read just before or just after it.
        let direct = || -> BTreeMap<String, String> {
            let replies: Vec<Vec<u8>> = pool_order(&f)
                .into_iter()
                .map(|s| s.raw(request.as_bytes(), b"END\r\n"))
                .collect();
            expected_merge(&replies)
        };
        // memcached's LRU maintainer moves items between its hot and cold lists on its own
        // schedule, so the servers' figures can change between two reads: a wrong merge never
        // matches, a right one matches once they hold still (retried for up to 5 s).
        let mut c = f.client();
        let mut attempt = 0;
        let got = loop {
            let before = direct();
            c.send(request.as_bytes());
            let reply = c.read_until(b"END\r\n");
            let after = direct();
            let got: BTreeMap<String, String> = stat_lines(&reply).into_iter().collect();
            assert_eq!(got.len(), stat_lines(&reply).len(), "duplicate names");
            if got == before || got == after {
                break got;
            }
            attempt += 1;
            assert!(attempt < 50, "stats {sub}: {got:?}\n{before:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(!got.is_empty() || sub == "sizes");
    }
}

#[test]
fn settings_are_the_first_servers() {
    let f = Cluster::memcached(3, SPREAD);
    let mut c = f.client();
    c.send(b"stats settings\r\n");
    let reply = c.read_until(b"END\r\n");
    let first = pool_order(&f)[0];
    let direct = first.raw(b"stats settings\r\n", b"END\r\n");
    assert_eq!(common::show(&reply), common::show(&direct));
    assert!(String::from_utf8_lossy(&reply).contains(&format!("STAT tcpport {}\r", first.port)));
}

#[test]
fn cachedump_concatenates_every_servers_items() {
    let f = Cluster::memcached(3, SPREAD);
    let keys = fill(&f, 30);
    wait_cold(&f);
    let mut c = f.client();
    // Values of 1 to 3000 bytes land in several slab classes: dump them all.
    let mut listed = Vec::new();
    for slab in 1..=63 {
        c.send(format!("stats cachedump {slab} 0\r\n").as_bytes());
        let reply = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
        let mut expected = String::new();
        for s in pool_order(&f) {
            let one = s.raw(
                format!("stats cachedump {slab} 0\r\n").as_bytes(),
                b"END\r\n",
            );
            expected.push_str(String::from_utf8(one).unwrap().trim_end_matches("END\r\n"));
        }
        expected.push_str("END\r\n");
        assert_eq!(reply, expected, "slab {slab}");
        for line in reply.lines().filter(|l| l.starts_with("ITEM ")) {
            listed.push(line.split(' ').nth(1).unwrap().to_string());
        }
    }
    listed.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(listed, want);
    // An id memcached refuses is refused by every server: their error, once.
    c.expect(
        b"stats cachedump 99 0\r\n",
        b"CLIENT_ERROR Illegal slab id\r\n",
    );
}

#[test]
fn reset_clears_every_servers_counters() {
    let f = Cluster::memcached(3, SPREAD);
    let mut c = f.client();
    for i in 0..30 {
        c.expect(format!("get k{i}\r\n").as_bytes(), b"END\r\n");
    }
    assert!(f.servers.iter().all(|s| s.stat("cmd_get") > 0));
    c.expect(b"stats reset\r\n", b"RESET\r\n");
    for s in &f.servers {
        assert_eq!(s.stat("cmd_get"), 0);
    }
    // Plain `stats` stays the proxy's own.
    c.send(b"stats\r\n");
    let own = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    assert!(own.contains("STAT pool mc\r\n"), "{own}");
}

#[test]
fn memcdump_lists_the_keys_stored_through_the_proxy() {
    let f = Cluster::memcached(3, SPREAD);
    let mut keys = fill(&f, 30);
    keys.sort();
    wait_cold(&f);
    let out = Command::new(common::find_program("memcdump"))
        .arg(format!("--servers=127.0.0.1:{}", f.port))
        .output()
        .expect("memcdump");
    assert!(out.status.success(), "{out:?}");
    let mut listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, keys);
}

/// A `stats cachedump` larger than `client_output_limit` is held to it like any reply: the
/// client gets an error (the reply skipped as it streams in) or is disconnected, and the
/// server's connections stay in step for everyone else.
#[test]
fn a_cachedump_too_large_for_the_client_is_refused() {
    let f = Cluster::memcached(
        3,
        "hash: md5\nitem_size_max: 1024\nclient_output_limit: 64kb",
    );
    let mut fill = Vec::new();
    for i in 0..5000 {
        fill.extend_from_slice(format!("set {i:0>200} 0 0 1 noreply\r\nx\r\n").as_bytes());
    }
    fill.extend_from_slice(b"get none\r\n");
    assert_eq!(f.servers[0].raw(&fill, b"END\r\n"), b"END\r\n");
    wait_cold(&f);
    let items = String::from_utf8(f.servers[0].raw(b"stats items\r\n", b"END\r\n")).unwrap();
    let slab = items
        .lines()
        .find(|l| l.ends_with(":number 5000"))
        .and_then(|l| l.split(':').nth(1))
        .expect("the slab class of the 5000 items")
        .to_string();
    let mut c = f.client();
    c.send(format!("stats cachedump {slab} 0\r\n").as_bytes());
    let mut got = Vec::new();
    let closed = loop {
        let mut chunk = [0u8; 65536];
        match std::io::Read::read(&mut c.stream(), &mut chunk) {
            Ok(0) | Err(_) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if got.ends_with(b"\r\n") && got.starts_with(b"SERVER_ERROR") {
            break false;
        }
    };
    assert!(
        got.len() <= 64 * 1024,
        "{} bytes reached the client",
        got.len()
    );
    assert!(closed || got.starts_with(b"SERVER_ERROR"));
    let mut other = f.client();
    for i in 0..20 {
        other.expect(
            format!("set after{i} 0 0 1\r\ny\r\n").as_bytes(),
            b"STORED\r\n",
        );
        other.expect(
            format!("get after{i}\r\n").as_bytes(),
            format!("VALUE after{i} 0 1\r\ny\r\nEND\r\n").as_bytes(),
        );
    }
}
