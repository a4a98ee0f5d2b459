//! Parser and encoder tests. Every reply stream is parsed whole, split in two at every byte and
//! fed one byte at a time; framing errors must be reported at every split, never a hang.

mod memcache;
mod resp;

use super::keys::{key_number, push_value, value_matches, Key};
use super::{parse_reply, FramingError, Op, Outcome, Parse, Proto};

/// One expected request and the outcome its reply must give.
pub struct Case {
    op: Op,
    keys: Vec<u32>,
    want: Outcome,
}

fn case(op: Op, keys: &[u32], want: Outcome) -> Case {
    Case {
        op,
        keys: keys.to_vec(),
        want,
    }
}

const OK: Outcome = Outcome {
    error: false,
    misses: 0,
    wrong: false,
};
const ERR: Outcome = Outcome {
    error: true,
    misses: 0,
    wrong: false,
};
const WRONG: Outcome = Outcome {
    error: false,
    misses: 0,
    wrong: true,
};
fn miss(n: u32) -> Outcome {
    Outcome { misses: n, ..OK }
}

/// Feeds `chunks` one after another into a buffer, parsing replies in order as the load
/// generator does; returns the outcomes, or the first framing error.
fn drive(proto: Proto, cases: &[Case], chunks: &[&[u8]]) -> Result<Vec<Outcome>, FramingError> {
    let mut buf = Vec::new();
    let mut start = 0;
    let mut got = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while got.len() < cases.len() {
            let c = &cases[got.len()];
            match parse_reply(proto, c.op, &c.keys, &buf[start..])? {
                Parse::Incomplete => break,
                Parse::Done(n, o) => {
                    assert!(n > 0);
                    start += n;
                    got.push(o);
                }
            }
        }
    }
    assert_eq!(start, buf.len(), "bytes left over after all replies");
    Ok(got)
}

/// The stream parsed whole, split in two at every byte, and fed one byte at a time must all
/// give the expected outcomes.
fn check_splits(proto: Proto, cases: &[Case], stream: &[u8]) {
    let want: Vec<Outcome> = cases.iter().map(|c| c.want).collect();
    assert_eq!(
        drive(proto, cases, &[stream]).unwrap(),
        want,
        "whole stream"
    );
    for i in 0..=stream.len() {
        let got = drive(proto, cases, &[&stream[..i], &stream[i..]]).unwrap();
        assert_eq!(got, want, "split at byte {i}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(drive(proto, cases, &bytes).unwrap(), want, "byte by byte");
}

/// A framing error must be reported whole and at every split, never a hang (Incomplete
/// forever) nor a success.
fn check_framing_error(proto: Proto, cases: &[Case], stream: &[u8]) {
    assert!(drive(proto, cases, &[stream]).is_err(), "whole stream");
    for i in 0..=stream.len() {
        assert!(
            drive(proto, cases, &[&stream[..i], &stream[i..]]).is_err(),
            "split at {i}"
        );
    }
}

fn value(n: u32, size: usize) -> Vec<u8> {
    let mut v = Vec::new();
    push_value(&mut v, n, size);
    v
}

#[test]
fn keys_and_values() {
    assert_eq!(Key::new(0).as_bytes(), b"key:0");
    assert_eq!(Key::new(u32::MAX).as_bytes(), b"key:4294967295");
    assert_eq!(value(12, 10), b"key:12:xxx");
    assert_eq!(value(12, 3), b"key");
    assert_eq!(value(12, 0), b"");
    assert!(value_matches(&value(7, 100), 7));
    assert!(value_matches(&value(7, 5), 7));
    assert!(!value_matches(&value(71, 100), 7));
    assert!(!value_matches(&value(7, 100), 71));
    assert_eq!(key_number(b"key:42"), Some(42));
    assert_eq!(key_number(b"key:"), None);
    assert_eq!(key_number(b"foo:1"), None);
}
