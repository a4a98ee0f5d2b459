//! Unit and property tests for the memcached codec.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn req(input: &[u8]) -> (Request, usize) {
    match parse(input, &limits()) {
        Parsed::Request(r, n) => (r, n),
        other => panic!(
            "expected a request for {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn rejected(input: &[u8]) -> Reject {
    match parse(input, &limits()) {
        Parsed::Reject(r) => r,
        other => panic!(
            "expected a reject for {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn keys<'a>(r: &Request, frame: &'a [u8]) -> Vec<&'a [u8]> {
    r.keys.iter().map(|k| &frame[k.clone()]).collect()
}

fn canonical(input: &[u8]) -> Vec<u8> {
    let (r, _) = req(input);
    let mut out = BytesMut::new();
    encode_keyed(&r, input, &mut out);
    out.to_vec()
}

#[test]
fn get_with_many_keys_and_extra_spaces() {
    let input = b"  get a  bb ccc\r\nrest";
    let (r, n) = req(input);
    assert_eq!(r.cmd, Command::Get);
    assert_eq!(n, 17);
    assert_eq!(keys(&r, input), vec![&b"a"[..], b"bb", b"ccc"]);
}

#[test]
fn bare_newline_is_accepted_like_memcached() {
    let (r, n) = req(b"get k\nget j\r\n");
    assert_eq!((r.cmd, n), (Command::Get, 6));
}

#[test]
fn gat_carries_exptime_before_keys() {
    let input = b"gats 100 x y\r\n";
    let (r, _) = req(input);
    assert_eq!((r.cmd, r.exptime), (Command::Gats, 100));
    assert_eq!(keys(&r, input), vec![&b"x"[..], b"y"]);
}

#[test]
fn set_waits_for_its_data_block() {
    assert_eq!(parse(b"set k 1 2 5\r\nhel", &limits()), Parsed::Incomplete);
    let input = b"set k 1 2 5\r\nhello\r\nget k\r\n";
    let (r, n) = req(input);
    assert_eq!(n, 20);
    assert_eq!(
        (r.flags, r.exptime, &input[r.data.clone()]),
        (1, 2, &b"hello"[..])
    );
}

#[test]
fn storage_is_reencoded_without_noreply() {
    assert_eq!(
        canonical(b"set  k 01 -1 3  noreply\r\nabc\r\n"),
        b"set k 1 -1 3\r\nabc\r\n"
    );
    assert_eq!(
        canonical(b"cas k 0 0 1 99\r\nz\r\n"),
        b"cas k 0 0 1 99\r\nz\r\n"
    );
    assert_eq!(canonical(b"incr n 7 noreply\r\n"), b"incr n 7\r\n");
    assert_eq!(canonical(b"touch n 10\r\n"), b"touch n 10\r\n");
    assert_eq!(canonical(b"delete n 0 noreply\r\n"), b"delete n\r\n");
    assert!(req(b"set k 0 0 1 noreply\r\nz\r\n").0.noreply);
}

#[test]
fn unknown_and_malformed_commands() {
    assert_eq!(rejected(b"bogus\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(rejected(b"GET k\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(rejected(b"\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(rejected(b"get\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(rejected(b"set k 0 0\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(
        rejected(b"incr k x\r\n").reply.as_ref(),
        b"CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    assert_eq!(
        rejected(b"touch k x\r\n").reply.as_ref(),
        b"CLIENT_ERROR invalid exptime argument\r\n"
    );
    let r = rejected(b"delete k 5\r\n");
    assert!(r.reply.starts_with(b"CLIENT_ERROR bad command line format"));
    assert!(rejected(b"mg k v\r\n")
        .reply
        .starts_with(b"CLIENT_ERROR command 'mg' is not supported"));
}

#[test]
fn key_rules() {
    let long = format!("get {}\r\n", "k".repeat(251));
    assert_eq!(
        rejected(long.as_bytes()).reply.as_ref(),
        b"CLIENT_ERROR bad command line format\r\n"
    );
    let ok = format!("get {}\r\n", "k".repeat(250));
    assert_eq!(req(ok.as_bytes()).0.keys.len(), 1);
    assert_eq!(
        rejected(b"get a\0b\r\n").reply.as_ref(),
        b"CLIENT_ERROR key contains a control character\r\n"
    );
    assert_eq!(
        rejected(b"get a\rb\r\n").reply.as_ref(),
        b"CLIENT_ERROR key contains a control character\r\n"
    );
    // memcached strips one `\r` before the line's `\n`: the second is in the key.
    assert_eq!(
        rejected(b"get k\r\r\n").reply.as_ref(),
        b"CLIENT_ERROR key contains a control character\r\n"
    );
    // Every other byte memcached stores as sent is a key byte (memaslap's keys start with 0x10).
    let (r, _) = req(b"get \x10a\tb\x7f\x01 x\x1f\r\n");
    assert_eq!(
        keys(&r, b"get \x10a\tb\x7f\x01 x\x1f\r\n"),
        [&b"\x10a\tb\x7f\x01"[..], b"x\x1f"]
    );
    assert_eq!(
        canonical(b"set \x10\t\x7f 0 0 1\r\nv\r\n"),
        b"set \x10\t\x7f 0 0 1\r\nv\r\n"
    );
    // UTF-8 keys are fine.
    assert_eq!(req("get clé\r\n".as_bytes()).0.keys.len(), 1);
}

#[test]
fn bad_key_on_set_skips_the_value() {
    let r = rejected(b"set a\0b 0 0 3\r\nabc\r\n");
    assert_eq!(r.after, After::Swallow(5));
    assert_eq!(r.consumed, 15);
}

#[test]
fn lengths_that_memcached_would_wrap_are_refused_and_skipped() {
    // A length that reads as a number is refused when memcached would refuse or wrap it, and
    // everything the client announced is skipped: none of it may run as a command.
    for (len, skip) in [
        ("4294967298", 4294967300u64),
        ("1099511627776", 1099511627778),
        ("2147483647", 2147483649),
        ("2147483646", 2147483648),
    ] {
        let line = format!("set k 0 0 {len}\r\nab\r\n");
        let r = rejected(line.as_bytes());
        assert_eq!(
            r.reply.as_ref(),
            b"CLIENT_ERROR bad command line format\r\n",
            "{len}"
        );
        assert_eq!(
            (r.consumed, r.after),
            (line.len() - 4, After::Swallow(skip)),
            "{len}"
        );
    }
    // A length that cannot be read at all: nothing after the line can be trusted.
    for len in ["-1", "12a", "x", "99999999999999999999"] {
        let line = format!("set k 0 0 {len}\r\nab\r\n");
        let r = rejected(line.as_bytes());
        assert_eq!(
            (r.reply.as_ref(), r.after),
            (
                &b"CLIENT_ERROR bad command line format\r\n"[..],
                After::Close
            ),
            "{len}"
        );
    }
}

#[test]
fn numbers_are_read_as_memcached_reads_them() {
    // An exptime in milliseconds is stored by memcached as the int32 it wraps to.
    let input = b"set note 0 1796537489000 9\r\nflush_all\r\n";
    let (r, used) = req(input);
    assert_eq!(used, input.len());
    assert_eq!(r.exptime, i64::from(1796537489000i64 as i32));
    assert_eq!(&input[r.data.clone()], b"flush_all");
    // A signed length, flags of 2^32 (stored as 0), a `\r\r\n` line ending.
    let (r, _) = req(b"set k +1 0 +3\r\nabc\r\n");
    assert_eq!((r.flags, r.data.len()), (1, 3));
    let (r, _) = req(b"set k 4294967296 0 1\r\na\r\n");
    assert_eq!(r.flags, 0);
    let (r, _) = req(b"set k 0 0 1\r\r\na\r\n");
    assert_eq!(r.data.len(), 1);
    assert_eq!(
        canonical(b"set k +5 +0 1\r\na\r\n"),
        b"set k 5 0 1\r\na\r\n"
    );
    // gat and touch take exptimes over 2^31 the same way.
    assert_eq!(req(b"gat 4294967396 k\r\n").0.exptime, 100);
    assert_eq!(req(b"touch k 4294967396\r\n").0.exptime, 100);
    // A token after the arguments that is not `noreply` is ignored, with a reply.
    let (r, _) = req(b"set k 0 0 1 junk\r\na\r\n");
    assert!(!r.noreply);
    assert!(!req(b"incr k 1 junk\r\n").0.noreply);
}

#[test]
fn a_refused_storage_line_never_runs_its_data() {
    // Bad flags, a bad exptime, a bad cas, a long key, too many tokens: the block is skipped.
    for line in [
        &b"set k x 0 9\r\nflush_all\r\n"[..],
        b"set k 0 x 9\r\nflush_all\r\n",
        b"cas k 0 0 9 x\r\nflush_all\r\n",
        b"cas k 0 0 9\r\nflush_all\r\n",
        b"set k 0 0 9 a b c d e\r\nflush_all\r\n",
    ] {
        let r = rejected(line);
        assert_eq!(
            r.after,
            After::Swallow(11),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(r.consumed, line.len() - 11);
    }
    let long = format!("set {} 0 0 9\r\nflush_all\r\n", "k".repeat(251));
    assert_eq!(rejected(long.as_bytes()).after, After::Swallow(11));
    // No length at all: close after the error.
    assert_eq!(rejected(b"set k 0 0\r\n").after, After::Close);
}

#[test]
fn refused_noreply_requests_are_silent() {
    for line in [
        &b"set k 0 0 2000000 noreply\r\n"[..],
        b"set k\0 0 0 1 noreply\r\na\r\n",
        b"set k x 0 1 noreply\r\na\r\n",
        b"set k 0 0 3 noreply\r\nabcde\r\n",
        b"incr k x noreply\r\n",
        b"touch k x noreply\r\n",
        b"delete k 5 noreply\r\n",
        b"cas k 0 0 1 x noreply\r\na\r\n",
        b"flush_all x noreply\r\n",
    ] {
        let r = rejected(line);
        assert_eq!(r.reply.as_ref(), b"", "{}", String::from_utf8_lossy(line));
    }
    // Without a valid token count there is no noreply: memcached answers ERROR.
    // memcached looks at the last token whatever the count: `incr k noreply` is silent.
    assert_eq!(rejected(b"incr k noreply\r\n").reply.as_ref(), b"");
    assert_eq!(
        rejected(b"set k 0 noreply\r\n").reply.as_ref(),
        b"ERROR\r\n"
    );
}

#[test]
fn gat_without_a_key_is_an_empty_result() {
    let (r, _) = req(b"gat 0\r\n");
    assert!(r.keys.is_empty());
    assert_eq!(rejected(b"gat\r\n").reply.as_ref(), b"ERROR\r\n");
}

#[test]
fn oversized_value_is_refused_and_skipped() {
    let r = rejected(b"set k 0 0 1048577\r\n");
    assert_eq!(
        r.reply.as_ref(),
        b"SERVER_ERROR object too large for cache\r\n"
    );
    assert_eq!(r.after, After::Swallow(1048579));
}

#[test]
fn bad_data_chunk_answers_like_memcached_then_closes() {
    let r = rejected(b"set k 0 0 3\r\nabcde\r\n");
    assert_eq!(r.reply.as_ref(), b"CLIENT_ERROR bad data chunk\r\n");
    assert_eq!((r.consumed, r.after), (18, After::Close));
}

#[test]
fn long_lines_close_the_connection() {
    let line = vec![b'x'; 2049];
    assert_eq!(rejected(&line).after, After::Close);
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b'k', 4000));
    assert_eq!(parse(&get, &limits()), Parsed::Incomplete);
    get.extend(std::iter::repeat_n(b'k', 256 * 1024));
    assert_eq!(rejected(&get).after, After::Close);
}

#[test]
fn binary_and_http_close() {
    // A binary header is answered once whole (see `binary`), then the connection closes.
    assert_eq!(parse(b"\x80\x00\x00", &limits()), Parsed::Incomplete);
    let r = rejected(&[0x80; 24]);
    assert_eq!((r.after, r.consumed, r.reply.len()), (After::Close, 24, 39));
    assert_eq!(rejected(b"POST / HTTP/1.1\r\n").after, After::Close);
}

#[test]
fn pool_commands() {
    let (r, _) = req(b"flush_all 10 noreply\r\n");
    assert_eq!(
        (r.cmd, r.exptime, r.has_arg, r.noreply),
        (Command::FlushAll, 10, true, true)
    );
    let mut out = BytesMut::new();
    encode_pool_command(&r, &mut out);
    assert_eq!(&out[..], b"flush_all 10\r\n");
    assert_eq!(req(b"verbosity 1\r\n").0.cmd, Command::Verbosity);
    assert!(req(b"verbosity 1 noreply\r\n").0.noreply);
    // memcached reads the level first: `verbosity noreply` is a silent format error.
    assert_eq!(rejected(b"verbosity noreply\r\n").reply.as_ref(), b"");
    assert_eq!(
        rejected(b"verbosity x\r\n").reply.as_ref(),
        b"CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(rejected(b"verbosity\r\n").reply.as_ref(), b"ERROR\r\n");
    assert_eq!(
        rejected(b"verbosity a b c\r\n").reply.as_ref(),
        b"ERROR\r\n"
    );
    assert_eq!(
        rejected(b"flush_all soon\r\n").reply.as_ref(),
        b"CLIENT_ERROR invalid exptime argument\r\n"
    );
    assert_eq!(req(b"version\r\n").0.cmd, Command::Version);
    assert_eq!(req(b"version foo bar\r\n").0.cmd, Command::Version);
    let input = b"stats items\r\n";
    let (r, _) = req(input);
    assert_eq!(&input[r.args.clone()], b"items");
}

#[test]
fn replies_are_framed_by_what_was_asked() {
    let values = b"VALUE a 0 3\r\nabc\r\nVALUE b 5 0 77\r\n\r\nEND\r\n";
    assert_eq!(
        frame_reply(values, Expect::Values, 1 << 20),
        Ok(Some(values.len()))
    );
    for cut in 0..values.len() {
        assert_eq!(
            frame_reply(&values[..cut], Expect::Values, 1 << 20),
            Ok(None),
            "cut at {cut}"
        );
    }
    let blocks: Vec<_> = value_blocks(values)
        .map(|b| (b.key.to_vec(), b.block))
        .collect();
    assert_eq!(
        blocks,
        vec![(b"a".to_vec(), 0..18), (b"b".to_vec(), 18..36)]
    );
    assert_eq!(
        frame_reply(b"STORED\r\nEND", Expect::Storage, 10),
        Ok(Some(8))
    );
    assert_eq!(
        frame_reply(b"SERVER_ERROR out of memory\r\n", Expect::Values, 10),
        Ok(Some(28))
    );
    assert_eq!(frame_reply(b"42\r\n", Expect::Arith, 10), Ok(Some(4)));
    assert!(frame_reply(b"STORED\r\n", Expect::Values, 10).is_err());
    assert!(frame_reply(b"END\r\n", Expect::Storage, 10).is_err());
    assert!(frame_reply(b"VALUE k 0 4294967293\r\n", Expect::Values, 1 << 20).is_err());
    assert!(frame_reply(b"VALUE k 0 1\r\nab\r\n", Expect::Values, 10).is_err());
}

proptest! {
    /// Whatever arrives, the parser neither panics nor claims more bytes than it was given,
    /// and a request it accepts is not longer than the input.
    #[test]
    fn parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse(&input, &limits()) {
            Parsed::Request(_, n) => prop_assert!(n <= input.len()),
            Parsed::Reject(r) => prop_assert!(r.consumed <= input.len()),
            Parsed::Incomplete => {}
        }
    }

    /// A valid request split at any point parses as Incomplete first, then whole.
    #[test]
    fn any_split_point(key in "[a-z0-9:]{1,40}", value in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..300) {
        let mut input = format!("set {key} 3 0 {}\r\n", value.len()).into_bytes();
        input.extend_from_slice(&value);
        input.extend_from_slice(b"\r\n");
        let cut = cut.min(input.len() - 1);
        prop_assert_eq!(parse(&input[..cut], &limits()), Parsed::Incomplete);
        let (r, n) = req(&input);
        prop_assert_eq!(n, input.len());
        prop_assert_eq!(&input[r.data.clone()], &value[..]);
    }

    /// Replies are framed identically whether they arrive whole or in pieces.
    #[test]
    fn reply_framing_any_split(vals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..5), cut in 0usize..400) {
        let mut reply = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            reply.extend_from_slice(format!("VALUE k{i} 0 {}\r\n", v.len()).as_bytes());
            reply.extend_from_slice(v);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"END\r\n");
        let cut = cut.min(reply.len() - 1);
        prop_assert_eq!(frame_reply(&reply[..cut], Expect::Values, 1 << 20), Ok(None));
        prop_assert_eq!(frame_reply(&reply, Expect::Values, 1 << 20), Ok(Some(reply.len())));
        prop_assert_eq!(value_blocks(&reply).count(), vals.len());
    }
}

#[test]
fn retrieval_replies_are_checked_against_the_keys_asked() {
    let ok = b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\ny\r\nEND\r\n";
    let check = |reply: &[u8], request: &[u8]| check_values(reply, retrieval_keys(request));
    assert_eq!(check(ok, b"get a b c\r\n"), Ok((2, 3)));
    assert_eq!(check(b"END\r\n", b"gat 10 a b\r\n"), Ok((0, 2)));
    assert_eq!(check(ok, b"gats 0 a c\r\n"), Ok((2, 2)));
    let with_cas = b"VALUE a 0 1 77\r\nx\r\nEND\r\n";
    assert_eq!(check(with_cas, b"gets a\r\n"), Ok((1, 1)));
    // Another key, the right keys out of order, a key twice.
    assert!(check(ok, b"get b\r\n").is_err());
    assert!(check(ok, b"get c a\r\n").is_err());
    let twice = b"VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n";
    assert!(check(twice, b"get a\r\n").is_err());
    assert_eq!(
        check_values(b"END\r\n", std::iter::once(&b"a"[..])),
        Ok((0, 1))
    );
}

#[test]
fn a_values_skip_rejects_an_impossible_length() {
    let mut skip = response::SkipValues::default();
    assert!(skip.skip(b"VALUE a 0 18446744073709551615\r\n").is_err());
}

#[test]
fn ms_data_blocks_are_skipped_not_run() {
    let r = rejected(b"ms k 9 T0\r\nflush_all\r\n");
    assert_eq!((r.consumed, r.after), (11, After::Swallow(11)));
    assert_eq!(rejected(b"ms k x\r\n").after, After::Close);
    assert_eq!(rejected(b"mg k v\r\n").after, After::Continue);
}
