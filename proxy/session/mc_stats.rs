//! The memcached `stats` command, answered by the proxy with its own counters for the pool.
//!
//! A pool is many servers, so forwarding `stats` to one of them would mislead; instead the
//! proxy reports what it measured itself, using memcached's stat names where the meaning is
//! the same (so existing memcached dashboards read sensible values) and `proxy_`/`server_`
//! prefixes for what only a proxy knows.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::server::WorkerPool;
use crate::stats::kind;

/// Renders `STAT <name> <value>` lines and the closing `END`.
pub fn render(pool: &WorkerPool) -> String {
    let t = &pool.table;
    let s = &t.stats;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = String::with_capacity(2048);
    let mut stat = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "STAT {name} {value}\r\n");
    };
    stat("pid", &std::process::id());
    stat("uptime", &pool.started.elapsed().as_secs());
    stat("time", &now);
    stat(
        "version",
        &concat!("shardproxy-", env!("CARGO_PKG_VERSION")),
    );
    stat("pool", &t.config.name);
    stat("curr_connections", &s.client_connections.get());
    stat("total_connections", &s.total_connections.get());
    stat("rejected_connections", &s.rejected_connections.get());
    let sum = |classes: &[&str]| classes.iter().map(|c| s.requests_of(c)).sum::<u64>();
    // memcached counts keys for cmd_get: every key read is a hit or a miss.
    stat("cmd_get", &(s.get_hits.get() + s.get_misses.get()));
    stat(
        "cmd_set",
        &sum(&["set", "add", "replace", "append", "prepend", "cas"]),
    );
    stat("cmd_flush", &sum(&["flush_all"]));
    stat("cmd_touch", &sum(&["touch", "gat", "gats"]));
    stat("cmd_delete", &sum(&["delete"]));
    stat("cmd_arith", &sum(&["incr", "decr"]));
    stat("get_hits", &s.get_hits.get());
    stat("get_misses", &s.get_misses.get());
    stat("bytes_read", &s.bytes_read.get());
    stat("bytes_written", &s.bytes_written.get());
    stat(
        "proxy_client_errors",
        &s.errors[kind::CLIENT_PROTOCOL].get(),
    );
    stat(
        "proxy_backend_error_replies",
        &s.errors[kind::BACKEND_ERROR].get(),
    );
    stat("proxy_timeouts", &s.errors[kind::TIMEOUT].get());
    stat("proxy_forward_errors", &s.forward_error.get());
    stat("proxy_fragments", &s.fragments.get());
    stat("proxy_get_lost", &s.get_lost.get());
    stat("proxy_servers", &t.config.servers.len());
    for (server, st) in t.config.servers.iter().zip(&t.server_stats) {
        let name = &server.name;
        stat(&format!("server:{name}:requests"), &st.requests.get());
        stat(&format!("server:{name}:responses"), &st.responses.get());
        stat(
            &format!("server:{name}:timeouts"),
            &st.server_timedout.get(),
        );
        stat(&format!("server:{name}:errors"), &st.server_err.get());
        stat(
            &format!("server:{name}:connections"),
            &st.server_connections.get(),
        );
    }
    out.push_str("END\r\n");
    out
}
