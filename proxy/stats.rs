//! Counters the data path records, registered with Prometheus.
//!
//! Every labelled child (pool, server, command class, error kind) is resolved once, when a
//! pool's route table is built, and kept in [`PoolStats`] / [`ServerStats`]; recording on the
//! hot path is then a relaxed atomic add, never a label lookup. The same handles feed
//! `/metrics`, the nutcracker-compatible stats port and the memcached `stats` command, and
//! rebuilding a pool (a reload) resolves the same children again, so counters never reset.

use prometheus::core::{AtomicU64, GenericCounter};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A monotonically increasing count.
#[derive(Clone, Debug)]
pub struct Counter(GenericCounter<AtomicU64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.inc();
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down (connections open, requests queued).
#[derive(Clone, Debug)]
pub struct Gauge(IntGauge);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.inc();
    }
    #[inline]
    pub fn dec(&self) {
        self.0.dec();
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.add(n);
    }
    #[inline]
    pub fn set(&self, n: i64) {
        self.0.set(n);
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// Kinds of error a client can receive, the `kind` label of `shardproxy_errors_total`.
pub mod kind {
    /// The proxy refused the request (syntax, limits, unknown or unsupported command).
    pub const CLIENT_PROTOCOL: usize = 0;
    /// The backend answered with an error reply (`SERVER_ERROR`, `-ERR`, `-WRONGTYPE`...).
    pub const BACKEND_ERROR: usize = 1;
    pub const TIMEOUT: usize = 2;
    /// No connection to the backend (refused, reset, closed, handshake refused).
    pub const CONNECTION: usize = 3;
    /// The key's server is ejected and the pool does not move keys.
    pub const EJECTED: usize = 4;
    pub const NAMES: [&str; 5] = [
        "client_protocol",
        "backend_error",
        "timeout",
        "connection",
        "ejected",
    ];
}

/// Command classes, the `command` label. memcached pools count by verb; Redis pools by the
/// data type (ACL category) a command works on, which keeps the label set small and stable.
pub mod class {
    pub const MEMCACHE: &[&str] = &[
        "get",
        "gets",
        "gat",
        "gats",
        "set",
        "add",
        "replace",
        "append",
        "prepend",
        "cas",
        "delete",
        "incr",
        "decr",
        "touch",
        "version",
        "verbosity",
        "flush_all",
        "stats",
        "quit",
    ];
    pub const REDIS: &[&str] = &[
        "string",
        "bitmap",
        "hash",
        "list",
        "set",
        "sortedset",
        "stream",
        "hyperloglog",
        "geo",
        "keyspace",
        "scripting",
        "connection",
        "other",
    ];
}

/// Every metric family, registered once per process.
pub struct Metrics {
    pub registry: Registry,
    pool_gauges: IntGaugeVec,
    pool_counters: Vec<(&'static str, IntCounterVec)>,
    requests: IntCounterVec,
    responses: IntCounterVec,
    errors: IntCounterVec,
    server_counters: Vec<(&'static str, IntCounterVec)>,
    server_gauges: Vec<(&'static str, IntGaugeVec)>,
    latency: HistogramVec,
}

/// Latency buckets from 50 µs to 1 s, fine enough to read p50 and p99 anywhere in between.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0,
];

const POOL_COUNTERS: &[(&str, &str)] = &[
    ("client_connections_total", "Client connections accepted"),
    (
        "client_rejected_total",
        "Client connections refused by client_connections",
    ),
    (
        "client_eof_total",
        "Client connections closed by the client",
    ),
    (
        "client_errors_total",
        "Client connections closed on a socket error",
    ),
    (
        "accept_errors_total",
        "Failed accepts on the pool's listener (e.g. file descriptors exhausted)",
    ),
    (
        "forward_errors_total",
        "Error replies the proxy generated for a backend failure",
    ),
    ("server_ejects_total", "Servers ejected from the pool"),
    (
        "fragments_total",
        "Backend requests multi-key requests were split into",
    ),
    ("hits_total", "Keys read and found"),
    (
        "misses_total",
        "Keys read and not found (including keys of a failed server)",
    ),
    (
        "lost_keys_total",
        "Keys of a multi-key read whose server failed",
    ),
    ("received_bytes_total", "Bytes received from clients"),
    ("sent_bytes_total", "Bytes sent to clients"),
    (
        "coalesced_requests_total",
        "Reads that joined an identical read in flight",
    ),
    (
        "coalesce_flights_total",
        "Backend reads that identical reads joined",
    ),
    (
        "client_output_limit_total",
        "Clients disconnected for being owed more reply bytes than client_output_limit",
    ),
];

const SERVER_COUNTERS: &[(&str, &str)] = &[
    ("requests_total", "Requests sent to the server"),
    ("request_bytes_total", "Request bytes sent to the server"),
    ("responses_total", "Replies received from the server"),
    (
        "response_bytes_total",
        "Reply bytes received from the server",
    ),
    ("errors_total", "Requests failed by a connection failure"),
    (
        "timeouts_total",
        "Requests that got no reply within the pool timeout",
    ),
    ("eof_total", "Connections closed by the server"),
    ("connect_failures_total", "Failed connection attempts"),
    ("ejections_total", "Times the server was ejected"),
];

const SERVER_GAUGES: &[(&str, &str)] = &[
    ("connections", "Open connections to the server"),
    ("in_flight", "Requests queued or sent and not yet answered"),
    ("ejected", "1 while the server is ejected"),
    ("ejected_at_seconds", "Unix time of the last ejection"),
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique")
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(format!("shardproxy_{name}"), help), labels)
                .expect("valid metric");
            reg(Box::new(v.clone()));
            v
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntGaugeVec::new(Opts::new(format!("shardproxy_{name}"), help), labels)
                .expect("valid metric");
            reg(Box::new(v.clone()));
            v
        };
        let pool_counters = POOL_COUNTERS
            .iter()
            .map(|(n, h)| (*n, counter_vec(n, h, &["pool"])))
            .collect();
        let server_counters = SERVER_COUNTERS
            .iter()
            .map(|(n, h)| {
                (
                    *n,
                    counter_vec(&format!("server_{n}"), h, &["pool", "server"]),
                )
            })
            .collect();
        let server_gauges = SERVER_GAUGES
            .iter()
            .map(|(n, h)| {
                (
                    *n,
                    gauge_vec(&format!("server_{n}"), h, &["pool", "server"]),
                )
            })
            .collect();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "shardproxy_server_request_duration_seconds",
                "Time from sending a request to its reply",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["pool", "server"],
        )
        .expect("valid metric");
        reg(Box::new(latency.clone()));
        Metrics {
            pool_gauges: gauge_vec("client_connections", "Client connections open", &["pool"]),
            requests: counter_vec(
                "requests_total",
                "Client requests by command class",
                &["pool", "command"],
            ),
            responses: counter_vec(
                "responses_total",
                "Replies sent to clients by command class",
                &["pool", "command"],
            ),
            errors: counter_vec(
                "errors_total",
                "Error replies sent to clients, by kind",
                &["pool", "kind"],
            ),
            pool_counters,
            server_counters,
            server_gauges,
            latency,
            registry,
        }
    }

    fn pool_counter(&self, name: &str, pool: &str) -> Counter {
        Counter(named(&self.pool_counters, name).with_label_values(&[pool]))
    }

    fn server_counter(&self, name: &str, pool: &str, server: &str) -> Counter {
        Counter(named(&self.server_counters, name).with_label_values(&[pool, server]))
    }

    fn server_gauge(&self, name: &str, pool: &str, server: &str) -> Gauge {
        Gauge(named(&self.server_gauges, name).with_label_values(&[pool, server]))
    }
}

