//! Where a backend connection delivers replies for one client session.
//!
//! Each in-flight backend request owns a slot in its session's sink; the backend fills the slot
//! and wakes the session, which emits replies strictly in request order. Slots are reused, so
//! the steady state allocates nothing per request, and the sink is reference-counted, so a
//! client that disconnects with requests in flight strands nobody: the backend still completes
//! each slot and the sink is freed with the last one. A slot whose read others joined
//! (coalescing) hands them their copies when it completes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::coalesce::{Flights, Lead, LeadMark};
use crate::wait::LocalNotify;
use bytes::Bytes;

use super::BackendError;

/// The outcome of one backend request: the framed reply, or why there is none.
pub type Outcome = Result<Bytes, BackendError>;

enum Slot {
    Free {
        next: u32,
    },
    /// In flight; `Some` when other reads can join it.
    Waiting(Option<LeadMark>),
    Done(Outcome),
}

const NONE: u32 = u32::MAX;

/// A session's reply slots plus the notification that one was filled.
///
/// The sink also keeps the byte count that bounds a client's memory: the replies that arrived
/// and wait to be written (`held`), and whether a reply was too large to hold at all. Once its
/// session has ended the sink is closed, and replies still arriving are dropped on arrival.
pub struct ReplySink {
    slots: RefCell<Slots>,
    notify: LocalNotify,
    held: Cell<usize>,
    overflow: Cell<bool>,
    closed: Cell<bool>,
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
            held: Cell::new(0),
            overflow: Cell::new(false),
            closed: Cell::new(false),
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
            s.slots[id as usize] = Slot::Waiting(None);
            id
        } else {
            s.slots.push(Slot::Waiting(None));
            (s.slots.len() - 1) as u32
        }
    }

    /// Frees a slot that was allocated but never sent.
    pub fn release(&self, id: u32) {
        let mut s = self.slots.borrow_mut();
        let free = s.free;
        if let Some(slot @ Slot::Waiting(None)) = s.slots.get_mut(id as usize) {
            *slot = Slot::Free { next: free };
            s.free = id;
        }
    }

    /// Called by the backend side: stores the outcome, hands copies to the reads that joined
    /// this one, and wakes the session.
    pub fn complete(&self, id: u32, outcome: Outcome) {
        let mut s = self.slots.borrow_mut();
        let lead = match s.slots.get_mut(id as usize) {
            Some(Slot::Waiting(lead)) => lead.take(),
            _ => return,
        };
        if let Some(more) = lead.and_then(LeadMark::answered) {
            // Followers may be slots of this very sink: no borrow while they complete.
            drop(s);
            more.answer(&outcome);
            s = self.slots.borrow_mut();
        }
        if self.closed.get() {
            // Nobody will read it: the session is gone.
            s.slots[id as usize] = Slot::Free { next: NONE };
            return;
        }
        match &outcome {
            Ok(reply) => self.held.set(self.held.get() + reply.len()),
            Err(BackendError::ReplyTooLarge) => self.overflow.set(true),
            Err(_) => {}
        }
        s.slots[id as usize] = Slot::Done(outcome);
        drop(s);
        self.notify.notify();
    }

    /// Wakes the session (a congested backend connection drained).
    pub fn wake(&self) {
        self.notify.notify();
    }

    /// Bytes of replies that arrived and were not taken yet.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// Whether a reply was too large to be held for this client (see
    /// [`BackendError::ReplyTooLarge`]).
    pub fn overflowed(&self) -> bool {
        self.overflow.get()
    }

    /// The session ended: frees the replies waiting, and drops those still to come as they
    /// arrive (the backend reads them to keep its connection in step, and nothing else).
    pub fn close(&self) {
        self.closed.set(true);
        self.held.set(0);
        let mut s = self.slots.borrow_mut();
        for slot in s.slots.iter_mut() {
            if let Slot::Done(_) = slot {
                *slot = Slot::Free { next: NONE };
            }
        }
    }

    /// Makes waiting slot `id` a read that others can join through an entry of `table`.
    #[inline(always)]
    pub(crate) fn lead(&self, id: u32, table: &Rc<Flights>, lead: Lead) {
        if let Some(Slot::Waiting(mark)) = self.slots.borrow_mut().slots.get_mut(id as usize) {
            match mark {
                Some(mark) => mark.also(lead),
                None => *mark = Some(LeadMark::new(table, lead)),
            }
        }
    }

    /// Applies `join` to the lead mark of waiting slot `id`; None when the slot leads nothing.
    pub(crate) fn follow(
        &self,
        id: u32,
        join: impl FnOnce(&mut LeadMark) -> Option<bool>,
    ) -> Option<bool> {
        match self.slots.borrow_mut().slots.get_mut(id as usize) {
            Some(Slot::Waiting(Some(mark))) => join(mark),
            _ => None,
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
                if let Ok(reply) = &outcome {
                    self.held.set(self.held.get() - reply.len());
                }
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

/// Where a backend sends one reply.
pub enum Target {
    Slot(Rc<ReplySink>, u32),
    /// Nobody waits (noreply, or the request already timed out): the reply is read and dropped,
    /// which keeps the shared connection's replies matched to their requests.
    Discard,
}

impl Target {
    pub fn deliver(self, outcome: Outcome) {
        match self {
            Target::Slot(sink, id) => sink.complete(id, outcome),
            Target::Discard => {}
        }
    }
}
