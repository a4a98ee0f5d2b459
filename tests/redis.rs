//! Redis pools end to end: real redis-server processes behind the proxy, driven by the
//! independent `redis` crate and by raw RESP bytes, with key placement checked on the
//! backends themselves.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{redis_pool_yaml, resp_cmd, Cluster, Proxy, RawClient, Redis};
use redis::Commands;

/// A pool over `servers` with md5, so that test keys spread over them, and a 2 s request
/// timeout, so that a lost reply fails its request instead of waiting forever (the default).
fn pool_with(servers: Vec<Redis>, extra: &str) -> Cluster<Redis> {
    Cluster::redis_with(servers, &format!("hash: md5\ntimeout: 2000\n{extra}"))
}

fn pool(extra: &str) -> Cluster<Redis> {
    pool_with((0..3).map(|_| Redis::start()).collect(), extra)
}

impl Cluster<Redis> {
    /// A connection through the independent `redis` crate.
    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

fn cmd(c: &mut RawClient, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&resp_cmd(&args));
    c.read_resp()
}

#[test]
fn every_data_type_works_through_the_proxy() {
    let p = pool("");
    let mut c = p.conn();
    // strings and expiry
    let _: () = c.set("s", "hello").unwrap();
    assert_eq!(c.append::<_, _, i64>("s", " world").unwrap(), 11);
    assert_eq!(c.getrange::<_, String>("s", 0, 4).unwrap(), "hello");
    assert_eq!(c.incr::<_, _, i64>("counter", 5).unwrap(), 5);
    let _: () = c.set_ex("ttl", "v", 100).unwrap();
    let ttl: i64 = c.ttl("ttl").unwrap();
    assert!((1..=100).contains(&ttl));
    assert!(c.persist::<_, bool>("ttl").unwrap());
    assert_eq!(c.ttl::<_, i64>("ttl").unwrap(), -1);
    assert!(c.pexpire::<_, bool>("ttl", 50_000).unwrap());
    assert!(c.pttl::<_, i64>("ttl").unwrap() > 40_000);
    // hashes
    let _: () = c.hset_multiple("h", &[("a", 1), ("b", 2)]).unwrap();
    assert_eq!(c.hincr::<_, _, _, i64>("h", "a", 10).unwrap(), 11);
    let h: HashMap<String, i64> = c.hgetall("h").unwrap();
    assert_eq!(h, HashMap::from([("a".into(), 11), ("b".into(), 2)]));
    // lists
    let _: () = c.rpush("l", &[1, 2, 3]).unwrap();
    assert_eq!(c.lrange::<_, Vec<i64>>("l", 0, -1).unwrap(), vec![1, 2, 3]);
    assert_eq!(c.lpop::<_, i64>("l", None).unwrap(), 1);
    // sets
    let _: () = c.sadd("set", &["x", "y", "z"]).unwrap();
    assert_eq!(c.scard::<_, i64>("set").unwrap(), 3);
    assert!(c.sismember::<_, _, bool>("set", "y").unwrap());
    // sorted sets
    let _: () = c
        .zadd_multiple("z", &[(1.0, "one"), (2.0, "two"), (3.0, "three")])
        .unwrap();
    assert_eq!(
        c.zrangebyscore::<_, _, _, Vec<String>>("z", 2, 3).unwrap(),
        vec!["two", "three"]
    );
    assert_eq!(c.zscore::<_, _, f64>("z", "two").unwrap(), 2.0);
    // streams
    let id: String = redis::cmd("XADD")
        .arg("st")
        .arg("*")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    assert!(id.contains('-'));
    assert_eq!(
        redis::cmd("XLEN").arg("st").query::<i64>(&mut c).unwrap(),
        1
    );
    let read: redis::Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("st")
        .arg("0")
        .query(&mut c)
        .unwrap();
    assert!(matches!(read, redis::Value::Array(ref v) if v.len() == 1));
    // HyperLogLog, bitmaps, GEO
    let _: () = redis::cmd("PFADD")
        .arg("hll")
        .arg(&["a", "b", "c", "a"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        redis::cmd("PFCOUNT")
            .arg("hll")
            .query::<i64>(&mut c)
            .unwrap(),
        3
    );
    let _: () = c.setbit("bits", 7, true).unwrap();
    assert_eq!(
        redis::cmd("BITCOUNT")
            .arg("bits")
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    let _: i64 = redis::cmd("GEOADD")
        .arg("geo")
        .arg(13.361389)
        .arg(38.115556)
        .arg("Palermo")
        .arg(15.087269)
        .arg(37.502669)
        .arg("Catania")
        .query(&mut c)
        .unwrap();
    let dist: f64 = redis::cmd("GEODIST")
        .arg("geo")
        .arg("Palermo")
        .arg("Catania")
        .arg("km")
        .query(&mut c)
        .unwrap();
    assert!((dist - 166.27).abs() < 0.1, "{dist}");
    let near: Vec<String> = redis::cmd("GEOSEARCH")
        .arg("geo")
        .arg("FROMLONLAT")
        .arg(15)
        .arg(37)
        .arg("BYRADIUS")
        .arg(200)
        .arg("km")
        .arg("ASC")
        .query(&mut c)
        .unwrap();
    assert_eq!(near, vec!["Catania", "Palermo"]);
    // a backend error passes through unchanged
    let mut raw = p.client();
    assert_eq!(
        cmd(&mut raw, &["LPUSH", "s", "x"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
}

#[test]
fn multi_key_commands_span_all_servers() {
    let p = pool("");
    let mut c = p.client();
    let keys: Vec<String> = (0..60).map(|i| format!("key:{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let mset: Vec<&str> = mset.iter().map(|s| s.as_str()).collect();
    assert_eq!(cmd(&mut c, &mset), b"+OK\r\n");
    let holders: Vec<usize> = keys.iter().map(|k| p.holder(k)).collect();
    assert!(
        (0..3).all(|s| holders.contains(&s)),
        "keys must span every server: {holders:?}"
    );
    // MGET with misses interleaved: replies in request order.
    let mut mget = vec!["MGET"];
    let mut want = String::new();
    for (i, k) in keys.iter().enumerate() {
        mget.push(k);
        want.push_str(&format!("${}\r\nv-{k}\r\n", k.len() + 2));
        if i % 7 == 0 {
            mget.push("missing");
            want.push_str("$-1\r\n");
        }
    }
    let want = format!("*{}\r\n{want}", mget.len() - 1);
    assert_eq!(
        common::show(&cmd(&mut c, &mget)),
        common::show(want.as_bytes())
    );
    // EXISTS and DEL sum over servers (twemproxy answers EXISTS from one server only).
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(|k| k.as_str()));
    exists.push("missing");
    exists.push(&keys[0]);
    assert_eq!(cmd(&mut c, &exists), b":61\r\n");
    let mut touch = vec!["TOUCH"];
    touch.extend(keys[..10].iter().map(|k| k.as_str()));
    assert_eq!(cmd(&mut c, &touch), b":10\r\n");
    let mut del = vec!["DEL"];
    del.extend(keys[..30].iter().map(|k| k.as_str()));
    assert_eq!(cmd(&mut c, &del), b":30\r\n");
    let mut unlink = vec!["UNLINK"];
    unlink.extend(keys.iter().map(|k| k.as_str()));
    assert_eq!(cmd(&mut c, &unlink), b":30\r\n");
    assert!(p.servers.iter().all(|s| s.cmd(&["DBSIZE"]) == b":0\r\n"));
}

#[test]
fn hash_tags_keep_related_keys_together() {
    let p = pool("hash_tag: \"{}\"");
    let mut c = p.client();
    for i in 0..20 {
        assert_eq!(
            cmd(&mut c, &["SADD", &format!("{{user:{i}}}:a"), "x", "y"]),
            b":2\r\n"
        );
        assert_eq!(
            cmd(&mut c, &["SADD", &format!("{{user:{i}}}:b"), "y", "z"]),
            b":2\r\n"
        );
        assert_eq!(
            p.holder(&format!("{{user:{i}}}:a")),
            p.holder(&format!("{{user:{i}}}:b"))
        );
        assert_eq!(
            cmd(
                &mut c,
                &[
                    "SINTER",
                    &format!("{{user:{i}}}:a"),
                    &format!("{{user:{i}}}:b")
                ]
            ),
            b"*1\r\n$1\r\ny\r\n"
        );
    }
    // Untagged keys on different servers cannot be combined: a clear error, never a wrong answer.
    let (a, b) = (0..100)
        .flat_map(|i| (0..100).map(move |j| (format!("a{i}"), format!("b{j}"))))
        .find(|(a, b)| {
            let mut c2 = p.client();
            cmd(&mut c2, &["SET", a, "1"]);
            cmd(&mut c2, &["SET", b, "1"]);
            p.holder(a) != p.holder(b)
        })
        .unwrap();
    assert_eq!(
        cmd(&mut c, &["SINTER", &a, &b]),
        b"-CROSSSLOT Keys in request don't hash to the same server (use a hash tag)\r\n"
    );
    assert_eq!(
        cmd(&mut c, &["RENAME", &a, &b]),
        b"-CROSSSLOT Keys in request don't hash to the same server (use a hash tag)\r\n"
    );
    assert_eq!(
        cmd(
            &mut c,
            &["EVAL", "return redis.call('get', KEYS[1])", "1", &a]
        ),
        b"$1\r\n1\r\n"
    );
}

#[test]
fn a_pipeline_of_1000_commands_is_answered_in_order() {
    let p = pool("");
    let mut c = p.client();
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for i in 0..500 {
        batch.extend(resp_cmd(&[
            b"SET",
            format!("p{i}").as_bytes(),
            format!("value{i}").as_bytes(),
        ]));
        want.extend_from_slice(b"+OK\r\n");
    }
    for i in 0..500 {
        batch.extend(resp_cmd(&[b"GET", format!("p{i}").as_bytes()]));
        want.extend(format!("${}\r\nvalue{i}\r\n", format!("value{i}").len()).as_bytes());
    }
    c.expect(&batch, &want);
}

#[test]
fn connection_commands_are_answered_by_the_proxy() {
    let p = pool("");
    let mut c = p.client();
    assert_eq!(cmd(&mut c, &["PING"]), b"+PONG\r\n");
    assert_eq!(cmd(&mut c, &["ping", "hi"]), b"$2\r\nhi\r\n");
    assert_eq!(cmd(&mut c, &["ECHO", "x y"]), b"$3\r\nx y\r\n");
    assert_eq!(cmd(&mut c, &["SELECT", "0"]), b"+OK\r\n");
    assert!(cmd(&mut c, &["SELECT", "1"]).starts_with(b"-ERR DB index is out of range"));
    assert_eq!(
        cmd(&mut c, &["HELLO", "3"]),
        b"-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert!(cmd(&mut c, &["HELLO", "2"]).starts_with(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    assert_eq!(cmd(&mut c, &["CLIENT", "SETNAME", "app"]), b"+OK\r\n");
    assert_eq!(cmd(&mut c, &["CLIENT", "GETNAME"]), b"$3\r\napp\r\n");
    assert_eq!(
        cmd(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "x"]),
        b"+OK\r\n"
    );
    assert!(cmd(&mut c, &["CLIENT", "ID"]).starts_with(b":"));
    assert_eq!(cmd(&mut c, &["COMMAND", "COUNT"]), b":240\r\n");
    assert!(cmd(&mut c, &["INFO"]).windows(8).any(|w| w == b"# Proxy\r"));
    assert_eq!(cmd(&mut c, &["AUTH", "x"]), b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
    assert_eq!(
        cmd(&mut c, &["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        cmd(&mut c, &["NOPE", "a", "b"]),
        b"-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n"
    );
    for (args, why) in [
        (
            &["BLPOP", "l", "0"][..],
            "blocking commands would stall a backend connection shared by other clients",
        ),
        (
            &["SUBSCRIBE", "ch"][..],
            "publish/subscribe needs a dedicated connection",
        ),
        (
            &["MULTI"][..],
            "transactions cannot span the servers of a pool",
        ),
        (&["KEYS", "*"][..], "it has no key to route by"),
        (&["FLUSHALL"][..], "it has no key to route by"),
        (&["CONFIG", "GET", "save"][..], "it has no key to route by"),
    ] {
        let want = format!(
            "-ERR command '{}' is not supported by shardproxy: {why}\r\n",
            args[0].to_lowercase() + if args[0] == "CONFIG" { " get" } else { "" }
        );
        assert_eq!(
            common::show(&cmd(&mut c, args)),
            common::show(want.as_bytes())
        );
    }
    // Inline commands (telnet, hand-typed).
    c.send(b"SET inline \"a b\"\r\nGET inline\r\n");
    assert_eq!(c.read_resp(), b"+OK\r\n");
    assert_eq!(c.read_resp(), b"$3\r\na b\r\n");
    assert_eq!(cmd(&mut c, &["QUIT"]), b"+OK\r\n");
    assert!(c.is_closed());
}

#[test]
fn auth_and_database_selection() {
    let servers: Vec<Redis> = (0..2)
        .map(|_| Redis::start_with(&["--requirepass", "s3cret"]))
        .collect();
    let p = pool_with(servers, "redis_auth: s3cret\nredis_db: 2");
    let mut c = p.client();
    assert_eq!(
        cmd(&mut c, &["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        cmd(&mut c, &["AUTH", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(cmd(&mut c, &["AUTH", "default", "s3cret"]), b"+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]), b"+OK\r\n");
    let mut d = p.client();
    assert_eq!(cmd(&mut d, &["AUTH", "s3cret"]), b"+OK\r\n");
    assert_eq!(cmd(&mut d, &["GET", "k"]), b"$1\r\nv\r\n");
    // The key is in database 2 of its backend: the proxy authenticated and selected for us.
    let holder = p
        .servers
        .iter()
        .find(|s| {
            s.cmd(&["INFO", "keyspace"])
                .windows(4)
                .any(|w| w == b"db2:")
        })
        .expect("a backend holds db2");
    assert!(String::from_utf8_lossy(&holder.cmd(&["INFO", "keyspace"])).contains("db2:keys=1"));
}

#[test]
fn a_dead_server_fails_only_its_keys_and_an_mget_that_needs_it() {
    let mut p = pool("");
    let mut c = p.client();
    let keys: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
    for k in &keys {
        assert_eq!(cmd(&mut c, &["SET", k, k]), b"+OK\r\n");
    }
    let holders: Vec<usize> = keys.iter().map(|k| p.holder(k)).collect();
    p.servers[1].kill();
    for (k, &h) in keys.iter().zip(&holders) {
        let reply = cmd(&mut c, &["GET", k]);
        if h == 1 {
            assert!(reply.starts_with(b"-ERR "), "{}", common::show(&reply));
        } else {
            assert_eq!(reply, format!("${}\r\n{k}\r\n", k.len()).as_bytes());
        }
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(|k| k.as_str()));
    c.send(&resp_cmd(
        &mget.iter().map(|s| s.as_bytes()).collect::<Vec<_>>(),
    ));
    // One error for the whole MGET (see tests/redis_split_failures.rs).
    assert!(c.read_resp().starts_with(b"-ERR Connection refused"));
    assert_eq!(cmd(&mut c, &["PING"]), b"+PONG\r\n");
}

#[test]
fn keys_land_where_twemproxy_puts_them() {
    // The placement vectors come from a memcached run; Redis pools share the ring.
    let servers: Vec<Redis> = (0..3).map(|_| Redis::start()).collect();
    let names = ["127.0.0.1:30001", "127.0.0.1:30002", "127.0.0.1:30003"];
    let port = common::free_port();
    let list: Vec<(u16, u32, Option<&str>)> = servers
        .iter()
        .zip(names)
        .map(|(s, n)| (s.port, 1, Some(n)))
        .collect();
    let _proxy = Proxy::start(&redis_pool_yaml("r", port, &list, "hash: fnv1a_64"));
    let path = format!(
        "{}/tests/data/twemproxy/placement_ketama_fnv1a64.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let expected: Vec<(String, String)> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            l.split_once(',')
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .unwrap()
        })
        .collect();
    let mut c = RawClient::connect_port(port);
    for (k, _) in &expected {
        c.send(&resp_cmd(&[b"SET", k.as_bytes(), b"1"]));
    }
    for _ in &expected {
        assert_eq!(c.read_resp(), b"+OK\r\n");
    }
    for (k, server) in &expected {
        let idx = names.iter().position(|n| n == server).unwrap();
        for (i, s) in servers.iter().enumerate() {
            assert_eq!(
                s.cmd(&["EXISTS", k]) == b":1\r\n",
                i == idx,
                "{k} should be on {server}"
            );
        }
    }
}

#[test]
fn redis_benchmark_and_redis_cli_run_cleanly() {
    let p = pool("");
    let out = Command::new(common::find_program("redis-benchmark"))
        .args([
            "-p",
            &p.port.to_string(),
            "-t",
            "get,set,incr,lpush,mset",
            "-P",
            "16",
            "-n",
            "5000",
            "-c",
            "10",
            "-q",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for t in ["SET:", "GET:", "INCR:", "LPUSH:", "MSET (10 keys):"] {
        assert!(text.contains(t), "{t} missing:\n{text}");
    }
    assert!(!text.contains("ERR"), "{text}");
    // The full default suite (every test redis-benchmark runs with no -t), unpipelined.
    let out = Command::new(common::find_program("redis-benchmark"))
        .args(["-p", &p.port.to_string(), "-n", "1000", "-c", "10", "-q"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for t in [
        "PING_INLINE:",
        "PING_MBULK:",
        "RPOP:",
        "SPOP:",
        "ZPOPMIN:",
        "HSET:",
        "LRANGE_600 (first 600 elements):",
        "MSET (10 keys):",
    ] {
        assert!(text.contains(&format!("{t} ")), "{t} missing:\n{text}");
    }
    assert!(!text.contains("ERR"), "{text}");
    let cli = |args: &[&str]| {
        let out = Command::new(common::find_program("redis-cli"))
            .arg("-p")
            .arg(p.port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["set", "cli", "works"]), "OK");
    assert_eq!(cli(&["get", "cli"]), "works");
    assert_eq!(cli(&["ping"]), "PONG");
}

#[test]
fn a_backend_oom_error_reaches_only_the_request_it_answers() {
    // One server, over its memory limit: writes are refused with -OOM, reads still work.
    let server = Redis::start();
    let big = "x".repeat(3 * 1024 * 1024);
    assert_eq!(server.cmd(&["SET", "big", &big]), b"+OK\r\n");
    assert_eq!(
        server.cmd(&["CONFIG", "SET", "maxmemory", "2mb"]),
        b"+OK\r\n"
    );
    assert_eq!(
        server.cmd(&["SET", "small", "v"]).get(..5),
        Some(&b"-OOM "[..])
    );
    let p = pool_with(vec![server], "");
    let mut c = p.client();
    // Pipelined on the same backend connection: the -OOM answers the SET only.
    let mut batch = resp_cmd(&[b"SET", b"k", b"v"]);
    batch.extend(resp_cmd(&[b"GET", b"small2"]));
    batch.extend(resp_cmd(&[b"STRLEN", b"big"]));
    c.send(&batch);
    assert!(c.read_resp().starts_with(b"-OOM command not allowed"));
    assert_eq!(c.read_resp(), b"$-1\r\n");
    assert_eq!(c.read_resp(), format!(":{}\r\n", big.len()).as_bytes());
    assert_eq!(cmd(&mut c, &["PING"]), b"+PONG\r\n");
}

#[test]
fn pipelines_deeper_than_the_in_flight_cap_are_all_answered() {
    let p = pool("");
    let mut c = p.client();
    let batch: Vec<u8> = (0..3000)
        .flat_map(|i| resp_cmd(&[b"INCR", format!("n{}", i % 7).as_bytes()]))
        .collect();
    c.send(&batch);
    for _ in 0..3000 {
        assert!(c.read_resp().starts_with(b":"));
    }
}