/// The metric family registered under `name` (names come from this module's own tables).
fn named<'a, T>(families: &'a [(&'static str, T)], name: &str) -> &'a T {
    &families
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("metric {name} is not registered"))
        .1
}

/// Per-pool handles. Field names follow nutcracker's stats where it has the concept.
#[derive(Clone, Debug)]
pub struct PoolStats {
    pub client_connections: Gauge,
    pub total_connections: Counter,
    pub rejected_connections: Counter,
    pub client_eof: Counter,
    pub client_err: Counter,
    /// Failed accepts on the listener; the log has one line per episode, this every failure.
    pub accept_errors: Counter,
    pub forward_error: Counter,
    pub server_ejects: Counter,
    pub fragments: Counter,
    pub get_hits: Counter,
    pub get_misses: Counter,
    pub get_lost: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub coalesced: Counter,
    pub flights: Counter,
    pub output_limit: Counter,
    /// When a client disconnected by `client_output_limit` was last logged (ms since the
    /// Unix epoch): such disconnects are logged at most once per interval per pool, with
    /// the count, so that a client reconnecting in a loop cannot flood the log.
    pub output_limit_logged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Indexed by command class (see [`class`]).
    pub requests: Vec<Counter>,
    pub responses: Vec<Counter>,
    /// Indexed by [`kind`].
    pub errors: [Counter; 5],
    pub classes: &'static [&'static str],
}

