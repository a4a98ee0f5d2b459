//! Sockets: listeners with the socket options a pool asks for, and (in [`stream`]) one stream
//! type for TCP and unix-domain connections on both sides of the proxy (twemproxy accepts
//! either for `listen` and for `servers`).

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod stream;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

pub use stream::{Readiness, Sock, Stream};

use crate::config::ListenAddr;

/// A bound listener for one pool.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// What the acceptor hands a worker: the accepted socket, detached from the acceptor's reactor.
pub enum Accepted {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Accepted {
    /// Registers the socket with the calling thread's reactor.
    pub fn into_stream(self) -> io::Result<Stream> {
        match self {
            Accepted::Tcp(s) => Stream::new(Sock::Tcp(s)),
            Accepted::Unix(s) => Stream::new(Sock::Unix(s)),
        }
    }
}

/// Socket options a pool asks for on its listener and accepted clients.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    pub backlog: u32,
    pub reuseport: bool,
    pub tcpkeepalive: bool,
}

impl Listener {
    /// Binds `addr` (resolving a hostname once, as twemproxy does at startup).
    pub async fn bind(addr: &ListenAddr, opts: ListenOptions) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp { host, port } => {
                let sa: SocketAddr = tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing")
                    })?;
                let socket =
                    Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))?;
                socket.set_reuse_address(true)?;
                if opts.reuseport {
                    socket.set_reuse_port(true)?;
                }
                socket.set_nonblocking(true)?;
                socket.bind(&sa.into())?;
                socket.listen(opts.backlog.min(i32::MAX as u32) as i32)?;
                Ok(Listener::Tcp(TcpListener::from_std(socket.into())?))
            }
            ListenAddr::Unix { path, mode } => {
                remove_stale_socket(path)?;
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                socket.set_nonblocking(true)?;
                socket.bind(&socket2::SockAddr::unix(path)?)?;
                socket.listen(opts.backlog.min(i32::MAX as u32) as i32)?;
                if let Some(mode) = mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
                }
                Ok(Listener::Unix(UnixListener::from_std(socket.into())?))
            }
        }
    }

    /// The bound address, for logs (and for tests that bind port 0).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }

    pub async fn accept(&self, opts: ListenOptions) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                if opts.tcpkeepalive {
                    SockRef::from(&s).set_keepalive(true)?;
                }
                Ok(Accepted::Tcp(s.into_std()?))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok(Accepted::Unix(s.into_std()?))
            }
        }
    }
}

/// A unix socket left behind by a previous run would make bind fail; remove it, but never
/// remove anything that is not a socket.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "listen path exists and is not a socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
