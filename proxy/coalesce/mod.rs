//! Miss coalescing ("single flight"): while a read of key K is in flight to its server, an
//! identical read of K joins it instead of being sent again, and every waiter gets its own
//! copy of the reply (a reference-counted `Bytes`, no copy for single-key reads). When a hot
//! key expires, hundreds of clients miss at once; the backend (and the database behind the
//! application) sees one read per worker instead of hundreds.
//!
//! Most reads are never joined, so most reads pay only for a probe of a filter of keys read
//! recently on this worker (`recent.rs`): a key not found there is remembered, and its read is
//! sent as it is. A hot key, the one a stampede is about, is found there; its read is made
//! findable: its key is written into one entry of a small index that points at the read's
//! own reply slot (the leader's). Nothing else happens unless an identical read arrives; that
//! one attaches itself to the leader's reply slot ([`LeadMark`]), and when the backend answers
//! the leader, the reply is copied to every follower and the index entry is cleared. (The
//! price of the filter: on a key that nobody read recently, the first read of a storm cannot be
//! joined and the second leads, so the backend sees two reads per worker instead of one.)
//!
//! Rules, each tested:
//! - Index entries are per worker and per pool *generation* (a reload builds new tables),
//!   keyed by (server, command, key), so a reload never mixes rings and `gets` never receives
//!   a `get`.
//! - Read-your-writes: every write of K bumps a shared per-pool epoch for K's bucket twice:
//!   when it is forwarded, and again when its reply is handed to its client ([`Wrote`]); a
//!   read joins only a leader sent at the read's own epoch. A read sent after a client saw a
//!   write's reply therefore never joins a read sent before the write *completed* (which may
//!   have reached the server first on another worker's connection and found the old value),
//!   and a pipelined read after a write on the same connection never joins an older read.
//! - The backend request belongs to the leader's reply slot, which outlives its session: a
//!   leader that disconnects cancels nothing, and errors and timeouts reach every follower
//!   (who therefore never waits longer than the pool timeout of the request it joined).
//! - The index and the filter are bounded (2048 entries and 4096 tags per pool and worker, keys
//!   up to 250 bytes), hashed with a per-process random seed (keys come from clients), and an
//!   index entry is cleared when its read is answered.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

mod index;
mod mark;
mod recent;
#[cfg(test)]
mod tests;

pub use index::Flights;
pub(crate) use index::Lead;
use index::{SETS, WAYS};
pub use mark::{LeadMark, More};

/// Buckets of the per-pool write epoch table.
const WRITE_BUCKETS: usize = 4096;
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
/// clients), shared by the filter, the index and the write epochs. The server is not hashed:
/// the index compares it, and a key keeps its server except while one is ejected.
#[inline]
fn key_hash(key: &[u8]) -> u64 {
    // foldhash: seeded per process like std's SipHash, several times faster on short keys.
    static SEED: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::fast::RandomState::default)
        .hash_one(key)
}

fn bucket(hash: u64) -> usize {
    (hash as usize) % WRITE_BUCKETS
}

impl WriteEpochs {
    /// Records that a write of `key` is being forwarded (its first bump); returns the key's
    /// bucket, to be bumped again when the write is answered ([`Wrote`]).
    #[inline]
    pub fn wrote(&self, key: &[u8]) -> u32 {
        let b = bucket(key_hash(key));
        self.0[b].fetch_add(1, Ordering::Release);
        b as u32
    }

    fn bump(&self, bucket: u32) {
        self.0[bucket as usize].fetch_add(1, Ordering::Release);
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

/// The keys a write changed, by epoch bucket, kept with the write's owed reply: when the
/// reply is handed to the client, their epochs are bumped once more (see the module docs).
#[derive(Debug, Default)]
pub enum Wrote {
    #[default]
    Nothing,
    Bucket(u32),
    Buckets(Box<[u32]>),
    /// memcached `flush_all`: every key.
    All,
}

impl Wrote {
    /// The write is answered: reads sent from now on must not join older reads of its keys.
    pub fn answered(&self, epochs: &WriteEpochs) {
        match self {
            Wrote::Nothing => {}
            Wrote::Bucket(b) => epochs.bump(*b),
            Wrote::Buckets(bs) => bs.iter().for_each(|&b| epochs.bump(b)),
            Wrote::All => epochs.wrote_all(),
        }
    }

    /// Writes of several keys: one bucket, or all of them.
    pub fn of(buckets: Vec<u32>) -> Wrote {
        match buckets.as_slice() {
            [] => Wrote::Nothing,
            [b] => Wrote::Bucket(*b),
            _ => Wrote::Buckets(buckets.into_boxed_slice()),
        }
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
    /// The read with its epoch, bypassing the filter of recent keys (sessions go through
    /// [`Flights::candidate`]); None for a key too long to coalesce.
    #[cfg(test)]
    pub(crate) fn new(
        epochs: &WriteEpochs,
        server: usize,
        cmd: u8,
        key: &'a [u8],
    ) -> Option<ReadKey<'a>> {
        Some(ReadKey::hashed(server, cmd, key)?.at_epoch(epochs))
    }

    /// The read with its hash but no epoch yet: enough to consult the filter of recent keys,
    /// and all that a read of a key nobody reads again ever computes.
    #[inline]
    fn hashed(server: usize, cmd: u8, key: &'a [u8]) -> Option<ReadKey<'a>> {
        if key.len() > MAX_KEY {
            return None;
        }
        Some(ReadKey {
            hash: key_hash(key),
            epoch: 0,
            server: server as u32,
            cmd,
            key,
        })
    }

    #[inline]
    fn at_epoch(mut self, epochs: &WriteEpochs) -> ReadKey<'a> {
        self.epoch = epochs.current(self.hash);
        self
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
