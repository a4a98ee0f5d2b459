//! [`Proxy`]: the `shardproxy` binary under test, run as a child process.
//!
//! Running the real binary (not the library in-process) tests what operators run: argument
//! parsing, config loading, signals, exit codes and logs included.

use super::{accepts, tcp_listening, unix_listening, wait_until, TempDir};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long the proxy may take to listen on every configured address.
const STARTUP: Duration = Duration::from_secs(10);

/// Defaults that keep parallel proxies from colliding on fixed ports (stats, metrics) and
/// use both cores; a flag given in `extra_args` replaces its default.
const DEFAULT_ARGS: [(&str, &str); 3] = [
    ("--threads", "2"),
    ("--stats-port", "0"),
    ("--metrics-addr", "off"),
];

/// A running proxy. Its config file, stdout and stderr live in `dir`; killed on drop.
pub struct Proxy {
    child: Option<Child>,
    pub dir: TempDir,
    config: PathBuf,
}

impl Proxy {
    /// Writes `yaml` to a fresh temp dir and starts the proxy on it.
    pub fn start(yaml: &str) -> Proxy {
        Self::start_with(yaml, &[])
    }

    /// Like [`start`](Self::start), with more command-line arguments. Returns once the proxy
    /// listens on every `listen:` address in `yaml`; panics with the proxy's stderr if it
    /// exits first or is not listening within 10 s.
    pub fn start_with(yaml: &str, extra_args: &[&str]) -> Proxy {
        Self::spawn(yaml, extra_args, None)
    }

    /// Like [`start_with`](Self::start_with), with the proxy's open-file limit
    /// (`RLIMIT_NOFILE`, soft and hard) set to `nofile`, so a test can exhaust its file
    /// descriptors with a few dozen clients.
    pub fn start_with_fd_limit(yaml: &str, extra_args: &[&str], nofile: u64) -> Proxy {
        Self::spawn(yaml, extra_args, Some(nofile))
    }

    fn spawn(yaml: &str, extra_args: &[&str], nofile: Option<u64>) -> Proxy {
        let dir = TempDir::new("shardproxy");
        let config = dir.join("shardproxy.yml");
        std::fs::write(&config, yaml).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardproxy"));
        cmd.arg("-c").arg(&config);
        for (flag, value) in DEFAULT_ARGS {
            let overridden = extra_args.iter().any(|a| {
                a.strip_prefix(flag)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
            });
            if !overridden {
                cmd.args([flag, value]);
            }
        }
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe,
            // allocates nothing and only reads `limit`, a plain value moved into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let stdout = File::create(dir.join("stdout.log")).expect("create stdout.log");
        let stderr = File::create(dir.join("stderr.log")).expect("create stderr.log");
        let child = cmd
            .args(extra_args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn shardproxy");
        let mut proxy = Proxy {
            child: Some(child),
            dir,
            config,
        };

        let listens = listen_addrs(yaml);
        let mut exited = None;
        let up = wait_until(STARTUP, || {
            exited = proxy
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            exited.is_some() || listens.iter().all(|l| listening(l))
        });
        if let Some(status) = exited {
            panic!(
                "shardproxy exited with {status} at startup; stderr:\n{}",
                proxy.stderr_log()
            );
        }
        if !up {
            panic!(
                "shardproxy not listening on {listens:?} within {STARTUP:?}; stderr:\n{}",
                proxy.stderr_log()
            );
        }
        proxy
    }

    /// The config file the proxy was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file atomically (write, then rename), so a reload triggered by a
    /// signal or a file watch never sees half a file.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.join("shardproxy.yml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("proxy already exited").id() as i32
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`, `libc::SIGTERM`) to the proxy.
    pub fn send_signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the proxy to exit (after a signal, say); `None` if it is
    /// still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            status.is_some()
        });
        status
    }

    /// The proxy's resident memory in KiB (`VmRSS` of /proc/<pid>/status), for tests that
    /// check its memory stays bounded under hostile input.
    pub fn rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{path} has no numeric VmRSS"))
    }

    /// Everything the proxy wrote to stderr (its log) so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Everything the proxy wrote to stdout so far.
    pub fn stdout_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `listen:` values of a block-style YAML config, in order: `host:port` for TCP
/// (unbracketed IPv6 such as `::1:22121` comes back bracketed, ready to connect to) and
/// `/path` for unix sockets (the permission suffix dropped). A simple line scan, which is
/// enough for the configs tests write; flow-style YAML is not seen.
pub fn listen_addrs(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|line| line.trim_start().strip_prefix("listen:"))
        .filter_map(|value| value.split_whitespace().next())
        .map(|v| v.trim_matches(|c| c == '"' || c == '\''))
        .map(|v| match v.rsplit_once(':') {
            Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{port}")
            }
            _ => v.to_string(),
        })
        .collect()
}

/// True if the proxy listens on `listen` (as returned by [`listen_addrs`]). Checked without
/// connecting, so start-up leaves no connection behind in the proxy's limits or stats.
fn listening(listen: &str) -> bool {
    if listen.starts_with('/') {
        return unix_listening(listen);
    }
    match listen
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
    {
        Some(port) => tcp_listening(port),
        None => accepts(listen),
    }
}
