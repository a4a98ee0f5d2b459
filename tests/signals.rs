//! twemproxy's signals, sent to the real binary: SIGHUP reloads and reopens the `-o` log
//! file, SIGUSR1 reloads, SIGUSR2 is ignored, SIGTTIN/SIGTTOU raise and lower the log level.

mod common;

use std::time::Duration;

use common::{memcache_pool_yaml, wait_until, Memcached, Proxy, RawClient, TempDir};

const WAIT: Duration = Duration::from_secs(5);

fn pool(name: &str, port: u16, server: &Memcached) -> String {
    memcache_pool_yaml(name, port, &[(server.port, 1, None)], "")
}

fn serves(port: u16) -> bool {
    let mut c = RawClient::connect_port(port);
    c.expect(b"set sig 0 0 1\r\nx\r\n", b"STORED\r\n");
    true
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn sigusr2_is_ignored() {
    let server = Memcached::start();
    let port = common::free_port();
    let mut proxy = Proxy::start(&pool("a", port, &server));
    proxy.send_signal(libc::SIGUSR2);
    assert!(proxy.wait_exit(Duration::from_millis(500)).is_none());
    assert!(serves(port));
    assert!(wait_until(WAIT, || proxy
        .stderr_log()
        .contains("SIGUSR2 ignored")));
}

#[test]
fn sigusr1_reloads_the_configuration() {
    let server = Memcached::start();
    let (a, b) = (common::free_port(), common::free_port());
    let proxy = Proxy::start_with(&pool("a", a, &server), &["--watch-interval", "0"]);
    proxy.write_config(&(pool("a", a, &server) + &pool("b", b, &server)));
    // Not watching the file: nothing changes until the signal.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!common::tcp_listening(b));
    proxy.send_signal(libc::SIGUSR1);
    assert!(
        wait_until(WAIT, || common::tcp_listening(b)),
        "{}",
        proxy.stderr_log()
    );
    assert!(serves(b));
    assert!(proxy.stderr_log().contains("trigger=\"SIGUSR1\""));
}

#[test]
fn sighup_reopens_the_log_file_after_a_rename() {
    let server = Memcached::start();
    let port = common::free_port();
    let dir = TempDir::new("sighup");
    let log = dir.join("proxy.log");
    let rotated = dir.join("proxy.log.1");
    let proxy = Proxy::start_with(&pool("a", port, &server), &["-o", log.to_str().unwrap()]);
    assert!(wait_until(WAIT, || read(&log).contains("shardproxy started")));
    std::fs::rename(&log, &rotated).unwrap();
    proxy.send_signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || read(&log).contains("configuration reloaded")),
        "new log: {:?}\nrotated: {:?}",
        read(&log),
        read(&rotated)
    );
    assert!(!read(&rotated).contains("configuration reloaded"));
    assert!(serves(port));
}

/// Connects and resets the connection (SO_LINGER 0), which the proxy logs at debug level
/// ("client connection error").
fn reset_a_client(port: u16) {
    let mut c = RawClient::connect_port(port);
    c.expect(b"version\r\n", b"VERSION ");
    socket2::SockRef::from(c.stream())
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
}

#[test]
fn sigttin_raises_the_log_level_and_sigttou_lowers_it() {
    let server = Memcached::start();
    let port = common::free_port();
    let proxy = Proxy::start_with(&pool("a", port, &server), &["--threads", "1"]);
    let debug_lines = || {
        proxy
            .stderr_log()
            .matches("client connection error")
            .count()
    };
    // The default level (-v 5, notice) leaves debug lines out.
    reset_a_client(port);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(debug_lines(), 0);
    proxy.send_signal(libc::SIGTTIN);
    assert!(wait_until(WAIT, || proxy.stderr_log().contains("level=6")));
    proxy.send_signal(libc::SIGTTIN);
    assert!(wait_until(WAIT, || proxy.stderr_log().contains("level=7")));
    reset_a_client(port);
    assert!(
        wait_until(WAIT, || debug_lines() == 1),
        "{}",
        proxy.stderr_log()
    );
    proxy.send_signal(libc::SIGTTOU);
    assert!(wait_until(WAIT, || proxy.stderr_log().contains("level=6")
        && proxy.stderr_log().matches("log level changed").count() == 3));
    reset_a_client(port);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(debug_lines(), 1, "{}", proxy.stderr_log());
    assert!(serves(port));
}
