//! The command line: nutcracker-compatible flags, `-t` reporting, client limits.

mod common;

use std::process::Command;

use common::{memcache_pool_yaml, Memcached, Proxy, RawClient};

fn shardproxy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .args(args)
        .output()
        .expect("run shardproxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data(name: &str) -> String {
    format!(
        "{}/tests/data/twemproxy/conf-errors/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn test_conf_reports_every_problem_and_exits_1() {
    let dir = common::TempDir::new("cli");
    let path = dir.join("bad.yml");
    std::fs::write(
        &path,
        "a:\n  listen: 127.0.0.1:1\n  hash: sha1\n  redis: yes\n  servers:\n   - 127.0.0.1:2:0\nb:\n  listen: 127.0.0.1:1\n  servers:\n   - h:3:1\n",
    )
    .unwrap();
    let (code, _, err) = shardproxy(&["-t", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    for needle in [
        "pool 'a': key 'hash'",
        "pool 'a': key 'redis'",
        "pool 'a': key 'servers'",
        "pool 'b': key 'listen'",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.ends_with("syntax is invalid\n"), "{err}");
}

#[test]
fn test_conf_accepts_twemproxy_files_unchanged() {
    for file in [
        "ok.yml",
        "docstart.yml",
        "flowseq.yml",
        "reuseport.yml",
        "unixlisten.yml",
    ] {
        let (code, _, err) = shardproxy(&["-t", "-c", &data(file)]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(err.contains("syntax is ok"), "{err}");
    }
    let example = format!("{}/config/nutcracker.yml", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(shardproxy(&["-t", "-c", &example]).0, 0);
    let demo = format!("{}/config/demo.yml", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(shardproxy(&["--test-conf", "--conf-file", &demo]).0, 0);
}

#[test]
fn version_and_nutcracker_only_flags() {
    let (code, out, _) = shardproxy(&["-V"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            concat!("This is shardproxy-", env!("CARGO_PKG_VERSION"), "\n")
        )
    );
    // -d and -m are accepted (documented as ignored), so nutcracker command lines still parse.
    let (code, _, err) = shardproxy(&[
        "-d",
        "-m",
        "16384",
        "-v",
        "4",
        "-i",
        "1000",
        "-t",
        "-c",
        &data("ok.yml"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = shardproxy(&["--bogus"]);
    assert_eq!(code, 2);
}

#[test]
fn client_connections_limit_is_enforced_with_an_explicit_error() {
    let m = Memcached::start();
    let port = common::free_port();
    let _proxy = Proxy::start(&memcache_pool_yaml(
        "p",
        port,
        &[(m.port, 1, None)],
        "client_connections: 2",
    ));
    let mut a = RawClient::connect_port(port);
    let mut b = RawClient::connect_port(port);
    a.expect(b"version\r\n", b"VERSION ");
    b.expect(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
    let mut c = RawClient::connect_port(port);
    assert_eq!(c.read_line(), b"ERROR Too many open connections\r\n");
    assert!(c.is_closed());
    drop(a);
    // The slot is released when a client leaves.
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || {
            let mut d = RawClient::connect_port(port);
            d.send(b"get k\r\n");
            d.read_line() == b"VALUE k 0 1\r\n"
        }
    ));
}

#[test]
fn pid_file_is_written_and_removed() {
    let m = Memcached::start();
    let port = common::free_port();
    let dir = common::TempDir::new("pid");
    let pid_path = dir.join("shardproxy.pid");
    let mut proxy = Proxy::start_with(
        &memcache_pool_yaml("p", port, &[(m.port, 1, None)], ""),
        &["-p", pid_path.to_str().unwrap()],
    );
    let written = std::fs::read_to_string(&pid_path).unwrap();
    assert_eq!(written.trim(), proxy.pid().to_string());
    proxy.send_signal(libc::SIGTERM);
    assert!(proxy
        .wait_exit(std::time::Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    assert!(!pid_path.exists());
}

#[test]
fn a_missing_default_config_is_reported_once() {
    // No -c, run where conf/nutcracker.yml does not exist.
    let dir = common::TempDir::new("cli-noconf");
    let out = Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .current_dir(dir.path())
        .args(["--stats-port", "0", "--metrics-addr", "off"])
        .output()
        .expect("run shardproxy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("conf/nutcracker.yml").count(), 1, "{err}");
    assert!(
        err.starts_with("shardproxy: cannot read configuration file 'conf/nutcracker.yml'"),
        "{err}"
    );
    assert!(err.contains("-c FILE"), "{err}");
}
