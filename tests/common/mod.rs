//! Shared harness for the integration tests in `tests/*.rs` (each one says `mod common;`).
//!
//! * [`Memcached`] and [`Redis`]: real backends on free loopback ports, killed on drop, with
//!   direct access (`raw`, `get_direct`, `stat`, ...) so a test can check what really reached a
//!   shard, and `pause`/`resume`/`kill`/`restart` to make a backend slow or dead.
//! * [`Proxy`]: the `shardproxy` binary built by cargo for this test run, started on a YAML
//!   config written to its own [`TempDir`].
//! * [`RawClient`]: byte-exact wire assertions, independent of any client library.
//! * [`Cluster`]: N backends behind one pool of one proxy, the usual test fixture.
//! * [`memcache_pool_yaml`], [`redis_pool_yaml`]: config text for the common cases.
//! * [`scrape_metrics`], [`metric_value`]: `/metrics` samples, for a proxy started with
//!   `--metrics-addr`.
//!
//! Everything is blocking std code: it works the same from `#[test]` and from
//! `#[tokio::test]` (where long blocking calls should go through `spawn_blocking`), and it
//! cannot share a bug with the proxy's async code. Failures panic with the child's log, since a
//! test that fails without saying why costs more than the extra lines here.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset of the harness

mod client;
mod cluster;
mod metrics;
mod proxy;
mod relay;
mod servers;

pub use client::{resp_cmd, resp_frame_len, show, RawClient};
pub use cluster::Cluster;
pub use metrics::{metric_value, scrape_metrics};
pub use proxy::{listen_addrs, Proxy};
pub use relay::Relay;
pub use servers::{Memcached, Redis};

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Ports this test process has handed out. The tests of one binary run in parallel threads,
/// and a port is only bound some time after it is chosen; without this set two tests could
/// be given the same port in that window.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback TCP port that nothing listens on and that this process has not handed out.
///
/// Ports are drawn at random *below* the kernel's ephemeral range: a port that the kernel
/// hands to `bind(:0)` can, once released, be reused as the local port of any outgoing
/// connection (the proxy's own backend connections included) before our server binds it.
/// Below that range only explicit binds compete. Each candidate is checked by binding it.
/// Falls back to `bind(127.0.0.1:0)` if the range is oddly configured or exhausted.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let (lo, hi) = (10_000u32, ephemeral_low());
    for attempt in 0u32..300 {
        let port = if attempt < 200 && hi > lo + 1_000 {
            let mut h = RandomState::new().build_hasher();
            h.write_u32(attempt);
            (lo + (h.finish() % u64::from(hi - lo)) as u32) as u16
        } else {
            match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(_) => continue,
            }
        };
        if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!("free_port: no free loopback port found after 300 tries");
}

/// First port of the kernel's ephemeral (outgoing-connection) range; Linux default 32768.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// True if a socket on this machine is listening on TCP `port` (any local address).
///
/// Read from /proc/net/tcp{,6} instead of probing with a connection: a probe is a real client
/// to the server, so it would count against a `client_connections` limit and in connection
/// stats until the server noticed it had closed, and tests of either would race with it.
/// Falls back to a probe where /proc is unreadable.
pub fn tcp_listening(port: u16) -> bool {
    let local = format!(":{port:04X}");
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        // columns: sl local_address rem_address st ...; st 0A is LISTEN
        let listening = text.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().take(4).collect();
            cols.len() == 4 && cols[1].ends_with(&local) && cols[3] == "0A"
        });
        if listening {
            return true;
        }
    }
    !readable && accepts(&format!("127.0.0.1:{port}"))
}

/// True if a unix socket is listening at `path`, read from /proc/net/unix for the same
/// reason as [`tcp_listening`] (flag 00010000 is `__SO_ACCEPTCON`, i.e. listening).
pub fn unix_listening(path: &str) -> bool {
    match std::fs::read_to_string("/proc/net/unix") {
        Ok(text) => text.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() == 8 && cols[3] == "00010000" && cols[7] == path
        }),
        Err(_) => std::os::unix::net::UnixStream::connect(path).is_ok(),
    }
}

/// True if something accepts a TCP connection on `addr` (`host:port`) within 200 ms.
/// Note that this *is* a client connection to the server; see [`tcp_listening`].
pub fn accepts(addr: &str) -> bool {
    let Ok(addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

/// Polls `ready` every 10 ms until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Finds an installed program on `PATH` or in the Debian locations (`nutcracker` lives in
/// /usr/sbin, which a non-root `PATH` often lacks). Panics with the fix when it is missing.
pub fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/test, which installs it"))
}

/// A directory under `std::env::temp_dir()` that is removed on drop. Holds configs, logs and
/// Redis's working dir, so parallel tests never share files and nothing is left behind.
/// Set `SHARDPROXY_KEEP_TMP=1` to keep it for a post-mortem (its path is then printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<counter>-<nanos>`; the pid and counter make it unique
    /// across threads and processes, the nanos across reruns that reuse a pid.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SHARDPROXY_KEEP_TMP").is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One pool in twemproxy YAML: `name` listening on `127.0.0.1:listen_port` over loopback
/// `servers` given as `(port, weight, optional name)`. `extra` holds more pool keys, one per
/// line (e.g. `"hash: md5\ntimeout: 500"`); unindented lines get the pool's two-space indent.
/// Concatenate several results to build a multi-pool config.
pub fn memcache_pool_yaml(
    name: &str,
    listen_port: u16,
    servers: &[(u16, u32, Option<&str>)],
    extra: &str,
) -> String {
    let mut y = format!("{name}:\n  listen: 127.0.0.1:{listen_port}\n");
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        let indent = if line.starts_with(' ') { "" } else { "  " };
        y.push_str(&format!("{indent}{line}\n"));
    }
    y.push_str("  servers:\n");
    for (port, weight, server_name) in servers {
        let suffix = server_name.map(|n| format!(" {n}")).unwrap_or_default();
        y.push_str(&format!("   - 127.0.0.1:{port}:{weight}{suffix}\n"));
    }
    y
}

/// [`memcache_pool_yaml`] with `redis: true` added.
pub fn redis_pool_yaml(
    name: &str,
    listen_port: u16,
    servers: &[(u16, u32, Option<&str>)],
    extra: &str,
) -> String {
    memcache_pool_yaml(name, listen_port, servers, &format!("redis: true\n{extra}"))
}
