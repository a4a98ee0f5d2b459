//! Redis commands whose keys are not all where the key specs say: SORT ... STORE (its
//! destination has no key spec) and scripts (which may touch keys they did not declare).
//! Placement is checked on the backends themselves, replies byte for byte.

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

/// The refusal a pool with `allow_scripts: false` gives `name`.
fn disabled(name: &str) -> Vec<u8> {
    format!(
        "-ERR command '{name}' is not supported by shardproxy: scripts are disabled for this pool (allow_scripts: false)\r\n"
    )
    .into_bytes()
}

const SET_SCRIPT: &str = "return redis.call('set', KEYS[1], ARGV[1])";
const LIBRARY: &str =
    "#!lua name=t\nredis.register_function('setk', function(keys, args) return redis.call('set', keys[1], args[1]) end)";

#[test]
fn scripts_are_refused_when_allow_scripts_is_false() {
    let p = pool("allow_scripts: false");
    let sha = String::from_utf8(p.servers[0].cmd(&["SCRIPT", "LOAD", SET_SCRIPT])).unwrap();
    let sha = sha.lines().nth(1).unwrap().to_string();
    let mut c = p.client();
    for (args, name) in [
        (vec!["EVAL", SET_SCRIPT, "1", "k", "v"], "eval"),
        (vec!["eval", "return 1", "0"], "eval"),
        (vec!["EVALSHA", &sha, "1", "k", "v"], "evalsha"),
        (vec!["EVAL_RO", "return 1", "1", "k"], "eval_ro"),
        (vec!["EVALSHA_RO", &sha, "1", "k"], "evalsha_ro"),
        (vec!["FCALL", "setk", "1", "k", "v"], "fcall"),
        (vec!["FCALL_RO", "setk", "1", "k"], "fcall_ro"),
        (vec!["SCRIPT", "LOAD", SET_SCRIPT], "script load"),
        (vec!["script", "flush"], "script flush"),
        (vec!["FUNCTION", "LOAD", LIBRARY], "function load"),
        (vec!["FUNCTION", "LIST"], "function list"),
    ] {
        assert_eq!(cmd(&mut c, &args), disabled(name), "{args:?}");
    }
    // Nothing reached a backend, and the connection serves other commands.
    assert_eq!(p.holders("k"), Vec::<usize>::new());
    assert_eq!(cmd(&mut c, &["SET", "k", "plain"]), b"+OK\r\n");
    assert_eq!(cmd(&mut c, &["GET", "k"]), b"$5\r\nplain\r\n");
    assert_eq!(cmd(&mut c, &["PING"]), b"+PONG\r\n");
}

