//! Health probes for ejected servers: an ejected server re-enters the ring only after it
//! answers a real request (memcached `version`, Redis `PING` after the pool's AUTH/SELECT),
//! not blindly when `server_retry_timeout` expires as in twemproxy.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::debug;

use crate::backend::{Health, HealthCtx};
use crate::config::ServerAddr;
use crate::net::Stream;
use crate::protocol::resp::encode;
use crate::topology::{PoolTable, RouteTable};

/// How often ejected servers are checked for a due probe.
const TICK: Duration = Duration::from_millis(50);
/// Longest a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(table: watch::Receiver<Arc<RouteTable>>) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let current = table.borrow().clone();
        for pool in &current.pools {
            for (i, health) in pool.health.iter().enumerate() {
                if health.probe_due() {
                    // Push the next attempt out first, so a slow probe is not started twice.
                    health.probe_failed(&pool.policy);
                    tokio::spawn(probe_and_readmit(pool.clone(), i, health.clone()));
                }
            }
        }
    }
}

async fn probe_and_readmit(pool: Arc<PoolTable>, index: usize, health: Arc<Health>) {
    let server = &pool.config.servers[index];
    let ok = timeout(PROBE_TIMEOUT, probe(&server.addr, &pool))
        .await
        .unwrap_or(false);
    debug!(pool = %pool.config.name, server = %server.name, ok, "probe");
    if ok {
        let ctx = HealthCtx {
            health,
            policy: pool.policy,
            epoch: pool.epoch.clone(),
            stats: pool.server_stats[index].clone(),
            pool_stats: pool.stats.clone(),
            label: format!("{}/{}", pool.config.name, server.name).into(),
        };
        ctx.readmit();
    }
}

/// One request-reply round trip that only a working server completes.
async fn probe(addr: &ServerAddr, pool: &PoolTable) -> bool {
    let Ok(stream) = Stream::connect(addr).await else {
        return false;
    };
    let cfg = &pool.config;
    let mut request = Vec::new();
    let mut replies = 1;
    if cfg.redis {
        if let Some(pw) = &cfg.redis_auth {
            encode::command(&mut request, [&b"AUTH"[..], pw.as_bytes()].into_iter());
            replies += 1;
        }
        encode::command(&mut request, [&b"PING"[..]].into_iter());
    } else {
        request.extend_from_slice(b"version\r\n");
    }
    if write_all(&stream, &request).await.is_err() {
        return false;
    }
    let mut buf = BytesMut::with_capacity(256);
    let expected: &[u8] = if cfg.redis { b"+PONG\r\n" } else { b"VERSION " };
    let mut seen = 0;
    while buf.len() < 4096 {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
        // Every reply must be a success; the last must be the probe's own answer.
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2) {
            let line = buf.split_to(end);
            seen += 1;
            if line.first() == Some(&b'-')
                || line.starts_with(b"SERVER_ERROR")
                || line.starts_with(b"ERROR")
            {
                return false;
            }
            if seen == replies {
                return line.starts_with(expected);
            }
        }
    }
    false
}

async fn write_all(stream: &Stream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
