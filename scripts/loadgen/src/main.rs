//! loadgen: a closed-loop load generator for memcached and Redis (and proxies of them).
//!
//! Each connection keeps `--pipeline` requests in flight: it sends that many in one write, and
//! after every read sends as many new requests as replies completed, again in one write. While a
//! write cannot complete, replies are still read (a server that bounds its unsent replies would
//! otherwise deadlock with us). Every
//! reply is parsed whole and checked against its request; latency is measured per request, from
//! just before the write that sent it to the read that completed it. The run stops after
//! `--requests` replies or `--duration` seconds, whichever comes first, and prints one line of
//! JSON. A framing error aborts the run (exit 2); a run that stops making progress is aborted by
//! a watchdog (exit 3), so the tool never hangs.
//!
//! `--idle N` instead opens N connections that send nothing, prints one JSON line once all are
//! open, and holds them for `--duration` seconds (default 60) or until killed.

mod proto;

use std::cell::RefCell;
use std::io::{ErrorKind, Write as _};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use proto::{encode, parse_reply, Op, Outcome, Parse, Proto};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtoArg {
    Memcache,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Gets with this percentage, sets otherwise.
    Mix(u32),
    /// Multi-gets of this many keys.
    MGet(usize),
    Ping,
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    let pct = |v: &str| match v.parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("'{v}' is not a percentage (0-100)")),
    };
    match s.split_once(':') {
        None if s == "get" => Ok(Workload::Mix(100)),
        None if s == "set" => Ok(Workload::Mix(0)),
        None if s == "ping" => Ok(Workload::Ping),
        Some(("get-set", p)) => Ok(Workload::Mix(pct(p)?)),
        Some(("mget", n)) => match n.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(Workload::MGet(n)),
            _ => Err(format!("mget:N needs N in 1..=10000, not '{n}'")),
        },
        _ => Err(format!(
            "unknown workload '{s}': get-set:PCT, get, set, mget:N or ping"
        )),
    }
}

/// Closed-loop load generator for memcached and Redis; prints one line of JSON.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version)]
struct Args {
    /// Protocol: memcached text protocol or RESP (Redis).
    #[arg(long, value_enum)]
    proto: ProtoArg,
    /// Server or proxy to load, HOST:PORT.
    #[arg(long)]
    addr: String,
    /// Client connections.
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (1: no pipelining).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Replies to measure in total (default 100000 unless --duration is given).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Stop issuing requests after this many seconds (in-flight ones still complete).
    #[arg(long)]
    duration: Option<f64>,
    /// Keyspace size: keys key:0 .. key:<K-1>, chosen uniformly at random.
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Bytes per value stored by sets.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// get-set:PCT (PCT% gets, the rest sets), get, set, mget:N (N keys per request), ping
    /// (memcached `version`, Redis `PING`).
    #[arg(long, default_value = "get-set:90", value_parser = parse_workload)]
    workload: Workload,
    /// Store every key once, on the same connections, before measuring.
    #[arg(long)]
    prefill: bool,
    /// Threads, each running its share of the connections on its own tokio runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Abort (exit 3) when no reply arrives for this many seconds while requests are in flight.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout: f64,
    /// Abort (exit 3) when the whole run, prefill included, takes longer than this (seconds).
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Open this many idle connections instead of generating load (memory tests).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Seed of the key choice (each connection derives its own stream from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Everything a connection needs to know, shared read-only.
struct Config {
    proto: Proto,
    addr: String,
    pipeline: usize,
    requests: u64,
    duration: Option<Duration>,
    keys: u32,
    value_size: usize,
    workload: Workload,
    seed: u64,
}

/// Counters shared by every thread.
struct Shared {
    /// Requests claimed so far in the measured phase (may overshoot `requests`; claims are
    /// clamped).
    issued: AtomicU64,
    /// Next key to store in the prefill phase.
    prefill_next: AtomicU32,
    /// Bumped on every connect and every read that completed replies: the watchdog's signal.
    progress: AtomicU64,
    /// Replies completed in the measured phase (for the watchdog's message).
    completed: AtomicU64,
    /// Set once the measured phase is over and the result is being printed.
    finished: AtomicBool,
}

/// One thread's results.
struct Stats {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    misses: u64,
    wrong: u64,
    /// Error or wrong replies to the prefill's sets (not part of the measured requests).
    prefill_errors: u64,
    /// ns this thread spent on CPU in the measured phase.
    cpu_ns: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            // 1 ns .. 1 hour at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
            requests: 0,
            errors: 0,
            misses: 0,
            wrong: 0,
            prefill_errors: 0,
            cpu_ns: 0,
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.requests += other.requests;
        self.errors += other.errors;
        self.misses += other.misses;
        self.wrong += other.wrong;
        self.prefill_errors += other.prefill_errors;
        self.cpu_ns += other.cpu_ns;
    }
}

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(code);
}

