//! memcached text protocol codec: client requests in, backend replies out, canonical request
//! encoding for forwarding. Pure functions over bytes; the session and backend modules own
//! the sockets.

pub mod binary;
mod number;
pub mod request;
pub mod response;
pub mod stats;
#[cfg(test)]
mod tests;

use bytes::{BufMut, BytesMut};

pub use request::{parse, parse_reusing, After, Command, Parsed, Reject, Request};
pub use response::{check_values, frame_reply, retrieval_keys, value_blocks, BadReply, Expect};
pub use stats::{PoolMerge, PoolStats};

/// Limits the client-side parser enforces. Defaults follow memcached's own where it has one.
#[derive(Clone, Debug)]
pub struct Limits {
    /// memcached's KEY_MAX_LENGTH.
    pub max_key_len: usize,
    /// Largest value forwarded (memcached's `-I`, 1 MiB by default). Larger values are
    /// refused and skipped by the proxy, as memcached itself would.
    pub item_size_max: u32,
    /// Longest command line other than retrievals (memcached closes such lines at 2048).
    pub max_line: usize,
    /// Longest retrieval line: memcached has no limit at all, which lets one client grow the
    /// server's memory without bound; 256 KiB still holds over 1000 keys of 250 bytes.
    pub max_get_line: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key_len: 250,
            item_size_max: 1024 * 1024,
            max_line: 2048,
            max_get_line: 256 * 1024,
        }
    }
}

impl Limits {
    pub fn with_item_size_max(item_size_max: u32) -> Limits {
        Limits {
            item_size_max,
            ..Limits::default()
        }
    }
}

/// What reply shape a command's forwarded request expects.
pub fn expect_for(cmd: Command) -> Expect {
    match cmd {
        Command::Get | Command::Gets | Command::Gat | Command::Gats => Expect::Values,
        Command::Set
        | Command::Add
        | Command::Replace
        | Command::Append
        | Command::Prepend
        | Command::Cas => Expect::Storage,
        Command::Delete => Expect::Delete,
        Command::Incr | Command::Decr => Expect::Arith,
        Command::Touch => Expect::Touch,
        Command::Version => Expect::Version,
        Command::FlushAll | Command::Verbosity | Command::Stats | Command::Quit => Expect::Ok,
    }
}

fn put_num(dst: &mut BytesMut, n: impl itoa::Integer) {
    let mut buf = itoa::Buffer::new();
    dst.put_slice(buf.format(n).as_bytes());
}

/// Writes the canonical form of a single-key request (everything but retrievals and the
/// pool-wide commands) as it is forwarded: single spaces, decimal numbers, and no `noreply`,
/// because the backend connection is shared and every request must be answered for replies to
/// stay matched (a noreply request that fails would otherwise answer out of turn).
pub fn encode_keyed(req: &Request, frame: &[u8], dst: &mut BytesMut) {
    let key = &frame[req.keys[0].clone()];
    dst.put_slice(req.cmd.verb().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(key);
    match req.cmd {
        c if c.is_storage() => {
            let data = &frame[req.data.clone()];
            dst.put_u8(b' ');
            put_num(dst, req.flags);
            dst.put_u8(b' ');
            put_num(dst, req.exptime);
            dst.put_u8(b' ');
            put_num(dst, data.len());
            if c == Command::Cas {
                dst.put_u8(b' ');
                put_num(dst, req.cas);
            }
            dst.put_slice(b"\r\n");
            dst.put_slice(data);
        }
        Command::Incr | Command::Decr => {
            dst.put_u8(b' ');
            put_num(dst, req.delta);
        }
        Command::Touch => {
            dst.put_u8(b' ');
            put_num(dst, req.exptime);
        }
        _ => {}
    }
    dst.put_slice(b"\r\n");
}

/// Writes a retrieval for some of a request's keys (one fragment of a multi-get).
pub fn encode_retrieval<'a>(
    cmd: Command,
    exptime: i64,
    keys: impl IntoIterator<Item = &'a [u8]>,
    dst: &mut BytesMut,
) {
    dst.put_slice(cmd.verb().as_bytes());
    if matches!(cmd, Command::Gat | Command::Gats) {
        dst.put_u8(b' ');
        put_num(dst, exptime);
    }
    for key in keys {
        dst.put_u8(b' ');
        dst.put_slice(key);
    }
    dst.put_slice(b"\r\n");
}

/// Writes `flush_all [delay]` without noreply, for every server of a pool.
pub fn encode_pool_command(req: &Request, dst: &mut BytesMut) {
    dst.put_slice(req.cmd.verb().as_bytes());
    if req.has_arg {
        dst.put_u8(b' ');
        put_num(dst, req.exptime);
    }
    dst.put_slice(b"\r\n");
}
