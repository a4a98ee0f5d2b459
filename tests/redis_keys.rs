//! Redis commands whose keys are not all where the key specs say: SORT ... STORE (its
//! destination has no key spec). Placement is checked on the backends themselves, replies
//! byte for byte.

mod common;

use common::{resp_cmd, Cluster, RawClient, Redis};

const CROSSSLOT: &[u8] =
    b"-CROSSSLOT Keys in request don't hash to the same server (use a hash tag)\r\n";

/// Three servers, md5 (spreads test keys over them), 2 s timeout (a lost reply fails the
/// request instead of hanging the test).
fn pool(extra: &str) -> Cluster<Redis> {
    let servers = (0..3).map(|_| Redis::start()).collect();
    Cluster::redis_with(servers, &format!("hash: md5\ntimeout: 2000\n{extra}"))
}

fn cmd(c: &mut RawClient, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&resp_cmd(&args));
    c.read_resp()
}

/// A key named `{prefix}N` whose server is (`same`) or is not (`!same`) the one holding
/// `anchor`, found by writing candidates through the proxy and asking the backends; the
/// candidate is deleted again.
fn key_placed(
    p: &Cluster<Redis>,
    c: &mut RawClient,
    anchor: &str,
    prefix: &str,
    same: bool,
) -> String {
    let home = p.holder(anchor);
    (0..200)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| {
            assert_eq!(cmd(c, &["SET", k, "probe"]), b"+OK\r\n");
            let found = (p.holder(k) == home) == same;
            assert_eq!(cmd(c, &["DEL", k]), b":1\r\n");
            found
        })
        .expect("200 candidate keys all on one side")
}

const SORTED: &[u8] = b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n";

#[test]
fn sort_store_is_routed_by_its_source_and_its_destination() {
    let p = pool("");
    let mut c = p.client();
    assert_eq!(cmd(&mut c, &["RPUSH", "list", "3", "1", "2"]), b":3\r\n");
    let far = key_placed(&p, &mut c, "list", "far", false);
    let near = key_placed(&p, &mut c, "list", "near", true);

    // A destination on another server: refused, and written nowhere (routed by the source
    // alone, SORT would have created it on the source's server).
    for args in [
        vec!["SORT", "list", "STORE", &far],
        vec![
            "sort", "list", "by", "nosort", "limit", "0", "10", "get", "#", "alpha", "store", &far,
        ],
        vec!["SORT", "list", "STORE", &near, "STORE", &far],
    ] {
        assert_eq!(cmd(&mut c, &args), CROSSSLOT, "{args:?}");
    }
    assert_eq!(p.holders(&far), Vec::<usize>::new());

    // A destination on the source's server works; the last STORE is the one written.
    assert_eq!(
        cmd(&mut c, &["SORT", "list", "STORE", &far, "STORE", &near]),
        b":3\r\n"
    );
    assert_eq!(cmd(&mut c, &["LRANGE", &near, "0", "-1"]), SORTED);
    assert_eq!(p.holder(&near), p.holder("list"));
    assert_eq!(p.holders(&far), Vec::<usize>::new());

    // SORT_RO has one key and no STORE; SORT without STORE is a plain read.
    assert_eq!(cmd(&mut c, &["SORT_RO", "list"]), SORTED);
    assert_eq!(cmd(&mut c, &["SORT", "list", "LIMIT", "0", "3"]), SORTED);

    // COMMAND GETKEYS, answered by the proxy from the same key finder, names the
    // destination exactly as redis-server does.
    let direct = &p.servers[0];
    for args in [
        vec!["SORT", "list", "STORE", &far],
        vec![
            "SORT", "list", "BY", "w_*", "LIMIT", "0", "2", "GET", "o_*", "STORE", &far,
        ],
        vec!["SORT", "list", "STORE", &near, "STORE", &far],
        vec!["SORT", "list", "GET", "store"],
        vec!["SORT_RO", "list", "GET", "#"],
    ] {
        let getkeys: Vec<&str> = ["COMMAND", "GETKEYS"]
            .iter()
            .chain(&args)
            .copied()
            .collect();
        let want = direct.cmd(&getkeys);
        assert_eq!(cmd(&mut c, &getkeys), want, "{args:?}");
    }
    assert_eq!(
        cmd(
            &mut c,
            &["COMMAND", "GETKEYS", "SORT", "list", "STORE", &far]
        ),
        format!("*2\r\n$4\r\nlist\r\n${}\r\n{far}\r\n", far.len()).into_bytes()
    );
}

#[test]
fn sort_store_with_a_hash_tag_writes_the_destination_beside_its_source() {
    let p = pool("hash_tag: \"{}\"");
    let mut c = p.client();
    assert_eq!(cmd(&mut c, &["RPUSH", "{t}:src", "3", "1", "2"]), b":3\r\n");
    assert_eq!(
        cmd(&mut c, &["SORT", "{t}:src", "DESC", "STORE", "{t}:dst"]),
        b":3\r\n"
    );
    let want = b"*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n";
    assert_eq!(cmd(&mut c, &["LRANGE", "{t}:dst", "0", "-1"]), want);
    let home = p.holder("{t}:src");
    assert_eq!(p.holder("{t}:dst"), home);
    assert_eq!(p.servers[home].cmd(&["LRANGE", "{t}:dst", "0", "-1"]), want);
}
