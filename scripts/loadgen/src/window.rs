//! The requests in flight on one connection.

use std::time::Instant;

use crate::proto::Op;

/// A request in flight: when it was sent and what it asked.
pub struct Pending {
    pub sent: Instant,
    pub op: Op,
    pub keys: Vec<u32>,
}

/// The requests in flight on one connection, oldest first, in a fixed ring of reused slots.
pub struct Window {
    slots: Vec<Pending>,
    head: usize,
    pub len: usize,
}

impl Window {
    pub fn new(depth: usize, now: Instant) -> Window {
        let slots = (0..depth)
            .map(|_| Pending {
                sent: now,
                op: Op::Ping,
                keys: Vec::new(),
            })
            .collect();
        Window {
            slots,
            head: 0,
            len: 0,
        }
    }
    pub fn free(&self) -> usize {
        self.slots.len() - self.len
    }
    pub fn push(&mut self) -> &mut Pending {
        let i = (self.head + self.len) % self.slots.len();
        self.len += 1;
        &mut self.slots[i]
    }
    pub fn front(&self) -> &Pending {
        &self.slots[self.head]
    }
    pub fn pop(&mut self) {
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
    }
}
