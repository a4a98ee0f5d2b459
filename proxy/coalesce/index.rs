//! The per-worker index of coalescable reads in flight, and joining or leading through it.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::mark::Follower;
use super::recent::Recent;
use super::{Joined, ReadKey, WriteEpochs};
use crate::backend::ReplySink;

/// The index of one worker per pool: 512 sets of 4 entries. A read goes to the free entry of
/// its key's set, or evicts one (which then only loses the chance to be joined); four ways keep
/// a hot key's entry from being taken over by whatever else shares its set while hundreds of
/// reads are in flight, and 2048 entries keep the index small enough to stay in cache.
pub(super) const SETS: usize = 512;
pub(super) const WAYS: usize = 4;
pub(super) const INDEX_SLOTS: usize = SETS * WAYS;

/// Key bytes an entry holds itself: with the other fields, one 64-byte cache line per entry.
pub(super) const INLINE_KEY: usize = 29;
/// `Entry::len` of a key kept in `Index::long_keys` instead.
const LONG: u8 = u8::MAX;

/// An index entry: the read in flight for one (server, command, key), found by the reply slot
/// it will fill. Valid while its tag is set. One cache line: sending a read writes one line
/// (plus a line of `long_keys` for keys over 29 bytes).
#[repr(align(64))]
pub(super) struct Entry {
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
    recent: Recent,
}

impl Flights {
    /// The read of `key` on `server` as one that can join or lead, or None: the key is too long
    /// to coalesce, or was not read recently on this worker (see `recent.rs`; the read is then
    /// sent as it is, and the key is remembered).
    #[inline]
    pub fn candidate<'a>(
        &self,
        epochs: &WriteEpochs,
        server: usize,
        cmd: u8,
        key: &'a [u8],
    ) -> Option<ReadKey<'a>> {
        let read = ReadKey::hashed(server, cmd, key)?;
        self.recent.seen(read.hash).then(|| read.at_epoch(epochs))
    }

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

    /// Entries allocated (for tests of the bound).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.index.borrow().entries.len()
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
    pub(super) fn answered(&self, lead: Lead) {
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
pub(super) fn copy_short(dst: &mut [u8; INLINE_KEY], key: &[u8]) {
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
    pub(super) at: u32,
    pub(super) tag: u32,
}
