//! RESP2 encoders for the replies the proxy writes itself and the requests it builds when it
//! splits a multi-key command. They append to any byte buffer without allocating.

use bytes::BufMut;

fn put_num(dst: &mut impl BufMut, n: impl itoa::Integer) {
    let mut buf = itoa::Buffer::new();
    dst.put_slice(buf.format(n).as_bytes());
}

/// `*<n>\r\n`
pub fn array_header(dst: &mut impl BufMut, n: usize) {
    dst.put_u8(b'*');
    put_num(dst, n);
    dst.put_slice(b"\r\n");
}

/// `$<len>\r\n<data>\r\n`
pub fn bulk(dst: &mut impl BufMut, data: &[u8]) {
    dst.put_u8(b'$');
    put_num(dst, data.len());
    dst.put_slice(b"\r\n");
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// `:<n>\r\n`
pub fn integer(dst: &mut impl BufMut, n: i64) {
    dst.put_u8(b':');
    put_num(dst, n);
    dst.put_slice(b"\r\n");
}

/// `-<message>\r\n`; newlines in the message are replaced, as Redis does, so a message can
/// never break framing.
pub fn error(dst: &mut impl BufMut, message: &str) {
    dst.put_u8(b'-');
    for b in message.bytes() {
        dst.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    dst.put_slice(b"\r\n");
}

/// `+<status>\r\n`
pub fn status(dst: &mut impl BufMut, s: &str) {
    dst.put_u8(b'+');
    dst.put_slice(s.as_bytes());
    dst.put_slice(b"\r\n");
}

/// `$-1\r\n`
pub fn nil(dst: &mut impl BufMut) {
    dst.put_slice(b"$-1\r\n");
}

/// A request: an array of bulk strings.
pub fn command<'a>(dst: &mut impl BufMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    array_header(dst, args.len());
    for a in args {
        bulk(dst, a);
    }
}
