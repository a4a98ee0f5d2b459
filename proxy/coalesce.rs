//! Miss coalescing ("single flight"): while a read of key K is in flight to its server, an
//! identical read of K joins it instead of being sent again, and every waiter gets its own
//! copy of the reply (a reference-counted `Bytes`, no copy for single-key reads). When a hot
//! key expires, hundreds of clients miss at once; the backend (and the database behind the
//! application) sees one read per worker instead of hundreds.
//!
//! Most reads are never joined, so a read pays only for being findable: its key is hashed and
//! written into one slot of a direct-mapped index that points at the read's own reply slot
//! (the leader's). Nothing else happens unless an identical read arrives; that one attaches
//! itself to the leader's reply slot ([`LeadMark`]), and when the backend answers the leader,
//! the reply is copied to every follower and the index entry is cleared.
//!
//! Rules, each tested:
//! - Index entries are per worker and per pool *generation* (a reload builds new tables),
//!   keyed by (server, command, key), so a reload never mixes rings and `gets` never receives
//!   a `get`.
//! - Read-your-writes: every write forwarded for K bumps a shared per-pool epoch for K's
//!   bucket; a read joins only if no write to its bucket was forwarded since the leader was
//!   sent, on any worker.
//! - The backend request belongs to the leader's reply slot, which outlives its session: a
//!   leader that disconnects cancels nothing, and errors and timeouts reach every follower
//!   (who therefore never waits longer than the pool timeout of the request it joined).
//! - The index is bounded (2048 entries per pool and worker, keys up to 250 bytes), hashed with
//!   a per-process random seed (keys come from clients), and an entry is cleared when its read
//!   is answered.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Outcome, ReplySink};
use crate::protocol::memcache::value_blocks;

/// Buckets of the per-pool write epoch table.
const WRITE_BUCKETS: usize = 4096;
/// The index of one worker per pool: 512 sets of 4 entries. A read goes to the free entry of
/// its key's set, or evicts one (which then only loses the chance to be joined); four ways keep
/// a hot key's entry from being taken over by whatever else shares its set while hundreds of
/// reads are in flight, and 2048 entries keep the index small enough to stay in cache.
const SETS: usize = 512;
const WAYS: usize = 4;
const INDEX_SLOTS: usize = SETS * WAYS;
/// Longest key that coalesces (memcached's own limit): an index entry keeps a copy of its key,
/// so the index stays bounded however long the keys clients send.
pub const MAX_KEY: usize = 250;

/// Command classes that coalesce separately (their replies differ).
pub mod cmd {
    pub const GET: u8 = 0;
    pub const GETS: u8 = 1;
    pub const REDIS_GET: u8 = 2;
}

/// Per-pool write epochs, shared by every worker: bumped when a write to a key of the bucket
/// is forwarded.
pub struct WriteEpochs(Box<[AtomicU64]>);

impl Default for WriteEpochs {
    fn default() -> Self {
        WriteEpochs((0..WRITE_BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }
}

/// The one hash computed per coalescable read: a per-process random seed (keys come from
/// clients), shared by the index and the write epochs.
fn key_hash(server: usize, key: &[u8]) -> u64 {
    // foldhash: seeded per process like std's SipHash, several times faster on short keys.
    static SEED: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::fast::RandomState::default)
        .hash_one((server, key))
}

fn bucket(hash: u64) -> usize {
    (hash as usize) % WRITE_BUCKETS
}

impl WriteEpochs {
    /// Records that a write of `key` on `server` is being forwarded.
    #[inline]
    pub fn wrote(&self, server: usize, key: &[u8]) {
        self.0[bucket(key_hash(server, key))].fetch_add(1, Ordering::Release);
    }

    /// Records a write to every key (memcached `flush_all`).
    pub fn wrote_all(&self) {
        for e in self.0.iter() {
            e.fetch_add(1, Ordering::Release);
        }
    }

    fn current(&self, hash: u64) -> u64 {
        self.0[bucket(hash)].load(Ordering::Acquire)
    }
}

/// A coalescable read: (server, command, key), with its hash computed once.
pub struct ReadKey<'a> {
    hash: u64,
    /// The write epoch of the key's bucket as the read arrives.
    epoch: u64,
    server: u32,
    cmd: u8,
    key: &'a [u8],
}

