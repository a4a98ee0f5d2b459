//! Command line: the flags and the workload syntax.

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtoArg {
    Memcache,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Gets with this percentage, sets otherwise.
    Mix(u32),
    /// Multi-gets of this many keys.
    MGet(usize),
    Ping,
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    let pct = |v: &str| match v.parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("'{v}' is not a percentage (0-100)")),
    };
    match s.split_once(':') {
        None if s == "get" => Ok(Workload::Mix(100)),
        None if s == "set" => Ok(Workload::Mix(0)),
        None if s == "ping" => Ok(Workload::Ping),
        Some(("get-set", p)) => Ok(Workload::Mix(pct(p)?)),
        Some(("mget", n)) => match n.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(Workload::MGet(n)),
            _ => Err(format!("mget:N needs N in 1..=10000, not '{n}'")),
        },
        _ => Err(format!(
            "unknown workload '{s}': get-set:PCT, get, set, mget:N or ping"
        )),
    }
}

/// Closed-loop load generator for memcached and Redis; prints one line of JSON.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Protocol: memcached text protocol or RESP (Redis).
    #[arg(long, value_enum)]
    pub proto: ProtoArg,
    /// Server or proxy to load, HOST:PORT.
    #[arg(long)]
    pub addr: String,
    /// Client connections.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection (1: no pipelining).
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,
    /// Replies to measure in total (default 100000 unless --duration is given).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Stop issuing requests after this many seconds (in-flight ones still complete).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Keyspace size: keys key:0 .. key:<K-1>, chosen uniformly at random.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u32,
    /// Bytes per value stored by sets.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// get-set:PCT (PCT% gets, the rest sets), get, set, mget:N (N keys per request), ping
    /// (memcached `version`, Redis `PING`).
    #[arg(long, default_value = "get-set:90", value_parser = parse_workload)]
    pub workload: Workload,
    /// Store every key once, on the same connections, before measuring.
    #[arg(long)]
    pub prefill: bool,
    /// Threads, each running its share of the connections on its own tokio runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Abort (exit 3) when no reply arrives for this many seconds while requests are in flight.
    #[arg(long, default_value_t = 10.0)]
    pub stall_timeout: f64,
    /// Abort (exit 3) when the whole run, prefill included, takes longer than this (seconds).
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Open this many idle connections instead of generating load (memory tests).
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Seed of the key choice (each connection derives its own stream from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