/// ns on CPU of the calling thread (field 1 of /proc/thread-self/schedstat); 0 if unreadable.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// xorshift64*: a fast per-connection key stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, conn: usize) -> Rng {
        // splitmix64 of (seed, connection) so that streams differ and are never zero.
        let mut z = seed.wrapping_add((conn as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// A request in flight: when it was sent and what it asked.
struct Pending {
    sent: Instant,
    op: Op,
    keys: Vec<u32>,
}

/// The requests in flight on one connection, oldest first, in a fixed ring of reused slots.
struct Window {
    slots: Vec<Pending>,
    head: usize,
    len: usize,
}

impl Window {
    fn new(depth: usize, now: Instant) -> Window {
        let slots = (0..depth)
            .map(|_| Pending {
                sent: now,
                op: Op::Ping,
                keys: Vec::new(),
            })
            .collect();
        Window {
            slots,
            head: 0,
            len: 0,
        }
    }
    fn free(&self) -> usize {
        self.slots.len() - self.len
    }
    fn push(&mut self) -> &mut Pending {
        let i = (self.head + self.len) % self.slots.len();
        self.len += 1;
        &mut self.slots[i]
    }
    fn front(&self) -> &Pending {
        &self.slots[self.head]
    }
    fn pop(&mut self) {
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prefill,
    Measure { deadline: Option<Instant> },
}

/// One client connection and its buffers.
struct Conn {
    id: usize,
    stream: TcpStream,
    rng: Rng,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
}

/// Claims up to `want` requests of the measured phase; returns how many were granted.
fn claim(shared: &Shared, limit: u64, want: usize) -> usize {
    let prev = shared.issued.fetch_add(want as u64, Ordering::Relaxed);
    limit.saturating_sub(prev).min(want as u64) as usize
}

impl Conn {
    /// Runs one phase to its end on this connection.
    async fn run(&mut self, cfg: &Config, shared: &Shared, phase: Phase, stats: &RefCell<Stats>) {
        let depth = match phase {
            Phase::Prefill => cfg.pipeline.max(16),
            Phase::Measure { .. } => cfg.pipeline,
        };
        let mut window = Window::new(depth, Instant::now());
        let mut stopped = false;
        // Bytes of wbuf already written.
        let mut wpos = 0;
        self.wbuf.clear();
        loop {
            // Refill the window once the previous batch is written, all new requests in one write.
            if wpos == self.wbuf.len() && !stopped && window.free() > 0 {
                let now = Instant::now();
                let granted = match phase {
                    Phase::Prefill => window.free(),
                    Phase::Measure { deadline } => {
                        if deadline.is_some_and(|d| now >= d) {
                            0
                        } else {
                            claim(shared, cfg.requests, window.free())
                        }
                    }
                };
                self.wbuf.clear();
                for _ in 0..granted {
                    let (op, nkeys) = match phase {
                        Phase::Prefill => {
                            let k = shared.prefill_next.fetch_add(1, Ordering::Relaxed);
                            if k >= cfg.keys {
                                break;
                            }
                            let p = window.push();
                            p.keys.clear();
                            p.keys.push(k);
                            p.op = Op::Set;
                            p.sent = now;
                            encode(cfg.proto, Op::Set, &p.keys, cfg.value_size, &mut self.wbuf);
                            continue;
                        }
                        Phase::Measure { .. } => match cfg.workload {
                            Workload::Mix(pct) => {
                                let get = self.rng.below(100) < pct;
                                (if get { Op::Get } else { Op::Set }, 1)
                            }
                            Workload::MGet(n) => (Op::MGet, n),
                            Workload::Ping => (Op::Ping, 0),
                        },
                    };
                    let p = window.push();
                    p.op = op;
                    p.sent = now;
                    p.keys.clear();
                    for _ in 0..nkeys {
                        p.keys.push(self.rng.below(cfg.keys));
                    }
                    encode(cfg.proto, op, &p.keys, cfg.value_size, &mut self.wbuf);
                }
                if window.free() > 0 {
                    // The budget, the deadline or the keys ran out: only drain from now on.
                    stopped = true;
                }
                wpos = 0;
            }
            // Write what the socket takes now; the rest waits for writability below, while
            // replies keep being read.
            while wpos < self.wbuf.len() {
                match self.stream.try_write(&self.wbuf[wpos..]) {
                    Ok(n) => wpos += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => fail(2, &format!("connection {}: write failed: {e}", self.id)),
                }
            }
            if window.len == 0 {
                return;
            }

            // Read, then parse every reply the buffer completes.
            if self.rend == self.rbuf.len() {
                if self.rstart > 0 {
                    self.rbuf.copy_within(self.rstart..self.rend, 0);
                    self.rend -= self.rstart;
                    self.rstart = 0;
                } else {
                    let len = self.rbuf.len() * 2;
                    self.rbuf.resize(len, 0);
                }
            }
            let read = if wpos < self.wbuf.len() {
                // Requests wait to be written: wait for either direction. A client that blocks
                // in a write without reading deadlocks with a server that bounds its unsent
                // replies (the server stops reading until we read).
                tokio::select! {
                    r = self.stream.readable() => r,
                    w = self.stream.writable() => match w {
                        Ok(()) => continue,
                        Err(e) => Err(e),
                    },
                }
                .and_then(|()| self.stream.try_read(&mut self.rbuf[self.rend..]))
            } else {
                self.stream.read(&mut self.rbuf[self.rend..]).await
            };
            let n = match read {
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Ok(0) => fail(
                    2,
                    &format!(
                        "connection {}: closed by the server with {} requests in flight{}",
                        self.id,
                        window.len,
                        self.pending_bytes()
                    ),
                ),
                Ok(n) => n,
                Err(e) => fail(2, &format!("connection {}: read failed: {e}", self.id)),
            };
            self.rend += n;
            let now = Instant::now();
            let mut st = stats.borrow_mut();
            let mut done = 0u64;
            while window.len > 0 {
                let p = window.front();
                match parse_reply(cfg.proto, p.op, &p.keys, &self.rbuf[self.rstart..self.rend]) {
                    Ok(Parse::Incomplete) => break,
                    Ok(Parse::Done(used, outcome)) => {
                        if matches!(phase, Phase::Measure { .. }) {
                            let ns = now.saturating_duration_since(p.sent).as_nanos() as u64;
                            st.hist.saturating_record(ns.max(1));
                            record(&mut st, outcome);
                        } else if outcome.error || outcome.wrong {
                            st.prefill_errors += 1;
                        }
                        self.rstart += used;
                        window.pop();
                        done += 1;
                    }
                    Err(e) => fail(
                        2,
                        &format!(
                            "connection {}: framing error in the reply to {:?} {:?}: {e}{}",
                            self.id,
                            p.op,
                            p.keys,
                            self.pending_bytes()
                        ),
                    ),
                }
            }
            drop(st);
            if window.len == 0 && self.rstart < self.rend {
                fail(
                    2,
                    &format!(
                        "connection {}: {} bytes arrived with no request in flight{}",
                        self.id,
                        self.rend - self.rstart,
                        self.pending_bytes()
                    ),
                );
            }
            if self.rstart == self.rend {
                self.rstart = 0;
                self.rend = 0;
            }
            if done > 0 {
                shared.progress.fetch_add(1, Ordering::Relaxed);
                if matches!(phase, Phase::Measure { .. }) {
                    shared.completed.fetch_add(done, Ordering::Relaxed);
                }
            }
        }
    }

    fn pending_bytes(&self) -> String {
        if self.rstart == self.rend {
            String::new()
        } else {
            format!(
                "; unparsed bytes: \"{}\"",
                proto::escape(&self.rbuf[self.rstart..self.rend])
            )
        }
    }
}

fn record(st: &mut Stats, o: Outcome) {
    st.requests += 1;
    st.errors += u64::from(o.error);
    st.misses += u64::from(o.misses);
    st.wrong += u64::from(o.wrong);
}

async fn connect(addr: &str, id: usize, shared: &Shared) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| {
        fail(
            1,
            &format!("connection {id}: cannot connect to {addr}: {e}"),
        )
    });
    stream
        .set_nodelay(true)
        .unwrap_or_else(|e| fail(1, &format!("set TCP_NODELAY: {e}")));
    shared.progress.fetch_add(1, Ordering::Relaxed);
    stream
}

/// One thread: connects its connections, waits for the others, prefills, waits, measures.
fn thread_main(
    conn_ids: Vec<usize>,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    prefill: bool,
) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(1, &format!("tokio runtime: {e}")));
    let local = tokio::task::LocalSet::new();
    let conns: Vec<Conn> = local.block_on(&rt, async {
        let mut conns = Vec::with_capacity(conn_ids.len());
        for &id in &conn_ids {
            let stream = connect(&cfg.addr, id, &shared).await;
            conns.push(Conn {
                id,
                stream,
                rng: Rng::new(cfg.seed, id),
                wbuf: Vec::with_capacity(4096),
                rbuf: vec![0; 64 * 1024],
                rstart: 0,
                rend: 0,
            });
        }
        conns
    });
    let stats = Rc::new(RefCell::new(Stats::new()));

    // Runs one phase on every connection; the connections come back for the next phase.
    let run_phase = |conns: Vec<Conn>, phase: Phase| -> Vec<Conn> {
        local.block_on(&rt, async {
            let mut tasks = Vec::with_capacity(conns.len());
            for mut conn in conns {
                let (cfg, shared, stats) = (cfg.clone(), shared.clone(), stats.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    conn.run(&cfg, &shared, phase, &stats).await;
                    conn
                }));
            }
            let mut back = Vec::with_capacity(tasks.len());
            for t in tasks {
                back.push(
                    t.await
                        .unwrap_or_else(|e| fail(1, &format!("connection task failed: {e}"))),
                );
            }
            back
        })
    };

    barrier.wait(); // everyone connected
    let mut conns = conns;
    if prefill {
        conns = run_phase(conns, Phase::Prefill);
        barrier.wait(); // everyone stored their keys
    }
    barrier.wait(); // the clock starts
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let conns = run_phase(
        conns,
        Phase::Measure {
            deadline: cfg.duration.map(|d| start + d),
        },
    );
    let mut st = Rc::try_unwrap(stats).ok().expect("tasks done").into_inner();
    st.cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
    drop(conns);
    st
}

