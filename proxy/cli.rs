//! Command line, compatible with nutcracker's flags so that existing unit files and scripts
//! keep working; shardproxy's own additions are long options only.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Sharding proxy for memcached and Redis, a drop-in replacement for twemproxy (nutcracker).
#[derive(Parser, Debug, Clone)]
#[command(name = "shardproxy", disable_version_flag = true, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (nutcracker.yml format).
    #[arg(
        short = 'c',
        long = "conf-file",
        value_name = "FILE",
        default_value = "conf/nutcracker.yml"
    )]
    pub conf_file: PathBuf,

    /// Check the configuration file, print every problem with its pool and key, and exit
    /// (status 0 if valid, 1 if not). A running proxy is not touched.
    #[arg(short = 't', long = "test-conf")]
    pub test_conf: bool,

    /// Log level as in nutcracker: 0-3 errors only, 4 warnings, 5-6 notices (default), 7 debug,
    /// 8-11 trace. RUST_LOG, when set, takes precedence. SIGTTIN/SIGTTOU raise/lower it by one.
    #[arg(short = 'v', long = "verbose", value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(0..=11))]
    pub verbose: u8,

    /// Log file (default: standard error), reopened by name on SIGHUP (for logrotate).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Port of the nutcracker-compatible stats server (one JSON document per connection);
    /// 0 turns it off.
    #[arg(
        short = 's',
        long = "stats-port",
        value_name = "PORT",
        default_value_t = 22222
    )]
    pub stats_port: u16,

    /// Address of the stats server.
    #[arg(
        short = 'a',
        long = "stats-addr",
        value_name = "ADDR",
        default_value = "0.0.0.0"
    )]
    pub stats_addr: String,

    /// Stats aggregation interval in milliseconds (accepted for compatibility: shardproxy's
    /// counters are always live).
    #[arg(
        short = 'i',
        long = "stats-interval",
        value_name = "MS",
        default_value_t = 30000
    )]
    pub stats_interval: u64,

    /// Write the process id to this file (removed on exit).
    #[arg(short = 'p', long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Accepted for compatibility and ignored: shardproxy stays in the foreground; run it under
    /// systemd or a container runtime (see deploy/).
    #[arg(short = 'd', long = "daemonize")]
    pub daemonize: bool,

    /// Accepted for compatibility and ignored: shardproxy sizes its buffers per connection and
    /// bounds keys and values by protocol limits instead.
    #[arg(short = 'm', long = "mbuf-size", value_name = "N")]
    pub mbuf_size: Option<usize>,

    /// Print version and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,

    /// Seconds shutdown (SIGTERM, SIGINT) waits for accepted requests to be answered.
    #[arg(long = "drain-timeout", value_name = "SECS", default_value_t = 10)]
    pub drain_timeout: u64,

    /// Milliseconds between checks of the configuration file for changes (reloaded when its
    /// content changes, as on SIGHUP); 0 turns watching off.
    #[arg(long = "watch-interval", value_name = "MS", default_value_t = 1000)]
    pub watch_interval: u64,

    /// Worker threads (default: the CPUs this process may run on).
    #[arg(long = "threads", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Where Prometheus's GET /metrics and GET /health are served: "stats" (the stats port,
    /// -s: one admin port per instance; an HTTP GET there gets HTTP, anything else the stats
    /// JSON), HOST:PORT (a listener of its own), or "off" (which also stops per-request latency
    /// recording; so does "stats" with -s 0).
    #[arg(long = "metrics-addr", value_name = "stats|HOST:PORT|off", default_value = "stats",
          value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
}

/// Where `/metrics` is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    Off,
    /// On the stats port, beside the stats JSON.
    StatsPort,
    Addr(SocketAddr),
}

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    match s {
        "off" => Ok(MetricsAddr::Off),
        "stats" => Ok(MetricsAddr::StatsPort),
        _ => s
            .parse()
            .map(MetricsAddr::Addr)
            .map_err(|e| format!("expected stats, HOST:PORT or off: {e}")),
    }
}

impl Cli {
    /// Worker threads to start: the flag, else the CPUs in this process's affinity mask (so
    /// `taskset -c 1 shardproxy` runs one worker, not one per machine CPU).
    pub fn worker_threads(&self) -> usize {
        self.threads.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// The tracing filter directive for `-v`.
    pub fn log_filter(&self) -> &'static str {
        crate::logging::filter_for(self.verbose)
    }
}