impl<'a> ReadKey<'a> {
    /// None for a key too long to coalesce.
    #[inline]
    pub fn new(epochs: &WriteEpochs, server: usize, cmd: u8, key: &'a [u8]) -> Option<ReadKey<'a>> {
        if key.len() > MAX_KEY {
            return None;
        }
        let hash = key_hash(server, key);
        Some(ReadKey {
            hash,
            epoch: epochs.current(hash),
            server: server as u32,
            cmd,
            key,
        })
    }

    /// The first entry of the read's set.
    fn set(&self) -> usize {
        (self.hash >> 32) as usize % SETS * WAYS
    }

    /// What the tag array holds for this read: low hash bits mixed with the write epoch, never
    /// 0 (free). With the epoch in it, a read sent before a write and one sent after it have
    /// different tags: the older one's answer does not free the newer one's entry, and a probe
    /// after a write misses the older read without looking at its entry.
    fn tag(&self) -> u32 {
        ((self.hash as u32) ^ (self.epoch as u32).wrapping_mul(0x9e37_79b9)).max(1)
    }
}

/// A read that joined another: its reply slot, and whether it is the first to join (the
/// leader became a flight).
pub struct Joined {
    pub slot: u32,
    pub first: bool,
}

/// Key bytes an entry holds itself: with the other fields, one 64-byte cache line per entry.
const INLINE_KEY: usize = 29;
/// `Entry::len` of a key kept in `Index::long_keys` instead.
const LONG: u8 = u8::MAX;

/// An index entry: the read in flight for one (server, command, key), found by the reply slot
/// it will fill. Valid while its tag is set. One cache line: sending a read writes one line
/// (plus a line of `long_keys` for keys over 29 bytes).
#[repr(align(64))]
struct Entry {
    hash: u64,
    /// The write epoch of the key's bucket when the read was sent.
    epoch: u64,
    sink: Weak<ReplySink>,
    /// The leader's reply slot.
    slot: u32,
    server: u32,
    cmd: u8,
    /// The leader is a multi-get fragment: a follower gets only its key's part of the reply.
    fragment: bool,
    /// Length of the key in `short`, or [`LONG`].
    len: u8,
    short: [u8; INLINE_KEY],
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            hash: 0,
            epoch: 0,
            sink: Weak::new(),
            slot: 0,
            server: 0,
            cmd: 0,
            fragment: false,
            len: 0,
            short: [0; INLINE_KEY],
        }
    }
}

/// The index: a tag per entry, 0 for none, in an array of its own (8 KiB), so that the probe
/// every read makes touches 16 bytes of it; the entries themselves are read when a tag matches
/// and written when a read is sent. (In the benchmark the proxy shares its core's caches with
/// the backends, and a larger direct-mapped index cost measurably more at 16 requests in flight
/// per connection.)
#[derive(Default)]
struct Index {
    tags: Vec<u32>,
    entries: Vec<Entry>,
    /// The keys over [`INLINE_KEY`] bytes, by entry; capacity is kept, so an entry allocates
    /// only for a longer key than it held before.
    long_keys: Vec<Vec<u8>>,
    /// Turns through the ways of full sets.
    victim: u8,
}

impl Index {
    #[cold]
    fn allocate(&mut self) {
        self.tags = vec![0; INDEX_SLOTS];
        self.entries.resize_with(INDEX_SLOTS, Entry::default);
        self.long_keys.resize_with(INDEX_SLOTS, Vec::new);
    }
}

/// One worker's reads in flight for one pool generation, by key. The index is allocated with
/// the first read (a pool that never coalesces pays nothing).
#[derive(Default)]
pub struct Flights {
    index: RefCell<Index>,
}

impl Flights {
    /// A single-key read about to be sent on `slot` of `sink`: joins an identical read in
    /// flight (`Some(first follower)`: `slot` will receive a copy of its reply and nothing is
    /// sent), or becomes joinable itself (None: send it). One probe of the index either way.
    #[inline]
    pub fn read(self: &Rc<Self>, read: &ReadKey, sink: &Rc<ReplySink>, slot: u32) -> Option<bool> {
        let set = read.set();
        let tag = read.tag();
        let found = {
            let index = self.index.borrow();
            let ways = index.tags.get(set..set + WAYS);
            ways.and_then(|w| w.iter().position(|&t| t == tag))
        };
        if let Some(way) = found {
            if let Some(first) = self.join_found(read, sink, slot, set + way) {
                return Some(first);
            }
        }
        self.lead_at(set, tag, read, sink, slot, false);
        None
    }

