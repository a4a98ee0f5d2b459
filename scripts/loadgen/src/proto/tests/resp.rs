//! RESP requests and replies.

use super::{case, check_framing_error, check_splits, miss, value, ERR, OK, WRONG};
use crate::proto::{encode, parse_reply, Op, Outcome, Proto, MAX_DEPTH};

#[test]
fn redis_requests() {
    let mut out = Vec::new();
    encode(Proto::Redis, Op::Get, &[5], 3, &mut out);
    encode(Proto::Redis, Op::MGet, &[1, 22], 3, &mut out);
    encode(Proto::Redis, Op::Set, &[9], 8, &mut out);
    encode(Proto::Redis, Op::Ping, &[], 3, &mut out);
    let want = "*2\r\n$3\r\nGET\r\n$5\r\nkey:5\r\n\
                *3\r\n$4\r\nMGET\r\n$5\r\nkey:1\r\n$6\r\nkey:22\r\n\
                *3\r\n$3\r\nSET\r\n$5\r\nkey:9\r\n$8\r\nkey:9:xx\r\n\
                *1\r\n$4\r\nPING\r\n";
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[test]
fn resp_replies_split_everywhere() {
    let bulk = |n: u32, size: usize| {
        let mut b = format!("${size}\r\n").into_bytes();
        b.extend_from_slice(&value(n, size));
        b.extend_from_slice(b"\r\n");
        b
    };
    let mut stream = Vec::new();
    let mut cases = Vec::new();
    stream.extend(bulk(1, 100));
    cases.push(case(Op::Get, &[1], OK));
    stream.extend_from_slice(b"$-1\r\n");
    cases.push(case(Op::Get, &[2], miss(1)));
    stream.extend_from_slice(b"+OK\r\n");
    cases.push(case(Op::Set, &[3], OK));
    stream.extend_from_slice(b"+PONG\r\n");
    cases.push(case(Op::Ping, &[], OK));
    stream.extend_from_slice(b"*3\r\n");
    stream.extend(bulk(4, 100));
    stream.extend_from_slice(b"$-1\r\n");
    stream.extend(bulk(6, 0));
    cases.push(case(Op::MGet, &[4, 5, 6], miss(1)));
    // errors: top level, and an MGET element (a proxy's lost server)
    stream.extend_from_slice(b"-ERR Connection timed out\r\n");
    cases.push(case(Op::Get, &[1], ERR));
    stream.extend_from_slice(b"-ERR wrong number of arguments for 'mget' command\r\n");
    cases.push(case(Op::MGet, &[1, 2], ERR));
    stream.extend_from_slice(b"*2\r\n-ERR Connection refused\r\n");
    stream.extend(bulk(8, 3));
    cases.push(case(Op::MGet, &[7, 8], ERR));
    // wrong: another key's value, MGET elements out of order or missing, wrong type
    stream.extend(bulk(2, 100));
    cases.push(case(Op::Get, &[1], WRONG));
    stream.extend_from_slice(b"*2\r\n");
    stream.extend(bulk(8, 10));
    stream.extend(bulk(7, 10));
    cases.push(case(Op::MGet, &[7, 8], WRONG));
    stream.extend_from_slice(b"*1\r\n");
    stream.extend(bulk(7, 10));
    cases.push(case(Op::MGet, &[7, 8], WRONG));
    stream.extend_from_slice(b":1\r\n");
    cases.push(case(Op::Set, &[1], WRONG));
    stream.extend_from_slice(b"*-1\r\n");
    cases.push(case(Op::MGet, &[1], WRONG));
    // nested arrays are skipped whole; an error inside is still an error
    stream.extend_from_slice(b"*2\r\n*2\r\n:1\r\n-ERR x\r\n+OK\r\n");
    cases.push(case(
        Op::Get,
        &[1],
        Outcome {
            error: true,
            misses: 0,
            wrong: true,
        },
    ));
    check_splits(Proto::Redis, &cases, &stream);
}

#[test]
fn resp_framing_errors() {
    let get = [case(Op::Get, &[1], OK)];
    check_framing_error(Proto::Redis, &get, b"$3\r\nabcd\r\n");
    check_framing_error(Proto::Redis, &get, b"$-2\r\n");
    check_framing_error(Proto::Redis, &get, b"$x\r\n");
    check_framing_error(Proto::Redis, &get, b"%1\r\n");
    check_framing_error(Proto::Redis, &get, b"\r\n");
    check_framing_error(Proto::Redis, &get, b"+OK\n");
    check_framing_error(Proto::Redis, &get, b":12a\r\n");
    check_framing_error(Proto::Redis, &[case(Op::MGet, &[1], OK)], b"*1\r\n!3\r\n");
    // too deep nesting is refused, not a stack overflow
    let deep = "*1\r\n".repeat(MAX_DEPTH + 5) + ":1\r\n";
    assert!(parse_reply(Proto::Redis, Op::Get, &[1], deep.as_bytes()).is_err());
}
