//! memcached requests and replies.

use super::{case, check_framing_error, check_splits, miss, value, ERR, OK, WRONG};
use crate::proto::{encode, parse_reply, Op, Outcome, Proto, MAX_LINE};

fn mc_value(n: u32, size: usize) -> Vec<u8> {
    let mut out = format!("VALUE key:{n} 0 {size}\r\n").into_bytes();
    out.extend_from_slice(&value(n, size));
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn memcache_requests() {
    let mut out = Vec::new();
    encode(Proto::Memcache, Op::Get, &[5], 3, &mut out);
    encode(Proto::Memcache, Op::MGet, &[1, 2], 3, &mut out);
    encode(Proto::Memcache, Op::Set, &[9], 8, &mut out);
    encode(Proto::Memcache, Op::Ping, &[], 3, &mut out);
    assert_eq!(
        out,
        b"get key:5\r\nget key:1 key:2\r\nset key:9 0 0 8\r\nkey:9:xx\r\nversion\r\n".to_vec()
    );
}

#[test]
fn memcache_replies_split_everywhere() {
    let mut stream = Vec::new();
    let mut cases = Vec::new();
    // a hit, with a value containing CRLF-like bytes at the data's end
    stream.extend(mc_value(1, 100));
    stream.extend_from_slice(b"END\r\n");
    cases.push(case(Op::Get, &[1], OK));
    // a miss
    stream.extend_from_slice(b"END\r\n");
    cases.push(case(Op::Get, &[2], miss(1)));
    // set, then a multi-get with one miss and a cas field, out of order
    stream.extend_from_slice(b"STORED\r\n");
    cases.push(case(Op::Set, &[3], OK));
    stream.extend(mc_value(6, 4));
    stream.extend_from_slice(b"VALUE key:4 123 100 999\r\n");
    stream.extend_from_slice(&value(4, 100));
    stream.extend_from_slice(b"\r\nEND\r\n");
    cases.push(case(Op::MGet, &[4, 5, 6], miss(1)));
    // error replies of each kind, one in the middle of a multi-get
    stream.extend_from_slice(b"SERVER_ERROR Connection timed out\r\n");
    cases.push(case(Op::Get, &[1], ERR));
    stream.extend(mc_value(7, 10));
    stream.extend_from_slice(b"SERVER_ERROR Connection reset by peer\r\n");
    cases.push(case(Op::MGet, &[7, 8], ERR));
    stream.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
    cases.push(case(Op::Set, &[1], ERR));
    stream.extend_from_slice(b"ERROR\r\n");
    cases.push(case(Op::Ping, &[], ERR));
    stream.extend_from_slice(b"VERSION 1.6.18\r\n");
    cases.push(case(Op::Ping, &[], OK));
    // wrong: another key's value, a value for a key not asked, NOT_STORED to a set
    stream.extend_from_slice(b"VALUE key:1 0 100\r\n");
    stream.extend_from_slice(&value(2, 100));
    stream.extend_from_slice(b"\r\nEND\r\n");
    cases.push(case(Op::Get, &[1], WRONG));
    stream.extend(mc_value(9, 100));
    stream.extend_from_slice(b"END\r\n");
    cases.push(case(Op::Get, &[1], Outcome { misses: 0, ..WRONG }));
    stream.extend_from_slice(b"NOT_STORED\r\n");
    cases.push(case(Op::Set, &[1], WRONG));
    // an empty value
    stream.extend_from_slice(b"VALUE key:3 0 0\r\n\r\nEND\r\n");
    cases.push(case(Op::Get, &[3], OK));
    check_splits(Proto::Memcache, &cases, &stream);
}

#[test]
fn memcache_framing_errors() {
    let get = [case(Op::Get, &[1], OK)];
    let set = [case(Op::Set, &[1], OK)];
    check_framing_error(Proto::Memcache, &get, b"VALUE key:1 0 3\r\nabcd\r\nEND\r\n");
    check_framing_error(Proto::Memcache, &get, b"VALUE key:1 0 x\r\n");
    check_framing_error(Proto::Memcache, &get, b"VALUE key:1\r\n");
    check_framing_error(
        Proto::Memcache,
        &get,
        b"VALUE key:1 0 3 4 5\r\nabc\r\nEND\r\n",
    );
    check_framing_error(Proto::Memcache, &get, b"STORED\r\n");
    check_framing_error(Proto::Memcache, &get, b"END\n");
    check_framing_error(Proto::Memcache, &set, b"END\r\n");
    check_framing_error(Proto::Memcache, &set, b"\r\n");
    check_framing_error(Proto::Memcache, &[case(Op::Ping, &[], OK)], b"PONG\r\n");
    // no line end for too long: an error, not an endless Incomplete
    let long = vec![b'a'; MAX_LINE + 1];
    assert!(parse_reply(Proto::Memcache, Op::Get, &[1], &long).is_err());
}
