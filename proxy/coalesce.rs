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
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Deliver, Outcome, ReplySink};
use crate::protocol::memcache::value_blocks;

/// Most flights one worker keeps per pool; beyond it reads are simply not coalesced.
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
    static SEED: OnceLock<RandomState> = OnceLock::new();
    SEED.get_or_init(RandomState::new).hash_one((server, key))
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

impl std::hash::Hash for ReadKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a precomputed hash through, so the flight table hashes nothing itself.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One worker's flights for one pool generation.
#[derive(Default)]
pub struct Flights {
    map: RefCell<HashMap<ReadKey, Rc<Flight>, std::hash::BuildHasherDefault<Prehashed>>>,
}

/// A backend read that identical reads can join.
pub struct Flight {
    key: ReadKey,
    /// The write epoch of the key's bucket when the flight started.
    epoch: u64,
    /// The first waiter is kept inline: most flights have exactly one (no storm), and then
    /// starting one costs no allocation beyond the flight itself.
    first: RefCell<Option<(Rc<ReplySink>, u32)>>,
    more: RefCell<Vec<(Rc<ReplySink>, u32)>>,
    table: Weak<Flights>,
}

impl Flights {
    /// The flight this read may join: one in flight for the same (server, command, key) with
    /// no write to the key forwarded since it started.
    pub fn find(&self, epochs: &WriteEpochs, read: &ReadKey) -> Option<Rc<Flight>> {
        let map = self.map.borrow();
        if map.is_empty() {
            return None;
        }
        map.get(read)
            .filter(|f| f.epoch == epochs.current(read.hash))
            .cloned()
    }

    /// Starts a flight (replacing a stale one for the same key); `first` is its first waiter.
    /// None when the table is full.
    pub fn start(
        self: &Rc<Self>,
        epochs: &WriteEpochs,
        read: ReadKey,
        first: Option<(Rc<ReplySink>, u32)>,
    ) -> Option<Rc<Flight>> {
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_FLIGHTS {
            return None;
        }
        let entry = ReadKey {
            hash: read.hash,
            server: read.server,
            cmd: read.cmd,
            key: read.key.clone(),
        };
        let flight = Rc::new(Flight {
            epoch: epochs.current(read.hash),
            key: read,
            first: RefCell::new(first),
            more: RefCell::new(Vec::new()),
            table: Rc::downgrade(self),
        });
        map.insert(entry, flight.clone());
        Some(flight)
    }

    /// Flights in progress (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

impl Flight {
    /// The reply will also go to `(sink, slot)`.
    pub fn add_waiter(&self, sink: Rc<ReplySink>, slot: u32) {
        let mut first = self.first.borrow_mut();
        if first.is_none() {
            *first = Some((sink, slot));
        } else {
            self.more.borrow_mut().push((sink, slot));
        }
    }

    fn finish(&self, outcome: Outcome) {
        if let Some(table) = self.table.upgrade() {
            let mut map = table.map.borrow_mut();
            if map.get(&self.key).is_some_and(|f| std::ptr::eq(&**f, self)) {
                map.remove(&self.key);
            }
        }
        let first = self.first.take();
        for (sink, slot) in first.into_iter().chain(self.more.take()) {
            sink.complete(slot, outcome.clone());
        }
    }

