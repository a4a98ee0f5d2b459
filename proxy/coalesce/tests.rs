//! Unit tests of coalescing: joining, leading, read-your-writes, bounds.

use super::*;
use std::rc::Rc;

use bytes::Bytes;

use super::index::{copy_short, Entry, INDEX_SLOTS, INLINE_KEY};
use super::recent::{Recent, SETS as RECENT_SETS};
use crate::backend::{BackendError, ReplySink, Target};

fn read<'a>(epochs: &WriteEpochs, server: usize, cmd: u8, key: &'a str) -> ReadKey<'a> {
    ReadKey::new(epochs, server, cmd, key.as_bytes()).unwrap()
}

/// A session's sink and one slot sent to the backend as a coalescable read.
fn lead(flights: &Rc<Flights>, r: &ReadKey, sink: &Rc<ReplySink>) -> u32 {
    let slot = sink.alloc();
    flights.lead(r, sink, slot, false);
    slot
}

#[test]
fn short_keys_are_copied_exactly_at_every_length() {
    for n in 0..=INLINE_KEY {
        let key: Vec<u8> = (0..n as u8).map(|b| b + 1).collect();
        let mut dst = [0xffu8; INLINE_KEY];
        copy_short(&mut dst, &key);
        assert_eq!(&dst[..n], &key[..], "length {n}");
        assert!(
            dst[n..].iter().all(|&b| b == 0xff),
            "length {n}: wrote past the key"
        );
    }
}

#[test]
fn reads_join_then_the_entry_is_cleared_when_answered() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let (a, b) = (Rc::new(ReplySink::default()), Rc::new(ReplySink::default()));
    let leader = lead(&flights, &read(&epochs, 0, cmd::GET, "k"), &a);
    // Another server, another command or another key is another read.
    for other in [
        read(&epochs, 1, cmd::GET, "k"),
        read(&epochs, 0, cmd::GETS, "k"),
        read(&epochs, 0, cmd::GET, "j"),
    ] {
        assert!(flights.join(&other, &b).is_none());
    }
    let first = flights.join(&read(&epochs, 0, cmd::GET, "k"), &b).unwrap();
    assert!(first.first, "the first follower makes a flight");
    // The leader's own session may pipeline the same read.
    let second = flights.join(&read(&epochs, 0, cmd::GET, "k"), &a).unwrap();
    assert!(!second.first);
    assert!(!b.is_done(first.slot));
    a.complete(leader, Ok(Bytes::from_static(b"END\r\n")));
    assert_eq!(flights.len(), 0, "no entry outlives its read");
    for (sink, slot) in [(&a, leader), (&b, first.slot), (&a, second.slot)] {
        assert_eq!(sink.take(slot).unwrap(), &b"END\r\n"[..]);
    }
    assert!(flights.join(&read(&epochs, 0, cmd::GET, "k"), &b).is_none());
}

#[test]
fn a_write_since_the_read_was_sent_prevents_joining() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let sink = Rc::new(ReplySink::default());
    let old = lead(&flights, &read(&epochs, 0, cmd::GET, "k"), &sink);
    epochs.wrote(b"k");
    assert!(flights
        .join(&read(&epochs, 0, cmd::GET, "k"), &sink)
        .is_none());
    // A newer read takes the entry over; the older one's answer leaves it alone.
    let new = lead(&flights, &read(&epochs, 0, cmd::GET, "k"), &sink);
    sink.complete(old, Ok(Bytes::new()));
    let joined = flights
        .join(&read(&epochs, 0, cmd::GET, "k"), &sink)
        .unwrap();
    sink.complete(new, Ok(Bytes::from_static(b"new")));
    assert_eq!(sink.take(joined.slot).unwrap(), &b"new"[..]);
    assert!(flights.is_empty());
}

#[test]
fn errors_and_a_departed_leader_still_reach_followers() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let leader = Rc::new(ReplySink::default());
    let follower = Rc::new(ReplySink::default());
    let slot = lead(&flights, &read(&epochs, 0, cmd::REDIS_GET, "k"), &leader);
    let target = Target::Slot(leader.clone(), slot);
    let joined = flights
        .join(&read(&epochs, 0, cmd::REDIS_GET, "k"), &follower)
        .unwrap();
    // The leader's session goes away; the backend request does not.
    drop(leader);
    target.deliver(Err(BackendError::Timeout));
    assert!(matches!(
        follower.take(joined.slot),
        Err(BackendError::Timeout)
    ));
    assert!(flights.is_empty());
}

#[test]
fn the_index_is_bounded() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let sink = Rc::new(ReplySink::default());
    let keys: Vec<String> = (0..3 * INDEX_SLOTS).map(|i| i.to_string()).collect();
    for k in &keys {
        lead(&flights, &read(&epochs, 0, cmd::GET, k), &sink);
    }
    assert!(flights.len() <= INDEX_SLOTS);
    assert_eq!(flights.capacity(), INDEX_SLOTS);
    let long = "k".repeat(MAX_KEY + 1);
    assert!(ReadKey::new(&epochs, 0, cmd::GET, long.as_bytes()).is_none());
}

