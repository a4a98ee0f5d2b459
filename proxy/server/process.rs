//! Process-wide metrics: resident memory, open descriptors, CPU time (read from `/proc/self`
//! at scrape time, so they cost nothing between scrapes), build info, and configuration
//! generation and reload outcomes.

use prometheus::{Counter, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::stats::Metrics;

pub struct ProcessMetrics {
    resident: IntGauge,
    open_fds: IntGauge,
    cpu_seconds: Counter,
    start_time: Gauge,
    pub config_generation: IntGauge,
    pub reloads: IntCounterVec,
    /// Clock ticks per second, for `/proc/self/stat`'s CPU times.
    ticks: f64,
    page_size: i64,
}

impl ProcessMetrics {
    pub fn new(metrics: &Metrics) -> ProcessMetrics {
        let r = &metrics.registry;
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let fgauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let build = IntGaugeVec::new(
            Opts::new("shardproxy_build_info", "Build information (always 1)"),
            &["version"],
        )
        .expect("valid metric");
        r.register(Box::new(build.clone())).expect("unique metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let reloads = IntCounterVec::new(
            Opts::new(
                "shardproxy_config_reloads_total",
                "Configuration reloads by outcome",
            ),
            &["result"],
        )
        .expect("valid metric");
        r.register(Box::new(reloads.clone()))
            .expect("unique metric");
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        // SAFETY: sysconf has no preconditions.
        let (ticks, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let p = ProcessMetrics {
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors"),
            cpu_seconds: {
                let c = Counter::new(
                    "process_cpu_seconds_total",
                    "User and system CPU time in seconds",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            start_time: fgauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch",
            ),
            config_generation: gauge(
                "shardproxy_config_generation",
                "Generation of the configuration in use",
            ),
            reloads,
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page_size > 0 { page_size } else { 4096 },
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        p.start_time.set(now - uptime_guess(&p));
        p
    }

    /// Re-reads `/proc/self`: called on each scrape.
    pub fn refresh(&self) {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            if let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<i64>().ok())
            {
                self.resident.set(pages * self.page_size);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some((utime, stime)) = cpu_ticks() {
            // A counter: advance it to the kernel's figure (concurrent scrapes may race; the
            // loser adds nothing).
            let total = (utime + stime) as f64 / self.ticks;
            let delta = total - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
        }
    }
}

/// utime and stime from `/proc/self/stat` (fields 14 and 15, after the parenthesised name).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Seconds the process has been running, from its start time in `/proc/self/stat` (field 22)
/// and the system uptime.
fn uptime_guess(p: &ProcessMetrics) -> f64 {
    let start_ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split_whitespace().nth(19)?.parse::<f64>().ok()
        });
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok());
    match (start_ticks, uptime) {
        (Some(start), Some(up)) => (up - start / p.ticks).max(0.0),
        _ => 0.0,
    }
}
