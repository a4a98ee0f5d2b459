//! Redis commands the proxy splits over servers (MGET, MSET, DEL, UNLINK, TOUCH, EXISTS)
//! when one fragment fails: the whole command gets one error reply, as from redis-server
//! (never an array holding error elements, which redis-py hands back as values).

mod common;

use common::{resp_cmd, Cluster, RawClient, Redis};

fn cmd(c: &mut RawClient, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&resp_cmd(&args));
    c.read_resp()
}

/// Two servers (md5, so keys spread), 2 s timeout; `n` keys written through the proxy and
/// the index of the server each one landed on.
fn two_servers_with_keys(n: usize) -> (Cluster<Redis>, Vec<String>, Vec<usize>) {
    let p = Cluster::redis(2, "hash: md5\ntimeout: 2000\n");
    let mut c = p.client();
    let keys: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    for k in &keys {
        assert_eq!(cmd(&mut c, &["SET", k, k]), b"+OK\r\n");
    }
    let holders: Vec<usize> = keys.iter().map(|k| p.holder(k)).collect();
    assert!(holders.contains(&0) && holders.contains(&1), "{holders:?}");
    (p, keys, holders)
}

/// Sends `name` with `args`, asserts a single error reply starting with `prefix`, and that
/// the next request on the connection gets its own reply (nothing else was owed).
fn expect_one_error(c: &mut RawClient, name: &str, args: &[&str], prefix: &str) {
    let mut argv = vec![name];
    argv.extend(args);
    let reply = cmd(c, &argv);
    assert!(
        reply.starts_with(prefix.as_bytes()),
        "{name}: {}",
        common::show(&reply)
    );
    assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1, "{name}");
    assert_eq!(cmd(c, &["PING"]), b"+PONG\r\n", "after {name}");
}

#[test]
fn a_dead_server_fails_the_whole_multi_key_command_once() {
    let (mut p, keys, holders) = two_servers_with_keys(20);
    p.servers[1].kill();
    let mut c = p.client();
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    for name in ["MGET", "TOUCH", "EXISTS"] {
        expect_one_error(&mut c, name, &all, "-ERR Connection refused");
    }
    // Keys only on the live server are still served, in request order.
    let live: Vec<&str> = all
        .iter()
        .zip(&holders)
        .filter(|(_, &h)| h == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut argv = vec!["MGET"];
    argv.extend(&live);
    let mut want = format!("*{}\r\n", live.len());
    for k in &live {
        want += &format!("${}\r\n{k}\r\n", k.len());
    }
    assert_eq!(
        common::show(&cmd(&mut c, &argv)),
        common::show(want.as_bytes())
    );
    let mut argv = vec!["EXISTS"];
    argv.extend(&live);
    assert_eq!(
        cmd(&mut c, &argv),
        format!(":{}\r\n", live.len()).as_bytes()
    );
    // Writes too (the live server's part may have been applied, as with twemproxy).
    let pairs: Vec<&str> = all.iter().flat_map(|k| [*k, "v"]).collect();
    expect_one_error(&mut c, "MSET", &pairs, "-ERR Connection refused");
    for name in ["DEL", "UNLINK"] {
        expect_one_error(&mut c, name, &all, "-ERR Connection refused");
    }
}

#[test]
fn a_backend_error_reply_to_one_fragment_is_the_whole_reply() {
    let (p, keys, _) = two_servers_with_keys(20);
    // Server 1 refuses MGET and MSET to the proxy's user: its fragments get -NOPERM.
    assert_eq!(
        p.servers[1].cmd(&["ACL", "SETUSER", "default", "-mget", "-mset"]),
        b"+OK\r\n"
    );
    let mut c = p.client();
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    expect_one_error(&mut c, "MGET", &all, "-NOPERM ");
    let pairs: Vec<&str> = all.iter().flat_map(|k| [*k, "v"]).collect();
    expect_one_error(&mut c, "MSET", &pairs, "-NOPERM ");
    // The failed MSET may have written server 0's keys (as twemproxy's would); the
    // commands the server still allows are merged as before.
    let mut argv = vec!["EXISTS"];
    argv.extend(&all);
    assert_eq!(cmd(&mut c, &argv), format!(":{}\r\n", all.len()).as_bytes());
}
