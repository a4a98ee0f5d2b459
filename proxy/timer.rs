//! Timers for the worker threads, without tokio's time driver.
//!
//! Why: with its time driver enabled, a tokio runtime reads the clock, converts instants to
//! ticks and polls its timer wheel every time the thread parks, timers or not. A worker parks
//! about twice per request on an unloaded connection, and that came to about 800 of a ping-
//! pong request's 9,800 instructions (callgrind: 9,787 with the driver, 9,001 without). The workers' timers are rare by design: a
//! backend connection's timer fires about once per pool timeout, a client's only while its
//! request is incomplete, the rest only at connect and drain. So a worker runs its runtime with
//! the I/O driver alone, and this module gives it timers through one `timerfd` registered with
//! that reactor: an ordered map of deadlines, the fd armed for the earliest, and a task that
//! wakes whatever is due when the fd fires. A timer costs nothing per request once armed:
//! polling it is a flag check.
//!
//! Threads without the service (the acceptor thread, tests) get tokio's timers instead.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// One armed timer as the service sees it.
#[derive(Default)]
struct Entry {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// A thread's timer service.
struct Timers {
    /// Armed timers by (deadline, sequence number): the first one is the next to fire.
    armed: RefCell<BTreeMap<(Instant, u64), Rc<Entry>>>,
    seq: Cell<u64>,
    /// The deadline the timerfd is set for, if any.
    fd_deadline: Cell<Option<Instant>>,
    fd: AsyncFd<OwnedFd>,
}

thread_local! {
    static SERVICE: RefCell<Option<Rc<Timers>>> = const { RefCell::new(None) };
}

/// Keeps this thread's timer service running; dropping it stops the service.
pub struct Service(std::marker::PhantomData<Rc<()>>);

impl Drop for Service {
    fn drop(&mut self) {
        SERVICE.with(|s| s.borrow_mut().take());
    }
}

/// Creates the timerfd. Separate from [`start`] so that a worker can choose, before building
/// its runtime, between this service and tokio's time driver (should the kernel refuse).
pub fn create_fd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the descriptor is checked and then owned.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts the service for this thread on the current `LocalSet` (its task fires the timers).
/// Timers created on this thread from now on use it. std's and tokio's `Instant` both read
/// `CLOCK_MONOTONIC`, the clock the timerfd runs on.
pub fn start(fd: OwnedFd) -> io::Result<Service> {
    // SAFETY: the `OwnedFd` keeps its descriptor open for as long as the `AsyncFd` lives and
    // always returns that same descriptor.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
    let timers = Rc::new(Timers {
        armed: RefCell::new(BTreeMap::new()),
        seq: Cell::new(0),
        fd_deadline: Cell::new(None),
        fd,
    });
    SERVICE.with(|s| *s.borrow_mut() = Some(timers.clone()));
    tokio::task::spawn_local(fire_loop(timers));
    Ok(Service(std::marker::PhantomData))
}

/// Waits for the timerfd and wakes every timer that is due.
async fn fire_loop(timers: Rc<Timers>) {
    loop {
        let mut guard = match timers.fd.readable().await {
            Ok(g) => g,
            Err(_) => return,
        };
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8.
        let n = unsafe {
            libc::read(
                timers.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            )
        };
        // One read drains a timerfd: readiness is cleared either way (tokio keeps an event
        // that arrives after this read, such as the fd firing again once re-armed below).
        guard.clear_ready();
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return;
            }
            continue;
        }
        timers.fd_deadline.set(None);
        timers.fire_due();
    }
}

impl Timers {
    fn fire_due(&self) {
        let now = Instant::now();
        loop {
            let due = {
                let mut armed = self.armed.borrow_mut();
                match armed.first_key_value() {
                    Some((&(deadline, _), _)) if deadline <= now => armed.pop_first(),
                    _ => None,
                }
            };
            let Some((_, entry)) = due else { break };
            entry.fired.set(true);
            let waker = entry.waker.borrow_mut().take();
            if let Some(w) = waker {
                w.wake();
            }
        }
        let next = self.armed.borrow().first_key_value().map(|(&(d, _), _)| d);
        if let Some(next) = next {
            self.set_fd(next, now);
        }
    }

    fn insert(&self, deadline: Instant, entry: Rc<Entry>) -> u64 {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.armed.borrow_mut().insert((deadline, seq), entry);
        if self.fd_deadline.get().is_none_or(|d| deadline < d) {
            self.set_fd(deadline, Instant::now());
        }
        seq
    }

    fn remove(&self, deadline: Instant, seq: u64) {
        // The fd may stay set for this deadline; it then fires once for nothing.
        self.armed.borrow_mut().remove(&(deadline, seq));
    }

    fn set_fd(&self, deadline: Instant, now: Instant) {
        // A zero it_value would disarm the fd: a deadline already past fires in 1 ns.
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and pointers to a local value; the old value is not asked for.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == 0 {
            self.fd_deadline.set(Some(deadline));
        }
    }
}

