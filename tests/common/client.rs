//! [`RawClient`]: a blocking TCP client for byte-exact assertions on the wire.
//!
//! Client libraries hide exactly what a proxy must get right (framing, error lines, pipelined
//! order, when a connection is closed), so protocol tests talk raw bytes through this.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Bytes as escaped ASCII (`VALUE k 0 1\r\n`), for readable assertion messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// A RESP command: `["GET", "k"]` becomes `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`.
pub fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Length of the first complete RESP2 reply in `buf`, or `None` if more bytes are needed.
/// Lets tests read exactly one reply even when replies are pipelined back to back.
pub fn resp_frame_len(buf: &[u8]) -> Option<usize> {
    let cr = buf.windows(2).position(|w| w == b"\r\n")?;
    let after = cr + 2;
    let count = || -> i64 {
        let s = std::str::from_utf8(&buf[1..cr]).unwrap_or("");
        s.parse()
            .unwrap_or_else(|_| panic!("malformed RESP header: {}", show(&buf[..after])))
    };
    match buf[0] {
        b'$' => match count() {
            n if n < 0 => Some(after),
            n => Some(after + n as usize + 2).filter(|&end| buf.len() >= end),
        },
        b'*' => {
            let mut pos = after;
            for _ in 0..count().max(0) {
                pos += resp_frame_len(&buf[pos..])?;
            }
            Some(pos)
        }
        _ => Some(after), // +simple, -error, :integer (and anything else): one line
    }
}

/// A connection to `addr`. Bytes read past what a call asked for are kept for the next call,
/// so pipelined replies can be read one at a time. Every read waits at most the timeout
/// (5 s by default) and then panics with what arrived, so a hung proxy fails the test
/// instead of hanging CI.
pub struct RawClient {
    stream: TcpStream,
    pending: Vec<u8>,
    addr: String,
    timeout: Duration,
}

impl RawClient {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to `addr` (`host:port`), panicking if nothing accepts.
    pub fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).ok();
        let addr = addr.to_string();
        let mut c = RawClient {
            stream,
            pending: Vec::new(),
            addr,
            timeout: Self::DEFAULT_TIMEOUT,
        };
        c.set_timeout(Self::DEFAULT_TIMEOUT);
        c
    }

    /// Connects to `127.0.0.1:port`.
    pub fn connect_port(port: u16) -> RawClient {
        Self::connect(&format!("127.0.0.1:{port}"))
    }

    /// Sets the read and write timeout used by every later call.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
        self.stream
            .set_write_timeout(Some(timeout))
            .expect("set_write_timeout");
    }

    /// The underlying socket, for what this type does not cover.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all of `bytes`, panicking on error.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes) {
            panic!("send to {}: {e}", self.addr);
        }
    }

    /// Writes all of `bytes`, returning the error: for tests where the peer may have closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes the connection (sends FIN) while still allowing reads.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads once more into `pending`; returns how many bytes came (0 means EOF).
    fn fill(&mut self, wanted: &str) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!(
                    "reading {wanted} from {}: {e}; received so far: \"{}\"",
                    self.addr,
                    show(&self.pending)
                ),
            }
        }
    }

    /// Keeps reading until `done(pending)` says how many bytes form the answer, then takes them.
    fn read_frame(&mut self, wanted: &str, done: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
        loop {
            if let Some(n) = done(&self.pending) {
                return self.pending.drain(..n).collect();
            }
            if self.fill(wanted) == 0 {
                panic!(
                    "{} closed the connection while we waited for {wanted}; received: \"{}\"",
                    self.addr,
                    show(&self.pending)
                );
            }
        }
    }

    /// Exactly `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        self.read_frame(&format!("{n} bytes"), |p| (p.len() >= n).then_some(n))
    }

    /// One line, up to and including the first `\r\n`.
    pub fn read_line(&mut self) -> Vec<u8> {
        self.read_frame("a line", |p| {
            p.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
        })
    }

    /// Everything received until the accumulated bytes end with `terminator` (e.g.
    /// `b"END\r\n"`). A value that itself ends with the terminator can stop this early: use
    /// [`read_exact_bytes`](Self::read_exact_bytes) when the reply length is known.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let wanted = format!("a reply ending in \"{}\"", show(terminator));
        self.read_frame(&wanted, |p| p.ends_with(terminator).then_some(p.len()))
    }

    /// Exactly one complete RESP reply (nested arrays included).
    pub fn read_resp(&mut self) -> Vec<u8> {
        self.read_frame("a RESP reply", resp_frame_len)
    }

    /// Sends `request` and asserts that the next `expected.len()` bytes are `expected`.
    pub fn expect(&mut self, request: &[u8], expected: &[u8]) {
        self.send(request);
        let got = self.read_exact_bytes(expected.len());
        if got != expected {
            let shown = show(request);
            let cut: String = shown.chars().take(300).collect();
            let more = if shown.len() > cut.len() { "..." } else { "" };
            let (got, want) = (show(&got), show(expected));
            let (got, want): (String, String) = (
                got.chars().take(2000).collect(),
                want.chars().take(2000).collect(),
            );
            panic!("reply to \"{cut}{more}\"\n  got: \"{got}\"\n want: \"{want}\"");
        }
    }

    /// True if the peer closes (or resets) the connection within the timeout; false if data
    /// arrives (it is kept for the next read) or the timeout passes with the connection open.
    pub fn is_closed(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 4096];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(0) => true,
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
                Err(_) => true, // reset, aborted: closed as far as a client can tell
            };
        }
    }

    /// [`is_closed`](Self::is_closed) with its own timeout, e.g. a short one when the
    /// connection is expected to stay open.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
        let closed = self.is_closed();
        self.stream
            .set_read_timeout(Some(self.timeout))
            .expect("set_read_timeout");
        closed
    }
}
