//! memcached's binary protocol, only as far as refusing it: the proxy speaks the text protocol
//! alone, and a binary client that got no reply (the connection just closing) waits forever
//! (memjs does). Each binary request is answered with the error response memcached itself
//! sends for an opcode it does not know, and the session then closes the connection.

use bytes::{BufMut, Bytes, BytesMut};

/// First byte of every binary request.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every binary response.
const RESPONSE_MAGIC: u8 = 0x81;
/// Header length of binary requests and responses.
pub const HEADER_LEN: usize = 24;
/// memcached's `PROTOCOL_BINARY_RESPONSE_UNKNOWN_COMMAND`.
const STATUS_UNKNOWN_COMMAND: u16 = 0x0081;
/// The body memcached sends with that status (`write_bin_error`).
const UNKNOWN_COMMAND_TEXT: &[u8] = b"Unknown command";

/// The `Unknown command` response to the binary request at the start of `buf`, echoing its
/// opcode and opaque as memcached does, or `None` until its 24-byte header has arrived (the
/// opaque is in bytes 12..16; a client that never sends them is reaped by `client_timeout`).
pub fn unknown_command(buf: &[u8]) -> Option<Bytes> {
    let header = buf.get(..HEADER_LEN)?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + UNKNOWN_COMMAND_TEXT.len());
    out.put_u8(RESPONSE_MAGIC);
    out.put_u8(header[1]); // opcode
    out.put_u16(0); // key length
    out.put_u8(0); // extras length
    out.put_u8(0); // data type
    out.put_u16(STATUS_UNKNOWN_COMMAND);
    out.put_u32(UNKNOWN_COMMAND_TEXT.len() as u32); // total body length
    out.put_slice(&header[12..16]); // opaque
    out.put_u64(0); // cas
    out.put_slice(UNKNOWN_COMMAND_TEXT);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_opcode_and_opaque_after_a_whole_header() {
        let mut get = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        get.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(unknown_command(&get), None);
        get.extend_from_slice(&[0; 8]);
        let reply = unknown_command(&get).unwrap();
        assert_eq!(&reply[..4], &[0x81, 0x00, 0, 0]);
        assert_eq!(&reply[6..8], &[0x00, 0x81]);
        assert_eq!(&reply[8..12], &[0, 0, 0, 15]);
        assert_eq!(&reply[12..16], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&reply[24..], b"Unknown command");
    }
}
