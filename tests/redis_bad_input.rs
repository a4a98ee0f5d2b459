//! Hostile and malformed input on a Redis pool: Redis's own error replies, a close where
//! Redis closes, nothing forwarded to a backend, and bounded memory.

mod common;

use std::time::Duration;

use common::{resp_cmd, Cluster, Redis};

/// Two servers under the default hash: these tests are about parsing, not placement.
fn fixture(extra: &str) -> Cluster<Redis> {
    Cluster::redis(2, extra)
}

impl Cluster<Redis> {
    /// Commands the backends have processed, summed: proves a refused request never left.
    /// Each INFO read here is itself one command per server, which callers allow for.
    fn backend_commands(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.info_stat("total_commands_processed"))
            .sum::<u64>()
    }

    /// The proxy still serves a valid command on a new connection.
    fn still_up(&self) {
        let mut c = self.client();
        c.send(&resp_cmd(&[b"SET", b"alive", b"1"]));
        assert_eq!(c.read_resp(), b"+OK\r\n");
    }
}

#[test]
fn broken_framing_gets_redis_errors_and_a_close() {
    let f = fixture("");
    let before = f.backend_commands();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*abc\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*2147483648\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n*1\r\n",
            b"-ERR Protocol error: expected '$', got '*'\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        // Redis reads lengths strictly: no sign, no leading zero (measured on 7.0).
        (
            b"*+1\r\n$4\r\nPING\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*01\r\n$4\r\nPING\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$+4\r\nPING\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$04\r\nPING\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$abc\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$99999999999\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGXX",
            b"-ERR Protocol error: bulk string not terminated by CRLF\r\n",
        ),
        (
            b"SET a \"unbalanced\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, reply) in cases {
        let mut c = f.client();
        c.send(input);
        assert_eq!(
            common::show(&c.read_exact_bytes(reply.len())),
            common::show(reply),
            "{}",
            common::show(input)
        );
        assert!(c.is_closed(), "{}", common::show(input));
    }
    // Empty arrays are skipped, as Redis does, and the connection goes on.
    let mut c = f.client();
    c.send(b"*0\r\n*-1\r\n");
    c.send(&resp_cmd(&[b"PING"]));
    assert_eq!(c.read_resp(), b"+PONG\r\n");
    // An inline request over 64 KiB without a newline.
    let mut c = f.client();
    let _ = c.try_send(&vec![b'a'; 70 * 1024]);
    assert_eq!(
        c.read_resp(),
        b"-ERR Protocol error: too big inline request\r\n"
    );
    assert!(c.is_closed());
    // An HTTP request at the Redis port: closed without a reply, as Redis does.
    let mut c = f.client();
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.is_closed());
    // Nothing above reached a backend (each INFO below counts one command per server).
    assert_eq!(f.backend_commands() - before, f.servers.len() as u64);
    f.still_up();
}

#[test]
fn a_bulk_that_never_ends_is_timed_out_and_binary_junk_is_survived() {
    let f = fixture("client_timeout: 300");
    let mut c = f.client();
    c.send(b"*2\r\n$3\r\nGET\r\n$100\r\nonly-part");
    assert_eq!(
        c.read_resp(),
        b"-ERR timed out waiting for the rest of the request\r\n"
    );
    assert!(c.is_closed());
    for seed in 0..20u32 {
        let mut c = f.client();
        c.set_timeout(Duration::from_millis(300));
        let junk: Vec<u8> = (0..2048u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let _ = c.try_send(&junk);
        let _ = c.is_closed();
    }
    f.still_up();
}

#[test]
fn unauthenticated_clients_get_small_limits() {
    let f = fixture("redis_auth: pw");
    let mut c = f.client();
    c.send(b"*11\r\n");
    assert_eq!(
        c.read_resp(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(c.is_closed());
    let mut c = f.client();
    c.send(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n");
    assert_eq!(
        c.read_resp(),
        b"-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(c.is_closed());
}

#[test]
fn huge_values_are_framed_with_memory_bounded_by_what_arrives() {
    let f = fixture("");
    let before = f.proxy.rss_kib();
    // Declares 512 MiB, sends 1 MiB, then stops: nothing near the declared size is reserved.
    let mut c = f.client();
    c.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$536870912\r\n");
    c.send(&vec![b'x'; 1024 * 1024]);
    std::thread::sleep(Duration::from_millis(300));
    let grown = f.proxy.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB for 1 MiB received"
    );
    drop(c);
    // An 8 MiB value round-trips.
    let mut c = f.client();
    let value = vec![b'v'; 8 * 1024 * 1024];
    c.send(&resp_cmd(&[b"SET", b"big", &value]));
    assert_eq!(c.read_resp(), b"+OK\r\n");
    c.send(&resp_cmd(&[b"GET", b"big"]));
    let reply = c.read_resp();
    assert_eq!(
        reply.len(),
        value.len() + format!("${}\r\n\r\n", value.len()).len()
    );
}

/// A reply the proxy builds itself is sized by the request: one that would not fit the
/// client's output limit is never built, and the client is disconnected (issue 12 review).
#[test]
fn a_self_built_reply_over_the_output_limit_disconnects_without_building_it() {
    let f = fixture("client_output_limit: 1mb");
    let mut c = f.client();
    let big = vec![b'e'; 2 << 20];
    c.send(&resp_cmd(&[b"ECHO", &big]));
    assert!(c.is_closed_within(Duration::from_secs(5)));
    let mut names: Vec<&[u8]> = vec![b"COMMAND", b"INFO"];
    names.extend(std::iter::repeat_n(&b"get"[..], 4096));
    let mut c = f.client();
    c.send(&resp_cmd(&names));
    assert!(c.is_closed_within(Duration::from_secs(5)));
    // Smaller ones are answered as before.
    let mut c = f.client();
    c.expect(&resp_cmd(&[b"ECHO", b"hi"]), b"$2\r\nhi\r\n");
}
