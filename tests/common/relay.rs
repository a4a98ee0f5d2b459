//! [`Relay`]: a loopback TCP relay between the proxy and a real backend that holds each chunk
//! of the backend's replies for a fixed delay. It stands in for the one fault a real server
//! cannot produce on demand: a slow reply that is still correct (a hot key whose backend read
//! takes 50 ms, for coalescing tests). Requests pass through immediately, in order.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Listens on a free loopback port and relays every connection to `127.0.0.1:target`.
/// Stops accepting when dropped; relayed connections end when either side closes.
pub struct Relay {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: u16, reply_delay: Duration) -> Relay {
        let port = super::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind relay");
        listener
            .set_nonblocking(true)
            .expect("nonblocking relay listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target)) {
                            pipe(client, server, reply_delay);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay { port, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (c2, s2) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    thread::spawn(move || copy(client, server, Duration::ZERO));
    thread::spawn(move || copy(s2, c2, delay));
}

fn copy(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
