//! memcached retrievals (`get`, `gets`, `gat`, `gats`): routing per key, splitting a
//! multi-get into one request per server, joining reads already in flight (coalescing), and
//! merging the replies back in request order.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::memcache::{Asked, Entry, McSession, VALUES_FRAMING};
use crate::backend::{BackendError, Outcome, ReplySink, Target};
use crate::coalesce::{cmd, ReadKey};
use crate::protocol::memcache::{self as mc, Command, Request};

/// Where one key of a multi-get gets its answer.
#[derive(Clone, Copy)]
enum Source {
    /// The reply of fragment `n` (one per server involved).
    Fragment(u32),
    /// Its own slot, filled by a flight it joined.
    Joined(u32),
    /// The same key as key `n` of the request: fetched once, its answer repeated.
    Repeat(u32),
}

/// A multi-get in progress.
pub(crate) struct MultiGet {
    frame: Bytes,
    /// Each key of the request, in order, with where its answer comes from.
    keys: Vec<(Range<usize>, Source)>,
    /// One backend request slot per fragment.
    slots: Vec<u32>,
}

impl MultiGet {
    /// Bytes of bookkeeping it holds (counted against `client_output_limit`).
    pub(crate) fn held(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<(Range<usize>, Source)>()
            + self.slots.capacity() * 4
    }

    pub(crate) fn done(&self, sink: &ReplySink) -> bool {
        self.slots.iter().all(|&s| sink.is_done(s))
            && self.keys.iter().all(|(_, src)| match src {
                Source::Joined(s) => sink.is_done(*s),
                Source::Fragment(_) | Source::Repeat(_) => true,
            })
    }
}

impl McSession {
    pub(super) fn retrieval(&mut self, req: &Request, frame: Bytes) {
        if req.keys.is_empty() {
            // `gat <exptime>` with no key: memcached answers an empty result.
            self.push(Entry::Ready(Bytes::from_static(b"END\r\n")));
            return;
        }
        let coalesce =
            self.pool.table.config.coalesce && matches!(req.cmd, Command::Get | Command::Gets);
        let kind = if req.cmd == Command::Gets {
            cmd::GETS
        } else {
            cmd::GET
        };
        let mut servers = std::mem::take(&mut self.scratch);
        servers.clear();
        servers.extend(req.keys.iter().map(|k| {
            self.pool
                .server_for(&frame[k.clone()])
                .map_or(u32::MAX, |s| s as u32)
        }));
        let first = servers[0];
        let repeats = (req.keys.len() > 1)
            .then(|| {
                super::repeats::first_occurrences(req.keys.len(), |i| &frame[req.keys[i].clone()])
            })
            .flatten();
        if req.keys.len() == 1 && coalesce && first != u32::MAX {
            self.single_coalesced(first as usize, kind, frame, req);
        } else if servers.iter().all(|&s| s == first) && !coalesce && repeats.is_none() {
            // One server holds every key: forward as is and pass the reply through (checked).
            let keys = req.keys.iter().map(|k| &frame[k.clone()]);
            let encode = |dst: &mut BytesMut| mc::encode_retrieval(req.cmd, req.exptime, keys, dst);
            if first == u32::MAX {
                self.forward(None, VALUES_FRAMING, false, encode);
            } else {
                let slot = self.sink.alloc();
                let target = Target::Slot(self.sink.clone(), slot);
                self.pool.servers[first as usize]
                    .conn()
                    .send(VALUES_FRAMING, target, encode);
                let asked = Asked::new(frame, &req.keys);
                self.push(Entry::Get {
                    slot,
                    server: first,
                    asked,
                });
            }
        } else {
            self.split(
                req,
                frame,
                &servers,
                coalesce.then_some(kind),
                repeats.as_deref(),
            );
        }
        self.scratch = servers;
    }

    /// A single-key get: join the read in flight, or lead a new one.
    fn single_coalesced(&mut self, server: usize, kind: u8, frame: Bytes, req: &Request) {
        let key = &frame[req.keys[0].clone()];
        let pool = self.pool.clone();
        let stats = &pool.table.stats;
        let epochs = &pool.table.write_epochs;
        let slot = self.sink.alloc();
        let joined = pool
            .flights
            .candidate(epochs, server, kind, key)
            .and_then(|read| pool.flights.read(&read, &self.sink, slot));
        match joined {
            Some(first) => stats.joined(first),
            None => pool.servers[server].conn().send(
                VALUES_FRAMING,
                Target::Slot(self.sink.clone(), slot),
                |dst| mc::encode_retrieval(req.cmd, req.exptime, std::iter::once(key), dst),
            ),
        }
        let asked = Asked::new(frame, &req.keys);
        let server = server as u32;
        self.push(Entry::Get {
            slot,
            server,
            asked,
        });
    }

