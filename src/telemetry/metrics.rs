//! Every metric the daemon exports, in one registry.
//!
//! Naming rules: `pipeline_` prefix, base units (`_seconds`, `_bytes`), `_total` for counters;
//! label values come from small fixed sets (stage, outcome, reason, partition, task).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Handles to all metrics. Cheap to clone (the prometheus types are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Records that left a stage successfully, by stage.
    pub records: IntCounterVec,
    /// Errors by stage and kind.
    pub errors: IntCounterVec,
    /// Source HTTP requests by outcome.
    pub source_requests: IntCounterVec,
    /// Records dead-lettered, by reason.
    pub dead_letters: IntCounterVec,
    /// Rows waiting in the outbox (refreshed by the relay).
    pub outbox_backlog: IntGauge,
    /// Consumer lag per partition: high watermark - next offset.
    pub consumer_lag: IntGaugeVec,
    /// Items queued on a channel between stages, by edge.
    pub channel_depth: IntGaugeVec,
    /// Capacity of that channel.
    pub channel_capacity: IntGaugeVec,
    /// Restarts of supervised tasks.
    pub task_restarts: IntCounterVec,
    /// 1 while a supervised task is running and connected.
    pub task_up: IntGaugeVec,
    /// Fetch time (fetched_at header) to Cassandra acknowledgement.
    pub e2e_latency: Histogram,
    /// Duration of one batch operation, by stage.
    pub batch_duration: HistogramVec,
    /// Per-record latency budget, by stage (see [`STAGES`]): the parts of the end-to-end time.
    pub stage_latency: HistogramVec,
    /// Failed schema registry requests, by operation (`register`, `lookup`).
    pub schema_registry_errors: IntCounterVec,
    /// 1 for the value schema the relay registered: subject, version, id.
    pub schema_info: IntGaugeVec,
    /// The last dead letters with scrubbed previews, for the status page (not exported to
    /// Prometheus: it is a bounded log, not a metric). Recorded next to `dead_letters`.
    pub recent_dead_letters: std::sync::Arc<super::status::RecentDeadLetters>,
    /// Stage heartbeats for the watchdog (not exported: liveness, not a metric).
    pub heartbeats: std::sync::Arc<super::heartbeat::Heartbeats>,
    /// 1 while this daemon holds the lease (relay, source), else 0.
    pub lease_held: IntGaugeVec,
    /// Leases this daemon took after standing by or losing them, by lease.
    pub lease_takeovers: IntCounterVec,
    /// Leases this daemon lost (its session failed or went silent; it stepped down), by lease.
    pub lease_lost: IntCounterVec,
    /// Which leases this daemon holds and since when, for the status page (not exported:
    /// `lease_held` is the metric).
    pub leases: std::sync::Arc<crate::lease::LeaseBoard>,
    /// `pipeline_group_*`: consumer-group membership and commits.
    pub group: crate::group::metrics::GroupMetrics,
}

/// Observes the time from `from_ms` to `to_ms` (unix ms; negative clock steps count as 0).
pub fn observe_ms(histogram: &Histogram, from_ms: i64, to_ms: i64) {
    histogram.observe(((to_ms - from_ms).max(0) as f64) / 1000.0);
}

