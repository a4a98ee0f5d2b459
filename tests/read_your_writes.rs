//! Read-your-writes across workers with coalescing on: once any client has the reply to a
//! write of K, no read of K sent after that reply may return an older value, whichever worker
//! serves it.
//!
//! Randomised and bounded in time: one writer stores increasing numbers under a few hot keys
//! and publishes each number once its write is acknowledged; 16 readers on their own
//! connections (spread over both workers) note the acknowledged number before each read and
//! check that the read returns at least that. One backend sits behind a [`Relay`] that holds
//! its replies for a few milliseconds, so reads stay in flight (and joinable) long enough for
//! writes to overtake them. The seed is printed, and named in any failure.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    free_port, memcache_pool_yaml, redis_pool_yaml, resp_cmd, show, Memcached, Proxy, RawClient,
    Redis, Relay,
};

const READERS: usize = 16;
const RUN: Duration = Duration::from_secs(8);
/// Hot keys per backend.
const KEYS_PER_SERVER: usize = 2;
/// How long the relay holds each chunk of the relayed backend's replies.
const RELAY_DELAY: Duration = Duration::from_millis(2);
/// Below these the run proves nothing. Measured on two cores: about 80,000 checks and 3,400
/// writes in one run alone, and over 20,000 and 600 within 5 s with this file's four runs in
/// parallel.
const MIN_CHECKS: u64 = 3000;
const MIN_WRITES: u64 = 300;

/// xorshift64*: small, seedable, good enough to pick keys and jitter.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Sleeps 0..max_us microseconds one time in `one_in`.
    fn jitter(&mut self, one_in: u64, max_us: u64) {
        if self.below(one_in) == 0 {
            thread::sleep(Duration::from_micros(self.below(max_us)));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writes {
    /// memcached `set`, read with `get`.
    MemcacheSet,
    /// Redis `SET`, read with `GET`.
    RedisSet,
    /// Redis `EVAL "return redis.call('SET', KEYS[1], ARGV[1])" 1 k n`, read with `GET`.
    RedisEval,
}

const SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1])";

impl Writes {
    fn write_request(self, key: &str, n: u64) -> Vec<u8> {
        let n = n.to_string();
        match self {
            Writes::MemcacheSet => format!("set {key} 0 0 {}\r\n{n}\r\n", n.len()).into_bytes(),
            Writes::RedisSet => resp_cmd(&[b"SET", key.as_bytes(), n.as_bytes()]),
            Writes::RedisEval => resp_cmd(&[
                b"EVAL",
                SCRIPT.as_bytes(),
                b"1",
                key.as_bytes(),
                n.as_bytes(),
            ]),
        }
    }

    fn ack(self) -> &'static [u8] {
        match self {
            Writes::MemcacheSet => b"STORED\r\n",
            Writes::RedisSet | Writes::RedisEval => b"+OK\r\n",
        }
    }

    fn read_request(self, key: &str) -> Vec<u8> {
        match self {
            Writes::MemcacheSet => format!("get {key}\r\n").into_bytes(),
            Writes::RedisSet | Writes::RedisEval => resp_cmd(&[b"GET", key.as_bytes()]),
        }
    }

    /// Reads one read reply; the number stored, or what came instead.
    fn read_value(self, c: &mut RawClient, key: &str) -> Result<u64, String> {
        let (header, body) = match self {
            Writes::MemcacheSet => {
                let header = c.read_line();
                let len = std::str::from_utf8(&header)
                    .ok()
                    .and_then(|h| h.strip_prefix(&format!("VALUE {key} 0 ")))
                    .and_then(|h| h.trim_end().parse::<usize>().ok())
                    .ok_or_else(|| format!("reply \"{}\"", show(&header)))?;
                let body = c.read_exact_bytes(len + 2);
                let end = c.read_line();
                if end != b"END\r\n" {
                    return Err(format!("no END: \"{}\"", show(&end)));
                }
                (header, body)
            }
            Writes::RedisSet | Writes::RedisEval => {
                let reply = c.read_resp();
                match reply.iter().position(|&b| b == b'\n') {
                    Some(i) if reply[0] == b'$' && reply.len() > i + 3 => {
                        (reply[..=i].to_vec(), reply[i + 1..].to_vec())
                    }
                    _ => return Err(format!("reply \"{}\"", show(&reply))),
                }
            }
        };
        std::str::from_utf8(&body[..body.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("value \"{}{}\"", show(&header), show(&body)))
    }
}

