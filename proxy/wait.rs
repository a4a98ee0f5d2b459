//! Cheap waiting primitives for the per-request loops of a worker thread: a single-waiter
//! notification, and a sleep that costs nothing when there is no deadline.
//!
//! ## `LocalNotify`
//!
//! Every request wakes two tasks (the backend connection when it is queued, the session when
//! its reply arrives). tokio's `Notify` handles any number of waiters across threads, with a
//! lock and atomics, and its `notified()` future must be rebuilt and re-registered each time;
//! on this path that cost about a thousand instructions per request. Here one task waits, on
//! the same thread, so a `Cell` flag and the stored waker are enough.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

/// Sleeps until `deadline`, or forever when there is none. Building it costs nothing, unlike a
/// timer (which is set up even in a disabled `select!` branch, whose expression is still
/// evaluated).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => crate::timer::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Default)]
pub struct LocalNotify {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    /// Wakes the waiting task, or lets its next wait return at once (a stored permit, as with
    /// `Notify::notify_one`).
    pub fn notify(&self) {
        if self.notified.replace(true) {
            return;
        }
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves once [`notify`](Self::notify) has been called since the last time it resolved.
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

pub struct Notified<'a>(&'a LocalNotify);

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let n = self.0;
        if n.notified.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = n.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_notification_before_the_wait_is_kept() {
        let n = LocalNotify::default();
        n.notify();
        n.notify();
        n.notified().await; // the permit
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), n.notified()).await;
        assert!(waited.is_err(), "only one permit is stored");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_task_is_woken() {
        let n = std::rc::Rc::new(LocalNotify::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let m = n.clone();
                let waiter = tokio::task::spawn_local(async move { m.notified().await });
                tokio::task::yield_now().await;
                n.notify();
                waiter.await.unwrap();
            })
            .await;
    }
}