    /// Joins an identical read in flight, sent with no write to the key forwarded since: a
    /// new slot of `sink` will receive a copy of its reply. None when there is no such read.
    /// (For the keys of a multi-get; a single-key read uses [`read`](Self::read).)
    #[inline]
    pub fn join(self: &Rc<Self>, read: &ReadKey, sink: &Rc<ReplySink>) -> Option<Joined> {
        // The common case, no read of this key in flight, costs one probe of 16 bytes and no
        // call.
        let set = read.set();
        let tag = read.tag();
        let way = (self.index.borrow().tags.get(set..set + WAYS)?)
            .iter()
            .position(|&t| t == tag)?;
        let slot = sink.alloc();
        match self.join_found(read, sink, slot, set + way) {
            Some(first) => Some(Joined { slot, first }),
            None => {
                sink.release(slot);
                None
            }
        }
    }

    /// Attaches `slot` of `sink` to the read of entry `at`, whose tag matched: `Some(first
    /// follower)`, or None when the entry is another read or its read can no longer be joined.
    #[inline(never)]
    fn join_found(
        self: &Rc<Self>,
        read: &ReadKey,
        sink: &Rc<ReplySink>,
        slot: u32,
        at: usize,
    ) -> Option<bool> {
        let (leader, leader_slot, fragment) = {
            let index = self.index.borrow();
            let e = &index.entries[at];
            let key = match e.len {
                LONG => &index.long_keys[at][..],
                n => &e.short[..n as usize],
            };
            let same = e.hash == read.hash
                && e.server == read.server
                && e.cmd == read.cmd
                && key == read.key
                && e.epoch == read.epoch;
            if !same {
                return None;
            }
            (e.sink.upgrade()?, e.slot, e.fragment)
        };
        let follower = Follower {
            sink: sink.clone(),
            slot,
            part_of: fragment.then(|| read.key.into()),
        };
        leader.follow(leader_slot, |mark| mark.add(self, at as u32, follower))
    }

    /// Makes the read sent for `(sink, slot)` joinable until it is answered.
    pub fn lead(self: &Rc<Self>, read: &ReadKey, sink: &Rc<ReplySink>, slot: u32, fragment: bool) {
        self.lead_at(read.set(), read.tag(), read, sink, slot, fragment);
    }

    #[inline(always)]
    fn lead_at(
        self: &Rc<Self>,
        set: usize,
        tag: u32,
        read: &ReadKey,
        sink: &Rc<ReplySink>,
        slot: u32,
        fragment: bool,
    ) {
        let at;
        {
            let mut index = self.index.borrow_mut();
            let index = &mut *index;
            if index.tags.is_empty() {
                index.allocate();
            }
            // The entry of an older read of this key (one that could not be joined), else a free
            // one, else the next victim in turn.
            let ways = &index.tags[set..set + WAYS];
            let way = match ways.iter().position(|&t| t == tag || t == 0) {
                Some(way) => way,
                None => {
                    index.victim = index.victim.wrapping_add(1);
                    index.victim as usize % WAYS
                }
            };
            at = set + way;
            index.tags[at] = tag;
            let e = &mut index.entries[at];
            e.hash = read.hash;
            e.epoch = read.epoch;
            e.server = read.server;
            e.cmd = read.cmd;
            e.fragment = fragment;
            e.slot = slot;
            e.sink = Rc::downgrade(sink);
            let n = read.key.len();
            if n <= INLINE_KEY {
                e.len = n as u8;
                copy_short(&mut e.short, read.key);
            } else {
                e.len = LONG;
                let long = &mut index.long_keys[at];
                long.clear();
                long.extend_from_slice(read.key);
            }
        }
        sink.lead(slot, self, Lead { at: at as u32, tag });
    }

    /// Reads that can be joined right now (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.index.borrow().tags.iter().filter(|&&t| t != 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A read that led entry `lead` was answered: the entry is freed, unless a read of another
    /// key took it over since. (A newer read of the same key, rare, loses its chance to be
    /// joined; the entry's contents are dead once the tag is gone.)
    fn answered(&self, lead: Lead) {
        let mut index = self.index.borrow_mut();
        if let Some(t) = index.tags.get_mut(lead.at as usize) {
            if *t == lead.tag {
                *t = 0;
            }
        }
    }
}