#[test]
fn short_and_long_keys_are_compared_whole() {
    assert_eq!(std::mem::size_of::<Entry>(), 64, "one cache line");
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let sink = Rc::new(ReplySink::default());
    let long = "k".repeat(MAX_KEY);
    let keys = ["", "a", &long[..INLINE_KEY], &long[..INLINE_KEY + 1], &long];
    for k in keys {
        lead(&flights, &read(&epochs, 0, cmd::GET, k), &sink);
    }
    for k in keys {
        assert!(
            flights
                .join(&read(&epochs, 0, cmd::GET, k), &sink)
                .is_some(),
            "{}",
            k.len()
        );
    }
    // A key that shares a long key's first 250 bytes but one: not the same read.
    let other = format!("{}x", &long[..MAX_KEY - 1]);
    assert!(flights
        .join(&read(&epochs, 0, cmd::GET, &other), &sink)
        .is_none());
}

#[test]
fn keys_sharing_a_set_stay_joinable_up_to_its_ways() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let sink = Rc::new(ReplySink::default());
    let names: Vec<String> = (0..200_000).map(|i| format!("k{i}")).collect();
    let set_of = |k: &String| read(&epochs, 0, cmd::GET, k).set();
    let target = set_of(&names[0]);
    let same: Vec<&String> = names
        .iter()
        .filter(|k| set_of(k) == target)
        .take(WAYS + 1)
        .collect();
    assert_eq!(same.len(), WAYS + 1, "200,000 keys over {SETS} sets");
    for k in &same[..WAYS] {
        lead(&flights, &read(&epochs, 0, cmd::GET, k), &sink);
    }
    for k in &same[..WAYS] {
        assert!(
            flights
                .join(&read(&epochs, 0, cmd::GET, k), &sink)
                .is_some(),
            "{k}"
        );
    }
    // One more evicts one of them: it can no longer be joined, the others still can.
    lead(&flights, &read(&epochs, 0, cmd::GET, same[WAYS]), &sink);
    let joinable = same
        .iter()
        .filter(|k| {
            flights
                .join(&read(&epochs, 0, cmd::GET, k), &sink)
                .is_some()
        })
        .count();
    assert_eq!(joinable, WAYS);
    assert_eq!(flights.len(), WAYS);
}

#[test]
fn a_fragment_lead_gives_each_follower_its_own_key() {
    let flights = Rc::new(Flights::default());
    let epochs = WriteEpochs::default();
    let sink = Rc::new(ReplySink::default());
    let frag = sink.alloc();
    for k in ["a", "b", "c"] {
        flights.lead(&read(&epochs, 0, cmd::GET, k), &sink, frag, true);
    }
    let wa = flights
        .join(&read(&epochs, 0, cmd::GET, "a"), &sink)
        .unwrap();
    let wc = flights
        .join(&read(&epochs, 0, cmd::GET, "c"), &sink)
        .unwrap();
    assert!(wa.first && !wc.first, "one flight: the fragment's read");
    let reply = Bytes::from_static(b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n");
    sink.complete(frag, Ok(reply.clone()));
    assert_eq!(sink.take(frag).unwrap(), reply);
    assert_eq!(
        sink.take(wa.slot).unwrap(),
        &b"VALUE a 0 1\r\n1\r\nEND\r\n"[..]
    );
    assert_eq!(sink.take(wc.slot).unwrap(), &b"END\r\n"[..]);
    assert!(flights.is_empty(), "every key's entry is cleared");
}

#[test]
fn only_keys_read_recently_are_candidates() {
    let flights = Flights::default();
    let epochs = WriteEpochs::default();
    let candidate = |server, key: &str| {
        (flights.candidate(&epochs, server, cmd::GET, key.as_bytes())).is_some()
    };
    assert!(!candidate(0, "k"), "a first read is sent as it is");
    assert!(candidate(0, "k"));
    assert!(candidate(0, "k"), "and stays a candidate");
    assert!(!candidate(0, "other"));
    let long = "k".repeat(MAX_KEY + 1);
    assert!(!candidate(0, &long));
    assert!(
        !candidate(0, &long),
        "too long to coalesce, however often read"
    );
    // The epoch is the one current when the read became a candidate.
    epochs.wrote(b"k");
    let read = flights.candidate(&epochs, 0, cmd::GET, b"k").unwrap();
    assert!(read.epoch > 0 && read.epoch == epochs.current(read.hash));
}

#[test]
fn the_recent_filter_keeps_two_keys_per_set() {
    let recent = Recent::default();
    // Same set (top bits), different tags (bits 16..32).
    let [a, b, c] = [2u64 << 16, 4 << 16, 6 << 16];
    assert!(!recent.seen(a));
    assert!(recent.seen(a));
    assert!(!recent.seen(b));
    assert!(recent.seen(a) && recent.seen(b), "two ways: both stay");
    assert!(recent.seen(a), "and a is the most recently read");
    assert!(!recent.seen(c));
    assert!(
        recent.seen(a),
        "a third key pushed out the least recently read"
    );
    assert!(!recent.seen(b));
    // Another set is independent.
    let other = a | (1 << 63);
    assert!(!recent.seen(other));
    assert!(recent.seen(other) && recent.seen(b) && recent.seen(a));
}

#[test]
fn the_recent_filter_is_bounded() {
    let recent = Recent::default();
    for h in 0..(4 * RECENT_SETS as u64) {
        recent.seen(h.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    assert_eq!(recent.capacity(), RECENT_SETS);
}