    /// One backend request per server, keys kept in request order within each. With
    /// coalescing (`kind`), keys already in flight join those reads instead, and the keys
    /// fetched can be joined in turn (each gets its part of the fragment's reply). A key that
    /// repeats an earlier one (`repeats`) is not fetched again.
    fn split(
        &mut self,
        req: &Request,
        frame: Bytes,
        servers: &[u32],
        kind: Option<u8>,
        repeats: Option<&[Option<u32>]>,
    ) {
        let pool = self.pool.clone();
        let epochs = &pool.table.write_epochs;
        let mut order: Vec<u32> = Vec::new();
        let mut keys = Vec::with_capacity(req.keys.len());
        // The reads that did not join but can be joined, by fragment: they lead once sent.
        let mut leads: Vec<(u32, ReadKey)> = Vec::new();
        for (i, (k, &s)) in req.keys.iter().zip(servers).enumerate() {
            if let Some(first) = repeats.and_then(|r| r[i]) {
                keys.push((k.clone(), Source::Repeat(first)));
                continue;
            }
            let mut read = None;
            if let (Some(kind), true) = (kind, s != u32::MAX) {
                read = pool
                    .flights
                    .candidate(epochs, s as usize, kind, &frame[k.clone()]);
                if let Some(joined) = read.as_ref().and_then(|r| pool.flights.join(r, &self.sink)) {
                    pool.table.stats.joined(joined.first);
                    keys.push((k.clone(), Source::Joined(joined.slot)));
                    continue;
                }
            }
            let frag = order.iter().position(|&o| o == s).unwrap_or_else(|| {
                order.push(s);
                order.len() - 1
            }) as u32;
            keys.push((k.clone(), Source::Fragment(frag)));
            leads.extend(read.map(|r| (frag, r)));
        }
        pool.table.stats.fragments.add(order.len() as u64);
        let mut slots = Vec::with_capacity(order.len());
        for (frag, &server) in order.iter().enumerate() {
            let slot = self.sink.alloc();
            slots.push(slot);
            let mine = || {
                keys.iter().filter_map(move |(k, src)| match src {
                    Source::Fragment(f) if *f == frag as u32 => Some(k.clone()),
                    _ => None,
                })
            };
            if server == u32::MAX {
                pool.table.stats.errors[crate::stats::kind::EJECTED].inc();
                self.sink
                    .complete(slot, Err(BackendError::Io("no server available".into())));
                continue;
            }
            for (_, read) in leads.iter().filter(|(f, _)| *f == frag as u32) {
                pool.flights.lead(read, &self.sink, slot, true);
            }
            let target = Target::Slot(self.sink.clone(), slot);
            pool.servers[server as usize]
                .conn()
                .send(VALUES_FRAMING, target, |dst| {
                    mc::encode_retrieval(req.cmd, req.exptime, mine().map(|k| &frame[k]), dst)
                });
        }
        if slots.len() == 1
            && keys
                .iter()
                .all(|(_, src)| matches!(src, Source::Fragment(_)))
        {
            // One server, nothing joined: its reply is the answer, passed through untouched.
            let asked = Asked::new(frame, &req.keys);
            self.push(Entry::Get {
                slot: slots[0],
                server: order[0],
                asked,
            });
        } else {
            self.push(Entry::Multi(Box::new(MultiGet { frame, keys, slots })));
        }
    }

    /// Merges the answers: for each requested key, in order, the next `VALUE` block of its
    /// server's reply if that block is for this key (or its flight's block), else a miss. A
    /// failed server's keys are misses (counted as lost), so the other servers' hits still
    /// reach the client.
    pub(super) fn emit_multi(&mut self, m: MultiGet, out: &mut BytesMut) {
        let stats = &self.pool.table.stats;
        // Past this the client is disconnected (see `session::drive`): stop copying.
        let limit = self.pool.table.config.client_output_limit as usize;
        let replies: Vec<Outcome> = m.slots.iter().map(|&s| self.sink.take(s)).collect();
        let mut cursors: Vec<usize> = vec![0; replies.len()];
        // Where each key's block went in `out`, when some key repeats another.
        let repeats = m.keys.iter().any(|(_, s)| matches!(s, Source::Repeat(_)));
        let mut written: Vec<Range<usize>> = Vec::new();
        for (key, src) in &m.keys {
            if out.len() > limit {
                self.truncated = true;
                return;
            }
            let start = out.len();
            let key = &m.frame[key.clone()];
            let joined;
            let (reply, cursor) = match *src {
                Source::Fragment(f) => (&replies[f as usize], Some(&mut cursors[f as usize])),
                Source::Joined(slot) => {
                    joined = self.sink.take(slot);
                    (&joined, None)
                }
                Source::Repeat(first) => {
                    let block = written[first as usize].clone();
                    if block.is_empty() {
                        stats.get_misses.inc();
                    } else {
                        stats.get_hits.inc();
                        let copy = out[block].to_vec();
                        out.put_slice(&copy);
                    }
                    written.push(start..out.len());
                    continue;
                }
            };
            match reply {
                Err(_) => {
                    stats.get_lost.inc();
                    stats.get_misses.inc();
                }
                Ok(reply) => {
                    let at = cursor.as_deref().copied().unwrap_or(0);
                    let block = mc::value_blocks(&reply[at..])
                        .next()
                        .filter(|b| b.key == key)
                        .map(|b| b.block);
                    match block {
                        Some(b) => {
                            out.put_slice(&reply[at + b.start..at + b.end]);
                            if let Some(c) = cursor {
                                *c = at + b.end;
                            }
                            stats.get_hits.inc();
                        }
                        None => stats.get_misses.inc(),
                    }
                }
            }
            if repeats {
                written.push(start..out.len());
            }
        }
        out.put_slice(b"END\r\n");
    }
}
