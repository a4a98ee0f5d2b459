//! Miss coalescing ("single flight"): while a read of key K is in flight to its server, an
//! identical read of K joins it instead of being sent again, and every waiter gets its own
//! copy of the reply (a reference-counted `Bytes`, no copy for single-key reads). When a hot
//! key expires, hundreds of clients miss at once; the backend (and the database behind the
//! application) sees one read per worker instead of hundreds.
//!
//! Rules, each tested:
//! - Flights are per worker and per pool *generation* (a reload builds new tables), keyed by
//!   (server, command, key), so a reload never mixes rings and `gets` never receives a `get`.
//! - Read-your-writes: every write forwarded for K bumps a shared per-pool epoch for K's
//!   bucket; a read joins a flight only if no write to its bucket was forwarded since the
//!   flight started, on any worker.
//! - The backend request belongs to the flight, not to its first client: a leader that
//!   disconnects cancels nothing, and errors and timeouts reach every waiter (who therefore
//!   never waits longer than the pool timeout of the request they joined).
//! - The table is bounded, hashed with a per-process random seed (keys come from clients),
//!   and an entry lives exactly as long as its flight.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Deliver, DeliverIndexed, Outcome, ReplySink, Target};
use crate::protocol::memcache::value_blocks;

/// Most flights one worker keeps in flight per pool; beyond it reads are not coalesced.
const MAX_FLIGHTS: usize = 16 * 1024;
/// Buckets of the per-pool write epoch table.
const WRITE_BUCKETS: usize = 4096;

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
/// clients), shared by the flight table and the write epochs.
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
#[derive(PartialEq, Eq)]
pub struct ReadKey {
    hash: u64,
    server: u32,
    cmd: u8,
    key: Bytes,
}

impl ReadKey {
    pub fn new(server: usize, cmd: u8, key: Bytes) -> ReadKey {
        ReadKey {
            hash: key_hash(server, &key),
            server: server as u32,
            cmd,
            key,
        }
    }
}

/// Slots of the index from read to flight: a read joins the flight in its slot when the key
/// matches; a new flight takes the slot over (the older one then just can't be joined).
const INDEX_SLOTS: usize = 4096;
const EMPTY: u32 = u32::MAX;

/// One worker's flights for one pool generation: a direct-mapped index from read to flight and
/// the flights themselves in a slab, so that starting and ending a flight costs a few stores
/// and no allocation (this runs for every eligible read, duplicate or not).
pub struct Flights {
    index: RefCell<Box<[u32]>>,
    slab: RefCell<Vec<Option<Flight>>>,
    free: RefCell<Vec<u32>>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            index: RefCell::new(vec![EMPTY; INDEX_SLOTS].into_boxed_slice()),
            slab: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    }
}

/// A backend read that identical reads can join.
struct Flight {
    read: ReadKey,
    /// The write epoch of the key's bucket when the flight started.
    epoch: u64,
    /// The first waiter is kept inline: most flights have exactly one (no storm).
    first: Option<(Rc<ReplySink>, u32)>,
    more: Vec<(Rc<ReplySink>, u32)>,
}

fn slot_of(hash: u64) -> usize {
    (hash >> 32) as usize % INDEX_SLOTS
}

impl Flights {
    /// The flight this read may join: one in flight for the same (server, command, key) with
    /// no write to the key forwarded since it started.
    pub fn find(&self, epochs: &WriteEpochs, read: &ReadKey) -> Option<u32> {
        let id = self.index.borrow()[slot_of(read.hash)];
        if id == EMPTY {
            return None;
        }
        let slab = self.slab.borrow();
        let flight = slab[id as usize].as_ref()?;
        (flight.read == *read && flight.epoch == epochs.current(read.hash)).then_some(id)
    }

    /// The reply of flight `id` will also go to `(sink, slot)`.
    pub fn add_waiter(&self, id: u32, sink: Rc<ReplySink>, slot: u32) {
        if let Some(f) = self.slab.borrow_mut()[id as usize].as_mut() {
            if f.first.is_none() {
                f.first = Some((sink, slot));
            } else {
                f.more.push((sink, slot));
            }
        }
    }

    /// Starts a flight; `first` is its first waiter. None when the slab is full.
    pub fn start(
        &self,
        epochs: &WriteEpochs,
        read: ReadKey,
        first: Option<(Rc<ReplySink>, u32)>,
    ) -> Option<u32> {
        let mut slab = self.slab.borrow_mut();
        let slot = slot_of(read.hash);
        let flight = Flight {
            epoch: epochs.current(read.hash),
            read,
            first,
            more: Vec::new(),
        };
        let id = match self.free.borrow_mut().pop() {
            Some(id) => {
                slab[id as usize] = Some(flight);
                id
            }
            None if slab.len() < MAX_FLIGHTS => {
                slab.push(Some(flight));
                (slab.len() - 1) as u32
            }
            None => return None,
        };
        self.index.borrow_mut()[slot] = id;
        Some(id)
    }

    /// Where the backend sends the reply of flight `id`.
    pub fn target(self: &Rc<Self>, id: u32) -> Target {
        Target::Indexed(self.clone(), id)
    }

