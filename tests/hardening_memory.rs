//! Memory hardening against clients that ask for far more reply bytes than they read, and
//! large values that must not fail other clients (`client_output_limit`, multi-gets with
//! repeated keys, 64 MiB+ writes).
//!
//! Each attack runs against two real backends: the attacked key lives on one, and probe
//! clients (one per worker) read and write small keys of the other all along, so their
//! latency measures the proxy, not a busy backend. The proxy's RSS is sampled every 5 ms; the
//! test gives up as soon as it grows past its bound (the proxy is killed on drop), so an
//! unbounded proxy fails in a fraction of a second instead of exhausting the machine.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    free_port, memcache_pool_yaml, metric_value, redis_pool_yaml, resp_cmd, scrape_metrics, show,
    Memcached, Proxy, RawClient, Redis,
};

/// The tests of this file run one at a time: each measures the proxy's RSS and a probe's
/// latency, which another test's traffic on the same cores would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const COUNTER: &str = "shardproxy_client_output_limit_total";
/// RSS growth allowed per attacking client.
const RSS_PER_ATTACKER_KIB: u64 = 100 * 1024;
/// How long the RSS is watched after the attack starts, at least.
const WATCH: Duration = Duration::from_millis(2500);
/// Probe latency bound (p99) while the proxy is under attack.
const PROBE_P99: Duration = Duration::from_millis(20);
/// Probes needed during the attack for the p99 to mean something.
const MIN_PROBES: usize = 200;

/// `len` bytes of a recognisable pattern (a 26-letter cycle), so partial replies can be
/// checked byte for byte.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Memcached,
    Redis,
}

impl Proto {
    /// One probe round trip on `key`: a set on even rounds, a get of what was set on odd
    /// ones; as (request, the exact reply).
    fn probe(self, key: &str, round: u64) -> (Vec<u8>, Vec<u8>) {
        let value = format!("v{}", round / 2);
        let (request, reply) = match (self, round % 2) {
            (Proto::Memcached, 0) => (
                format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).into_bytes(),
                "STORED\r\n".to_string(),
            ),
            (Proto::Memcached, _) => (
                format!("get {key}\r\n").into_bytes(),
                format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
            ),
            (Proto::Redis, 0) => (
                resp_cmd(&[b"SET", key.as_bytes(), value.as_bytes()]),
                "+OK\r\n".to_string(),
            ),
            (Proto::Redis, _) => (
                resp_cmd(&[b"GET", key.as_bytes()]),
                format!("${}\r\n{value}\r\n", value.len()),
            ),
        };
        (request, reply.into_bytes())
    }

    /// Stores `value` under `key` through the proxy.
    fn set(self, c: &mut RawClient, key: &str, value: &[u8]) {
        match self {
            Proto::Memcached => {
                let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
                req.extend_from_slice(value);
                req.extend_from_slice(b"\r\n");
                c.expect(&req, b"STORED\r\n");
            }
            Proto::Redis => c.expect(&resp_cmd(&[b"SET", key.as_bytes(), value]), b"+OK\r\n"),
        }
    }

    /// The full reply to a single-key read of `key` holding `value`.
    fn hit(self, key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = match self {
            Proto::Memcached => format!("VALUE {key} 0 {}\r\n", value.len()).into_bytes(),
            Proto::Redis => format!("${}\r\n", value.len()).into_bytes(),
        };
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        if self == Proto::Memcached {
            out.extend_from_slice(b"END\r\n");
        }
        out
    }

    fn read_request(self, key: &str) -> Vec<u8> {
        match self {
            Proto::Memcached => format!("get {key}\r\n").into_bytes(),
            Proto::Redis => resp_cmd(&[b"GET", key.as_bytes()]),
        }
    }
}

/// `extra` pool keys, with `timeout: 5000` unless they set a timeout.
fn with_timeout(extra: &str) -> String {
    if extra.contains("timeout:") {
        extra.to_string()
    } else {
        format!("timeout: 5000\n{extra}")
    }
}

/// Two backends of one protocol behind pool `pool`; the proxy serves `/metrics` on `mport`.
struct Rig {
    proto: Proto,
    memcached: Vec<Memcached>,
    redis: Vec<Redis>,
    proxy: Proxy,
    port: u16,
    mport: u16,
    pool: &'static str,
}

