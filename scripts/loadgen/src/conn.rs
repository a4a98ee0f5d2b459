//! The connection driver: keeps the window of requests full, writes them in batches, reads and
//! checks every reply, times each request.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::cli::Workload;
use crate::fail;
use crate::proto::{self, encode, parse_reply, Op, Parse};
use crate::rng::Rng;
use crate::run::{Config, Shared};
use crate::stats::Stats;
use crate::window::Window;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prefill,
    Measure { deadline: Option<Instant> },
}

/// One client connection and its buffers.
pub struct Conn {
    pub id: usize,
    pub stream: TcpStream,
    pub rng: Rng,
    pub wbuf: Vec<u8>,
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
}

/// Claims up to `want` requests of the measured phase; returns how many were granted.
fn claim(shared: &Shared, limit: u64, want: usize) -> usize {
    let prev = shared.issued.fetch_add(want as u64, Ordering::Relaxed);
    limit.saturating_sub(prev).min(want as u64) as usize
}

impl Conn {
    /// Runs one phase to its end on this connection.
    pub async fn run(
        &mut self,
        cfg: &Config,
        shared: &Shared,
        phase: Phase,
        stats: &RefCell<Stats>,
    ) {
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
                            st.record(outcome);
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

pub async fn connect(addr: &str, id: usize, shared: &Shared) -> TcpStream {
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
