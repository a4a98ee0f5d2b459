//! A proxy out of file descriptors: its listener fails every accept (EMFILE) until clients
//! leave. The episode must cost one log line when it starts and one when it ends (not one per
//! 50 ms retry), be counted in `shardproxy_accept_errors_total`, and end with the proxy
//! serving again, the client that waited in the backlog included.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, redis_pool_yaml, wait_until, Proxy, Redis};

/// The proxy's descriptor limit: about 18 of its own at start (runtimes, timers, listeners,
/// stdio), one backend connection, and room for a few dozen clients.
const NOFILE: u64 = 48;

/// Reads `+PONG` (a PING already sent) within `wait`; false on timeout.
fn answered(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 7];
    match s.read_exact(&mut buf) {
        Ok(()) => {
            assert_eq!(&buf, b"+PONG\r\n");
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("reading PONG: {e}"),
    }
}

/// Sends a RESP command and reads a reply of exactly `want.len()` bytes.
fn exchange(s: &mut TcpStream, args: &[&str], want: &[u8]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    s.write_all(&common::resp_cmd(&args)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(common::show(&got), common::show(want));
}

/// The proxy's open descriptors below the limit (ones it inherited above it do not count).
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|&fd| fd < NOFILE)
        .count()
}

fn lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(text)).collect()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn running_out_of_file_descriptors_logs_once_per_episode() {
    let redis = Redis::start();
    let (port, metrics) = (free_port(), free_port());
    let yaml = redis_pool_yaml("r", port, &[(redis.port, 1, None)], "");
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let args = ["--threads", "1", "--metrics-addr", &metrics_addr];
    let proxy = Proxy::start_with_fd_limit(&yaml, &args, NOFILE);

    // The worker's backend connection is made before descriptors run out.
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut first, &["SET", "k", "v"], b"+OK\r\n");
    let mut clients = vec![first];
    // Fill the descriptor table: clients the proxy answers, until one that it cannot accept
    // (no answer, and the failure logged; a slow answer on a busy machine is waited for).
    // Exactly one client is left waiting, so once a descriptor is free the proxy accepts it
    // and the backlog is empty: recovery cannot start a second episode.
    let mut waiting = None;
    'fill: for _ in 0..NOFILE {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"PING\r\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if answered(&mut c, Duration::from_millis(50)) {
                clients.push(c);
                continue 'fill;
            }
            if proxy.stderr_log().contains("accept failed") {
                waiting = Some(c);
                break 'fill;
            }
        }
        panic!(
            "a client got no answer and no accept failure was logged; log:\n{}",
            proxy.stderr_log()
        );
    }
    let mut waiting = waiting.unwrap_or_else(|| {
        panic!("{NOFILE} clients accepted: the descriptor limit was not applied")
    });
    // Two seconds of failed retries (about 40 at one per 50 ms): still one line.
    std::thread::sleep(Duration::from_secs(2));
    let log = proxy.stderr_log();
    let failed = lines_with(&log, "accept failed");
    assert_eq!(failed.len(), 1, "log:\n{log}");
    assert!(failed[0].contains("Too many open files"), "{}", failed[0]);
    assert!(failed[0].contains("WARN"), "{}", failed[0]);
    assert!(
        lines_with(&log, "accepting again").is_empty(),
        "log:\n{log}"
    );

    // Clients leave: the waiting client is accepted and answered, and the episode ends with
    // one line that counts its failures.
    drop(clients);
    assert!(answered(&mut waiting, Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || proxy
        .stderr_log()
        .contains("accepting again")));
    let log = proxy.stderr_log();
    let again = lines_with(&log, "accepting again after ");
    assert_eq!(again.len(), 1, "log:\n{log}");
    assert!(again[0].contains("INFO"), "{}", again[0]);
    let failures: u64 = again[0]
        .split("accepting again after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in: {}", again[0]));
    assert!(failures >= 10, "{failures} failures in 2 s of retries");

    // Serving again: once the departed clients' descriptors are closed, new clients are
    // accepted and reach the backend.
    assert!(wait_until(Duration::from_secs(5), || open_fds(proxy.pid())
        < NOFILE as usize - 10));
    let mut late = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut late, &["SET", "k2", "after"], b"+OK\r\n");
    exchange(&mut late, &["GET", "k2"], b"$5\r\nafter\r\n");
    assert_eq!(redis.get_direct("k2").as_deref(), Some(&b"after"[..]));

    // Every failure was counted, and the episode is still the only one logged.
    let scrape = http_get(metrics, "/metrics");
    let counted = format!("shardproxy_accept_errors_total{{pool=\"r\"}} {failures}\n");
    assert!(scrape.contains(&counted), "want {counted:?} in:\n{scrape}");
    let log = proxy.stderr_log();
    assert_eq!(lines_with(&log, "accept failed").len(), 1, "log:\n{log}");
}
