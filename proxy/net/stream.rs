//! A connected socket driven by readiness, shared by client sessions and backend connections.
//!
//! It is built on `AsyncFd` rather than tokio's `TcpStream` for one reason: after a read that
//! comes back short (the socket buffer is drained), readiness can be cleared at once, instead of
//! learning it from one more `read` that fails with `EAGAIN`. On a request-reply workload that
//! saves a system call per read on each side of the proxy. Clearing is race-free: tokio only
//! clears the readiness event the guard observed, never a newer one.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::task::Poll;

use bytes::BytesMut;
use socket2::SockRef;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::{Interest, Ready};

use crate::config::ServerAddr;

/// The OS socket under a [`Stream`].
pub enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Sock {
    fn sock_ref(&self) -> SockRef<'_> {
        match self {
            Sock::Tcp(s) => SockRef::from(s),
            Sock::Unix(s) => SockRef::from(s),
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }

    /// Reads into the spare capacity of `buf`; returns the bytes read and whether the read
    /// filled all the room there was (more data may be waiting).
    fn recv_into(&self, buf: &mut BytesMut) -> io::Result<(usize, bool)> {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let n = self.sock_ref().recv(spare)?;
        // SAFETY: recv initialised the first n bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok((n, n == room))
    }
}

/// A connected, non-blocking socket registered with the current thread's reactor.
pub struct Stream(AsyncFd<Sock>);

/// Readiness reported by [`Stream::ready`]; reads through it clear read readiness as soon as
/// the socket is drained.
pub struct Readiness<'a>(AsyncFdReadyGuard<'a, Sock>);

impl Stream {
    pub fn new(sock: Sock) -> io::Result<Stream> {
        match &sock {
            Sock::Tcp(s) => {
                s.set_nonblocking(true)?;
                s.set_nodelay(true)?;
            }
            Sock::Unix(s) => s.set_nonblocking(true)?,
        }
        // SAFETY: `Sock` owns its descriptor, keeps it open for as long as it lives, and
        // `as_raw_fd` always returns that same descriptor.
        let fd = unsafe {
            AsyncFd::register_with_interest(sock, Interest::READABLE | Interest::WRITABLE)?
        };
        Ok(Stream(fd))
    }

    /// Connects to a backend. Hostnames are resolved here, asynchronously and on every
    /// (re)connect, so a server that moves is followed (twemproxy resolves with a blocking call
    /// inside its only event loop).
    pub async fn connect(addr: &ServerAddr) -> io::Result<Stream> {
        match addr {
            ServerAddr::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::Other || e.raw_os_error().is_none() {
                            // getaddrinfo failures: report them the way twemproxy does.
                            io::Error::new(io::ErrorKind::HostUnreachable, "Host is down")
                        } else {
                            e
                        }
                    })?;
                Stream::new(Sock::Tcp(stream.into_std()?))
            }
            ServerAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Stream::new(Sock::Unix(stream.into_std()?))
            }
        }
    }

    /// Waits until the socket is readable (when `read`) or writable (when `write`). Asking only
    /// for what the caller will act on matters: readiness it ignores would wake it in a loop.
    ///
    /// Built on `poll_read_ready`/`poll_write_ready`, which keep one waker per direction,
    /// rather than on `AsyncFd::ready`, whose future joins and leaves a waiter list on every
    /// turn of the caller's loop (a measurable share of a request's instructions).
    pub async fn ready(&self, read: bool, write: bool) -> io::Result<Readiness<'_>> {
        std::future::poll_fn(|cx| {
            if read {
                if let Poll::Ready(guard) = self.0.poll_read_ready(cx) {
                    return Poll::Ready(guard.map(Readiness));
                }
            }
            if write {
                if let Poll::Ready(guard) = self.0.poll_write_ready(cx) {
                    return Poll::Ready(guard.map(Readiness));
                }
            }
            Poll::Pending
        })
        .await
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.0.readable().await.map(|_| ())
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.0.writable().await.map(|_| ())
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_io(Interest::WRITABLE, |s| s.send(buf))
    }

    /// Reads what the socket has now into `buf`'s spare capacity (reserve first).
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        self.0
            .try_io(Interest::READABLE, |s| s.recv_into(buf).map(|(n, _)| n))
    }
}

impl Readiness<'_> {
    pub fn ready(&self) -> Ready {
        self.0.ready()
    }

    pub fn is_readable(&self) -> bool {
        let r = self.0.ready();
        r.is_readable() || r.is_read_closed()
    }

    /// Reads once into `buf`'s spare capacity (reserve first). A short read means the socket
    /// is drained, so read readiness is cleared without another system call; `Ok(0)` is end of
    /// stream; `WouldBlock` means nothing was there.
    pub fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.0.get_inner().recv_into(buf) {
            Ok((n, full)) => {
                if !full && n > 0 {
                    self.0.clear_ready_matching(Ready::READABLE);
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.0.clear_ready_matching(Ready::READABLE);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
