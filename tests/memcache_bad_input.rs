//! Hostile and malformed input on a memcached pool: each class gets its exact reply, nothing
//! unvalidated reaches a backend, the connection stays usable wherever framing is intact, and
//! the proxy's memory stays bounded.

mod common;

use std::time::Duration;

use common::{Cluster, Memcached, RawClient};

/// Three servers under the default hash: these tests are about parsing, not placement.
fn fixture(extra: &str) -> Cluster<Memcached> {
    Cluster::memcached(3, extra)
}

impl Cluster<Memcached> {
    /// Commands the backends have processed, summed: proves a refused request never left.
    fn backend_commands(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.stat("cmd_get") + s.stat("cmd_set") + s.stat("cmd_touch"))
            .sum()
    }
}

/// The connection still serves a valid command.
fn still_works(c: &mut RawClient) {
    c.expect(b"set ok 0 0 2\r\nok\r\n", b"STORED\r\n");
    c.expect(b"get ok\r\n", b"VALUE ok 0 2\r\nok\r\nEND\r\n");
}

#[test]
fn each_class_of_bad_request_gets_its_reply_and_the_connection_survives() {
    let f = fixture("");
    let mut c = f.client();
    let before = f.backend_commands();
    let cases: &[(&[u8], &[u8])] = &[
        (b"bogus command\r\n", b"ERROR\r\n"),
        (b"GET k\r\n", b"ERROR\r\n"),
        (b"\r\n", b"ERROR\r\n"),
        (b"get\r\n", b"ERROR\r\n"),
        (
            b"incr k abc\r\n",
            b"CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        (
            b"touch k soon\r\n",
            b"CLIENT_ERROR invalid exptime argument\r\n",
        ),
        // A refused storage line with a readable length: the data block is skipped.
        (
            b"set k abc 0 1\r\nx\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (b"set k 0 0 1 a b c\r\nx\r\n", b"ERROR\r\n"),
        (
            b"get a\0b\r\n",
            b"CLIENT_ERROR key contains a control character\r\n",
        ),
        (
            b"set a\rb 0 0 2\r\nxx\r\n",
            b"CLIENT_ERROR key contains a control character\r\n",
        ),
        (
            b"delete k 10\r\n",
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (
            b"mg k v\r\n",
            b"CLIENT_ERROR command 'mg' is not supported by shardproxy\r\n",
        ),
        (b"stats foo\r\n", b"ERROR\r\n"),
        (
            b"stats detail on\r\n",
            b"CLIENT_ERROR this 'stats' form is not supported by shardproxy\r\n",
        ),
        (
            b"stats cachedump 1\r\n",
            b"CLIENT_ERROR bad command line\r\n",
        ),
    ];
    for (request, reply) in cases {
        c.expect(request, reply);
        still_works(&mut c);
    }
    let long_key = "k".repeat(251);
    c.expect(
        format!("get {long_key}\r\n").as_bytes(),
        b"CLIENT_ERROR bad command line format\r\n",
    );
    // On a set the declared value is skipped, so the client stays in step.
    c.expect(
        format!("set {long_key} 0 0 3\r\nabc\r\n").as_bytes(),
        b"CLIENT_ERROR bad command line format\r\n",
    );
    still_works(&mut c);
    // Over the item size limit: refused by the proxy and skipped, as memcached does.
    let mut big = b"set big 0 0 1048577\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'v', 1048577));
    big.extend_from_slice(b"\r\n");
    c.expect(&big, b"SERVER_ERROR object too large for cache\r\n");
    still_works(&mut c);
    // Nothing refused reached a backend: only the still_works traffic did (one set and one get
    // per check).
    let checks = cases.len() as u64 + 2;
    assert_eq!(f.backend_commands() - before, 2 * checks);
    for s in &f.servers {
        assert_eq!(s.get_direct("k"), None);
        assert_eq!(s.get_direct("big"), None);
    }
}

/// A data block that does not end where its length said: memcached answers `bad data chunk`
/// and runs the rest of the miscounted value as commands; the proxy gives the same answer and
/// closes the connection, since where the value really ends cannot be known.
#[test]
fn data_block_mismatches_answer_like_memcached_then_close() {
    let f = fixture("");
    let direct = Memcached::start();
    let inputs: &[&[u8]] = &[
        b"set k 0 0 3\r\nabcdeflush_all\r\n",
        b"set k 0 0 5\r\nabc\r\nget k\r\n",
        b"set k 0 0 2\r\nab\nget k\r\n",
    ];
    for input in inputs {
        let mut via_proxy = f.client();
        via_proxy.send(input);
        assert_eq!(via_proxy.read_line(), b"CLIENT_ERROR bad data chunk\r\n");
        assert!(via_proxy.is_closed(), "input {}", common::show(input));
        let mut to_memcached = RawClient::connect(&direct.addr());
        to_memcached.send(input);
        assert_eq!(to_memcached.read_line(), b"CLIENT_ERROR bad data chunk\r\n");
        direct.flush();
    }
    // Nothing ran: the servers' keys are intact.
    let mut c = f.client();
    still_works(&mut c);
    for s in &f.servers {
        assert_eq!(s.get_direct("k"), None);
    }
}

#[test]
fn framing_loss_closes_the_connection() {
    let f = fixture("");
    // A line of 1 MiB without a newline: an error, then the connection closes.
    let mut c = f.client();
    let line = vec![b'x'; 1024 * 1024];
    let _ = c.try_send(&line);
    assert_eq!(c.read_line(), b"CLIENT_ERROR line too long\r\n");
    assert!(c.is_closed());
    // The same for a get line (memcached itself buffers these without limit).
    let mut c = f.client();
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b'k', 1024 * 1024));
    let _ = c.try_send(&get);
    assert_eq!(c.read_line(), b"CLIENT_ERROR line too long\r\n");
    assert!(c.is_closed());
    // Random binary junk: answered with errors or closed, never a crash.
    let mut c = f.client();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = c.try_send(&junk);
    drop(c);
    still_works(&mut f.client());
}