    /// Flights in progress (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.slab.borrow().iter().filter(|f| f.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn has_waiters(&self, id: u32) -> bool {
        self.slab.borrow()[id as usize]
            .as_ref()
            .is_some_and(|f| f.first.is_some())
    }

    fn key(&self, id: u32) -> Option<Bytes> {
        self.slab.borrow()[id as usize]
            .as_ref()
            .map(|f| f.read.key.clone())
    }

    /// Ends flight `id`: it leaves the index (unless a newer flight took its slot) and every
    /// waiter gets the outcome.
    fn finish(&self, id: u32, outcome: Outcome) {
        let Some(flight) = self.slab.borrow_mut()[id as usize].take() else {
            return;
        };
        self.free.borrow_mut().push(id);
        {
            let mut index = self.index.borrow_mut();
            let slot = slot_of(flight.read.hash);
            if index[slot] == id {
                index[slot] = EMPTY;
            }
        }
        for (sink, slot) in flight.first.into_iter().chain(flight.more) {
            sink.complete(slot, outcome.clone());
        }
    }
}

impl DeliverIndexed for Flights {
    fn deliver(&self, id: u32, outcome: Outcome) {
        self.finish(id, outcome);
    }
}

/// A memcached multi-get fragment whose keys lead flights: the fragment's reply goes to the
/// multi-get, and each flight with waiters gets its key's part (`VALUE ...` then `END`).
pub struct FragmentLead {
    pub slot: (Rc<ReplySink>, u32),
    pub flights: Rc<Flights>,
    pub ids: Vec<u32>,
}

impl Deliver for FragmentLead {
    fn deliver(&self, outcome: Outcome) {
        for &id in &self.ids {
            let part = match (&outcome, self.flights.key(id)) {
                (Err(e), _) => Err(e.clone()),
                (Ok(reply), Some(key)) if self.flights.has_waiters(id) => {
                    Ok(single_key_reply(reply, &key))
                }
                (Ok(_), _) => Ok(Bytes::new()),
            };
            self.flights.finish(id, part);
        }
        self.slot.0.complete(self.slot.1, outcome);
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

    fn key(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn read(server: usize, cmd: u8, k: &str) -> ReadKey {
        ReadKey::new(server, cmd, key(k))
    }

    #[test]
    fn flights_are_joined_then_removed_when_done() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let sink = Rc::new(ReplySink::default());
        let (s1, s2) = (sink.alloc(), sink.alloc());
        let f = flights
            .start(&epochs, read(0, cmd::GET, "k"), Some((sink.clone(), s1)))
            .unwrap();
        // Another server, another command or another key is another flight.
        assert!(flights.find(&epochs, &read(1, cmd::GET, "k")).is_none());
        assert!(flights.find(&epochs, &read(0, cmd::GETS, "k")).is_none());
        assert!(flights.find(&epochs, &read(0, cmd::GET, "j")).is_none());
        let joined = flights.find(&epochs, &read(0, cmd::GET, "k")).unwrap();
        flights.add_waiter(joined, sink.clone(), s2);
        flights
            .target(f)
            .deliver(Ok(Bytes::from_static(b"END\r\n")));
        assert_eq!(flights.len(), 0, "no entry outlives its flight");
        assert_eq!(sink.take(s1).unwrap(), &b"END\r\n"[..]);
        assert_eq!(sink.take(s2).unwrap(), &b"END\r\n"[..]);
        // The slot is reused: no allocation per flight in the steady state.
        let again = flights
            .start(&epochs, read(0, cmd::GET, "k"), None)
            .unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn a_write_since_the_flight_started_prevents_joining() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let old = flights
            .start(&epochs, read(0, cmd::GET, "k"), None)
            .unwrap();
        assert!(flights.find(&epochs, &read(0, cmd::GET, "k")).is_some());
        epochs.wrote(0, b"k");
        assert!(flights.find(&epochs, &read(0, cmd::GET, "k")).is_none());
        // A new flight replaces the stale entry; the old one finishing does not remove it.
        let new = flights
            .start(&epochs, read(0, cmd::GET, "k"), None)
            .unwrap();
        flights.target(old).deliver(Ok(Bytes::new()));
        assert!(flights.find(&epochs, &read(0, cmd::GET, "k")).is_some());
        flights.target(new).deliver(Ok(Bytes::new()));
        assert!(flights.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        for i in 0..MAX_FLIGHTS {
            flights
                .start(&epochs, read(0, cmd::GET, &i.to_string()), None)
                .unwrap();
        }
        assert!(flights
            .start(&epochs, read(0, cmd::GET, "one more"), None)
            .is_none());
    }

    #[test]
    fn a_fragment_lead_gives_each_flight_its_own_key() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let sink = Rc::new(ReplySink::default());
        let (frag, wa, wc) = (sink.alloc(), sink.alloc(), sink.alloc());
        let fa = flights
            .start(&epochs, read(0, cmd::GET, "a"), None)
            .unwrap();
        let fc = flights
            .start(&epochs, read(0, cmd::GET, "c"), None)
            .unwrap();
        flights.add_waiter(fa, sink.clone(), wa);
        flights.add_waiter(fc, sink.clone(), wc);
        let lead = FragmentLead {
            slot: (sink.clone(), frag),
            flights: flights.clone(),
            ids: vec![fa, fc],
        };
        let reply = Bytes::from_static(b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n");
        lead.deliver(Ok(reply.clone()));
        assert_eq!(sink.take(frag).unwrap(), reply);
        assert_eq!(sink.take(wa).unwrap(), &b"VALUE a 0 1\r\n1\r\nEND\r\n"[..]);
        assert_eq!(sink.take(wc).unwrap(), &b"END\r\n"[..]);
        assert!(flights.is_empty());
    }
}