/// Two backends behind one pool, the first behind a relay; `keys` has KEYS_PER_SERVER hot keys
/// on each backend, all holding 0.
struct Rig {
    port: u16,
    keys: Vec<String>,
    _memcached: Vec<Memcached>,
    _redis: Vec<Redis>,
    _relay: Relay,
    _proxy: Proxy,
}

impl Rig {
    /// `extra`: more pool keys.
    fn start(writes: Writes, extra: &str) -> Rig {
        let port = free_port();
        let extra = &format!("hash: md5\ntimeout: 5000\n{extra}");
        let (memcached, redis, relay, yaml, ports);
        if writes == Writes::MemcacheSet {
            memcached = vec![Memcached::start(), Memcached::start()];
            redis = Vec::new();
            relay = Relay::start(memcached[0].port, RELAY_DELAY);
            ports = [relay.port, memcached[1].port];
            yaml = memcache_pool_yaml(
                "mc",
                port,
                &[(ports[0], 1, None), (ports[1], 1, None)],
                extra,
            );
        } else {
            memcached = Vec::new();
            redis = vec![Redis::start(), Redis::start()];
            relay = Relay::start(redis[0].port, RELAY_DELAY);
            ports = [relay.port, redis[1].port];
            yaml = redis_pool_yaml(
                "r",
                port,
                &[(ports[0], 1, None), (ports[1], 1, None)],
                extra,
            );
        }
        let proxy = Proxy::start(&yaml);
        // Hot keys, found by writing candidates through the proxy and looking on each backend.
        let mut c = RawClient::connect_port(port);
        let mut per_server = [Vec::new(), Vec::new()];
        for i in 0..200 {
            if per_server.iter().all(|k| k.len() == KEYS_PER_SERVER) {
                break;
            }
            let key = format!("hot:{i}");
            c.expect(&writes.write_request(&key, 0), writes.ack());
            let on_first = match writes {
                Writes::MemcacheSet => memcached[0].get_direct(&key).is_some(),
                _ => redis[0].get_direct(&key).is_some(),
            };
            let list = &mut per_server[usize::from(!on_first)];
            if list.len() < KEYS_PER_SERVER {
                list.push(key);
            }
        }
        let keys: Vec<String> = per_server.concat();
        assert_eq!(keys.len(), 2 * KEYS_PER_SERVER, "hot keys: {per_server:?}");
        Rig {
            port,
            keys,
            _memcached: memcached,
            _redis: redis,
            _relay: relay,
            _proxy: proxy,
        }
    }
}

/// What a reader saw that it must not have.
struct Violation {
    reader: usize,
    key: String,
    acked: u64,
    got: Result<u64, String>,
    at: Duration,
}