#[test]
fn a_client_stalled_mid_value_is_closed_after_the_body_timeout() {
    let f = fixture("client_timeout: 300");
    let mut c = f.client();
    c.send(b"set k 0 0 10\r\nabc");
    assert_eq!(
        c.read_line(),
        b"CLIENT_ERROR timed out waiting for the rest of the request\r\n"
    );
    assert!(c.is_closed());
    still_works(&mut f.client());
}

#[test]
fn memory_stays_bounded_under_endless_lines_and_unread_pipelines() {
    let f = fixture("");
    let value = vec![b'v'; 10_000];
    let mut set = b"set hot 0 0 10000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    f.client().expect(&set, b"STORED\r\n");
    let rss_before = f.proxy.rss_kib();
    // Pipeline up to 10 million gets (100 GB of replies) without reading any of them; far more
    // than the kernel's socket buffers hold, so the sender must block once the proxy stops
    // reading.
    let mut c = f.client();
    c.set_timeout(Duration::from_millis(200));
    let chunk = b"get hot\r\n".repeat(1000);
    let mut sent = 0;
    let start = std::time::Instant::now();
    while sent < 10_000 && start.elapsed() < Duration::from_secs(10) {
        if c.try_send(&chunk).is_err() {
            break; // the proxy stopped reading: back-pressure reached the client
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = f.proxy.rss_kib().saturating_sub(rss_before);
    eprintln!("sent {sent} chunks, proxy RSS grew by {grown} KiB");
    assert!(
        sent < 10_000,
        "the proxy kept reading while replies piled up"
    );
    assert!(grown < 64 * 1024, "proxy RSS grew by {grown} KiB");
    drop(c);
    still_works(&mut f.client());
}

/// Issue 12, item 3: a storage line memcached accepts means what memcached makes of it, and a
/// refused one never has its data block parsed as a command, by the proxy or a backend.
#[test]
fn stored_values_never_run_as_commands() {
    let f = fixture("");
    let mut c = f.client();
    // Keys on every server, so that a flush of any of them would show.
    for i in 0..20 {
        c.expect(
            format!("set keep{i} 0 0 1\r\nk\r\n").as_bytes(),
            b"STORED\r\n",
        );
    }
    let keep = |f: &Cluster<Memcached>| {
        (0..20)
            .filter(|i| {
                f.servers
                    .iter()
                    .any(|s| s.get_direct(&format!("keep{i}")).is_some())
            })
            .count()
    };
    // Accepted by memcached, so stored through the proxy: an exptime in milliseconds (wraps
    // to a negative int32: memcached stores the item already expired), a signed length, flags
    // of 2^32 (stored as 0), a `\r\r\n` line ending.
    c.expect(
        b"set note 0 1796537489000 9\r\nflush_all\r\n",
        b"STORED\r\n",
    );
    c.expect(b"set plus 0 0 +9\r\nflush_all\r\n", b"STORED\r\n");
    c.expect(b"get plus\r\n", b"VALUE plus 0 9\r\nflush_all\r\nEND\r\n");
    c.expect(b"set fl 4294967296 0 9\r\nflush_all\r\n", b"STORED\r\n");
    c.expect(b"get fl\r\n", b"VALUE fl 0 9\r\nflush_all\r\nEND\r\n");
    c.expect(b"set crcr 0 0 2\r\r\nok\r\n", b"STORED\r\n");
    c.expect(b"get crcr\r\n", b"VALUE crcr 0 2\r\nok\r\nEND\r\n");
    // Refused with a readable length: the block is skipped, one reply, the connection lives.
    c.expect(
        b"set bad x 0 9\r\nflush_all\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    );
    c.expect(b"cas bad 0 0 9\r\nflush_all\r\n", b"ERROR\r\n");
    // A meta set is not supported yet, and its data block is skipped all the same.
    c.expect(
        b"ms bad 9 T0\r\nflush_all\r\n",
        b"CLIENT_ERROR command 'ms' is not supported by shardproxy\r\n",
    );
    still_works(&mut c);
    assert_eq!(keep(&f), 20, "a data block ran as flush_all");
    // A length memcached would wrap (2^32+2 means 2 there): refused, and everything the client
    // announced is skipped, so the "flush_all" inside never runs.
    let mut w = f.client();
    w.expect(
        b"set k 0 0 4294967298\r\nab\r\nflush_all\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    );
    // A length that cannot be read: the error, then the connection is closed.
    let mut n = f.client();
    n.send(b"set k 0 0 -1\r\nflush_all\r\n");
    assert_eq!(n.read_line(), b"CLIENT_ERROR bad command line format\r\n");
    assert!(n.is_closed());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(keep(&f), 20, "a data block ran as flush_all");
    for s in &f.servers {
        assert_eq!(s.get_direct("k"), None);
        assert_eq!(s.get_direct("bad"), None);
    }
}

/// Issue 12, item 7: refused requests that said `noreply` get no reply, as from memcached,
/// so the next reply the client reads is its next request's (pymemcache sends noreply).
#[test]
fn refused_noreply_requests_stay_silent() {
    let f = fixture("");
    let direct = Memcached::start();
    let mut big = b"set big 0 0 2000000 noreply\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'v', 2_000_000));
    big.extend_from_slice(b"\r\n");
    // (request, whether memcached itself stays in step: it runs the data block of a line
    // with bad numbers as a command, which the proxy never does)
    let silent: Vec<(&[u8], bool)> = vec![
        (&big, true),
        (b"set k\0 0 0 1 noreply\r\nx\r\n", false),
        (b"incr k abc noreply\r\n", true),
        (b"touch k soon noreply\r\n", true),
        (b"delete k 5 noreply\r\n", true),
        (b"cas k 0 0 1 x noreply\r\nx\r\n", false),
        (b"set k x 0 1 noreply\r\nx\r\n", false),
    ];
    for (request, memcached_in_step) in silent {
        let mut c = f.client();
        c.send(request);
        c.expect(b"get a\r\n", b"END\r\n");
        let mut m = RawClient::connect(&direct.addr());
        m.send(request);
        let first = if memcached_in_step {
            &b"END\r\n"[..]
        } else {
            b"ERROR\r\n"
        };
        m.expect(b"get a\r\n", first);
    }
}

/// Issue 12, item 8: what memcached accepts, the proxy accepts.
#[test]
fn lenient_forms_memcached_accepts() {
    let f = fixture("");
    let mut c = f.client();
    c.expect(b"gat 0\r\n", b"END\r\n");
    c.expect(b"set g 0 0 1\r\nv\r\n", b"STORED\r\n");
    c.expect(b"gat 4294967396 g\r\n", b"VALUE g 0 1\r\nv\r\nEND\r\n");
    c.expect(b"touch g 4294967396\r\n", b"TOUCHED\r\n");
    c.expect(b"incr n 1\r\r\n", b"NOT_FOUND\r\n");
    still_works(&mut c);
}

/// Issue 13, item 2: every key byte memcached stores as sent is forwarded (memaslap's keys
/// start with 0x10); NUL (memcached truncates there) and CR stay refused.
#[test]
fn keys_with_control_bytes_memcached_stores_are_forwarded() {
    let f = fixture("");
    let mut c = f.client();
    let key = "\x10mem\x7fas\tlap";
    c.expect(
        format!("set {key} 5 0 3\r\nabc\r\n").as_bytes(),
        b"STORED\r\n",
    );
    c.expect(
        format!("get {key} other\r\n").as_bytes(),
        format!("VALUE {key} 5 3\r\nabc\r\nEND\r\n").as_bytes(),
    );
    let holders: Vec<usize> = (0..f.servers.len())
        .filter(|&i| f.servers[i].get_direct(key).is_some())
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(f.servers[holders[0]].get_direct(key), Some(b"abc".to_vec()));
    // The server the proxy chose is the one it reads back from after a direct overwrite.
    f.servers[holders[0]].set_direct(key, b"xyz");
    c.expect(
        format!("get {key}\r\n").as_bytes(),
        format!("VALUE {key} 0 3\r\nxyz\r\nEND\r\n").as_bytes(),
    );
    c.expect(
        b"get k\r\r\n",
        b"CLIENT_ERROR key contains a control character\r\n",
    );
    still_works(&mut c);
}

/// Issue 13, item 6: a binary-protocol request gets memcached's binary `Unknown command`
/// response (magic 0x81, the request's opcode and opaque, status 0x0081, its text as body),
/// then the connection closes: a binary client fails at once instead of waiting.
#[test]
fn binary_requests_get_a_binary_error_then_close() {
    let f = fixture("");
    let mut c = f.client();
    // GET (opcode 0x00), key "k", opaque 0xdeadbeef.
    let mut get = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1];
    get.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    get.extend_from_slice(&[0; 8]);
    get.push(b'k');
    c.send(&get);
    let mut want = vec![0x81, 0x00, 0, 0, 0, 0, 0x00, 0x81, 0, 0, 0, 15];
    want.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(b"Unknown command");
    assert_eq!(c.read_exact_bytes(want.len()), want);
    assert!(c.is_closed());
    // memcached's own error responses share that layout: magic, opcode, status, body length,
    // opaque echoed and the status text as body (here 0x0001 `Not found` for the same GET).
    let direct = Memcached::start();
    let mut m = RawClient::connect(&direct.addr());
    m.send(&get);
    let reply = m.read_exact_bytes(24 + 9);
    assert_eq!(&reply[..2], &[0x81, 0x00]);
    assert_eq!(&reply[6..16], &[0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&reply[24..], b"Not found");
    still_works(&mut f.client());
}