impl Rig {
    /// memcached with 2 MB items and room for them; `item_size_max: 2000000` on the pool.
    fn memcached(extra: &str) -> Rig {
        let servers: Vec<Memcached> = (0..2)
            .map(|_| Memcached::start_with(&["-I", "2m", "-m", "256"]))
            .collect();
        let list: Vec<_> = servers.iter().map(|s| (s.port, 1, None)).collect();
        let (port, mport) = (free_port(), free_port());
        let yaml = memcache_pool_yaml(
            "mc",
            port,
            &list,
            &format!("hash: md5\nitem_size_max: 2000000\n{}", with_timeout(extra)),
        );
        let proxy = Proxy::start_with(&yaml, &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
        Rig {
            proto: Proto::Memcached,
            memcached: servers,
            redis: Vec::new(),
            proxy,
            port,
            mport,
            pool: "mc",
        }
    }

    /// redis-servers whose own output buffer per connection is capped at 1 GB: a safety net
    /// for the machine (an MGET of 6000 one-megabyte values sent as such would make
    /// redis-server itself build 6 GB), far above what any of these tests needs.
    fn redis(extra: &str) -> Rig {
        let servers: Vec<Redis> = (0..2)
            .map(|_| Redis::start_with(&["--client-output-buffer-limit", "normal 1gb 1gb 0"]))
            .collect();
        let list: Vec<_> = servers.iter().map(|s| (s.port, 1, None)).collect();
        let (port, mport) = (free_port(), free_port());
        let yaml = redis_pool_yaml(
            "r",
            port,
            &list,
            &format!("hash: md5\n{}", with_timeout(extra)),
        );
        let proxy = Proxy::start_with(&yaml, &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
        Rig {
            proto: Proto::Redis,
            memcached: Vec::new(),
            redis: servers,
            proxy,
            port,
            mport,
            pool: "r",
        }
    }

    fn client(&self) -> RawClient {
        RawClient::connect_port(self.port)
    }

    /// Which backend holds `key` (read directly).
    fn holder(&self, key: &str) -> usize {
        let found: Vec<usize> = match self.proto {
            Proto::Memcached => (0..2)
                .filter(|&i| self.memcached[i].get_direct(key).is_some())
                .collect(),
            Proto::Redis => (0..2)
                .filter(|&i| self.redis[i].get_direct(key).is_some())
                .collect(),
        };
        assert_eq!(found.len(), 1, "{key} is on backends {found:?}");
        found[0]
    }

    /// Sets `key` to `value` through the proxy; returns the backend that holds it.
    fn store(&self, key: &str, value: &[u8]) -> usize {
        self.proto.set(&mut self.client(), key, value);
        self.holder(key)
    }

    /// `n` small keys stored on backend `server` (found by storing candidates and looking).
    fn keys_on(&self, server: usize, n: usize) -> Vec<String> {
        let keys: Vec<String> = (0..400)
            .map(|i| format!("probe:{i}"))
            .filter(|k| self.store(k, b"0") == server)
            .take(n)
            .collect();
        assert_eq!(keys.len(), n, "not enough keys on backend {server}");
        keys
    }

    /// Reads `key` fully on two fresh connections (one per worker), so the buffers a large
    /// reply needs exist before the RSS baseline is taken.
    fn warm(&self, key: &str, value: &[u8]) {
        let want = self.proto.hit(key, value);
        for mut c in [self.client(), self.client()] {
            for _ in 0..2 {
                c.expect(&self.proto.read_request(key), &want);
            }
        }
    }

    /// Reads backend `server` has served (memcached gets and touches, Redis keyspace hits and
    /// misses).
    fn served(&self, server: usize) -> u64 {
        match self.proto {
            Proto::Memcached => {
                let m = &self.memcached[server];
                m.stat("cmd_get") + m.stat("cmd_touch")
            }
            Proto::Redis => {
                let r = &self.redis[server];
                r.info_stat("keyspace_hits") + r.info_stat("keyspace_misses")
            }
        }
    }

    /// `shardproxy_client_output_limit_total` for the pool (`None`: not exposed).
    fn limit_count(&self) -> Option<f64> {
        metric_value(&scrape_metrics(self.mport), COUNTER, &[("pool", self.pool)])
    }
}

/// Each round trip's start and latency.
type Samples = Vec<(Instant, Duration)>;

/// Clients doing small set/get round trips on `keys` until stopped, each on its own
/// connection; every round trip's latency is kept with the time it started.
struct Probes {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<Samples, String>>>,
}

impl Probes {
    /// Connects `clients` probes one after another (the proxy hands connections to its two
    /// workers in turn, so two probes cover both), then starts them. A probe reports its
    /// first failure (wrong reply, or none within 5 s) instead of panicking.
    fn start(rig: &Rig, keys: &[String], clients: usize) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Vec<RawClient> = (0..clients).map(|_| rig.client()).collect();
        let threads = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let (stop, proto) = (stop.clone(), rig.proto);
                // Each probe has keys of its own, so it always reads what it wrote.
                let keys: Vec<String> = keys.iter().skip(i).step_by(clients).cloned().collect();
                assert!(!keys.is_empty(), "fewer probe keys than probes");
                thread::spawn(move || {
                    let mut s: &TcpStream = c.stream();
                    let mut out = Vec::new();
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = &keys[(round as usize / 2) % keys.len()];
                        let (request, want) = proto.probe(key, round);
                        let start = Instant::now();
                        let mut got = vec![0u8; want.len()];
                        s.write_all(&request)
                            .and_then(|()| s.read_exact(&mut got))
                            .map_err(|e| format!("{key}: {e}"))?;
                        if got != want {
                            return Err(format!(
                                "{key}: got \"{}\", want \"{}\"",
                                show(&got),
                                show(&want)
                            ));
                        }
                        out.push((start, start.elapsed()));
                        round += 1;
                        thread::sleep(Duration::from_micros(500));
                    }
                    Ok(out)
                })
            })
            .collect();
        Probes { stop, threads }
    }

    /// Stops the probes; returns every sample, or the first probe failure.
    fn finish(mut self) -> Result<Samples, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.threads.drain(..) {
            all.extend(t.join().expect("probe thread")?);
        }
        Ok(all)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A client that sends `payload` as fast as the proxy takes it and never reads. The bytes are