#[test]
fn scripts_run_when_allow_scripts_is_true() {
    let p = pool("allow_scripts: true");
    for s in &p.servers {
        assert_eq!(s.cmd(&["FUNCTION", "LOAD", LIBRARY]), b"$1\r\nt\r\n");
    }
    let sha = String::from_utf8(p.servers[0].cmd(&["SCRIPT", "LOAD", SET_SCRIPT])).unwrap();
    let sha = sha.lines().nth(1).unwrap().to_string();
    for s in &p.servers[1..] {
        s.cmd(&["SCRIPT", "LOAD", SET_SCRIPT]);
    }
    let mut c = p.client();
    assert_eq!(
        cmd(&mut c, &["EVAL", SET_SCRIPT, "1", "a", "1"]),
        b"+OK\r\n"
    );
    assert_eq!(cmd(&mut c, &["EVALSHA", &sha, "1", "b", "2"]), b"+OK\r\n");
    assert_eq!(cmd(&mut c, &["FCALL", "setk", "1", "c", "3"]), b"+OK\r\n");
    let get = "return redis.call('get', KEYS[1])";
    assert_eq!(cmd(&mut c, &["EVAL_RO", get, "1", "c"]), b"$1\r\n3\r\n");
    assert_eq!(
        cmd(&mut c, &["MGET", "a", "b", "c"]),
        b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
}

/// What README's security note says: a script runs on the server of its declared keys but
/// can write any key there, including one the proxy routes to another server.
#[test]
fn a_script_can_write_a_key_it_did_not_declare() {
    let p = pool(""); // allow_scripts defaults to true
    let mut c = p.client();
    assert_eq!(cmd(&mut c, &["SET", "declared", "mine"]), b"+OK\r\n");
    let other = key_placed(&p, &mut c, "declared", "other", false);
    let script = "redis.call('set', ARGV[1], 'planted') return redis.call('get', KEYS[1])";
    assert_eq!(
        cmd(&mut c, &["EVAL", script, "1", "declared", &other]),
        b"$4\r\nmine\r\n"
    );
    // Written beside `declared`, where the proxy never looks for it.
    let home = p.holder("declared");
    assert_eq!(
        p.servers[home].get_direct(&other).as_deref(),
        Some(&b"planted"[..])
    );
    assert_eq!(cmd(&mut c, &["GET", &other]), b"$-1\r\n");
}

/// Issue 13, scripts: `SCRIPT LOAD` reaches every server of the pool, so `EVALSHA` runs
/// wherever its keys route it; `SCRIPT EXISTS` is true only where every server has the
/// script; `SCRIPT FLUSH` empties every server's cache.
#[test]
fn scripts_loaded_through_the_proxy_run_on_every_server() {
    let p = pool("");
    let mut c = p.client();
    let direct = Redis::start();
    let want = direct.cmd(&["SCRIPT", "LOAD", SET_SCRIPT]);
    assert_eq!(cmd(&mut c, &["SCRIPT", "LOAD", SET_SCRIPT]), want);
    let sha = String::from_utf8(want)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for s in &p.servers {
        assert_eq!(s.cmd(&["SCRIPT", "EXISTS", &sha]), b"*1\r\n:1\r\n");
    }
    // Keys on every server: each EVALSHA runs where its key lives.
    for i in 0..30 {
        let key = format!("s{i}");
        assert_eq!(cmd(&mut c, &["EVALSHA", &sha, "1", &key, "v"]), b"+OK\r\n");
        assert_eq!(p.holders(&key).len(), 1);
    }
    let unknown = "0".repeat(40);
    assert_eq!(
        cmd(&mut c, &["SCRIPT", "EXISTS", &sha, &unknown]),
        b"*2\r\n:1\r\n:0\r\n"
    );
    // Loaded on one server only: not loaded as far as the pool is concerned.
    let partial = "return 7";
    let partial_sha = String::from_utf8(p.servers[0].cmd(&["SCRIPT", "LOAD", partial])).unwrap();
    let partial_sha = partial_sha.lines().nth(1).unwrap().to_string();
    assert_eq!(
        cmd(&mut c, &["SCRIPT", "EXISTS", &partial_sha]),
        b"*1\r\n:0\r\n"
    );
    assert_eq!(cmd(&mut c, &["SCRIPT", "FLUSH"]), b"+OK\r\n");
    for s in &p.servers {
        assert_eq!(s.cmd(&["SCRIPT", "EXISTS", &sha]), b"*1\r\n:0\r\n");
    }
}

/// Issue 13, scripts: a script called with no key runs on the server its SHA hashes to (for
/// EVAL, the SHA of its body): the same one every time, whether called by body or by SHA.
#[test]
fn a_script_without_keys_runs_on_one_stable_server() {
    let p = pool("");
    let mut c = p.client();
    let incr = "return redis.call('incr', 'counter')";
    for n in 1..=5 {
        assert_eq!(
            cmd(&mut c, &["EVAL", incr, "0"]),
            format!(":{n}\r\n").into_bytes()
        );
    }
    assert_eq!(p.holders("counter").len(), 1);
    // EVAL loaded the script where EVALSHA of its SHA goes: a client's EVALSHA works next.
    let sha = String::from_utf8(cmd(&mut c, &["SCRIPT", "LOAD", incr])).unwrap();
    let sha = sha.lines().nth(1).unwrap().to_string();
    for s in &p.servers {
        s.cmd(&["SCRIPT", "FLUSH"]);
    }
    assert_eq!(cmd(&mut c, &["EVAL", incr, "0"]), b":6\r\n");
    assert_eq!(cmd(&mut c, &["EVALSHA", &sha, "0"]), b":7\r\n");
    assert_eq!(
        cmd(&mut c, &["EVALSHA", &sha.to_uppercase(), "0"]),
        b":8\r\n"
    );
    assert_eq!(cmd(&mut c, &["EVAL", "return 1", "0"]), b":1\r\n");
}