/// Labels of `pipeline_stage_latency_seconds`, in record order: `fetch` (request sent →
/// body parsed), `land` (request sent → landing committed), `relay_wait` (request sent →
/// read from the outbox), `produce` (outbox read → Kafka acknowledged, per relay round),
/// `kafka_to_consumer` (record timestamp set by the relay → fetched by the consumer),
/// `write` (fetched by the consumer → Cassandra acknowledged, per batch).
pub const STAGES: [&str; 6] = [
    "fetch",
    "land",
    "relay_wait",
    "produce",
    "kafka_to_consumer",
    "write",
];

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: registration fails only on duplicate names, which are constants.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "pipeline_build_info",
                "Build information; value is always 1.",
            ),
            &["version", "rustc"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), "1.95"])
            .set(1);
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let metrics = Self {
            records: counter(
                "pipeline_stage_records_total",
                "Records a stage finished with successfully.",
                &["stage"],
            ),
            errors: counter(
                "pipeline_stage_errors_total",
                "Errors seen by a stage, by kind.",
                &["stage", "kind"],
            ),
            source_requests: counter(
                "pipeline_source_requests_total",
                "HTTP requests to the user API, by outcome.",
                &["outcome"],
            ),
            dead_letters: counter(
                "pipeline_dead_letters_total",
                "Records sent to the dead-letter topic, by reason.",
                &["reason"],
            ),
            outbox_backlog: IntGauge::new(
                "pipeline_outbox_backlog_rows",
                "Landed rows not yet acknowledged by Kafka.",
            )
            .expect("valid metric"),
            consumer_lag: gauge(
                "pipeline_consumer_lag_records",
                "High watermark minus the next offset to process, per partition.",
                &["partition"],
            ),
            channel_depth: gauge(
                "pipeline_channel_depth",
                "Items waiting on a channel between two stages.",
                &["edge"],
            ),
            channel_capacity: gauge(
                "pipeline_channel_capacity",
                "Capacity of a channel between two stages.",
                &["edge"],
            ),
            task_restarts: counter(
                "pipeline_task_restarts_total",
                "Restarts of a supervised task after a failure.",
                &["task"],
            ),
            task_up: gauge(
                "pipeline_task_up",
                "1 while a supervised task runs and is connected, else 0.",
                &["task"],
            ),
            e2e_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "pipeline_e2e_latency_seconds",
                    "From fetch (fetched_at header) to the Cassandra acknowledgement.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
            )
            .expect("valid metric"),
            batch_duration: HistogramVec::new(
                HistogramOpts::new(
                    "pipeline_batch_duration_seconds",
                    "Duration of one batch operation of a stage.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["stage"],
            )
            .expect("valid metric"),
            stage_latency: HistogramVec::new(
                HistogramOpts::new(
                    "pipeline_stage_latency_seconds",
                    "Latency of a record (or batch) through one stage; the parts of the end-to-end time.",
                )
                // Fine between 10 and 500 ms, where the p99 targets (100 and 250 ms) are read.
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2,
                    0.25, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["stage"],
            )
            .expect("valid metric"),
            schema_registry_errors: counter(
                "pipeline_schema_registry_errors_total",
                "Schema registry requests that failed (unreachable, refused, bad answer), by operation.",
                &["op"],
            ),
            schema_info: gauge(
                "pipeline_schema_info",
                "The value schema the relay registered and frames records with; value is always 1.",
                &["subject", "version", "id"],
            ),
            recent_dead_letters: std::sync::Arc::default(),
            heartbeats: std::sync::Arc::default(),
            lease_held: gauge(
                "pipeline_lease_held",
                "1 while this daemon holds the lease (relay, source), else 0.",
                &["lease"],
            ),
            lease_takeovers: counter(
                "pipeline_lease_takeovers_total",
                "Leases this daemon took after standing by or losing them.",
                &["lease"],
            ),
            lease_lost: counter(
                "pipeline_lease_lost_total",
                "Leases this daemon lost (session failed or silent) and stepped down from.",
                &["lease"],
            ),
            leases: std::sync::Arc::default(),
            group: crate::group::metrics::GroupMetrics::new(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build),
            Box::new(metrics.records.clone()),
            Box::new(metrics.errors.clone()),
            Box::new(metrics.source_requests.clone()),
            Box::new(metrics.dead_letters.clone()),
            Box::new(metrics.outbox_backlog.clone()),
            Box::new(metrics.consumer_lag.clone()),
            Box::new(metrics.channel_depth.clone()),
            Box::new(metrics.channel_capacity.clone()),
            Box::new(metrics.task_restarts.clone()),
            Box::new(metrics.task_up.clone()),
            Box::new(metrics.e2e_latency.clone()),
            Box::new(metrics.batch_duration.clone()),
            Box::new(metrics.stage_latency.clone()),
            Box::new(metrics.lease_held.clone()),
            Box::new(metrics.lease_takeovers.clone()),
            Box::new(metrics.lease_lost.clone()),
            Box::new(metrics.schema_registry_errors.clone()),
            Box::new(metrics.schema_info.clone()),
        ];
        for c in collectors.into_iter().chain(metrics.group.collectors()) {
            metrics.registry.register(c).expect("unique metric names");
        }
        for stage in STAGES {
            metrics.stage_latency.with_label_values(&[stage]);
        }
        for op in ["register", "lookup"] {
            metrics.schema_registry_errors.with_label_values(&[op]);
        }
        for reason in crate::model::RejectReason::ALL {
            metrics.dead_letters.with_label_values(&[reason.as_str()]);
        }
        metrics
    }

    /// The `pipeline_stage_latency_seconds` series of `stage` (one of [`STAGES`]); callers
    /// observing per record take the handle once, outside their loop.
    pub fn stage(&self, stage: &str) -> Histogram {
        self.stage_latency.with_label_values(&[stage])
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            return format!("# encoding error: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Sum of a counter family over all labels, from the rendered registry (for reports).
    pub fn counter_sum(&self, vec: &IntCounterVec, label_values: &[&str]) -> u64 {
        vec.with_label_values(label_values).get()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Exact-to-the-millisecond latency distribution for reports (p50/p99/max), in fixed memory:
/// one counter per millisecond up to 60 s, one overflow bucket.
pub struct LatencyRecorder {
    buckets: Vec<std::sync::atomic::AtomicU64>,
    max_ms: std::sync::atomic::AtomicU64,
}

const LATENCY_BUCKETS_MS: usize = 60_000;

impl LatencyRecorder {
    pub fn new() -> Self {
        Self {
            buckets: (0..=LATENCY_BUCKETS_MS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            max_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn record_ms(&self, ms: u64) {
        use std::sync::atomic::Ordering;
        let i = (ms as usize).min(LATENCY_BUCKETS_MS);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        use std::sync::atomic::Ordering;
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The smallest latency (ms) at or below which a fraction `q` of samples fall.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(if ms == LATENCY_BUCKETS_MS {
                    self.max_ms.load(Ordering::Relaxed)
                } else {
                    ms as u64
                });
            }
        }
        Some(self.max_ms.load(Ordering::Relaxed))
    }

    pub fn max_ms(&self) -> u64 {
        self.max_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format_with_conventional_names() {
        let m = Metrics::new();
        m.records.with_label_values(&["relay"]).inc_by(3);
        m.consumer_lag.with_label_values(&["0"]).set(7);
        m.e2e_latency.observe(0.02);
        let text = m.render();
        assert!(text.contains("pipeline_build_info{"));
        assert!(text.contains("pipeline_stage_records_total{stage=\"relay\"} 3"));
        assert!(text.contains("pipeline_consumer_lag_records{partition=\"0\"} 7"));
        assert!(text.contains("# TYPE pipeline_e2e_latency_seconds histogram"));
        assert!(text.contains("pipeline_e2e_latency_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("pipeline_dead_letters_total{reason=\"invalid_id\"} 0"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            assert!(name.starts_with("pipeline_"), "{name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }

    #[test]
    fn latency_quantiles_are_exact_to_the_ms() {
        let r = LatencyRecorder::new();
        assert_eq!(r.quantile_ms(0.5), None);
        for ms in 1..=100 {
            r.record_ms(ms);
        }
        assert_eq!(r.quantile_ms(0.5), Some(50));
        assert_eq!(r.quantile_ms(0.99), Some(99));
        assert_eq!(r.quantile_ms(1.0), Some(100));
        r.record_ms(120_000);
        assert_eq!(r.max_ms(), 120_000);
        assert_eq!(r.quantile_ms(1.0), Some(120_000));
        assert_eq!(r.count(), 101);
    }
}
