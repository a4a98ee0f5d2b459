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
//!
//! Modules: `cli` (flags), `run` (threads, phases, watchdog), `conn` (one connection's request
//! loop), `window` (its requests in flight), `rng` (its keys), `stats` (histogram, counters, the
//! JSON line), `idle` (`--idle`), `proto` (memcached and RESP requests and reply parsers).

mod cli;
mod conn;
mod idle;
mod proto;
mod rng;
mod run;
mod stats;
mod window;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

use cli::{Args, ProtoArg};
use idle::idle_mode;
use proto::Proto;
use run::{thread_main, watchdog, Config, Shared};
use stats::Stats;

/// Prints `msg` and exits with `code`: 1 usage or setup, 2 protocol or connection, 3 stall or
/// timeout.
pub fn fail(code: i32, msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(code);
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
    let shared = Arc::new(Shared::default());
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

    total.print_json(seconds);
}