/// written from a thread (the proxy may stop reading, or close); the connection itself stays
/// here so the test can read what arrived once the attack is over.
struct Attacker {
    conn: RawClient,
    sender: Option<JoinHandle<usize>>,
}

impl Attacker {
    fn start(conn: RawClient, payload: Arc<Vec<u8>>, stop: Arc<AtomicBool>) -> Attacker {
        let mut stream = conn.stream().try_clone().expect("clone attacker socket");
        stream
            .set_write_timeout(Some(Duration::from_millis(100)))
            .expect("set_write_timeout");
        let sender = thread::spawn(move || {
            let mut sent = 0;
            while sent < payload.len() && !stop.load(Ordering::Relaxed) {
                let end = payload.len().min(sent + 64 * 1024);
                match stream.write(&payload[sent..end]) {
                    Ok(n) => sent += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break, // closed by the proxy
                }
            }
            sent
        });
        Attacker {
            conn,
            sender: Some(sender),
        }
    }

    /// Reads what the proxy sent until end of stream (or a reset), until `deadline` and at
    /// most 256 MiB, checking that every byte is where the full reply stream `head` + `unit`*
    /// would have it.
    fn read_to_close(&mut self, head: &[u8], unit: &[u8], deadline: Instant) -> Drained {
        let mut s: &TcpStream = self.conn.stream();
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0usize;
        loop {
            if pos > 256 << 20 || Instant::now() > deadline {
                return Drained::Open(pos);
            }
            match s.read(&mut buf) {
                Ok(0) => return Drained::Closed(pos),
                Ok(n) => {
                    if let Some(at) = mismatch(&buf[..n], pos, head, unit) {
                        let from = (at - pos).saturating_sub(20);
                        return Drained::Wrong(format!(
                            "byte {at} is not what the reply stream has there: \"{}\"",
                            show(&buf[from..n.min(from + 60)])
                        ));
                    }
                    pos += n;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Drained::Closed(pos), // reset: closed, as far as a client can tell
            }
        }
    }
}

/// What [`Attacker::read_to_close`] found.
#[derive(Debug)]
enum Drained {
    /// End of stream (or reset) after this many correct reply bytes.
    Closed(usize),
    /// Still open at the deadline or after 256 MiB, with this many correct reply bytes.
    Open(usize),
    /// A byte that no correct reply stream has there.
    Wrong(String),
}

/// Where `got` (bytes `pos..` of a stream) first differs from `head` followed by `unit`
/// repeated, as an absolute stream offset.
fn mismatch(got: &[u8], pos: usize, head: &[u8], unit: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < got.len() {
        let at = pos + i;
        let want = if at < head.len() {
            &head[at..]
        } else {
            &unit[(at - head.len()) % unit.len()..]
        };
        let n = want.len().min(got.len() - i);
        if got[i..i + n] != want[..n] {
            let off = (0..n).find(|&j| got[i + j] != want[j]).unwrap_or(0);
            return Some(at + off);
        }
        i += n;
    }
    None
}

/// One attack: `attackers` clients each send `payload` and never read; the full reply stream
/// each would get is `head` then `unit` repeated.
struct Attack<'a> {
    rig: &'a Rig,
    /// Small keys on the backend that does not hold the attacked key.
    probe_keys: Vec<String>,
    payload: Vec<u8>,
    attackers: usize,
    head: Vec<u8>,
    unit: Vec<u8>,
    /// For pipelines of many small requests: the proxy may hold an attacker back (stop
    /// dispatching its requests) instead of disconnecting it, as long as the backend
    /// (`.0`) served at most `.1` of its requests per attacker while nobody read.
    held_back: Option<(usize, u64)>,
}

