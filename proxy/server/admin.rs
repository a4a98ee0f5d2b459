//! Operator endpoints, served on the acceptor thread (they are rare next to requests):
//! - `GET /metrics` (Prometheus text format), `GET /health` on `--metrics-addr`, by default on
//!   the stats port itself, so that `-s` alone gives each instance its own admin port;
//! - nutcracker's stats port (`-s`/`-a`): one JSON document per connection, with nutcracker's
//!   field names and layout, so existing twemproxy dashboards and scripts keep working. A
//!   connection whose first bytes are an HTTP `GET` or `HEAD` gets HTTP instead; nutcracker's
//!   clients send nothing and read, and get the JSON.
//!
//! Both read the same live counters as the data path; nothing is aggregated on an interval.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Encoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::process::ProcessMetrics;
use crate::stats::Metrics;
use crate::topology::RouteTable;

/// Largest HTTP request head read from a scraper.
const MAX_HEAD: usize = 8192;
/// A scraper that sends nothing within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the stats port waits for a request line before answering with the JSON (its
/// clients send nothing; an HTTP client sends its request as it connects, through a tunnel or
/// port-forward within a few hundred milliseconds).
const SNIFF: Duration = Duration::from_millis(300);
/// A scraper that does not take its reply within this is dropped (it cannot hold a task and a
/// file descriptor forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics` until the task is dropped.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    process: Arc<ProcessMetrics>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, process) = (metrics.clone(), process.clone());
        tokio::spawn(async move {
            if let Err(e) = http(stream, &metrics, &process, None).await {
                debug!(error = %e, "metrics request failed");
            }
        });
    }
}

/// Answers one HTTP request; on the stats port, `GET /` gets the stats JSON (`stats_json`).
async fn http(
    mut stream: TcpStream,
    metrics: &Metrics,
    process: &ProcessMetrics,
    stats_json: Option<String>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            process.refresh();
            let mut body = Vec::with_capacity(64 * 1024);
            prometheus::TextEncoder::new()
                .encode(&metrics.registry.gather(), &mut body)
                .map_err(std::io::Error::other)?;
            ("200 OK", prometheus::TEXT_FORMAT, body)
        }
        (b"GET", b"/health") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        (b"GET", b"/") if stats_json.is_some() => (
            "200 OK",
            "application/json",
            stats_json.unwrap_or_default().into_bytes(),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            b"try /metrics or /health\n".to_vec(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n".to_vec(),
        ),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(header.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Serves nutcracker's stats JSON: one document per connection, then close; with `http`,
/// a connection that starts with an HTTP request gets `/metrics` and `/health` instead.
pub async fn serve_stats(
    listener: TcpListener,
    table: tokio::sync::watch::Receiver<Arc<RouteTable>>,
    http_on: Option<(Arc<Metrics>, Arc<ProcessMetrics>)>,
) {
    let hostname = hostname();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let current = table.borrow().clone();
        let doc = stats_json(&current, &hostname);
        let http_on = http_on.clone();
        tokio::spawn(async move {
            if let Some((metrics, process)) = http_on {
                if is_http(&stream).await {
                    if let Err(e) = http(stream, &metrics, &process, Some(doc)).await {
                        debug!(error = %e, "metrics request failed");
                    }
                    return;
                }
            }
            let _ = stream.write_all(doc.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Whether the client starts with an HTTP `GET` or `HEAD` within [`SNIFF`] (peeked: the
/// bytes stay for the HTTP handler).
async fn is_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(SNIFF, async {
        loop {
            match stream.peek(&mut first).await {
                Ok(n) if n >= 4 || n == 0 => return n,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(_) => return 0,
            }
        }
    })
    .await;
    matches!(peeked, Ok(4)) && (&first == b"GET " || &first == b"HEAD")
}

/// nutcracker's layout: service fields, then one object per pool holding the pool's counters
/// and one object per server.
pub fn stats_json(table: &RouteTable, hostname: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let total: u64 = table
        .pools
        .iter()
        .map(|p| p.stats.total_connections.get())
        .sum();
    let current: i64 = table
        .pools
        .iter()
        .map(|p| p.stats.client_connections.get())
        .sum();
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "{{\"service\":\"shardproxy\", \"source\":{}, \"version\":{}, \"uptime\":{}, \"timestamp\":{now}, \"total_connections\":{total}, \"curr_connections\":{current}",
        json_str(hostname),
        json_str(env!("CARGO_PKG_VERSION")),
        table.started.elapsed().as_secs(),
    );
    for pool in &table.pools {
        let s = &pool.stats;
        let _ = write!(
            out,
            ", {}: {{\"client_eof\":{}, \"client_err\":{}, \"client_connections\":{}, \"server_ejects\":{}, \"forward_error\":{}, \"fragments\":{}",
            json_str(&pool.config.name),
            s.client_eof.get(),
            s.client_err.get(),
            s.client_connections.get(),
            s.server_ejects.get(),
            s.forward_error.get(),
            s.fragments.get()
        );
        for (server, ss) in pool.config.servers.iter().zip(&pool.server_stats) {
            let _ = write!(
                out,
                ", {}: {{\"server_eof\":{}, \"server_err\":{}, \"server_timedout\":{}, \"server_connections\":{}, \"server_ejected_at\":{}, \"requests\":{}, \"request_bytes\":{}, \"responses\":{}, \"response_bytes\":{}, \"in_queue\":{}, \"in_queue_bytes\":0, \"out_queue\":0, \"out_queue_bytes\":0}}",
                json_str(&server.name),
                ss.server_eof.get(),
                ss.server_err.get(),
                ss.server_timedout.get(),
                ss.server_connections.get(),
                ss.ejected_at.get() * 1_000_000,
                ss.requests.get(),
                ss.request_bytes.get(),
                ss.responses.get(),
                ss.response_bytes.get(),
                ss.in_flight.get()
            );
        }
        out.push('}');
    }
    out.push_str("}\n");
    out
}

/// A JSON string literal (nutcracker inserts names unescaped; a quote in a name would break
/// its output).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
