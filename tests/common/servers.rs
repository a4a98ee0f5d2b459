//! Real `memcached` and `redis-server` processes for end-to-end tests.
//!
//! Each instance gets its own free loopback port and temp dir, so tests run in parallel and
//! never touch the system services on the default ports. Direct access (`raw`, `get_direct`,
//! `stat`, ...) bypasses the proxy, so a test can check which shard really holds a key.

use super::{find_program, free_port, resp_cmd, show, wait_until, RawClient, TempDir};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What `Memcached` and `Redis` share: one child process listening on `port`.
struct Backend {
    kind: &'static str,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Backend {
    /// Starts `program` with `args(port, dir)`. A port can be taken between `free_port` and
    /// the server's bind (by another test process); the server then exits, and we retry on a
    /// fresh port rather than fail the test.
    fn start(kind: &'static str, args: impl Fn(u16, &TempDir) -> Vec<String>) -> Backend {
        let program = find_program(kind);
        for attempt in 1..=3 {
            let port = free_port();
            let dir = TempDir::new(kind);
            let args = args(port, &dir);
            let mut b = Backend {
                kind,
                program: program.clone(),
                args,
                port,
                dir,
                child: None,
            };
            match b.spawn() {
                Ok(()) => return b,
                Err(why) if attempt < 3 => eprintln!("{kind} on port {port}: {why}; retrying"),
                Err(why) => panic!("{kind} on port {port}: {why}"),
            }
        }
        unreachable!()
    }

    /// Runs the process and waits up to 5 s until it listens on its port.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("server.log");
        let log = File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {:?}: {e}", self.program))?;
        let (addr, port) = (format!("127.0.0.1:{}", self.port), self.port);
        let mut exited = None;
        let up = wait_until(Duration::from_secs(5), || {
            exited = child.try_wait().ok().flatten();
            exited.is_some() || super::tcp_listening(port)
        });
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = exited {
            return Err(format!(
                "exited with {status} at startup; its output:\n{}",
                log()
            ));
        }
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "did not accept on {addr} within 5 s; its output:\n{}",
                log()
            ));
        }
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> i32 {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.kind));
        child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own live child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// SIGSTOP, then waits until every thread has stopped: kill(2) returns before the signal
    /// is delivered, and a thread still running could answer one more request.
    fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let all_stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|dir| {
                dir.flatten().all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the parenthesised command name.
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
                    })
                })
            })
        };
        while !all_stopped() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop",
                self.kind
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL also ends a SIGSTOPped process
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn()
            .unwrap_or_else(|why| panic!("restart {} on {port}: {why}", self.kind));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Process control shared by both servers; a macro keeps the two public types plain structs.
macro_rules! process_control {
    () => {
        /// `127.0.0.1:port`.
        pub fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// The server's process id.
        pub fn pid(&self) -> i32 {
            self.inner.pid()
        }

        /// SIGSTOP: the server keeps its sockets but answers nothing, like a hung host.
        pub fn pause(&self) {
            self.inner.stop();
        }

        /// SIGCONT after [`pause`](Self::pause).
        pub fn resume(&self) {
            self.inner.signal(libc::SIGCONT);
        }

        /// SIGKILL and reap: the port now refuses connections. Drop does this too.
        pub fn kill(&mut self) {
            self.inner.kill();
        }

        /// Starts the server again on the same port with the same arguments (data is lost).
        pub fn restart(&mut self) {
            self.inner.restart();
        }

        /// Everything the server wrote to stdout and stderr.
        pub fn log(&self) -> String {
            std::fs::read_to_string(self.inner.dir.join("server.log")).unwrap_or_default()
        }
    };
}

/// A `memcached` on a free loopback port: 1 thread, 64 MB, 1024 connections, no UDP.
pub struct Memcached {
    pub port: u16,
    inner: Backend,
}

impl Memcached {
    pub fn start() -> Memcached {
        Self::start_with(&[])
    }

    /// Starts with `extra` arguments after the defaults (memcached lets later flags win).
    pub fn start_with(extra: &[&str]) -> Memcached {
        let inner = Backend::start("memcached", |port, _dir| {
            let mut a: Vec<String> = ["-l", "127.0.0.1", "-U", "0", "-t", "1", "-m", "64"]
                .into_iter()
                .chain(["-c", "1024", "-p"])
                .map(String::from)
                .collect();
            a.push(port.to_string());
            // SAFETY: geteuid has no preconditions. memcached refuses to run as root without -u.
            if unsafe { libc::geteuid() } == 0 {
                a.extend(["-u".to_string(), "root".to_string()]);
            }
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        });
        Memcached {
            port: inner.port,
            inner,
        }
    }

    process_control!();

    /// Sends `request` on a fresh direct connection and returns everything received until it
    /// ends with `terminator` (e.g. `b"STORED\r\n"`, `b"END\r\n"`).
    pub fn raw(&self, request: &[u8], terminator: &[u8]) -> Vec<u8> {
        let mut c = RawClient::connect(&self.addr());
        c.send(request);
        c.read_until(terminator)
    }