impl Attack<'_> {
    /// Runs the attack and returns every violated expectation (empty: all held).
    fn run(self) -> Vec<String> {
        let rig = self.rig;
        let mut problems = Vec::new();
        let probes = Probes::start(rig, &self.probe_keys, 2);
        thread::sleep(Duration::from_millis(300));
        let base = rig.proxy.rss_kib();
        let limit = RSS_PER_ATTACKER_KIB * self.attackers as u64;
        let stop = Arc::new(AtomicBool::new(false));
        let payload = Arc::new(self.payload);
        let conns: Vec<RawClient> = (0..self.attackers).map(|_| rig.client()).collect();
        let served_before = self.held_back.map(|(server, _)| rig.served(server));
        let start = Instant::now();
        let mut attackers: Vec<Attacker> = conns
            .into_iter()
            .map(|c| Attacker::start(c, payload.clone(), stop.clone()))
            .collect();
        // RSS every 5 ms for WATCH, then until the counter shows every attacker (3 s more at
        // most); the counter is scraped every 100 ms.
        let want = self.attackers as f64;
        let (mut grown, mut count, mut scraped) = (0, None, start);
        let bailed = loop {
            grown = grown.max(rig.proxy.rss_kib().saturating_sub(base));
            if grown > limit {
                break true;
            }
            let counted = count.is_some_and(|c| c >= want) || self.held_back.is_some();
            if start.elapsed() >= WATCH + Duration::from_secs(3)
                || (start.elapsed() >= WATCH && counted)
            {
                break false;
            }
            if !counted && scraped.elapsed() >= Duration::from_millis(100) {
                count = rig.limit_count();
                scraped = Instant::now();
            }
            thread::sleep(Duration::from_millis(5));
        };
        let watched = start.elapsed();
        if let (Some((server, max)), Some(before)) = (self.held_back, served_before) {
            let served = rig.served(server) - before;
            eprintln!("backend {server} served {served} reads while the attackers read nothing");
            if served > max * self.attackers as u64 {
                problems.push(format!(
                    "backend {server} served {served} of the attackers' reads while they read \
                     nothing (at most {max} per attacker expected: the rest must wait)"
                ));
            }
        }
        if bailed {
            // Kill the proxy now: it would go on buffering while the probes wind down.
            stop.store(true, Ordering::Relaxed);
            rig.proxy.send_signal(libc::SIGKILL);
            drop(attackers);
            let _ = probes.finish();
            problems.push(format!(
                "proxy RSS grew by {:.1} MiB within {watched:?} of the attack by {} client(s) \
                 (bound {} MiB); proxy killed",
                grown as f64 / 1024.0,
                self.attackers,
                limit / 1024
            ));
            return problems;
        }
        stop.store(true, Ordering::Relaxed);
        let samples = probes.finish();
        let sent: Vec<usize> = attackers
            .iter_mut()
            .map(|a| a.sender.take().unwrap().join().unwrap())
            .collect();
        eprintln!(
            "attack by {} client(s): sent {sent:?} of {} bytes each, RSS +{} KiB, {COUNTER} {count:?}",
            self.attackers,
            payload.len(),
            grown
        );
        match count {
            Some(c) if c >= want => {}
            _ if self.held_back.is_some() => {}
            _ => problems.push(format!(
                "{COUNTER}{{pool=\"{}\"}} is {count:?}, want >= {want}",
                rig.pool
            )),
        }
        // 5 s for all of them: a closed connection ends at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        for (i, a) in attackers.iter_mut().enumerate() {
            match a.read_to_close(&self.head, &self.unit, deadline) {
                Drained::Closed(n) => eprintln!("attacker {i}: closed after {n} reply bytes"),
                Drained::Open(n) if self.held_back.is_some() => {
                    eprintln!("attacker {i}: held back, then served {n} reply bytes")
                }
                Drained::Open(n) => problems.push(format!(
                    "attacker {i} was not disconnected: still open after {n} reply bytes"
                )),
                Drained::Wrong(why) => problems.push(format!("attacker {i}: {why}")),
            }
        }
        match samples {
            Err(why) => problems.push(format!("a probe failed: {why}")),
            Ok(samples) => {
                let mut during: Vec<Duration> = samples
                    .iter()
                    .filter(|(t, _)| *t >= start)
                    .map(|(_, d)| *d)
                    .collect();
                during.sort();
                if during.len() < MIN_PROBES {
                    problems.push(format!(
                        "only {} probes during the attack (want >= {MIN_PROBES})",
                        during.len()
                    ));
                } else {
                    let p99 = during[(during.len() * 99).div_ceil(100) - 1];
                    eprintln!(
                        "{} probes during the attack: p99 {p99:?}, max {:?}",
                        during.len(),
                        during.last().unwrap()
                    );
                    if p99 >= PROBE_P99 {
                        problems.push(format!(
                            "probe p99 {p99:?} over {} probes (bound {PROBE_P99:?})",
                            during.len()
                        ));
                    }
                }
            }
        }
        problems
    }
}