fn watchdog(shared: Arc<Shared>, stall: Duration, total: Duration, requests: u64) {
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut last = shared.progress.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if shared.finished.load(Ordering::Relaxed) {
                return;
            }
            let p = shared.progress.load(Ordering::Relaxed);
            let now = Instant::now();
            if p != last {
                last = p;
                last_change = now;
            }
            let done = shared.completed.load(Ordering::Relaxed);
            let issued = shared.issued.load(Ordering::Relaxed).min(requests);
            if now.duration_since(last_change) >= stall {
                fail(
                    3,
                    &format!(
                        "stalled: no reply for {:.1} s ({done} replies measured, {} requests in flight)",
                        stall.as_secs_f64(),
                        issued.saturating_sub(done)
                    ),
                );
            }
            if now.duration_since(began) >= total {
                fail(
                    3,
                    &format!(
                        "run timeout of {:.0} s exceeded ({done} replies measured)",
                        total.as_secs_f64()
                    ),
                );
            }
        }
    });
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn idle_mode(args: &Args, n: usize) {
    let shared = Shared {
        issued: AtomicU64::new(0),
        prefill_next: AtomicU32::new(0),
        progress: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        finished: AtomicBool::new(false),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(1, &format!("tokio runtime: {e}")));
    let start = Instant::now();
    let hold = Duration::from_secs_f64(args.duration.unwrap_or(60.0));
    rt.block_on(async {
        let mut streams = Vec::with_capacity(n);
        // One connection at a time: never more than one pending in the listener's backlog, whose
        // overflow would cost a 1 s SYN retransmission.
        let each = Duration::from_secs_f64(args.stall_timeout);
        for id in 0..n {
            match tokio::time::timeout(each, connect(&args.addr, id, &shared)).await {
                Ok(s) => streams.push(s),
                Err(_) => fail(
                    3,
                    &format!("connecting timed out after {} connections", streams.len()),
                ),
            }
        }
        println!(
            "{{\"connected\":{},\"seconds\":{:.3}}}",
            streams.len(),
            start.elapsed().as_secs_f64()
        );
        std::io::stdout().flush().ok();
        tokio::time::sleep(hold).await;
        drop(streams);
    });
}

