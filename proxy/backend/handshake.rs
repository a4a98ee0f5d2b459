//! The requests a new backend connection sends before any client request (Redis `AUTH`,
//! `SELECT`): each reply is checked and none reaches a client.

use std::io;

use bytes::BytesMut;

use super::{BackendError, Framing, Handshake};
use crate::net::Stream;

/// Sends the handshake and checks that every reply is a success (not `-ERR`/`-WRONGPASS`).
pub(super) async fn handshake(stream: &Stream, h: &Handshake) -> Result<(), BackendError> {
    let mut sent = 0;
    while sent < h.bytes.len() {
        stream.writable().await.map_err(|e| BackendError::io(&e))?;
        match stream.try_write(&h.bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(BackendError::io(&e)),
        }
    }
    let mut buf = BytesMut::with_capacity(256);
    let mut done = 0;
    while done < h.replies {
        stream.readable().await.map_err(|e| BackendError::io(&e))?;
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return Err(BackendError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(BackendError::io(&e)),
        }
        while done < h.replies {
            let Some(len) = Framing::Resp.frame(&buf, 1 << 20)? else {
                break;
            };
            let reply = buf.split_to(len);
            if reply.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&reply[1..len - 2]).into_owned();
                return Err(BackendError::Handshake(text.into()));
            }
            done += 1;
        }
    }
    if !buf.is_empty() {
        return Err(BackendError::Protocol("unsolicited reply"));
    }
    Ok(())
}
