//! The filter of keys read recently: only their reads are made joinable.
//!
//! Making a read joinable (an index entry with a copy of its key, a mark on its reply slot,
//! clearing both when it is answered) costs 200 to 300 instructions, 7% to 12% of a request's
//! when 16 are pipelined per connection (callgrind), and it is wasted on the reads nobody
//! joins: nearly all of them where keys do not repeat. A hot key, the one a stampede is about, is by
//! definition read again and again, so it is found here and its reads lead and join as before;
//! a key read once in a while costs one hash and one probe of this filter.
//!
//! The price: a key that nobody read recently has its first read sent unjoinable, and the
//! second leads; a storm on a cold key reaches the backend twice per worker instead of once.

use std::cell::{Cell, OnceCell};

/// Sets of the filter, two 16-bit tags each: 8 KiB per worker and pool, allocated with the
/// first read, so that it stays in cache next to the index's tags. Reads of keys that do not
/// repeat put a new key in a given set about once every 2048 reads; with two ways, kept most
/// recently read first, a hot key stays unless two of them land in its set between two of its
/// reads.
const SETS_BITS: u32 = 11;
pub(super) const SETS: usize = 1 << SETS_BITS;

#[derive(Default)]
pub(super) struct Recent {
    sets: OnceCell<Box<[Cell<u32>]>>,
}

impl Recent {
    /// Whether the key hashed to `hash` was read recently on this worker; if not, it is now.
    #[inline]
    pub(super) fn seen(&self, hash: u64) -> bool {
        let sets = self
            .sets
            .get_or_init(|| (0..SETS).map(|_| Cell::new(0)).collect());
        // The top bits pick the set, bits 16..32 make the tag (never 0: empty).
        let set = &sets[(hash >> (64 - SETS_BITS)) as usize];
        let tag = (hash >> 16) as u16 | 1;
        let ways = set.get();
        if ways as u16 == tag {
            return true;
        }
        // Most recently read first: a hot key is forgotten only if two other keys of its set
        // are read between two of its reads.
        set.set((ways << 16) | u32::from(tag));
        (ways >> 16) as u16 == tag
    }
}

#[cfg(test)]
impl Recent {
    /// Sets allocated (for the test of the bound).
    pub(super) fn capacity(&self) -> usize {
        self.sets.get().map_or(0, |s| s.len())
    }
}
