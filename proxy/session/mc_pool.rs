//! memcached requests sent to every server of the pool (`flush_all`, `stats items`, `stats
//! reset`, ...) and the one reply each becomes, so that a client sees the pool as one server.

use bytes::{BufMut, Bytes, BytesMut};

use super::memcache::{Entry, McSession};
use crate::backend::{Framing, Target};
use crate::protocol::memcache::{self as mc, stats, Expect, PoolMerge, PoolStats, Request};

impl McSession {
    pub(super) fn flush_all(&mut self, req: &Request) {
        if !self.pool.table.config.allow_flush_all {
            if !req.noreply {
                self.push(Entry::Ready(Bytes::from_static(
                    b"SERVER_ERROR flush_all is disabled for this pool\r\n",
                )));
            }
            return;
        }
        self.pool.table.write_epochs.wrote_all();
        self.fan_out(
            Framing::Memcache(Expect::Ok),
            PoolMerge::AllSaid(b"OK\r\n"),
            req.noreply,
            |dst| mc::encode_pool_command(req, dst),
        );
    }

    /// `stats <args>` (plain `stats` is answered from the proxy's counters by the caller).
    pub(super) fn pool_stats(&mut self, args: &[u8]) {
        let sub = match PoolStats::parse(args) {
            Ok(sub) => sub,
            Err(stats::Refused(reply)) => {
                self.push(Entry::Ready(Bytes::from_static(reply)));
                return;
            }
        };
        let framing = Framing::Memcache(if sub == PoolStats::Reset {
            Expect::Reset
        } else {
            Expect::Stats
        });
        match sub.merge() {
            Some(merge) => self.fan_out(framing, merge, false, |dst| sub.encode(dst)),
            // Settings are the first server's, as twemproxy sends server-less commands there.
            None => {
                let first = (!self.pool.servers.is_empty()).then_some(0);
                self.forward(first, framing, false, |dst| sub.encode(dst));
            }
        }
    }

    /// Sends one request to every server and owes the merged reply unless `noreply`.
    fn fan_out(
        &mut self,
        framing: Framing,
        merge: PoolMerge,
        noreply: bool,
        encode: impl Fn(&mut BytesMut),
    ) {
        let mut slots = Vec::new();
        for server in &self.pool.servers {
            let target = if noreply {
                Target::Discard
            } else {
                let slot = self.sink.alloc();
                slots.push(slot);
                Target::Slot(self.sink.clone(), slot)
            };
            server.conn().send(framing, target, &encode);
        }
        if !noreply {
            self.push(Entry::All { slots, merge });
        }
    }

    /// The one reply of a request sent to every server: the first failure (a server's error
    /// line, or why it could not be asked) if any, else the merge.
    pub(super) fn emit_all(&mut self, slots: Vec<u32>, merge: PoolMerge, out: &mut BytesMut) {
        if merge == PoolMerge::AllSaid(b"OK\r\n") && self.pool.table.config.coalesce {
            // flush_all is answered: reads from now on join no read sent before it.
            self.pool.table.write_epochs.wrote_all();
        }
        let mut failure: Option<Bytes> = None;
        let mut replies = Vec::with_capacity(slots.len());
        for slot in slots {
            match self.sink.take(slot) {
                Ok(r) if mc::response::reply_is_error(&r) => {
                    failure.get_or_insert(r);
                }
                Ok(r) => match merge {
                    PoolMerge::AllSaid(want) if r.as_ref() != want => {
                        failure.get_or_insert(r);
                    }
                    _ => replies.push(r),
                },
                Err(e) => {
                    failure.get_or_insert_with(|| Bytes::from(format!("SERVER_ERROR {e}\r\n")));
                }
            }
        }
        if let Some(failure) = failure {
            out.put_slice(&failure);
            return;
        }
        match merge {
            PoolMerge::AllSaid(line) => out.put_slice(line),
            PoolMerge::SumStats => out.put_slice(&stats::merge_stats(&replies)),
            PoolMerge::Concat => out.put_slice(&stats::concat(&replies)),
        }
    }
}