/// Runs the writer and the readers for RUN against a pool with `extra` keys; panics on any
/// stale read, or if too few checks or writes were made for the run to mean anything.
fn race(writes: Writes, extra: &str) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("{writes:?}: seed {seed}");
    let rig = Rig::start(writes, extra);
    let keys = Arc::new(rig.keys.clone());
    let acked: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let violation = Arc::new(std::sync::Mutex::new(None::<Violation>));
    // Connected here, in order: the proxy hands connections to its workers in turn, so the
    // readers are spread over both workers, some with the writer and some without.
    let mut writer = RawClient::connect_port(rig.port);
    let readers: Vec<RawClient> = (0..READERS)
        .map(|_| RawClient::connect_port(rig.port))
        .collect();
    let barrier = Arc::new(Barrier::new(READERS + 2));
    let start_at = Instant::now();

    let writer = {
        let (keys, acked, stop, barrier) =
            (keys.clone(), acked.clone(), stop.clone(), barrier.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(seed);
            barrier.wait();
            let deadline = Instant::now() + RUN;
            let mut n = 0u64;
            while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                n += 1;
                let k = rng.below(keys.len() as u64) as usize;
                writer.send(&writes.write_request(&keys[k], n));
                let ack = writer.read_exact_bytes(writes.ack().len());
                assert_eq!(ack, writes.ack(), "write of {} = {n}", keys[k]);
                // The reply is in: from now on no read of this key may return less than n.
                acked[k].store(n, Ordering::SeqCst);
                rng.jitter(4, 300);
            }
            n
        })
    };

    let readers: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(r, mut c)| {
            let (keys, acked, stop, barrier, violation) = (
                keys.clone(),
                acked.clone(),
                stop.clone(),
                barrier.clone(),
                violation.clone(),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                barrier.wait();
                let deadline = Instant::now() + RUN;
                let (mut checks, mut meaningful) = (0u64, 0u64);
                while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                    // 1 to 3 reads pipelined, each with the acknowledged number noted first.
                    let batch: Vec<(usize, u64)> = (0..1 + rng.below(3))
                        .map(|_| {
                            let k = rng.below(keys.len() as u64) as usize;
                            (k, acked[k].load(Ordering::SeqCst))
                        })
                        .collect();
                    let request: Vec<u8> = batch
                        .iter()
                        .flat_map(|&(k, _)| writes.read_request(&keys[k]))
                        .collect();
                    c.send(&request);
                    for &(k, min) in &batch {
                        let got = writes.read_value(&mut c, &keys[k]);
                        checks += 1;
                        meaningful += u64::from(min > 0);
                        if !matches!(got, Ok(v) if v >= min) {
                            stop.store(true, Ordering::SeqCst);
                            let mut v = violation.lock().unwrap();
                            if v.is_none() {
                                *v = Some(Violation {
                                    reader: r,
                                    key: keys[k].clone(),
                                    acked: min,
                                    got,
                                    at: start_at.elapsed(),
                                });
                            }
                            return (checks, meaningful);
                        }
                    }
                    rng.jitter(8, 400);
                }
                (checks, meaningful)
            })
        })
        .collect();

    barrier.wait();
    let (mut checks, mut meaningful) = (0, 0);
    for t in readers {
        let (c, m) = t.join().expect("reader");
        checks += c;
        meaningful += m;
    }
    stop.store(true, Ordering::SeqCst);
    let writes_done = writer.join().expect("writer");
    eprintln!("{writes:?}: {writes_done} writes, {checks} reads checked ({meaningful} after a write of their key)");
    if let Some(v) = violation.lock().unwrap().take() {
        panic!(
            "{writes:?}, seed {seed}: reader {} read {} = {:?} at {:?}, but a write of {} had \
             been acknowledged before the read was sent",
            v.reader, v.key, v.got, v.at, v.acked
        );
    }
    assert!(
        checks >= MIN_CHECKS && meaningful >= MIN_CHECKS / 2,
        "{writes:?}: only {checks} reads checked ({meaningful} after a write of their key)"
    );
    assert!(
        writes_done >= MIN_WRITES,
        "{writes:?}: only {writes_done} writes"
    );
}

#[test]
fn redis_set_then_get_on_any_worker_never_reads_an_older_value() {
    race(Writes::RedisSet, "");
}

#[test]
fn redis_eval_set_then_get_on_any_worker_never_reads_an_older_value() {
    race(Writes::RedisEval, "");
}

#[test]
fn memcached_set_then_get_on_any_worker_never_reads_an_older_value() {
    race(Writes::MemcacheSet, "");
}

/// The same race with coalescing off: every read reaches the backend after the acknowledged
/// write, so a failure here is in the proxy's request ordering (or in this harness), not in
/// coalescing.
#[test]
fn without_coalescing_redis_set_then_get_never_reads_an_older_value() {
    race(Writes::RedisSet, "coalesce: false");
}
