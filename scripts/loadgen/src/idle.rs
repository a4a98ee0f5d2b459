//! `--idle N`: connections that send nothing (memory tests of a proxy).

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::cli::Args;
use crate::conn::connect;
use crate::fail;
use crate::run::Shared;

pub fn idle_mode(args: &Args, n: usize) {
    let shared = Shared::default();
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