fn assert_no_problems(what: &str, rig: &Rig, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}\nproxy log tail:\n{}",
        problems.join("\n  - "),
        tail(&rig.proxy.stderr_log(), 20)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The 1,000,000-byte value of the attacks on memcached, and the 1 MB one of Redis's MGET.
const MB_VALUE: usize = 1_000_000;

#[test]
fn memcached_get_repeating_one_key_6000_times_is_fetched_once_and_its_reader_capped() {
    let _serial = serial();
    let rig = Rig::memcached("");
    let value = pattern(MB_VALUE);
    let holder = rig.store("b", &value);
    let probe_keys = rig.keys_on(1 - holder, 8);
    rig.warm("b", &value);
    let m = &rig.memcached[holder];
    let (hits0, gets0) = (m.stat("get_hits"), m.stat("cmd_get"));
    let mut line = b"get".to_vec();
    for _ in 0..6000 {
        line.extend_from_slice(b" b");
    }
    line.extend_from_slice(b"\r\n");
    let mut problems = Attack {
        rig: &rig,
        probe_keys,
        payload: line,
        attackers: 1,
        head: Vec::new(),
        unit: without_end(rig.proto.hit("b", &value)),
        held_back: None,
    }
    .run();
    let (hits, gets) = (m.stat("get_hits") - hits0, m.stat("cmd_get") - gets0);
    if hits > 16 {
        problems.push(format!(
            "memcached served b {hits} times (cmd_get +{gets}) for one get repeating it: \
             not fetched once"
        ));
    }
    assert_no_problems("get b b b ... (6000 times), unread", &rig, &problems);
}

/// A memcached hit without its `END\r\n`: one value of a multi-get.
fn without_end(mut hit: Vec<u8>) -> Vec<u8> {
    assert!(hit.ends_with(b"END\r\n"));
    hit.truncate(hit.len() - 5);
    hit
}

/// `clients` clients each pipeline 1100 `gat 0 big` (1 MB value) and never read.
fn memcached_unread_gat_pipelines(clients: usize) {
    let _serial = serial();
    let rig = Rig::memcached("");
    let value = pattern(MB_VALUE);
    let holder = rig.store("big", &value);
    let probe_keys = rig.keys_on(1 - holder, 8);
    rig.warm("big", &value);
    let problems = Attack {
        rig: &rig,
        probe_keys,
        payload: b"gat 0 big\r\n".repeat(1100),
        attackers: clients,
        head: Vec::new(),
        unit: rig.proto.hit("big", &value),
        held_back: Some((holder, 100)),
    }
    .run();
    assert_no_problems(
        &format!("{clients} client(s) pipelining 1100 unread gat of 1 MB"),
        &rig,
        &problems,
    );
}

#[test]
fn memcached_one_unread_gat_pipeline_is_held_back_with_memory_bounded() {
    memcached_unread_gat_pipelines(1);
}

#[test]
fn memcached_three_unread_gat_pipelines_are_held_back_with_memory_bounded() {
    memcached_unread_gat_pipelines(3);
}

#[test]
fn redis_mget_repeating_one_key_6000_times_is_fetched_once_and_its_reader_capped() {
    let _serial = serial();
    let rig = Rig::redis("");
    let value = pattern(MB_VALUE);
    let holder = rig.store("b", &value);
    let probe_keys = rig.keys_on(1 - holder, 8);
    rig.warm("b", &value);
    let r = &rig.redis[holder];
    let hits0 = r.info_stat("keyspace_hits");
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(std::iter::repeat_n(&b"b"[..], 6000));
    let mut problems = Attack {
        rig: &rig,
        probe_keys,
        payload: resp_cmd(&args),
        attackers: 1,
        head: b"*6000\r\n".to_vec(),
        unit: rig.proto.hit("b", &value),
        held_back: None,
    }
    .run();
    let hits = r.info_stat("keyspace_hits") - hits0;
    if hits > 16 {
        problems.push(format!(
            "redis-server looked b up {hits} times (keyspace_hits) for one MGET repeating it: \
             not fetched once"
        ));
    }
    assert_no_problems("MGET b b b ... (6000 times), unread", &rig, &problems);
}

