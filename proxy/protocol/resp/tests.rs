//! Unit and property tests for the RESP codec and the command table.

use proptest::prelude::*;

use super::commands::{self, flag};
use super::request::split_args;
use super::*;

fn parse_all(input: &[u8]) -> Step {
    Parser::default().parse(input, &Limits::DEFAULT)
}

fn args_of(input: &[u8]) -> Vec<Vec<u8>> {
    match parse_all(input) {
        Step::Array { args, len } => {
            assert_eq!(len, input.len());
            args.into_iter().map(|r| input[r].to_vec()).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn arrays_of_bulk_strings() {
    assert_eq!(
        args_of(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        vec![b"GET".to_vec(), b"k".to_vec()]
    );
    assert_eq!(args_of(b"*1\r\n$0\r\n\r\n"), vec![Vec::<u8>::new()]);
    assert_eq!(parse_all(b"*0\r\n"), Step::Skip { len: 4 });
    assert_eq!(parse_all(b"*-1\r\n"), Step::Skip { len: 5 });
}

#[test]
fn resumes_where_it_stopped() {
    let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
    let mut p = Parser::default();
    for cut in 1..input.len() {
        assert_eq!(
            p.parse(&input[..cut], &Limits::DEFAULT),
            Step::Incomplete,
            "cut {cut}"
        );
    }
    assert!(
        matches!(p.parse(input, &Limits::DEFAULT), Step::Array { len, .. } if len == input.len())
    );
    assert!(!p.in_progress());
}

#[test]
fn protocol_errors_match_redis() {
    let err = |input: &[u8]| match parse_all(input) {
        Step::Error(e) => e.0,
        other => panic!("{other:?}"),
    };
    assert_eq!(err(b"*abc\r\n"), "Protocol error: invalid multibulk length");
    assert_eq!(
        err(b"*2147483648\r\n"),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        err(b"*1\r\n+PING\r\n"),
        "Protocol error: expected '$', got '+'"
    );
    assert_eq!(
        err(b"*1\r\n*1\r\n"),
        "Protocol error: expected '$', got '*'"
    );
    assert_eq!(
        err(b"*1\r\n$abc\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(err(b"*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
    assert_eq!(
        err(b"*1\r\n$536870913\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(&[b"*".as_slice(), &[b'1'; 40]].concat()),
        "Protocol error: too big mbulk count string"
    );
    // Redis skips the two bytes after a bulk unread; the proxy checks them.
    assert_eq!(
        err(b"*1\r\n$4\r\nPINGXX"),
        "Protocol error: bulk string not terminated by CRLF"
    );
    let unauth = |input: &[u8]| match Parser::default().parse(input, &Limits::UNAUTHENTICATED) {
        Step::Error(e) => e.0,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        unauth(b"*11\r\n"),
        "Protocol error: unauthenticated multibulk length"
    );
    assert_eq!(
        unauth(b"*1\r\n$16385\r\n"),
        "Protocol error: unauthenticated bulk length"
    );
}

#[test]
fn huge_declared_lengths_reserve_nothing() {
    // A 512 MiB bulk that never arrives is just incomplete: nothing is allocated for it.
    assert_eq!(parse_all(b"*1\r\n$536870912\r\nabc"), Step::Incomplete);
}

#[test]
fn inline_commands() {
    match parse_all(b"set k \"a b\\x41\\n\" 'it''s'\r\n") {
        Step::Error(e) => assert_eq!(e.0, "Protocol error: unbalanced quotes in request"),
        other => panic!("{other:?}"),
    }
    match parse_all(b"set k \"a b\\x41\\n\"\r\n") {
        Step::Inline { resp, len } => {
            assert_eq!(len, 19);
            assert_eq!(resp, b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$5\r\na bA\n\r\n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(parse_all(b"   \r\n"), Step::Skip { len: 5 });
    assert_eq!(
        split_args(b"a 'b\\'c' \"d\""),
        Some(vec![b"a".to_vec(), b"b'c".to_vec(), b"d".to_vec()])
    );
    assert_eq!(split_args(b"\"unterminated"), None);
    let long = vec![b'x'; 64 * 1024 + 1];
    assert!(
        matches!(parse_all(&long), Step::Error(e) if e.0 == "Protocol error: too big inline request")
    );
}

#[test]
fn reply_framing() {
    let nested = b"*2\r\n*2\r\n:1\r\n$3\r\nabc\r\n*0\r\n";
    assert_eq!(frame_reply(nested, 1 << 20), Ok(Some(nested.len())));
    for cut in 0..nested.len() {
        assert_eq!(frame_reply(&nested[..cut], 1 << 20), Ok(None), "cut {cut}");
    }
    assert_eq!(frame_reply(b"$-1\r\n+OK\r\n", 10), Ok(Some(5)));
    assert_eq!(frame_reply(b"*-1\r\n", 10), Ok(Some(5)));
    assert_eq!(frame_reply(b"-ERR x\r\n", 10), Ok(Some(8)));
    assert!(frame_reply(b"!bad\r\n", 10).is_err());
    assert!(frame_reply(b"$3\r\nabcd\r\n", 10).is_err());
    assert!(frame_reply(b"$4294967293\r\n", 1 << 20).is_err());
    let elems = reply::array_elements(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:5\r\n").unwrap();
    assert_eq!(
        elems,
        vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:5\r\n"]
    );
    assert_eq!(reply::integer(b":42\r\n"), Some(42));
}

#[test]
fn command_table_lookup_and_arity() {
    let get = lookup(b"GeT").unwrap();
    assert_eq!((get.name, get.arity, get.single_key()), ("get", 2, Some(1)));
    assert!(get.arity_ok(2) && !get.arity_ok(3));
    let mget = lookup(b"mget").unwrap();
    assert!(mget.arity_ok(2) && mget.arity_ok(10) && !mget.arity_ok(1));
    assert!(lookup(b"nope").is_none());
    assert!(lookup(&[b'a'; 100]).is_none());
    let object = lookup(b"object").unwrap();
    assert!(object.is_container());
    assert_eq!(
        lookup_sub(object, b"ENCODING").unwrap().name,
        "object|encoding"
    );
    assert!(!get.is_container());
    assert!(lookup(b"blpop").unwrap().has_flag(flag::BLOCKING));
    // Names sharing their first 8 bytes, and names that prefix others.
    let by_score = lookup(b"ZRANGEBYSCORE").unwrap();
    assert_eq!(by_score.name, "zrangebyscore");
    assert_eq!(lookup(b"zrangebylex").unwrap().name, "zrangebylex");
    assert!(lookup(b"zrangeby").is_none());
    assert_eq!(lookup(b"getex").unwrap().name, "getex");
    assert_eq!(
        lookup_sub(lookup(b"cluster").unwrap(), b"countkeysinslot")
            .unwrap()
            .name,
        "cluster|countkeysinslot"
    );
    assert!(lookup(b"cluster").unwrap().is_container());
    assert!(!by_score.is_container());
}

#[test]
fn every_table_entry_is_found() {
    for spec in command_table::COMMANDS {
        let found = lookup(spec.name.to_ascii_uppercase().as_bytes()).unwrap();
        assert!(std::ptr::eq(found, spec), "{}", spec.name);
        let container = spec.name.split_once('|').map(|(c, _)| c);
        if let Some(c) = container {
            assert!(lookup(c.as_bytes()).unwrap().is_container(), "{c}");
        }
    }
}

#[test]
fn decimals_are_read_as_redis_reads_them() {
    for (text, value) in [
        ("0", Some(0)),
        ("7", Some(7)),
        ("-1", Some(-1)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("", None),
        ("-", None),
        ("+5", None),
        ("05", None),
        ("-0", None),
        (" 5", None),
        ("5 ", None),
        ("1x", None),
    ] {
        assert_eq!(decimal(text.as_bytes()), value, "{text:?}");
    }
}

fn keys_of(cmd: &[&str]) -> Result<Vec<String>, commands::KeyError> {
    let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
    let spec = lookup(args[0]).unwrap();
    let mut out = Vec::new();
    commands::keys(spec, &args, &mut out)?;
    Ok(out.iter().map(|&i| cmd[i].to_string()).collect())
}

#[test]
fn key_specs_find_every_key() {
    assert_eq!(keys_of(&["mset", "a", "1", "b", "2"]).unwrap(), ["a", "b"]);
    assert_eq!(
        keys_of(&["eval", "return 1", "2", "k1", "k2", "arg"]).unwrap(),
        ["k1", "k2"]
    );
    assert_eq!(
        keys_of(&["eval", "return 1", "0"]).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        keys_of(&["eval", "return 1", "5", "k"]),
        Err(commands::KeyError::BadNumKeys)
    );
    assert_eq!(
        keys_of(&["xread", "count", "1", "streams", "s1", "s2", "0", "0"]).unwrap(),
        ["s1", "s2"]
    );
    assert_eq!(
        keys_of(&["zunionstore", "dst", "2", "a", "b", "weights", "1", "2"]).unwrap(),
        ["dst", "a", "b"]
    );
    assert_eq!(
        keys_of(&["smove", "src", "dst", "m"]).unwrap(),
        ["src", "dst"]
    );
    assert_eq!(keys_of(&["rename", "a", "b"]).unwrap(), ["a", "b"]);
    assert_eq!(
        keys_of(&["lmove", "a", "b", "left", "right"]).unwrap(),
        ["a", "b"]
    );
}

#[test]
fn sort_store_destination_is_a_key() {
    let sort = |args: &str| keys_of(&args.split(' ').collect::<Vec<_>>()).unwrap();
    assert_eq!(sort("sort src"), ["src"]);
    assert_eq!(sort("sort src STORE dst"), ["src", "dst"]);
    assert_eq!(sort("SORT src store dst"), ["src", "dst"]);
    assert_eq!(
        sort("sort src BY w_* LIMIT 0 10 GET o_* GET # DESC ALPHA STORE dst"),
        ["src", "dst"]
    );
    // The last STORE wins, as in SORT.
    assert_eq!(sort("sort src STORE a STORE b"), ["src", "b"]);
    // Arguments of LIMIT, BY and GET are never options, even when they spell one.
    assert_eq!(sort("sort src GET store"), ["src"]);
    assert_eq!(sort("sort src BY store STORE d"), ["src", "d"]);
    assert_eq!(sort("sort src LIMIT store store STORE d"), ["src", "d"]);
    // A destination that spells an option is still the destination (Redis's sortGetKeys
    // would skip the STORE after it, naming a key SORT does not write).
    assert_eq!(sort("sort src STORE limit STORE x"), ["src", "x"]);
    assert_eq!(sort("sort src STORE get"), ["src", "get"]);
    // STORE without a destination (a syntax error for SORT) names no key.
    assert_eq!(sort("sort src STORE"), ["src"]);
    // SORT_RO has no STORE option: its one key is the source.
    assert_eq!(sort("sort_ro src"), ["src"]);
    assert_eq!(sort("sort_ro src BY w_* GET o_* STORE dst"), ["src"]);
}

proptest! {
    /// No input panics the request parser, and it never claims more bytes than it was given.
    #[test]
    fn request_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        match Parser::default().parse(&input, &Limits::DEFAULT) {
            Step::Array { len, .. } | Step::Inline { len, .. } | Step::Skip { len } => prop_assert!(len <= input.len()),
            Step::Incomplete | Step::Error(_) => {}
        }
    }

    /// No backend bytes panic the reply framer.
    #[test]
    fn reply_framer_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Some(n)) = frame_reply(&input, 1 << 20) {
            prop_assert!(n <= input.len());
        }
    }

    /// Any array of binary-safe arguments round-trips through the encoder and the parser,
    /// whole or fed byte by byte.
    #[test]
    fn round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)) {
        let mut wire = Vec::new();
        encode::command(&mut wire, args.iter().map(|a| a.as_slice()));
        let mut p = Parser::default();
        for cut in 1..wire.len() {
            prop_assert_eq!(p.parse(&wire[..cut], &Limits::DEFAULT), Step::Incomplete);
        }
        match p.parse(&wire, &Limits::DEFAULT) {
            Step::Array { args: got, len } => {
                prop_assert_eq!(len, wire.len());
                let got: Vec<Vec<u8>> = got.into_iter().map(|r| wire[r].to_vec()).collect();
                prop_assert_eq!(got, args);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert_eq!(frame_reply(&wire, 1 << 20), Ok(Some(wire.len())));
    }
}

#[test]
fn a_bare_crlf_from_a_backend_is_a_protocol_error_not_a_panic() {
    assert!(frame_reply(b"\r\n", 1 << 20).is_err());
    assert!(frame_reply(b"*2\r\n\r\n", 1 << 20).is_err());
    let mut skip = reply::SkipReply::default();
    assert!(skip.skip(b"\r\n").is_err());
}

#[test]
fn resp3_replies_are_framed_whole() {
    let replies: &[&[u8]] = &[
        b"_\r\n",
        b",3.14\r\n",
        b",inf\r\n",
        b"#t\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"~3\r\n+a\r\n+b\r\n_\r\n",
        b">3\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n_\r\n",
        b"|1\r\n+ttl\r\n:3600\r\n$5\r\nvalue\r\n",
        b"*2\r\n|1\r\n+a\r\n:1\r\n:7\r\n%0\r\n",
    ];
    for reply in replies {
        let mut stream = reply.to_vec();
        stream.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(
            frame_reply(&stream, 1 << 20),
            Ok(Some(reply.len())),
            "{}",
            String::from_utf8_lossy(reply)
        );
        for cut in 0..reply.len() {
            assert_eq!(
                frame_reply(&reply[..cut], 1 << 20),
                Ok(None),
                "cut at {cut}"
            );
        }
    }
    for bad in [
        &b"_x\r\n"[..],
        b"#x\r\n",
        b"(1.5\r\n",
        b"=-1\r\n",
        b"%-1\r\n",
        b",\r\n",
    ] {
        assert!(
            frame_reply(bad, 1 << 20).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
