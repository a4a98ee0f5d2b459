//! What a worker's sessions hand their backend connections between two batches: the idle
//! connections a batch gave requests to (written once, after the batch), and the connection
//! a request left congested (the session stops dispatching until it drains).
//!
//! Both live in thread-locals because a batch never leaves its worker thread; the check after
//! every request reads a `Cell<bool>` (one load), the connection itself only when it is set.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::BackendConn;

thread_local! {
    /// Idle connections that were given requests by the batch being dispatched on this worker.
    static DEFERRED: RefCell<Vec<Rc<BackendConn>>> = const { RefCell::new(Vec::new()) };
    /// A connection the last request left congested (over `MAX_UNWRITTEN` unwritten bytes): the session
    /// dispatching must stop and wait for it ([`take_congested`]).
    static CONGESTED: RefCell<Option<Rc<BackendConn>>> = const { RefCell::new(None) };
    /// Whether `CONGESTED` is set: the check after every request is one load.
    static ANY_CONGESTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a request just queued left its connection congested. Sessions check it after each
/// request they dispatch, and stop dispatching when it says so.
#[inline]
pub fn congested_now() -> bool {
    ANY_CONGESTED.get()
}

/// The connection that the last request left congested, if any (clearing it): the session
/// waits on it with [`BackendConn::wake_when_drained`].
pub fn take_congested() -> Option<Rc<BackendConn>> {
    if !ANY_CONGESTED.replace(false) {
        return None;
    }
    CONGESTED.with(|c| c.borrow_mut().take())
}

/// Writes the requests a session just dispatched to connections that were idle. Sessions call
/// it after every batch; until then those requests sit in their connection's buffer (the
/// batch's later requests to the same connection join them, and one write sends them all).
#[inline]
pub fn flush_deferred() {
    DEFERRED.with(|d| {
        if d.borrow().is_empty() {
            return;
        }
        let mut conns = std::mem::take(&mut *d.borrow_mut());
        for conn in conns.drain(..) {
            conn.flush_now();
        }
        // Keeps the list's capacity (nothing is deferred while flushing).
        *d.borrow_mut() = conns;
    });
}

/// Defers the write of an idle connection's requests to the end of the batch.
#[inline]
pub(super) fn defer(conn: Rc<BackendConn>) {
    DEFERRED.with(|d| d.borrow_mut().push(conn));
}

/// Records that `conn` is congested by the request just queued.
pub(super) fn congested(conn: Rc<BackendConn>) {
    CONGESTED.with(|c| *c.borrow_mut() = Some(conn));
    ANY_CONGESTED.set(true);
}