/// `clients` clients each pipeline 1000 GETs of a 2 MB value and never read. The key is padded
/// to 16,400 bytes: redis-server reads 16 KiB of requests at a time and answers all it read
/// before writing, so with a short key it would build 1.3 GB of output per read whatever the
/// proxy does; with this one it answers one GET per read and its memory stays small.
fn redis_unread_get_pipelines(clients: usize) {
    let _serial = serial();
    let rig = Rig::redis("");
    let value = pattern(2_000_000);
    let key = format!("big2:{}", "k".repeat(16_395));
    let holder = rig.store(&key, &value);
    let probe_keys = rig.keys_on(1 - holder, 8);
    rig.warm(&key, &value);
    let problems = Attack {
        rig: &rig,
        probe_keys,
        payload: rig.proto.read_request(&key).repeat(1000),
        attackers: clients,
        head: Vec::new(),
        unit: rig.proto.hit(&key, &value),
        held_back: Some((holder, 100)),
    }
    .run();
    assert_no_problems(
        &format!("{clients} client(s) pipelining 1000 unread GET of 2 MB"),
        &rig,
        &problems,
    );
}

#[test]
fn redis_one_unread_get_pipeline_is_held_back_with_memory_bounded() {
    redis_unread_get_pipelines(1);
}

#[test]
fn redis_three_unread_get_pipelines_are_held_back_with_memory_bounded() {
    redis_unread_get_pipelines(3);
}

#[test]
fn a_client_past_its_client_output_limit_is_closed_and_counted_once() {
    let _serial = serial();
    // 100 MB of replies: more than the kernel's socket buffers hold (32 MiB of receive
    // buffer at most here, plus the proxy's send buffer), so the proxy must owe past 2 MiB.
    let rig = Rig::memcached("client_output_limit: 2mb");
    let value = pattern(MB_VALUE);
    rig.store("big", &value);
    let want = rig.proto.hit("big", &value);
    let mut c = rig.client();
    c.send(&b"get big\r\n".repeat(100));
    thread::sleep(Duration::from_secs(1));
    let mut a = Attacker {
        conn: c,
        sender: None,
    };
    match a.read_to_close(b"", &want, Instant::now() + Duration::from_secs(5)) {
        Drained::Closed(n) => assert!(n < 100 * want.len(), "closed after every reply"),
        other => panic!("not closed at 2 MiB owed: {other:?}"),
    }
    assert_eq!(rig.limit_count(), Some(1.0), "{COUNTER}");
    // Only that client: a new one is served.
    rig.client().expect(b"get big\r\n", &want);
    let warnings = rig
        .proxy
        .stderr_log()
        .lines()
        .filter(|l| l.contains("WARN"))
        .count();
    assert!(
        warnings >= 1,
        "no warning logged:\n{}",
        rig.proxy.stderr_log()
    );
}

#[test]
fn a_client_owed_less_than_its_limit_gets_every_reply() {
    let _serial = serial();
    // 24 MB of unread replies is under the default (32 MiB) and under an explicit 64mb.
    for extra in ["", "client_output_limit: 64mb"] {
        let rig = Rig::memcached(extra);
        let value = pattern(MB_VALUE);
        rig.store("big", &value);
        let mut c = rig.client();
        c.send(&b"get big\r\n".repeat(24));
        thread::sleep(Duration::from_secs(1));
        let want = rig.proto.hit("big", &value);
        for i in 0..24 {
            let got = c.read_exact_bytes(want.len());
            assert!(got == want, "{extra:?}: reply {i} differs");
        }
        assert!(!c.is_closed_within(Duration::from_millis(200)), "{extra:?}");
        let count = rig.limit_count().unwrap_or(0.0);
        assert_eq!(count, 0.0, "{extra:?}: {COUNTER}");
    }
}

