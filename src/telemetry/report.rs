//! The run report printed at exit (and written by `run --report-json`): counts per stage,
//! end-to-end latency, and the process's own CPU and peak RSS from `/proc`.

use std::time::Instant;

use super::Metrics;
use super::metrics::LatencyRecorder;

/// Counts and latency of a run, printed at exit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub elapsed_s: f64,
    pub fetched: u64,
    pub landed: u64,
    pub relayed: u64,
    pub consumed: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub latency_max_ms: u64,
    pub records_per_s: f64,
    /// CPU seconds (user + system) the daemon used from start to the report
    /// (`/proc/self/stat`; `None` where unavailable).
    pub daemon_cpu_s: Option<f64>,
    /// Peak resident set size of the daemon, MB (`VmHWM` of `/proc/self/status`).
    pub daemon_rss_peak_mb: Option<f64>,
    /// Final Prometheus text of the run (for `--metrics-out`).
    #[serde(skip)]
    pub metrics_text: String,
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
        writeln!(f, "pipeline run report ({:.1} s)", self.elapsed_s)?;
        writeln!(f, "  fetched       {:>10}", self.fetched)?;
        writeln!(f, "  landed        {:>10}", self.landed)?;
        writeln!(f, "  relayed       {:>10}", self.relayed)?;
        writeln!(f, "  consumed      {:>10}", self.consumed)?;
        writeln!(
            f,
            "  written       {:>10}  ({:.0} records/s)",
            self.written, self.records_per_s
        )?;
        writeln!(f, "  dead-lettered {:>10}", self.dead_lettered)?;
        write!(
            f,
            "  e2e latency   p50 {}  p99 {}  max {} ms",
            ms(self.latency_p50_ms),
            ms(self.latency_p99_ms),
            self.latency_max_ms
        )?;
        if let (Some(cpu), Some(rss)) = (self.daemon_cpu_s, self.daemon_rss_peak_mb) {
            write!(f, "\n  daemon        {cpu:.1} CPU-s  peak RSS {rss:.1} MB")?;
        }
        Ok(())
    }
}

/// CPU seconds (utime + stime) of this process, from `/proc/self/stat`.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI Rust targets.
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process in MB, from `VmHWM` in `/proc/self/status`.
pub fn process_rss_peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The report of a run that started at `started`, from its metrics.
pub fn report(metrics: &Metrics, latency: &LatencyRecorder, started: Instant) -> RunReport {
    let stage = |s: &str| metrics.records.with_label_values(&[s]).get();
    let elapsed_s = started.elapsed().as_secs_f64();
    let written = stage("sink");
    RunReport {
        elapsed_s,
        fetched: stage("source"),
        landed: stage("landing"),
        relayed: stage("relay"),
        consumed: stage("consumer"),
        written,
        dead_lettered: crate::model::RejectReason::ALL
            .iter()
            .map(|r| metrics.dead_letters.with_label_values(&[r.as_str()]).get())
            .sum(),
        latency_p50_ms: latency.quantile_ms(0.50),
        latency_p99_ms: latency.quantile_ms(0.99),
        latency_max_ms: latency.max_ms(),
        records_per_s: if elapsed_s > 0.0 {
            written as f64 / elapsed_s
        } else {
            0.0
        },
        daemon_cpu_s: process_cpu_s(),
        daemon_rss_peak_mb: process_rss_peak_mb(),
        metrics_text: metrics.render(),
    }
}
