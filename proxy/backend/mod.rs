//! Backend servers: persistent connections shared by every client of a worker, requests
//! pipelined onto them and replies matched in order.

mod batch;
mod conn;
mod handshake;
pub mod health;
mod reader;
pub mod sink;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

pub use batch::{congested_now, flush_deferred, take_congested};
pub use conn::{BackendConn, ConnSettings};
pub use health::{EjectPolicy, Health, HealthCtx};
pub use sink::{Outcome, ReplySink, Target};

use crate::config::ServerAddr;
use crate::protocol::{memcache, resp};
use crate::stats::ServerStats;

/// Why a backend request produced no reply. The text is what clients see after
/// `SERVER_ERROR ` or `-ERR `; the I/O wording matches twemproxy's `strerror` replies so that
/// existing alerting on them keeps working.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Io(Arc<str>),
    #[error("Connection timed out")]
    Timeout,
    #[error("backend queue full")]
    Overloaded,
    #[error("backend protocol error: {0}")]
    Protocol(&'static str),
    #[error("Connection closed by server")]
    Closed,
    /// The reply is larger than its client may be owed (`client_output_limit`): the backend
    /// connection reads it and drops it, and the client is disconnected.
    #[error("reply larger than client_output_limit")]
    ReplyTooLarge,
    /// A read that joined a multi-get whose reply was too large for that multi-get's client
    /// (coalescing): this read fails with an error reply, and its client stays connected.
    #[error("the read this one joined was dropped as too large; retry")]
    JoinedTooLarge,
    /// The connection handshake (AUTH, SELECT) was refused; the text is the server's.
    #[error("backend refused the connection setup: {0}")]
    Handshake(Arc<str>),
}

impl BackendError {
    /// The `kind` label this error is counted under (see [`crate::stats::kind`]).
    pub fn kind(&self) -> usize {
        match self {
            BackendError::Timeout => crate::stats::kind::TIMEOUT,
            _ => crate::stats::kind::CONNECTION,
        }
    }

    /// The `strerror`-style text of an I/O error, without Rust's "(os error N)" suffix.
    pub fn io(err: &io::Error) -> BackendError {
        let text = err.to_string();
        let text = match text.find(" (os error") {
            Some(i) => &text[..i],
            None => &text,
        };
        BackendError::Io(Arc::from(text))
    }
}

/// How replies on a connection are framed. One variant per backend protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Memcache(memcache::Expect),
    Resp,
}

impl Framing {
    /// Length of the complete reply at the start of `buf`, if there is one.
    pub fn frame(self, buf: &[u8], max_value: usize) -> Result<Option<usize>, BackendError> {
        match self {
            Framing::Memcache(expect) => memcache::frame_reply(buf, expect, max_value)
                .map_err(|e| BackendError::Protocol(e.0)),
            Framing::Resp => {
                resp::frame_reply(buf, max_value).map_err(|e| BackendError::Protocol(e.0))
            }
        }
    }
}

/// A reply being read and dropped because it is too large for its client.
pub(crate) enum Skip {
    Memcache(memcache::response::SkipValues),
    MemcacheStats(memcache::response::SkipStats),
    Resp(resp::reply::SkipReply),
}

impl Framing {
    /// A skipper for a reply of this framing that does not fit in memory; None for replies
    /// that are one short line (they are never too large). Multi-line `stats` replies have
    /// one: a `stats cachedump` can exceed a small `client_output_limit`.
    pub(crate) fn skipper(self) -> Option<Skip> {
        match self {
            Framing::Memcache(memcache::Expect::Values) => Some(Skip::Memcache(Default::default())),
            Framing::Memcache(memcache::Expect::Stats) => {
                Some(Skip::MemcacheStats(Default::default()))
            }
            Framing::Memcache(_) => None,
            Framing::Resp => Some(Skip::Resp(Default::default())),
        }
    }
}