impl PoolStats {
    pub fn new(m: &Metrics, pool: &str, redis: bool) -> PoolStats {
        let classes = if redis { class::REDIS } else { class::MEMCACHE };
        let by_class = |vec: &IntCounterVec| {
            classes
                .iter()
                .map(|c| Counter(vec.with_label_values(&[pool, c])))
                .collect()
        };
        PoolStats {
            client_connections: Gauge(m.pool_gauges.with_label_values(&[pool])),
            total_connections: m.pool_counter("client_connections_total", pool),
            rejected_connections: m.pool_counter("client_rejected_total", pool),
            client_eof: m.pool_counter("client_eof_total", pool),
            client_err: m.pool_counter("client_errors_total", pool),
            accept_errors: m.pool_counter("accept_errors_total", pool),
            forward_error: m.pool_counter("forward_errors_total", pool),
            server_ejects: m.pool_counter("server_ejects_total", pool),
            fragments: m.pool_counter("fragments_total", pool),
            get_hits: m.pool_counter("hits_total", pool),
            get_misses: m.pool_counter("misses_total", pool),
            get_lost: m.pool_counter("lost_keys_total", pool),
            bytes_read: m.pool_counter("received_bytes_total", pool),
            bytes_written: m.pool_counter("sent_bytes_total", pool),
            coalesced: m.pool_counter("coalesced_requests_total", pool),
            flights: m.pool_counter("coalesce_flights_total", pool),
            output_limit: m.pool_counter("client_output_limit_total", pool),
            output_limit_logged: Default::default(),
            requests: by_class(&m.requests),
            responses: by_class(&m.responses),
            errors: kind::NAMES.map(|k| Counter(m.errors.with_label_values(&[pool, k]))),
            classes,
        }
    }

    /// A read joined an identical read in flight; `first` when it is the first to join that
    /// read (one more backend read serving several clients).
    pub fn joined(&self, first: bool) {
        if first {
            self.flights.inc();
        }
        self.coalesced.inc();
    }

    /// Requests of the named class (0 for an unknown name).
    pub fn requests_of(&self, class: &str) -> u64 {
        self.classes
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.requests[i].get())
    }
}

/// Per-server handles. Field names follow nutcracker's.
#[derive(Clone, Debug)]
pub struct ServerStats {
    pub server_connections: Gauge,
    pub server_eof: Counter,
    pub server_err: Counter,
    pub server_timedout: Counter,
    pub requests: Counter,
    pub request_bytes: Counter,
    pub responses: Counter,
    pub response_bytes: Counter,
    pub in_flight: Gauge,
    pub connect_failures: Counter,
    pub ejections: Counter,
    pub ejected: Gauge,
    pub ejected_at: Gauge,
    pub latency: Histogram,
}

impl ServerStats {
    pub fn new(m: &Metrics, pool: &str, server: &str) -> ServerStats {
        ServerStats {
            server_connections: m.server_gauge("connections", pool, server),
            server_eof: m.server_counter("eof_total", pool, server),
            server_err: m.server_counter("errors_total", pool, server),
            server_timedout: m.server_counter("timeouts_total", pool, server),
            requests: m.server_counter("requests_total", pool, server),
            request_bytes: m.server_counter("request_bytes_total", pool, server),
            responses: m.server_counter("responses_total", pool, server),
            response_bytes: m.server_counter("response_bytes_total", pool, server),
            in_flight: m.server_gauge("in_flight", pool, server),
            connect_failures: m.server_counter("connect_failures_total", pool, server),
            ejections: m.server_counter("ejections_total", pool, server),
            ejected: m.server_gauge("ejected", pool, server),
            ejected_at: m.server_gauge("ejected_at_seconds", pool, server),
            latency: m.latency.with_label_values(&[pool, server]),
        }
    }
}
