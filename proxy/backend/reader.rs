//! Reading replies off a backend connection: each complete reply is framed by what its
//! request expects and handed to that request, in order; a reply that grows past what its
//! client may be owed is answered at once and dropped as it streams in, so no reply is ever
//! buffered whole beyond `client_output_limit`.

use std::io;

use bytes::{Buf, BytesMut};

use super::conn::{BackendConn, READ_CHUNK};
use super::{BackendError, Skip};
use crate::net::Readiness;

/// Read buffer headroom while a reply too large for its client is dropped.
const SKIP_CHUNK: usize = 256 * 1024;
/// An empty read buffer larger than this is freed (a large reply went through it), and the
/// bytes after a reply larger than this move to a buffer of their own.
const SHRINK_ABOVE: usize = 1024 * 1024;

impl BackendConn {
    pub(super) fn read(
        &self,
        ready: &mut Readiness<'_>,
        rbuf: &mut BytesMut,
        skipping: &mut Option<Skip>,
    ) -> Result<(), BackendError> {
        loop {
            if rbuf.is_empty() && rbuf.capacity() > SHRINK_ABOVE {
                // A large reply passed through: give its buffer back.
                *rbuf = BytesMut::new();
            }
            // Large reads while a reply is dropped: fewer system calls per byte thrown away.
            let chunk = if skipping.is_some() {
                SKIP_CHUNK
            } else {
                READ_CHUNK
            };
            if rbuf.capacity() - rbuf.len() < chunk / 4 {
                rbuf.reserve(chunk);
            }
            match ready.read(rbuf) {
                Ok(0) => {
                    self.stats.server_eof.inc();
                    self.deliver_complete(rbuf, skipping)?;
                    return Err(BackendError::Closed);
                }
                Ok(n) => {
                    self.stats.response_bytes.add(n as u64);
                    self.deliver_complete(rbuf, skipping)?;
                    if !ready.is_readable() {
                        return Ok(()); // drained: readiness already cleared
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(BackendError::io(&e)),
            }
        }
    }

    /// Frames every complete reply in `rbuf` and hands each to its request. A reply that
    /// grows past `max_reply` before it is complete is answered `ReplyTooLarge` at once and
    /// then dropped as it streams in (`skipping`), so no reply is ever buffered whole beyond
    /// what one client may be owed.
    fn deliver_complete(
        &self,
        rbuf: &mut BytesMut,
        skipping: &mut Option<Skip>,
    ) -> Result<(), BackendError> {
        while !rbuf.is_empty() {
            if let Some(skip) = skipping {
                let (used, done) = skip.skip(rbuf)?;
                rbuf.advance(used);
                if !done {
                    return Ok(());
                }
                *skipping = None;
                continue;
            }
            let framing = match self.state.borrow().pending.front() {
                Some(p) => p.framing,
                // Bytes nobody asked for (an admission error at connect, or a desynced
                // server): forwarding them would answer someone else's request.
                None => return Err(BackendError::Protocol("unsolicited reply")),
            };
            let reply = match framing.frame(rbuf, self.settings.max_value)? {
                Some(len) if len > SHRINK_ABOVE => {
                    // The rest moves to a buffer of its own, so that small replies split off
                    // later do not keep this large allocation alive.
                    let rest = BytesMut::from(&rbuf[len..]);
                    rbuf.truncate(len);
                    Ok(std::mem::replace(rbuf, rest).freeze())
                }
                Some(len) => Ok(rbuf.split_to(len).freeze()),
                None if rbuf.len() > self.settings.max_reply => match framing.skipper() {
                    Some(skip) => {
                        *skipping = Some(skip);
                        Err(BackendError::ReplyTooLarge)
                    }
                    None => return Ok(()),
                },
                None => return Ok(()),
            };
            let done = {
                let mut st = self.state.borrow_mut();
                st.expired = st.expired.saturating_sub(1);
                let done = st.pending.pop_front();
                st.wake_drained();
                done
            };
            if let Some(p) = done {
                if let Some(sent) = p.sent {
                    self.stats.latency.observe(sent.elapsed().as_secs_f64());
                }
                self.stats.responses.inc();
                self.settings.health.success();
                self.stats.in_flight.dec();
                p.target.deliver(reply);
            }
        }
        Ok(())
    }
}