/// Copies a key of at most [`INLINE_KEY`] bytes with two fixed-size, possibly overlapping
/// moves instead of a call to `memcpy` (a fifth of the cost of leading a read, for keys this
/// short).
#[inline(always)]
fn copy_short(dst: &mut [u8; INLINE_KEY], key: &[u8]) {
    let n = key.len();
    match n {
        16..=INLINE_KEY => {
            dst[..16].copy_from_slice(&key[..16]);
            dst[n - 16..n].copy_from_slice(&key[n - 16..]);
        }
        8..=15 => {
            dst[..8].copy_from_slice(&key[..8]);
            dst[n - 8..n].copy_from_slice(&key[n - 8..]);
        }
        _ => dst[..n].copy_from_slice(key),
    }
}

/// Which index entry a read leads: its position and tag.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Lead {
    at: u32,
    tag: u32,
}

/// Kept in a leading read's reply slot: which index entries point at it and who joined.
pub struct LeadMark {
    table: Rc<Flights>,
    lead: Lead,
    /// Allocated only when a read joins, or a multi-get fragment leads several keys.
    more: Option<Box<More>>,
}

#[derive(Default)]
pub struct More {
    /// Further index entries (the other keys of a multi-get fragment).
    leads: Vec<Lead>,
    followers: Vec<Follower>,
}

/// A read that joined: the slot its copy of the reply goes to.
struct Follower {
    sink: Rc<ReplySink>,
    slot: u32,
    /// When the leader is a multi-get fragment: the key whose part of the reply this read gets.
    part_of: Option<Box<[u8]>>,
}

impl LeadMark {
    pub(crate) fn new(table: &Rc<Flights>, lead: Lead) -> LeadMark {
        LeadMark {
            table: table.clone(),
            lead,
            more: None,
        }
    }

    /// The same read also leads another index entry (another key of a fragment).
    pub(crate) fn also(&mut self, lead: Lead) {
        self.more.get_or_insert_default().leads.push(lead);
    }

    /// Adds a follower found through entry `at` of `table`; `Some(first follower)`, or None
    /// when the entry no longer belongs to this read.
    fn add(&mut self, table: &Rc<Flights>, at: u32, follower: Follower) -> Option<bool> {
        let mine = Rc::ptr_eq(&self.table, table)
            && (self.lead.at == at
                || (self.more.as_ref()).is_some_and(|m| m.leads.iter().any(|l| l.at == at)));
        if !mine {
            return None;
        }
        let more = self.more.get_or_insert_default();
        more.followers.push(follower);
        Some(more.followers.len() == 1)
    }

    /// The leader's reply arrived: frees its index entries. What is left to do, if anything,
    /// is handing the followers their copies ([`More::answer`]), which must not run while the
    /// leader's sink is borrowed (a follower may be a slot of that very sink).
    pub(crate) fn answered(self) -> Option<Box<More>> {
        self.table.answered(self.lead);
        let more = self.more?;
        for &lead in &more.leads {
            self.table.answered(lead);
        }
        Some(more)
    }
}

impl More {
    /// Gives every follower its copy of the leader's outcome.
    pub(crate) fn answer(self, outcome: &Outcome) {
        for f in self.followers {
            let copy = match (outcome, &f.part_of) {
                (Ok(reply), Some(key)) => Ok(single_key_reply(reply, key)),
                _ => outcome.clone(),
            };
            f.sink.complete(f.slot, copy);
        }
    }
}

/// The reply `get key` would have had, cut from a multi-key reply.
fn single_key_reply(reply: &Bytes, key: &[u8]) -> Bytes {
    match value_blocks(reply).find(|b| b.key == key) {
        Some(b) => {
            let mut out = BytesMut::with_capacity(b.block.len() + 5);
            out.put_slice(&reply[b.block]);
            out.put_slice(b"END\r\n");
            out.freeze()
        }
        None => Bytes::from_static(b"END\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, Target};

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
        epochs.wrote(0, b"k");
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
        assert_eq!(flights.index.borrow().entries.len(), INDEX_SLOTS);
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
}
