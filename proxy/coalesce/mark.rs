//! What a leading read's reply slot keeps: its index entries and the reads that joined it.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use super::index::{Flights, Lead};
use crate::backend::ReplySink;
use crate::backend::{BackendError, Outcome};
use crate::protocol::memcache::value_blocks;

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
pub(super) struct Follower {
    pub(super) sink: Rc<ReplySink>,
    pub(super) slot: u32,
    /// When the leader is a multi-get fragment: the key whose part of the reply this read gets.
    pub(super) part_of: Option<Box<[u8]>>,
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
    pub(super) fn add(&mut self, table: &Rc<Flights>, at: u32, follower: Follower) -> Option<bool> {
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
                // The multi-get it joined was too large for its own client; this read's part
                // may be small: fail the read, not the connection of the client who joined.
                (Err(BackendError::ReplyTooLarge), Some(_)) => Err(BackendError::JoinedTooLarge),
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
