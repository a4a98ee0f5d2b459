//! Where a backend connection delivers replies for one client session.
//!
//! Each in-flight backend request owns a slot in its session's sink; the backend fills the slot
//! and wakes the session, which emits replies strictly in request order. Slots are reused, so
//! the steady state allocates nothing per request, and the sink is reference-counted, so a
//! client that disconnects with requests in flight strands nobody: the backend still completes
//! each slot and the sink is freed with the last one.

use std::cell::RefCell;

use crate::wait::LocalNotify;
use bytes::Bytes;

use super::BackendError;

/// The outcome of one backend request: the framed reply, or why there is none.
pub type Outcome = Result<Bytes, BackendError>;

enum Slot {
    Free { next: u32 },
    Waiting,
    Done(Outcome),
}

const NONE: u32 = u32::MAX;

/// A session's reply slots plus the notification that one was filled.
pub struct ReplySink {
    slots: RefCell<Slots>,
    notify: LocalNotify,
}

struct Slots {
    slots: Vec<Slot>,
    free: u32,
}

impl Default for ReplySink {
    fn default() -> Self {
        ReplySink {
            slots: RefCell::new(Slots {
                slots: Vec::new(),
                free: NONE,
            }),
            notify: LocalNotify::default(),
        }
    }
}

impl ReplySink {
    /// Reserves a slot for a request about to be sent.
    pub fn alloc(&self) -> u32 {
        let mut s = self.slots.borrow_mut();
        if s.free != NONE {
            let id = s.free;
            if let Slot::Free { next } = s.slots[id as usize] {
                s.free = next;
            }
            s.slots[id as usize] = Slot::Waiting;
            id
        } else {
            s.slots.push(Slot::Waiting);
            (s.slots.len() - 1) as u32
        }
    }

    /// Called by the backend side: stores the outcome and wakes the session.
    pub fn complete(&self, id: u32, outcome: Outcome) {
        let mut s = self.slots.borrow_mut();
        if let Some(slot @ Slot::Waiting) = s.slots.get_mut(id as usize) {
            *slot = Slot::Done(outcome);
            drop(s);
            self.notify.notify();
        }
    }

    /// Whether the slot has its outcome.
    pub fn is_done(&self, id: u32) -> bool {
        matches!(
            self.slots.borrow().slots.get(id as usize),
            Some(Slot::Done(_))
        )
    }

    /// Takes a completed outcome and frees the slot. Panics if the slot is not done: callers
    /// check [`is_done`](Self::is_done) first.
    pub fn take(&self, id: u32) -> Outcome {
        let mut s = self.slots.borrow_mut();
        let free = s.free;
        match std::mem::replace(&mut s.slots[id as usize], Slot::Free { next: free }) {
            Slot::Done(outcome) => {
                s.free = id;
                outcome
            }
            _ => unreachable!("take() on a slot that is not done"),
        }
    }

    /// Resolves when some slot completes after the last call.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

/// Something other than a single session slot that takes a reply: a coalesced read's flight,
/// which hands it to every waiter.
pub trait Deliver {
    fn deliver(&self, outcome: Outcome);
}

/// A table of reply receivers addressed by index (coalesced reads): delivering to one of them
/// needs no allocation per request, unlike an `Rc<dyn Deliver>` of its own.
pub trait DeliverIndexed {
    fn deliver(&self, id: u32, outcome: Outcome);
}

/// Where a backend sends one reply.
pub enum Target {
    Slot(std::rc::Rc<ReplySink>, u32),
    Shared(std::rc::Rc<dyn Deliver>),
    Indexed(std::rc::Rc<dyn DeliverIndexed>, u32),
    /// Nobody waits (noreply, or the request already timed out): the reply is read and dropped,
    /// which keeps the shared connection's replies matched to their requests.
    Discard,
}

impl Target {
    pub fn deliver(self, outcome: Outcome) {
        match self {
            Target::Slot(sink, id) => sink.complete(id, outcome),
            Target::Shared(d) => d.deliver(outcome),
            Target::Indexed(d, id) => d.deliver(id, outcome),
            Target::Discard => {}
        }
    }
}