impl Skip {
    /// Drops what it can of `buf`: the bytes used, and whether the reply ended.
    pub(crate) fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), BackendError> {
        match self {
            Skip::Memcache(s) => s.skip(buf).map_err(|e| BackendError::Protocol(e.0)),
            Skip::MemcacheStats(s) => s.skip(buf).map_err(|e| BackendError::Protocol(e.0)),
            Skip::Resp(s) => s.skip(buf).map_err(|e| BackendError::Protocol(e.0)),
        }
    }
}

/// Requests a new connection sends before any client request (Redis `AUTH`, `SELECT`), each
/// of which must succeed, or the connection is closed and its requests fail with the reason.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    pub bytes: bytes::Bytes,
    pub replies: usize,
}

/// Everything that shapes a server's connections. Two equal identities can share connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdentity {
    pub name: String,
    pub addr: ServerAddr,
    pub connections: usize,
    pub timeout: Option<std::time::Duration>,
    pub handshake: Option<bytes::Bytes>,
    pub policy: EjectPolicy,
    pub preconnect: bool,
    /// The pool's `client_output_limit`: connections drop replies larger than this.
    pub max_reply: usize,
}

/// One backend server as seen by one worker: up to `server_connections` connections, used
/// round-robin (twemproxy's policy).
pub struct Server {
    pub index: usize,
    /// What the connections were built for: a reload reuses the server (and its warm
    /// connections) only if this is unchanged.
    pub identity: ServerIdentity,
    conns: Vec<Rc<BackendConn>>,
    next: Cell<usize>,
}

impl Server {
    pub fn new(
        index: usize,
        identity: ServerIdentity,
        settings: ConnSettings,
        stats: Arc<ServerStats>,
    ) -> Server {
        let conns = (0..identity.connections.max(1))
            .map(|_| BackendConn::spawn(identity.addr.clone(), settings.clone(), stats.clone()))
            .collect();
        Server {
            index,
            identity,
            conns,
            next: Cell::new(0),
        }
    }

    /// The connection the next request goes to.
    pub fn conn(&self) -> &Rc<BackendConn> {
        let i = self.next.get();
        self.next
            .set(if i + 1 == self.conns.len() { 0 } else { i + 1 });
        &self.conns[i]
    }

    /// A reply from this server answered another request: every connection is closed and
    /// re-established (the one that carried it cannot be told apart from the session side).
    pub fn desynced(&self) {
        for conn in &self.conns {
            conn.desynced();
        }
    }

    /// Whether any connection still has requests queued or unanswered.
    pub fn busy(&self) -> bool {
        self.conns.iter().any(|c| c.busy())
    }
}

/// A server leaves with its last route table: its connections finish what is queued on them
/// and close.
impl Drop for Server {
    fn drop(&mut self) {
        for conn in &self.conns {
            conn.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply skipped from its first byte, whatever the point where its bytes are split
    /// between two reads, is consumed exactly, to its last byte and no further.
    fn skipped_exactly(framing: Framing, reply: &[u8]) {
        let next = b"NEXT";
        let stream = [reply, next].concat();
        for split in 0..=reply.len() {
            let mut skip = framing.skipper().expect("a reply that can be skipped");
            let (a, done) = skip.skip(&stream[..split]).unwrap();
            let (b, done) = if done {
                (0, true)
            } else {
                skip.skip(&stream[a..]).unwrap()
            };
            assert!(done, "split at {split}");
            assert_eq!(a + b, reply.len(), "split at {split}");
        }
    }

    #[test]
    fn replies_too_large_to_hold_are_skipped_as_they_stream() {
        let values = b"VALUE a 0 3\r\nabc\r\nVALUE b 1 0 9\r\n\r\nEND\r\n";
        skipped_exactly(Framing::Memcache(memcache::Expect::Values), values);
        let dump = b"ITEM a [1 b; 0 s]\r\nITEM b [9 b; 0 s]\r\nEND\r\n";
        skipped_exactly(Framing::Memcache(memcache::Expect::Stats), dump);
        let nested = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n+OK\r\n";
        skipped_exactly(Framing::Resp, nested);
        skipped_exactly(Framing::Resp, b"$-1\r\n");
        skipped_exactly(Framing::Resp, b"%1\r\n+k\r\n$1\r\nv\r\n");
    }
}
