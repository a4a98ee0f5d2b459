//! One run: the configuration and counters every thread shares, the per-thread driver (connect,
//! prefill, measure, with barriers between the phases) and the watchdog.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::cli::Workload;
use crate::conn::{connect, Conn, Phase};
use crate::fail;
use crate::proto::Proto;
use crate::rng::Rng;
use crate::stats::{thread_cpu_ns, Stats};

/// Everything a connection needs to know, shared read-only.
pub struct Config {
    pub proto: Proto,
    pub addr: String,
    pub pipeline: usize,
    pub requests: u64,
    pub duration: Option<Duration>,
    pub keys: u32,
    pub value_size: usize,
    pub workload: Workload,
    pub seed: u64,
}

/// Counters shared by every thread.
#[derive(Default)]
pub struct Shared {
    /// Requests claimed so far in the measured phase (may overshoot `requests`; claims are
    /// clamped).
    pub issued: AtomicU64,
    /// Next key to store in the prefill phase.
    pub prefill_next: AtomicU32,
    /// Bumped on every connect and every read that completed replies: the watchdog's signal.
    pub progress: AtomicU64,
    /// Replies completed in the measured phase (for the watchdog's message).
    pub completed: AtomicU64,
    /// Set once the measured phase is over and the result is being printed.
    pub finished: AtomicBool,
}

/// One thread: connects its connections, waits for the others, prefills, waits, measures.
pub fn thread_main(
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

pub fn watchdog(shared: Arc<Shared>, stall: Duration, total: Duration, requests: u64) {
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