/// Replies that have all arrived are written as fast as the client reads them, even when
/// there are more than the proxy moves into its write buffer at once (4 MiB): a prompt reader
/// of 10 pipelined 1 MB values gets all ten at once. (The proxy used to wait, after writing
/// its full buffer, for more input or another reply before draining the rest: the client
/// stalled after about five values, most attempts.)
#[test]
fn ten_pipelined_one_megabyte_replies_reach_a_prompt_reader_without_stalling() {
    let _serial = serial();
    for rig in [Rig::memcached(""), Rig::redis("")] {
        let value = pattern(MB_VALUE);
        rig.store("big", &value);
        let want = rig.proto.hit("big", &value);
        for attempt in 0..5 {
            let c = rig.client();
            let mut s: &TcpStream = c.stream();
            s.set_read_timeout(Some(Duration::from_millis(100))).ok();
            s.write_all(&rig.proto.read_request("big").repeat(10))
                .expect("send");
            let start = Instant::now();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            // All ten, for at most 3 s (reading 10 MB over loopback takes milliseconds).
            while got.len() < 10 * want.len() && start.elapsed() < Duration::from_secs(3) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("{:?} attempt {attempt}: {e}", rig.proto),
                }
            }
            assert_eq!(
                got.len(),
                10 * want.len(),
                "{:?} attempt {attempt}: {:.2} of 10 replies after {:?}",
                rig.proto,
                got.len() as f64 / want.len() as f64,
                start.elapsed()
            );
            assert!(got == want.repeat(10), "{:?}: wrong reply bytes", rig.proto);
        }
    }
}

#[test]
fn client_output_limit_takes_bytes_or_a_kb_mb_gb_suffix() {
    let _serial = serial();
    let dir = common::TempDir::new("limit-conf");
    let check = |value: &str| -> (i32, String) {
        let path = dir.join("c.yml");
        let yaml = memcache_pool_yaml(
            "mc",
            22121,
            &[(11211, 1, None)],
            &format!("client_output_limit: {value}"),
        );
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_shardproxy"))
            .args(["-t", "-c", path.to_str().unwrap()])
            .output()
            .expect("run shardproxy -t");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // (A memcached pool's limit must hold one value of item_size_max, 1 MiB by default.)
    for good in ["33554432", "2mb", "32MB", "1gb"] {
        let (code, err) = check(good);
        assert_eq!(code, 0, "client_output_limit: {good} refused: {err}");
    }
    for bad in ["lots", "32xb", "-1", "64kb"] {
        let (code, err) = check(bad);
        assert_eq!(code, 1, "client_output_limit: {bad} accepted");
        assert!(
            err.contains("pool 'mc': key 'client_output_limit'"),
            "{bad}: {err}"
        );
    }
}

/// `line` sent through the proxy and straight to `reference` (one server holding every key)
/// must get the same bytes.
fn same_as_direct(proxy: &mut RawClient, direct: &mut RawClient, line: &[u8], end: &[u8]) {
    direct.send(line);
    let want = direct.read_until(end);
    proxy.expect(line, &want);
}

#[test]
fn memcached_multi_get_with_repeated_keys_matches_memcached_byte_for_byte() {
    let _serial = serial();
    let f = common::Cluster::memcached(3, "hash: md5");
    let reference = Memcached::start();
    let mut c = f.client();
    // Placement follows the servers' ports: pick keys so that `a` and `b` live on different
    // servers, which makes the request a split one.
    let holder = |k: &str| {
        c_set(&mut f.client(), k, "");
        (0..3)
            .find(|&i| f.servers[i].get_direct(k).is_some())
            .unwrap()
    };
    let a = "a".to_string();
    let home = holder(&a);
    let b = (0..100)
        .map(|i| format!("b{i}"))
        .find(|k| holder(k) != home)
        .expect("a key on another server");
    let names = [("a", a.as_str()), ("b", b.as_str()), ("c", "c"), ("d", "d")];
    for ((_, k), v) in names.iter().zip(["alpha", "bravo", "charlie", ""]) {
        c_set(&mut c, k, v);
        reference.set_direct(k, v.as_bytes());
    }
    let mut direct = RawClient::connect(&reference.addr());
    for line in [
        "get a b a c a",
        "get a b a c x a b y x c d d",
        "get a a a a a a a a",
        "get x x y x",
        "get d a d",
    ] {
        let line: Vec<&str> = line
            .split(' ')
            .map(|w| names.iter().find(|(n, _)| *n == w).map_or(w, |(_, k)| k))
            .collect();
        let line = format!("{}\r\n", line.join(" "));
        same_as_direct(&mut c, &mut direct, line.as_bytes(), b"END\r\n");
    }
}

fn c_set(c: &mut RawClient, key: &str, value: &str) {
    c.expect(
        format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
        b"STORED\r\n",
    );
}

#[test]
fn redis_mget_with_repeated_keys_matches_redis_byte_for_byte() {
    let _serial = serial();
    let f = common::Cluster::redis(3, "hash: md5");
    let reference = Redis::start();
    let mut c = f.client();
    for (k, v) in [("a", "alpha"), ("b", "bravo"), ("c", "charlie"), ("d", "")] {
        c.expect(&resp_cmd(&[b"SET", k.as_bytes(), v.as_bytes()]), b"+OK\r\n");
        assert_eq!(reference.cmd(&["SET", k, v]), b"+OK\r\n");
    }
    let mut direct = RawClient::connect(&reference.addr());
    for keys in [
        "a b a c a",
        "a b a c x a b y x c d d",
        "a a a a a a a a",
        "x x y x",
    ] {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.split(' ').map(str::as_bytes));
        let req = resp_cmd(&args);
        direct.send(&req);
        let want = direct.read_resp();
        c.expect(&req, &want);
    }
}