    fn has_waiters(&self) -> bool {
        self.first.borrow().is_some()
    }
}

impl Deliver for Flight {
    fn deliver(&self, outcome: Outcome) {
        self.finish(outcome);
    }
}

/// A memcached multi-get fragment whose keys lead flights: the fragment's reply goes to the
/// multi-get, and each flight with waiters gets its key's part (`VALUE ...` then `END`).
pub struct FragmentLead {
    pub slot: (Rc<ReplySink>, u32),
    pub flights: Vec<Rc<Flight>>,
}

impl Deliver for FragmentLead {
    fn deliver(&self, outcome: Outcome) {
        for flight in &self.flights {
            let part = match &outcome {
                Err(e) => Err(e.clone()),
                Ok(_) if !flight.has_waiters() => Ok(Bytes::new()),
                Ok(reply) => Ok(single_key_reply(reply, &flight.key.key)),
            };
            flight.finish(part);
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

    #[test]
    fn flights_are_joined_then_removed_when_done() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let sink = Rc::new(ReplySink::default());
        let (s1, s2) = (sink.alloc(), sink.alloc());
        let f = flights
            .start(
                &epochs,
                ReadKey::new(0, cmd::GET, key("k")),
                Some((sink.clone(), s1)),
            )
            .unwrap();
        // Another server, another command or another key is another flight.
        assert!(flights
            .find(&epochs, &ReadKey::new(1, cmd::GET, key("k")))
            .is_none());
        assert!(flights
            .find(&epochs, &ReadKey::new(0, cmd::GETS, key("k")))
            .is_none());
        assert!(flights
            .find(&epochs, &ReadKey::new(0, cmd::GET, key("j")))
            .is_none());
        flights
            .find(&epochs, &ReadKey::new(0, cmd::GET, key("k")))
            .unwrap()
            .add_waiter(sink.clone(), s2);
        f.deliver(Ok(Bytes::from_static(b"END\r\n")));
        assert_eq!(flights.len(), 0, "no entry outlives its flight");
        assert_eq!(sink.take(s1).unwrap(), &b"END\r\n"[..]);
        assert_eq!(sink.take(s2).unwrap(), &b"END\r\n"[..]);
    }

    #[test]
    fn a_write_since_the_flight_started_prevents_joining() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let _f = flights
            .start(&epochs, ReadKey::new(0, cmd::GET, key("k")), None)
            .unwrap();
        assert!(flights
            .find(&epochs, &ReadKey::new(0, cmd::GET, key("k")))
            .is_some());
        epochs.wrote(0, b"k");
        assert!(flights
            .find(&epochs, &ReadKey::new(0, cmd::GET, key("k")))
            .is_none());
        // A new flight replaces the stale entry; the old one finishing does not remove it.
        let new = flights
            .start(&epochs, ReadKey::new(0, cmd::GET, key("k")), None)
            .unwrap();
        _f.deliver(Ok(Bytes::new()));
        assert!(flights
            .find(&epochs, &ReadKey::new(0, cmd::GET, key("k")))
            .is_some());
        new.deliver(Ok(Bytes::new()));
        assert!(flights.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let held: Vec<_> = (0..MAX_FLIGHTS)
            .map(|i| {
                flights
                    .start(
                        &epochs,
                        ReadKey::new(0, cmd::GET, key(&i.to_string())),
                        None,
                    )
                    .unwrap()
            })
            .collect();
        assert!(flights
            .start(&epochs, ReadKey::new(0, cmd::GET, key("one more")), None)
            .is_none());
        drop(held);
    }

    #[test]
    fn a_fragment_lead_gives_each_flight_its_own_key() {
        let flights = Rc::new(Flights::default());
        let epochs = WriteEpochs::default();
        let sink = Rc::new(ReplySink::default());
        let (frag, wa, wc) = (sink.alloc(), sink.alloc(), sink.alloc());
        let fa = flights
            .start(&epochs, ReadKey::new(0, cmd::GET, key("a")), None)
            .unwrap();
        let fc = flights
            .start(&epochs, ReadKey::new(0, cmd::GET, key("c")), None)
            .unwrap();
        fa.add_waiter(sink.clone(), wa);
        fc.add_waiter(sink.clone(), wc);
        let lead = FragmentLead {
            slot: (sink.clone(), frag),
            flights: vec![fa, fc],
        };
        let reply = Bytes::from_static(b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n");
        lead.deliver(Ok(reply.clone()));
        assert_eq!(sink.take(frag).unwrap(), reply);
        assert_eq!(sink.take(wa).unwrap(), &b"VALUE a 0 1\r\n1\r\nEND\r\n"[..]);
        assert_eq!(sink.take(wc).unwrap(), &b"END\r\n"[..]);
        assert!(flights.is_empty());
    }
}
