//! Results: per-thread counters and the latency histogram, merged at the end and printed as one
//! line of JSON.

use hdrhistogram::Histogram;

use crate::proto::Outcome;

/// One thread's results.
pub struct Stats {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub misses: u64,
    pub wrong: u64,
    /// Error or wrong replies to the prefill's sets (not part of the measured requests).
    pub prefill_errors: u64,
    /// ns this thread spent on CPU in the measured phase.
    pub cpu_ns: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            // 1 ns .. 1 hour at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
            requests: 0,
            errors: 0,
            misses: 0,
            wrong: 0,
            prefill_errors: 0,
            cpu_ns: 0,
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.requests += other.requests;
        self.errors += other.errors;
        self.misses += other.misses;
        self.wrong += other.wrong;
        self.prefill_errors += other.prefill_errors;
        self.cpu_ns += other.cpu_ns;
    }

    /// Counts one measured reply.
    pub fn record(&mut self, o: Outcome) {
        self.requests += 1;
        self.errors += u64::from(o.error);
        self.misses += u64::from(o.misses);
        self.wrong += u64::from(o.wrong);
    }

    /// Prints the merged results of a run that measured for `seconds`, as one line of JSON.
    pub fn print_json(&self, seconds: f64) {
        let h = &self.hist;
        let q = |q: f64| {
            if self.requests == 0 {
                0.0
            } else {
                us(h.value_at_quantile(q))
            }
        };
        println!(
            "{{\"requests\":{},\"errors\":{},\"seconds\":{:.4},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"misses\":{},\"wrong\":{},\"prefill_errors\":{},\"loadgen_cpu_pct\":{:.1}}}",
            self.requests,
            self.errors,
            seconds,
            self.requests as f64 / seconds,
            q(0.5),
            q(0.99),
            q(0.999),
            if self.requests == 0 { 0.0 } else { us(h.max()) },
            self.misses,
            self.wrong,
            self.prefill_errors,
            self.cpu_ns as f64 / 1e9 / seconds * 100.0,
        );
    }
}

/// ns on CPU of the calling thread (field 1 of /proc/thread-self/schedstat); 0 if unreadable.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}