    /// The value stored under `key`, read directly (length-aware, so any bytes are fine).
    pub fn get_direct(&self, key: &str) -> Option<Vec<u8>> {
        let mut c = RawClient::connect(&self.addr());
        c.send(format!("get {key}\r\n").as_bytes());
        let header = c.read_line();
        if header == b"END\r\n" {
            return None;
        }
        let text = String::from_utf8_lossy(&header);
        // memcached separates fields with spaces only: a key may hold tabs and other bytes.
        let len: usize = match text.trim_end().split(' ').collect::<Vec<_>>()[..] {
            ["VALUE", _, _, len] => len.parse().expect("VALUE length"),
            _ => panic!("unexpected reply to get {key}: \"{}\"", show(&header)),
        };
        let mut data = c.read_exact_bytes(len + 2);
        data.truncate(len);
        assert_eq!(c.read_line(), b"END\r\n", "get {key}: missing END");
        Some(data)
    }

    /// Stores `value` under `key` directly (flags 0, no expiry).
    pub fn set_direct(&self, key: &str, value: &[u8]) {
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(self.raw(&req, b"\r\n"), b"STORED\r\n", "set {key} directly");
    }

    /// A numeric field of `stats` (e.g. `cmd_get`, `curr_connections`, `curr_items`).
    pub fn stat(&self, name: &str) -> u64 {
        let mut c = RawClient::connect(&self.addr());
        c.send(b"stats\r\n");
        let mut found = None;
        loop {
            let line = String::from_utf8_lossy(&c.read_line())
                .trim_end()
                .to_string();
            if line == "END" {
                break;
            }
            if let ["STAT", key, value] = line.split_whitespace().collect::<Vec<_>>()[..] {
                if key == name {
                    found = value.parse().ok();
                }
            }
        }
        found.unwrap_or_else(|| panic!("memcached stats has no numeric `{name}`"))
    }

    /// `flush_all`: empties the cache.
    pub fn flush(&self) {
        assert_eq!(self.raw(b"flush_all\r\n", b"\r\n"), b"OK\r\n");
    }
}

/// A `redis-server` on a free loopback port: no persistence, no protected mode, its working
/// dir in its own temp dir. Pass `--requirepass PW` to `start_with` and the direct helpers
/// authenticate with it.
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    inner: Backend,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    /// Starts with `extra` arguments after the defaults (`--name value` pairs; later wins).
    pub fn start_with(extra: &[&str]) -> Redis {
        let inner = Backend::start("redis-server", |port, dir| {
            let port = port.to_string();
            let dir = dir.path().to_string_lossy().into_owned();
            let mut a: Vec<String> = ["--port", &port, "--bind", "127.0.0.1", "--save", ""]
                .into_iter()
                .chain([
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                    "--daemonize",
                    "no",
                ])
                .chain(["--dir", &dir, "--logfile", ""])
                .map(String::from)
                .collect();
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        });
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|s| s.to_string());
        Redis {
            port: inner.port,
            password,
            inner,
        }
    }

    process_control!();

    /// Sends `request` (RESP bytes) on a fresh direct connection, after AUTH if a password
    /// was configured, and returns exactly one RESP reply.
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut c = RawClient::connect(&self.addr());
        if let Some(pw) = &self.password {
            c.send(&resp_cmd(&[b"AUTH", pw.as_bytes()]));
            assert_eq!(c.read_resp(), b"+OK\r\n", "AUTH on direct connection");
        }
        c.send(request);
        c.read_resp()
    }

    /// [`raw`](Self::raw) of a command given as arguments: `cmd(&["SET", "k", "v"])`.
    pub fn cmd(&self, args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.raw(&resp_cmd(&args))
    }

    /// GET `key` directly: `None` for a nil reply.
    pub fn get_direct(&self, key: &str) -> Option<Vec<u8>> {
        let reply = self.cmd(&["GET", key]);
        if reply == b"$-1\r\n" {
            return None;
        }
        let body = reply.iter().position(|&b| b == b'\n').map(|i| i + 1);
        match (reply.first(), body) {
            (Some(b'$'), Some(start)) => Some(reply[start..reply.len() - 2].to_vec()),
            _ => panic!("unexpected reply to GET {key}: \"{}\"", show(&reply)),
        }
    }

    /// A field of `INFO everything` as text (e.g. `connected_clients`, `db0`), if present.
    pub fn info_field(&self, key: &str) -> Option<String> {
        let reply = self.cmd(&["INFO", "everything"]);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let found = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'));
        found.map(|v| v.trim_end().to_string())
    }

    /// A numeric INFO field (e.g. `total_commands_processed`, `connected_clients`).
    pub fn info_stat(&self, key: &str) -> u64 {
        let value = self.info_field(key);
        value
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("redis INFO has no numeric `{key}` (got {value:?})"))
    }

    /// FLUSHALL: empties every database.
    pub fn flush(&self) {
        assert_eq!(self.cmd(&["FLUSHALL"]), b"+OK\r\n");
    }
}