/// A future that completes at its deadline; it can be moved to another deadline with
/// [`reset`](Sleep::reset) without being rebuilt.
pub struct Sleep {
    deadline: Instant,
    inner: Inner,
}

enum Inner {
    Service {
        timers: Rc<Timers>,
        entry: Rc<Entry>,
        /// The key of the entry while it is in the service's map.
        key: Option<(Instant, u64)>,
    },
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    let inner = match SERVICE.with(|s| s.borrow().clone()) {
        Some(timers) => Inner::Service {
            timers,
            entry: Rc::default(),
            key: None,
        },
        None => Inner::Tokio(Box::pin(tokio::time::sleep_until(deadline))),
    };
    Sleep { deadline, inner }
}

/// Sleeps for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Runs `fut` for at most `duration`: `Err(Elapsed)` if the time runs out first.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + duration, fut).await
}

/// Runs `fut` until `deadline` at most.
pub async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let fut = std::pin::pin!(fut);
    let sleep = sleep_until(deadline);
    tokio::select! {
        biased;
        out = fut => Ok(out),
        _ = sleep => Err(Elapsed),
    }
}

/// The time given to [`timeout`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Sleep {
    /// Moves the timer to `deadline`; it is pending again even if it had fired.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        match &mut self.inner {
            Inner::Service { timers, entry, key } => {
                if let Some((d, seq)) = key.take() {
                    timers.remove(d, seq);
                }
                entry.fired.set(false);
            }
            Inner::Tokio(sleep) => sleep.as_mut().reset(deadline),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let deadline = this.deadline;
        match &mut this.inner {
            Inner::Service { timers, entry, key } => {
                if entry.fired.get() {
                    *key = None;
                    return Poll::Ready(());
                }
                {
                    let mut slot = entry.waker.borrow_mut();
                    match slot.as_ref() {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *slot = Some(cx.waker().clone()),
                    }
                }
                if key.is_none() {
                    *key = Some((deadline, timers.insert(deadline, entry.clone())));
                }
                Poll::Pending
            }
            Inner::Tokio(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Inner::Service {
            timers,
            key: Some((d, seq)),
            ..
        } = &self.inner
        {
            timers.remove(*d, *seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime like a worker's: I/O driver only, timers from this module.
    fn run_with_service<F: Future<Output = ()>>(f: impl FnOnce() -> F) {
        let fd = create_fd().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let _service = start(fd).unwrap();
            f().await;
        });
    }

    #[test]
    fn sleeps_end_at_their_deadlines_in_order() {
        run_with_service(|| async {
            let start = Instant::now();
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for ms in [30u64, 10, 20] {
                let order = order.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(ms);
                    start.elapsed()
                }));
            }
            for (t, ms) in tasks.into_iter().zip([30u64, 10, 20]) {
                let waited = t.await.unwrap();
                assert!(
                    waited >= Duration::from_millis(ms),
                    "{ms} ms took {waited:?}"
                );
                assert!(
                    waited < Duration::from_millis(ms + 500),
                    "{ms} ms took {waited:?}"
                );
            }
            assert_eq!(*order.borrow(), [10, 20, 30]);
        });
    }

    #[test]
    fn reset_moves_a_timer_and_dropped_timers_leave_the_map() {
        run_with_service(|| async {
            let timers = SERVICE.with(|s| s.borrow().clone()).unwrap();
            let start = Instant::now();
            let mut t = sleep(Duration::from_secs(60));
            // Registered at the first poll.
            assert!(futures_poll_once(&mut t).await.is_pending());
            assert_eq!(timers.armed.borrow().len(), 1);
            t.reset(Instant::now() + Duration::from_millis(20));
            (&mut t).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(start.elapsed() < Duration::from_secs(5));
            // A fired timer can be armed again.
            t.reset(Instant::now() + Duration::from_millis(5));
            (&mut t).await;
            {
                let dropped = sleep(Duration::from_secs(60));
                let mut dropped = std::pin::pin!(dropped);
                assert!(futures_poll_once(&mut dropped).await.is_pending());
                assert_eq!(timers.armed.borrow().len(), 1);
            }
            assert_eq!(
                timers.armed.borrow().len(),
                0,
                "a dropped timer leaves no entry"
            );
            drop(t);
            assert_eq!(timers.armed.borrow().len(), 0);
        });
    }

    #[test]
    fn timeouts_end_slow_futures_only() {
        run_with_service(|| async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
            let slow = sleep(Duration::from_secs(60));
            assert_eq!(timeout(Duration::from_millis(10), slow).await, Err(Elapsed));
            // A deadline already past fires at once.
            sleep_until(Instant::now() - Duration::from_millis(1)).await;
        });
    }

    #[test]
    fn without_the_service_tokio_timers_are_used() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(10)).await;
            assert!(start.elapsed() >= Duration::from_millis(10));
        });
    }

    /// Polls a future once.
    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }
}