fn main() {
    let args = Args::parse();
    if let Some(n) = args.idle {
        idle_mode(&args, n);
        return;
    }
    if args.connections == 0 || args.pipeline == 0 || args.threads == 0 || args.keys == 0 {
        fail(
            1,
            "--connections, --pipeline, --threads and --keys must be at least 1",
        );
    }
    if args.stall_timeout <= 0.0 || args.timeout <= 0.0 || args.duration.is_some_and(|d| d <= 0.0) {
        fail(
            1,
            "--stall-timeout, --timeout and --duration must be positive",
        );
    }
    let requests = match (args.requests, args.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 100_000,
    };
    let cfg = Arc::new(Config {
        proto: match args.proto {
            ProtoArg::Memcache => Proto::Memcache,
            ProtoArg::Redis => Proto::Redis,
        },
        addr: args.addr.clone(),
        pipeline: args.pipeline,
        requests,
        duration: args.duration.map(Duration::from_secs_f64),
        keys: args.keys,
        value_size: args.value_size,
        workload: args.workload,
        seed: args.seed,
    });
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        prefill_next: AtomicU32::new(0),
        progress: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        finished: AtomicBool::new(false),
    });
    watchdog(
        shared.clone(),
        Duration::from_secs_f64(args.stall_timeout),
        Duration::from_secs_f64(args.timeout),
        requests,
    );

    let threads = args.threads.min(args.connections);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let ids: Vec<usize> = (t..args.connections).step_by(threads).collect();
            let (cfg, shared, barrier) = (cfg.clone(), shared.clone(), barrier.clone());
            let prefill = args.prefill;
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || thread_main(ids, cfg, shared, barrier, prefill))
                .unwrap_or_else(|e| fail(1, &format!("spawn thread: {e}")))
        })
        .collect();

    barrier.wait(); // connected
    if args.prefill {
        let t = Instant::now();
        barrier.wait(); // prefilled
        eprintln!(
            "loadgen: prefilled {} keys in {:.2} s",
            args.keys,
            t.elapsed().as_secs_f64()
        );
    }
    barrier.wait(); // start
    let start = Instant::now();
    let mut total = Stats::new();
    for h in handles {
        let st = h
            .join()
            .unwrap_or_else(|_| fail(1, "a loadgen thread panicked"));
        total.merge(&st);
    }
    let seconds = start.elapsed().as_secs_f64();
    shared.finished.store(true, Ordering::Relaxed);
    if total.prefill_errors > 0 {
        eprintln!("loadgen: {} prefill sets failed", total.prefill_errors);
    }

    let h = &total.hist;
    let q = |q: f64| {
        if total.requests == 0 {
            0.0
        } else {
            us(h.value_at_quantile(q))
        }
    };
    println!(
        "{{\"requests\":{},\"errors\":{},\"seconds\":{:.4},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"misses\":{},\"wrong\":{},\"prefill_errors\":{},\"loadgen_cpu_pct\":{:.1}}}",
        total.requests,
        total.errors,
        seconds,
        total.requests as f64 / seconds,
        q(0.5),
        q(0.99),
        q(0.999),
        if total.requests == 0 { 0.0 } else { us(h.max()) },
        total.misses,
        total.wrong,
        total.prefill_errors,
        total.cpu_ns as f64 / 1e9 / seconds * 100.0,
    );
}