/// While a SET of 80 MiB is being written to a backend, small requests to that backend from
/// other clients wait and succeed. The backend is paused (SIGSTOP) for the first second of the
/// first big SET, so that most of it cannot be written yet, then resumed; two more big SETs
/// follow unpaused, under the same load of 20 clients (half of them on the big client's
/// worker) setting and getting small keys of the same backend.
#[test]
fn a_value_of_80_mib_being_written_never_fails_other_clients_of_its_server() {
    large_values_beside_small_clients(1);
}

/// The same with two clients writing 80 MiB values to the server at once: each congests the
/// connection in turn, and a client woken as it drains may find it congested again by the
/// other, and must then wait for the next drain, not forever (a race this test can hit, not
/// one it forces).
#[test]
fn two_clients_writing_80_mib_values_at_once_both_finish() {
    large_values_beside_small_clients(2);
}

fn large_values_beside_small_clients(bigs: usize) {
    let _serial = serial();
    const HUGE: usize = 80 << 20;
    let rig = Rig::redis("timeout: 10000");
    let holder = rig.store("huge", b"x");
    let keys = rig.keys_on(holder, 20);
    let stop = Arc::new(AtomicBool::new(false));
    // The proxy's two workers take connections in turn: a throwaway connection after each
    // big client puts every big client on the same worker, sharing one backend connection.
    let bigs: Vec<RawClient> = (0..bigs)
        .map(|_| {
            let mut big = rig.client();
            big.set_timeout(Duration::from_secs(20));
            drop(rig.client());
            big
        })
        .collect();
    // The small clients connect right after the big one: the workers take them in turn.
    let clients: Vec<RawClient> = (0..20).map(|_| rig.client()).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .zip(keys)
        .map(|(mut c, key)| {
            let stop = stop.clone();
            c.set_timeout(Duration::from_secs(12));
            thread::spawn(move || {
                let (mut ok, mut errors) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("v{ok}");
                    c.send(&resp_cmd(&[b"SET", key.as_bytes(), value.as_bytes()]));
                    let set = c.read_resp();
                    c.send(&resp_cmd(&[b"GET", key.as_bytes()]));
                    let get = c.read_resp();
                    let want = format!("${}\r\n{value}\r\n", value.len());
                    if set == b"+OK\r\n" && get == want.as_bytes() {
                        ok += 1;
                    } else if errors.len() < 5 {
                        errors.push(format!("{key}: SET {} GET {}", show(&set), show(&get)));
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                (ok, errors)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let server = &rig.redis[holder];
    server.pause();
    // From threads: the proxy may stop reading the big request while the server is paused.
    let sets: Vec<_> = bigs
        .into_iter()
        .map(|mut big| {
            thread::spawn(move || {
                for (i, fill) in [b'1', b'2', b'3'].into_iter().enumerate() {
                    let value = vec![fill; HUGE];
                    big.send(&resp_cmd(&[b"SET", b"huge", &value]));
                    drop(value);
                    assert_eq!(big.read_resp(), b"+OK\r\n", "SET huge #{i}");
                    thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1000));
    server.resume();
    for set in sets {
        set.join().expect("the big SETs");
    }
    stop.store(true, Ordering::Relaxed);
    let mut problems = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        let (ok, errors) = t.join().expect("small client");
        if !errors.is_empty() {
            problems.push(format!("client {i}: {}", errors.join("; ")));
        }
        if ok == 0 {
            problems.push(format!("client {i}: no request succeeded"));
        }
    }
    assert_no_problems("small requests beside an 80 MiB SET", &rig, &problems);
    assert_eq!(
        server.cmd(&["STRLEN", "huge"]),
        format!(":{HUGE}\r\n").as_bytes()
    );
    assert_eq!(
        server.cmd(&["GETRANGE", "huge", "-4", "-1"]),
        b"$4\r\n3333\r\n"
    );
}
