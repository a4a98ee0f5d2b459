//! twemproxy's signal conventions on the acceptor thread: SIGHUP reopens the `-o` log file
//! (logrotate without `copytruncate`) and reloads, SIGUSR1 reloads, SIGUSR2 is ignored (its
//! default action would kill the proxy), SIGTTIN/SIGTTOU raise/lower the log level by one
//! nutcracker level. SIGTERM and SIGINT (shutdown) are the caller's.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a received signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// SIGHUP: reopen the log file, then reload.
    Hangup,
    /// SIGUSR1.
    Reload,
    /// SIGUSR2: received only so that it does not kill the process.
    Ignored,
    /// SIGTTIN (+1) or SIGTTOU (-1).
    LogLevel(i8),
}

pub(super) struct Signals {
    hup: Option<Signal>,
    usr1: Option<Signal>,
    usr2: Option<Signal>,
    ttin: Option<Signal>,
    ttou: Option<Signal>,
}

impl Signals {
    /// Installs the handlers. One that cannot be installed (never expected on Linux) leaves
    /// that signal's default action, as before this process handled any.
    pub(super) fn install() -> Signals {
        let get = |raw: i32| signal(SignalKind::from_raw(raw)).ok();
        Signals {
            hup: get(libc::SIGHUP),
            usr1: get(libc::SIGUSR1),
            usr2: get(libc::SIGUSR2),
            ttin: get(libc::SIGTTIN),
            ttou: get(libc::SIGTTOU),
        }
    }

    /// The next signal received; pending forever if none can be.
    pub(super) async fn next(&mut self) -> Event {
        tokio::select! {
            () = recv(&mut self.hup) => Event::Hangup,
            () = recv(&mut self.usr1) => Event::Reload,
            () = recv(&mut self.usr2) => Event::Ignored,
            () = recv(&mut self.ttin) => Event::LogLevel(1),
            () = recv(&mut self.ttou) => Event::LogLevel(-1),
        }
    }
}

async fn recv(signal: &mut Option<Signal>) {
    if let Some(s) = signal {
        if s.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}
