//! The live status of the daemon: what `GET /api/status`, the page at `/`, `pipeline status`
//! and `pipeline top` show (field by field in docs/status.md).
//!
//! ```text
//!  Metrics (counters, gauges, histograms) ─┐
//!  Health (task states, last errors) ──────┼──► sampler, once a second ──► Samples (rings)
//!  Progress (committed, high watermark) ───┤        │ every 5 s: outbox oldest age,
//!  RecentDeadLetters (last 50) ────────────┘        │ Postgres version
//!                                                   ▼
//!                              StatusBoard::status() ──► Status (JSON) on each request
//! ```
//!
//! Memory is fixed whatever the uptime: every history is a [`Ring`] of 300 one-second
//! samples (5 minutes), the latency windows keep 61 bucket snapshots per histogram, and the
//! dead letters are the last 50. A request reads the rings and builds a ~20 KB JSON; it does
//! no I/O and takes one short lock.

pub mod client;
pub mod dead_letters;
pub mod ring;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use prometheus::core::Metric as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use dead_letters::{DeadLetterEntry, RecentDeadLetters};
pub use ring::Ring;

use super::Metrics;
use super::metrics::STAGES;
use crate::config::Config;
use crate::consume::Progress;
use crate::supervise::{Health, TaskState};

/// One-second samples kept: the 5-minute history.
pub const HISTORY: usize = 300;
/// Window of the "last minute" latency quantiles, in samples (seconds).
pub const LATENCY_WINDOW: usize = 60;
/// Window of each point of the latency history chart, in samples (seconds).
pub const LATENCY_POINT_WINDOW: usize = 10;
/// Samples averaged into a stage's "now" rate.
pub const RATE_WINDOW: usize = 5;
/// How often the sampler runs.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the outbox's oldest row is looked up (one indexed row read).
const OUTBOX_PROBE_EVERY: u64 = 5;

/// A stage of the flow as the page draws it: its name, the `pipeline_stage_records_total`
/// label it counts, and the supervised task it runs in.
#[derive(Debug, Clone, Copy)]
pub struct FlowStage {
    pub name: &'static str,
    pub records: &'static str,
    pub task: &'static str,
}

/// The flow in record order. Kafka sits between relay and consumer; it is not a task, so it
/// has its own section ([`KafkaStatus`]).
pub const FLOW: [FlowStage; 6] = [
    FlowStage {
        name: "source",
        records: "source",
        task: "source",
    },
    FlowStage {
        name: "landing",
        records: "landing",
        task: "landing",
    },
    FlowStage {
        name: "relay",
        records: "relay",
        task: "relay",
    },
    FlowStage {
        name: "consumer",
        records: "consumer",
        task: "consumer",
    },
    FlowStage {
        name: "cassandra",
        records: "sink",
        task: "consumer",
    },
    FlowStage {
        name: "dlq",
        records: "dlq",
        task: "consumer",
    },
];

/// The whole `/api/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Build version of the daemon (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Unix ms when this document was built.
    pub generated_at_ms: i64,
    /// Unix ms when the daemon started.
    pub started_at_ms: i64,
    pub uptime_s: f64,
    /// Seconds between samples of the histories.
    pub sample_interval_s: f64,
    /// True when every task is running (or finished): what `/readyz` answers.
    pub ready: bool,
    /// Why not ready: one line per task that is not, with its last error.
    pub readiness: Vec<String>,
    /// The flow, in record order.
    pub stages: Vec<StageStatus>,
    /// Every supervised task.
    pub tasks: Vec<TaskStatus>,
    pub outbox: OutboxStatus,
    pub kafka: KafkaStatus,
    pub latency: LatencyStatus,
    pub dead_letters: DeadLettersStatus,
    /// The services the daemon talks to and their versions where known.
    pub services: Vec<ServiceStatus>,
    /// The leases (relay, source) this daemon holds or stands by for; absent from daemons
    /// before leases.
    #[serde(default)]
    pub leases: Vec<LeaseStatus>,
    /// The effective configuration, secrets masked as "***".
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStatus {
    pub name: String,
    /// The supervised task the stage runs in.
    pub task: String,
    /// running | starting | restarting | failed | stopped | disabled.
    pub state: String,
    pub last_error: Option<ErrorStatus>,
    /// Records the stage finished with since start (`pipeline_stage_records_total`).
    pub records_total: u64,
    /// Records/s averaged over the last 5 samples.
    pub rate_per_s: f64,
    /// Records/s of each one-second sample, oldest first, at most 300.
    pub history_per_s: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorStatus {
    pub message: String,
    pub at_ms: i64,
    pub fatal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub state: String,
    /// `pipeline_task_restarts_total` of the task.
    pub restarts: u64,
    pub last_error: Option<ErrorStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// `pipeline_outbox_backlog_rows`.
    pub backlog_rows: i64,
    /// Age of the oldest row (now - its fetch time); null when empty or unknown.
    pub oldest_age_s: Option<f64>,
    /// Unix ms of that lookup (every 5 s); null before the first one succeeded.
    pub checked_at_ms: Option<i64>,
    /// Why the last lookup failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaStatus {
    pub topic: String,
    pub dlq_topic: String,
    /// Sum of `lag_records` over the partitions.
    pub lag_records: i64,
    pub partitions: Vec<PartitionStatus>,
    /// This daemon's consumer-group membership (`consumer.assignment = "group"`): member id,
    /// generation, assigned partitions; absent in static mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::group::GroupView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub partition: i32,
    /// Next offset whose processing is stored.
    pub committed: i64,
    /// High watermark seen by the latest fetch.
    pub high_watermark: i64,
    /// high_watermark - committed (>= 0).
    pub lag_records: i64,
    /// lag_records / the partition's commit rate over the last minute; 0 without lag, null
    /// when there is lag but no progress (stalled).
    pub lag_seconds: Option<f64>,
    /// Offsets committed per second over the last minute.
    pub rate_per_s: f64,
}

/// p50/p95/p99 from Prometheus buckets, interpolated as `histogram_quantile` does; null
/// without observations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub p99_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySeries {
    /// Stage label of `pipeline_stage_latency_seconds`, or "e2e".
    pub stage: String,
    /// Since the daemon started (the histogram as `/metrics` shows it).
    pub since_start: Quantiles,
    /// Observations of the last 60 s only.
    pub last_60s: Quantiles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStatus {
    /// `pipeline_e2e_latency_seconds`: fetch to Cassandra acknowledgement.
    pub e2e: LatencySeries,
    /// `pipeline_stage_latency_seconds`, in record order.
    pub stages: Vec<LatencySeries>,
    /// e2e p50/p95/p99 over the 10 s before each one-second sample, oldest first, at most 300.
    pub history: LatencyHistory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistory {
    pub p50_s: Vec<Option<f32>>,
    pub p95_s: Vec<Option<f32>>,
    pub p99_s: Vec<Option<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLettersStatus {
    /// Sum of `pipeline_dead_letters_total`.
    pub total: u64,
    /// `pipeline_dead_letters_total` by reason (every reason, zeros included).
    pub by_reason: BTreeMap<String, u64>,
    /// The last 50, newest first.
    pub recent: Vec<DeadLetterEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// "relay" or "source".
    pub name: String,
    /// Whether this daemon holds the lease (`pipeline_lease_held`).
    pub held: bool,
    /// Unix ms since when it is held, or since when this daemon stands by (or lost it).
    pub since_ms: i64,
    /// `pipeline_lease_takeovers_total` of the lease.
    pub takeovers: u64,
    /// `pipeline_lease_lost_total` of the lease.
    pub lost: u64,
    /// Unix ms when this daemon last lost it (stepped down); null if it never did.
    pub lost_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// The server's version, when the daemon has learnt it.
    pub version: Option<String>,
    /// Where it is, and why the version may be missing.
    pub detail: String,
}

/// Cumulative counts of one histogram: one per bucket bound, then the total (+Inf).
type Buckets = Vec<u64>;

fn buckets_of(h: &Histogram) -> (Vec<f64>, Buckets) {
    let m = h.metric();
    let hist = m.get_histogram();
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    for b in hist.get_bucket() {
        bounds.push(b.upper_bound());
        counts.push(b.cumulative_count());
    }
    counts.push(hist.get_sample_count());
    (bounds, counts)
}

/// The `q` quantile of cumulative bucket `counts` (one per `bounds` entry, then the total),
/// interpolated linearly inside the bucket as Prometheus' `histogram_quantile` does; a rank
/// in the +Inf bucket gives the largest finite bound. None without observations.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total = *counts.last()?;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let (mut prev_bound, mut prev_count) = (0.0, 0u64);
    for (i, &count) in counts.iter().enumerate() {
        if count as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let in_bucket = count.saturating_sub(prev_count);
            if in_bucket == 0 {
                return Some(upper);
            }
            return Some(
                prev_bound + (upper - prev_bound) * (rank - prev_count as f64) / in_bucket as f64,
            );
        }
        prev_count = count;
        if let Some(&b) = bounds.get(i) {
            prev_bound = b;
        }
    }
    bounds.last().copied()
}

fn quantiles(bounds: &[f64], counts: &[u64]) -> Quantiles {
    Quantiles {
        count: counts.last().copied().unwrap_or_default(),
        p50_s: quantile(bounds, counts, 0.50),
        p95_s: quantile(bounds, counts, 0.95),
        p99_s: quantile(bounds, counts, 0.99),
    }
}

fn delta(now: &[u64], then: &[u64]) -> Buckets {
    now.iter()
        .zip(then.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// One histogram's bucket snapshots, once a second.
#[derive(Debug)]
struct HistogramSamples {
    bounds: Vec<f64>,
    snapshots: Ring<Buckets>,
}

impl HistogramSamples {
    fn new() -> Self {
        Self {
            bounds: Vec::new(),
            snapshots: Ring::new(LATENCY_WINDOW + 1),
        }
    }

    fn push(&mut self, h: &Histogram) {
        let (bounds, counts) = buckets_of(h);
        if self.bounds.is_empty() {
            self.bounds = bounds;
        }
        self.snapshots.push(counts);
    }

    fn series(&self, stage: &str) -> LatencySeries {
        let now = self.snapshots.newest().cloned().unwrap_or_default();
        let then = self
            .snapshots
            .back(LATENCY_WINDOW)
            .cloned()
            .unwrap_or_default();
        LatencySeries {
            stage: stage.to_string(),
            since_start: quantiles(&self.bounds, &now),
            last_60s: quantiles(&self.bounds, &delta(&now, &then)),
        }
    }

    /// Quantile over the last `window` samples.
    fn recent(&self, window: usize, q: f64) -> Option<f64> {
        let now = self.snapshots.newest()?;
        let then = self.snapshots.back(window)?;
        quantile(&self.bounds, &delta(now, then), q)
    }
}

/// Everything the sampler keeps between requests; every collection is bounded.
#[derive(Debug)]
struct Samples {
    /// When the previous sample was taken and the counter totals it saw, per [`FLOW`] stage.
    previous: Option<(Instant, [u64; FLOW.len()])>,
    rates: [Ring<f32>; FLOW.len()],
    e2e: HistogramSamples,
    stages: [HistogramSamples; STAGES.len()],
    latency_p50: Ring<Option<f32>>,
    latency_p95: Ring<Option<f32>>,
    latency_p99: Ring<Option<f32>>,
    /// Committed offsets per partition, one per sample (for the lag in seconds). The
    /// partitions are the fixed assignment, so the map is bounded too.
    committed: BTreeMap<i32, Ring<i64>>,
    ticks: u64,
}

impl Samples {
    fn new() -> Self {
        Self {
            previous: None,
            rates: std::array::from_fn(|_| Ring::new(HISTORY)),
            e2e: HistogramSamples::new(),
            stages: std::array::from_fn(|_| HistogramSamples::new()),
            latency_p50: Ring::new(HISTORY),
            latency_p95: Ring::new(HISTORY),
            latency_p99: Ring::new(HISTORY),
            committed: BTreeMap::new(),
            ticks: 0,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct OutboxProbe {
    /// Fetch time (unix ms) of the oldest outbox row; None when empty.
    oldest_fetched_ms: Option<i64>,
    checked_at_ms: Option<i64>,
    error: Option<String>,
}

/// The shared status of a running daemon; the sampler writes it, requests read it.
pub struct StatusBoard {
    started: Instant,
    started_at_ms: i64,
    metrics: Metrics,
    health: Arc<Health>,
    progress: Arc<Progress>,
    /// Redacted config, rendered once.
    config_json: serde_json::Value,
    topic: String,
    dlq_topic: String,
    /// Tasks that exist in this configuration (a disabled source has none).
    enabled: Vec<&'static str>,
    /// `runtime.stall_after`: a ready task without a heartbeat for this long is stalled.
    stall_after: Duration,
    samples: Mutex<Samples>,
    outbox: Mutex<OutboxProbe>,
    services: Mutex<BTreeMap<&'static str, ServiceStatus>>,
    /// `schema_registry.url` when set (the registry is then listed among the services).
    schema_registry_url: Option<String>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl StatusBoard {
    pub fn new(
        config: &Config,
        metrics: Metrics,
        health: Arc<Health>,
        progress: Arc<Progress>,
    ) -> Self {
        let config_json = toml::from_str::<toml::Value>(&config.to_redacted_toml())
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut enabled = vec!["relay"];
        if config.source.enabled {
            enabled.extend(["source", "landing"]);
        }
        if config.consumer.enabled {
            enabled.push("consumer");
        }
        let services = BTreeMap::from([
            (
                "postgres",
                ServiceStatus {
                    name: "postgres".into(),
                    version: None,
                    detail: host_of(&config.postgres.url),
                },
            ),
            (
                "kafka",
                ServiceStatus {
                    name: "kafka".into(),
                    version: None,
                    detail: format!(
                        "{} (the Kafka protocol does not report a broker version)",
                        config.kafka.bootstrap.join(",")
                    ),
                },
            ),
            (
                "cassandra",
                ServiceStatus {
                    name: "cassandra".into(),
                    version: None,
                    detail: config.cassandra.contact_points.join(","),
                },
            ),
        ]);
        Self {
            started: Instant::now(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            metrics,
            health,
            progress,
            config_json,
            topic: config.kafka.topic.clone(),
            dlq_topic: config.dlq.topic.clone(),
            enabled,
            stall_after: config.runtime.stall_after,
            samples: Mutex::new(Samples::new()),
            outbox: Mutex::new(OutboxProbe::default()),
            services: Mutex::new(services),
            schema_registry_url: config
                .schema_registry
                .enabled()
                .then(|| config.schema_registry.url.clone()),
        }
    }

    /// The services, the schema registry's line made from its metrics (subject, version
    /// and id the relay registered; failed requests).
    fn services_now(&self) -> Vec<ServiceStatus> {
        let mut services: Vec<ServiceStatus> = lock(&self.services).values().cloned().collect();
        if let Some(url) = &self.schema_registry_url {
            let errors: u64 = ["register", "lookup"]
                .iter()
                .map(|op| {
                    self.metrics
                        .schema_registry_errors
                        .with_label_values(&[op])
                        .get()
                })
                .sum();
            let registered = prometheus::core::Collector::collect(&self.metrics.schema_info)
                .iter()
                .flat_map(|family| family.get_metric().iter())
                .find(|m| m.get_gauge().get_value() == 1.0)
                .map(|m| {
                    let label = |name: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == name)
                            .map_or("?", |l| l.value())
                            .to_string()
                    };
                    format!(
                        "subject {} version {} id {}",
                        label("subject"),
                        label("version"),
                        label("id")
                    )
                })
                .unwrap_or_else(|| "no schema registered by this daemon".into());
            services.push(ServiceStatus {
                name: "schema_registry".into(),
                version: None,
                detail: format!("{url}: {registered}; {errors} failed requests"),
            });
        }
        services
    }

    /// Records a service's version (learnt by whichever stage connects to it).
    pub fn set_service_version(&self, name: &'static str, version: &str) {
        if let Some(s) = lock(&self.services).get_mut(name) {
            s.version = Some(version.trim().to_string());
        }
    }

    fn totals(&self) -> [u64; FLOW.len()] {
        FLOW.map(|s| self.metrics.records.with_label_values(&[s.records]).get())
    }

    /// Takes one sample at `now` (the sampler calls it once a second; tests call it with
    /// simulated time).
    pub fn sample(&self, now: Instant) {
        let totals = self.totals();
        let partitions = self.progress.snapshot();
        let mut s = lock(&self.samples);
        if let Some((then, previous)) = s.previous {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            for (i, ring) in s.rates.iter_mut().enumerate() {
                let rate = if dt > 0.0 {
                    totals[i].saturating_sub(previous[i]) as f64 / dt
                } else {
                    0.0
                };
                ring.push(rate as f32);
            }
        }
        s.previous = Some((now, totals));
        s.e2e.push(&self.metrics.e2e_latency);
        for (i, stage) in STAGES.iter().enumerate() {
            s.stages[i].push(&self.metrics.stage(stage));
        }
        let point = |s: &Samples, q| {
            s.e2e
                .recent(LATENCY_POINT_WINDOW, q)
                .map(|v| round3(v) as f32)
        };
        let (p50, p95, p99) = (point(&s, 0.5), point(&s, 0.95), point(&s, 0.99));
        s.latency_p50.push(p50);
        s.latency_p95.push(p95);
        s.latency_p99.push(p99);
        for (p, committed, _) in partitions {
            s.committed
                .entry(p)
                .or_insert_with(|| Ring::new(LATENCY_WINDOW + 1))
                .push(committed);
        }
        s.ticks += 1;
    }

    fn task_state(
        &self,
        task: &str,
        snapshot: &[crate::supervise::TaskSnapshot],
        stalled: &[String],
    ) -> String {
        if stalled.iter().any(|s| s.split(' ').next() == Some(task)) {
            return "stalled".into();
        }
        let restarts = self.metrics.task_restarts.with_label_values(&[task]).get();
        let Some(t) = snapshot.iter().find(|t| t.name == task) else {
            return if self.enabled.contains(&task) {
                "starting".into()
            } else {
                "disabled".into()
            };
        };
        let fatal = t.last_error.as_ref().is_some_and(|e| e.fatal);
        match t.state {
            TaskState::Ready => "running",
            TaskState::Standby => "standby",
            TaskState::Starting if restarts > 0 => "restarting",
            TaskState::Starting => "starting",
            TaskState::Failed if fatal => "failed",
            TaskState::Failed => "restarting",
            TaskState::Finished => "stopped",
        }
        .into()
    }

    /// The status document as of now.
    pub fn status(&self) -> Status {
        let snapshot = self.health.snapshot();
        let stalled = self
            .metrics
            .heartbeats
            .stalled(&self.health, self.stall_after);
        let error_of = |task: &str| {
            snapshot
                .iter()
                .find(|t| t.name == task)
                .and_then(|t| t.last_error.as_ref())
                .map(|e| ErrorStatus {
                    message: e.message.clone(),
                    at_ms: e.at_ms,
                    fatal: e.fatal,
                })
        };
        let totals = self.totals();
        let s = lock(&self.samples);
        let stages = FLOW
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let ring = &s.rates[i];
                let recent: Vec<f32> = ring.iter().rev().take(RATE_WINDOW).copied().collect();
                let rate = if recent.is_empty() {
                    0.0
                } else {
                    recent.iter().map(|r| f64::from(*r)).sum::<f64>() / recent.len() as f64
                };
                StageStatus {
                    name: f.name.into(),
                    task: f.task.into(),
                    state: self.task_state(f.task, &snapshot, &stalled),
                    last_error: error_of(f.task),
                    records_total: totals[i],
                    rate_per_s: (rate * 10.0).round() / 10.0,
                    history_per_s: ring.iter().map(|r| (r * 10.0).round() / 10.0).collect(),
                }
            })
            .collect();
        let mut task_names: Vec<String> = snapshot.iter().map(|t| t.name.clone()).collect();
        for name in &self.enabled {
            if !task_names.iter().any(|t| t == name) {
                task_names.push((*name).to_string());
            }
        }
        let tasks = task_names
            .iter()
            .map(|name| TaskStatus {
                name: name.clone(),
                state: self.task_state(name, &snapshot, &stalled),
                restarts: self.metrics.task_restarts.with_label_values(&[name]).get(),
                last_error: error_of(name),
            })
            .collect::<Vec<_>>();
        let readiness: Vec<String> = tasks
            .iter()
            .filter(|t| {
                !matches!(
                    t.state.as_str(),
                    "running" | "standby" | "stopped" | "disabled"
                )
            })
            .map(|t| match &t.last_error {
                _ if t.state == "stalled" => stalled
                    .iter()
                    .find(|s| s.split(' ').next() == Some(t.name.as_str()))
                    .map_or_else(
                        || format!("{}: stalled", t.name),
                        |s| format!("{}: stalled {}", t.name, &s[t.name.len()..].trim()),
                    ),
                Some(e) if t.state != "starting" => {
                    format!("{}: {} after: {}", t.name, t.state, e.message)
                }
                _ => format!("{}: {}", t.name, t.state),
            })
            .collect();
        // A stalled task keeps /readyz's answer (it is connected) but is not "ready" here.
        let ready = readiness.is_empty() && self.health.not_ready().is_empty();
        let readiness = if ready || !readiness.is_empty() {
            readiness
        } else {
            self.health.not_ready()
        };

        let partitions: Vec<PartitionStatus> = self
            .progress
            .snapshot()
            .into_iter()
            .map(|(p, committed, hw)| {
                let lag = (hw - committed).max(0);
                let rate = s.committed.get(&p).map_or(0.0, |ring| {
                    let span = ring.len().saturating_sub(1);
                    match (ring.newest(), ring.back(span)) {
                        (Some(now), Some(then)) if span > 0 => {
                            (now - then).max(0) as f64 / span as f64
                        }
                        _ => 0.0,
                    }
                });
                PartitionStatus {
                    partition: p,
                    committed,
                    high_watermark: hw,
                    lag_records: lag,
                    lag_seconds: if lag == 0 {
                        Some(0.0)
                    } else if rate > 0.0 {
                        Some(round3(lag as f64 / rate))
                    } else {
                        None
                    },
                    rate_per_s: (rate * 10.0).round() / 10.0,
                }
            })
            .collect();
        let latency = LatencyStatus {
            e2e: s.e2e.series("e2e"),
            stages: STAGES
                .iter()
                .enumerate()
                .map(|(i, st)| s.stages[i].series(st))
                .collect(),
            history: LatencyHistory {
                p50_s: s.latency_p50.iter().copied().collect(),
                p95_s: s.latency_p95.iter().copied().collect(),
                p99_s: s.latency_p99.iter().copied().collect(),
            },
        };
        drop(s);

        let by_reason: BTreeMap<String, u64> = crate::model::RejectReason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str().to_string(),
                    self.metrics
                        .dead_letters
                        .with_label_values(&[r.as_str()])
                        .get(),
                )
            })
            .collect();
        let probe = lock(&self.outbox).clone();
        let now_ms = chrono::Utc::now().timestamp_millis();
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            generated_at_ms: now_ms,
            started_at_ms: self.started_at_ms,
            uptime_s: round3(self.started.elapsed().as_secs_f64()),
            sample_interval_s: SAMPLE_EVERY.as_secs_f64(),
            ready,
            readiness,
            stages,
            tasks,
            outbox: OutboxStatus {
                backlog_rows: self.metrics.outbox_backlog.get(),
                oldest_age_s: probe
                    .oldest_fetched_ms
                    .map(|ms| round3((now_ms - ms).max(0) as f64 / 1000.0)),
                checked_at_ms: probe.checked_at_ms,
                error: probe.error,
            },
            kafka: KafkaStatus {
                topic: self.topic.clone(),
                dlq_topic: self.dlq_topic.clone(),
                lag_records: partitions.iter().map(|p| p.lag_records).sum(),
                partitions,
                group: self.progress.group(),
            },
            latency,
            dead_letters: DeadLettersStatus {
                total: by_reason.values().sum(),
                by_reason,
                recent: self.metrics.recent_dead_letters.snapshot(),
            },
            services: self.services_now(),
            leases: self
                .metrics
                .leases
                .snapshot()
                .into_iter()
                .map(|l| LeaseStatus {
                    name: l.name.to_string(),
                    held: l.held,
                    since_ms: l.since_ms,
                    takeovers: self
                        .metrics
                        .lease_takeovers
                        .with_label_values(&[l.name])
                        .get(),
                    lost: self.metrics.lease_lost.with_label_values(&[l.name]).get(),
                    lost_at_ms: l.lost_at_ms,
                })
                .collect(),
            config: self.config_json.clone(),
        }
    }

    /// Looks up the outbox's oldest row and, until known, the Postgres version.
    async fn probe_postgres(&self, pool: &sqlx::PgPool) {
        let timeout = Duration::from_secs(2);
        let oldest = tokio::time::timeout(
            timeout,
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT fetched_at_ms FROM outbox ORDER BY seq LIMIT 1",
            )
            .fetch_optional(pool),
        )
        .await;
        {
            let mut probe = lock(&self.outbox);
            match oldest {
                Ok(Ok(row)) => {
                    probe.oldest_fetched_ms = row.flatten();
                    probe.checked_at_ms = Some(chrono::Utc::now().timestamp_millis());
                    probe.error = None;
                }
                Ok(Err(e)) => probe.error = Some(format!("postgres: {e}")),
                Err(_) => probe.error = Some("postgres: timed out".into()),
            }
        }
        let known = lock(&self.services)
            .get("postgres")
            .is_some_and(|s| s.version.is_some());
        if !known
            && let Ok(Ok(v)) = tokio::time::timeout(
                timeout,
                sqlx::query_scalar::<_, String>("SHOW server_version").fetch_one(pool),
            )
            .await
        {
            self.set_service_version("postgres", &v);
        }
    }
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(5432)
            )
        })
        .unwrap_or_default()
}

/// The one-line progress summary of the log (and of `STATUS=`).
pub fn summary_line(status: &Status) -> String {
    let rate = |name: &str| {
        status
            .stages
            .iter()
            .find(|s| s.name == name)
            .map_or(0.0, |s| s.rate_per_s)
    };
    let oldest = status
        .outbox
        .oldest_age_s
        .map_or(String::new(), |a| format!(", oldest {a:.1}s"));
    let p99 = status
        .latency
        .e2e
        .last_60s
        .p99_s
        .map_or("-".to_string(), |v| format!("{:.0}ms", v * 1000.0));
    let ready = if status.ready {
        "ready".to_string()
    } else {
        format!("NOT READY ({})", status.readiness.join("; "))
    };
    format!(
        "fetched {:.0}/s, landed {:.0}/s, relayed {:.0}/s, written {:.0}/s, dead-lettered {:.0}/s; \
         outbox {} rows{oldest}; kafka lag {} records; e2e p99 {p99} (1 min); {ready}",
        rate("source"),
        rate("landing"),
        rate("relay"),
        rate("cassandra"),
        rate("dlq"),
        status.outbox.backlog_rows,
        status.kafka.lag_records,
    )
}

/// Samples once a second until `token`; every 5 s probes Postgres (when `pool`) and sends
/// the one-line summary as `STATUS=` to systemd (when `notifier` is connected, so that
/// `systemctl status pipeline` shows it); every `progress_every` (unless zero) logs that line
/// at info.
pub async fn run_sampler(
    board: Arc<StatusBoard>,
    pool: Option<sqlx::PgPool>,
    notifier: super::notify::Notifier,
    progress_every: Duration,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let progress_ticks = progress_every.as_secs().max(1);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = token.cancelled() => return,
        }
        board.sample(Instant::now());
        n += 1;
        if let Some(pool) = &pool
            && n % OUTBOX_PROBE_EVERY == 1
        {
            board.probe_postgres(pool).await;
        }
        if notifier.enabled() && n % OUTBOX_PROBE_EVERY == 1 {
            notifier.notify(&format!("STATUS={}", summary_line(&board.status())));
        }
        if !progress_every.is_zero() && n.is_multiple_of(progress_ticks) {
            tracing::info!(target: "pipeline::progress", "{}", summary_line(&board.status()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> StatusBoard {
        let config = Config::default();
        StatusBoard::new(
            &config,
            Metrics::new(),
            Arc::new(Health::default()),
            Arc::new(Progress::default()),
        )
    }

    #[test]
    fn a_standby_task_is_ready_and_the_leases_are_listed() {
        let b = board();
        for task in ["source", "landing", "consumer"] {
            b.health.set(task, TaskState::Ready);
        }
        b.health.set("relay", TaskState::Standby);
        b.metrics.leases.set("relay", false);
        b.metrics.lease_lost.with_label_values(&["relay"]).inc();
        b.metrics.leases.set("source", true);
        b.metrics
            .lease_takeovers
            .with_label_values(&["source"])
            .inc();
        let s = b.status();
        assert!(s.ready, "a standby is healthy: {:?}", s.readiness);
        assert!(b.health.not_ready().is_empty());
        let relay = s.tasks.iter().find(|t| t.name == "relay").expect("relay");
        assert_eq!(relay.state, "standby");
        let leases: Vec<(&str, bool, u64, u64)> = s
            .leases
            .iter()
            .map(|l| (l.name.as_str(), l.held, l.takeovers, l.lost))
            .collect();
        assert_eq!(leases, [("relay", false, 0, 1), ("source", true, 1, 0)]);
        let text = client::render_text(&s, 10, 0);
        let line = text
            .lines()
            .find(|l| l.starts_with("LEASES"))
            .expect("a LEASES line");
        assert!(
            line.contains("relay standby 0s (1 lost)")
                && line.contains("source held 0s (1 takeovers)"),
            "{line}"
        );
        // A document of a daemon before leases still reads.
        let mut json = serde_json::to_value(&s).expect("json");
        json.as_object_mut().expect("object").remove("leases");
        let old: Status = serde_json::from_value(json).expect("old document");
        assert!(old.leases.is_empty());
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let bounds = [0.1, 0.2, 0.4];
        // 10 in (0, 0.1], 10 in (0.1, 0.2], 0 in (0.2, 0.4], 0 above.
        let counts = [10, 20, 20, 20];
        assert_eq!(quantile(&bounds, &counts, 0.5), Some(0.1));
        let p75 = quantile(&bounds, &counts, 0.75).expect("some");
        assert!((p75 - 0.15).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(quantile(&bounds, &[0, 0, 0, 5], 0.5), Some(0.4));
    }

    #[test]
    fn rates_history_and_latency_come_from_the_metrics() {
        let b = board();
        let t0 = Instant::now();
        b.sample(t0);
        b.metrics.records.with_label_values(&["sink"]).inc_by(500);
        b.metrics
            .dead_letters
            .with_label_values(&["not_json"])
            .inc_by(3);
        for _ in 0..100 {
            b.metrics.e2e_latency.observe(0.02);
        }
        b.sample(t0 + Duration::from_millis(500));
        let s = b.status();
        let sink = s
            .stages
            .iter()
            .find(|s| s.name == "cassandra")
            .expect("sink");
        assert_eq!(sink.records_total, 500);
        assert_eq!(sink.history_per_s, vec![1000.0]);
        assert_eq!(s.dead_letters.by_reason["not_json"], 3);
        assert_eq!(s.dead_letters.total, 3);
        assert_eq!(s.latency.e2e.since_start.count, 100);
        let p50 = s.latency.e2e.last_60s.p50_s.expect("p50");
        assert!(p50 > 0.01 && p50 <= 0.025, "{p50}");
        assert_eq!(s.latency.stages.len(), STAGES.len());
        assert!(!s.ready, "no tasks yet");
        assert!(
            s.readiness.iter().any(|r| r.contains("relay")),
            "{:?}",
            s.readiness
        );
        assert!(
            summary_line(&s).contains("written 1000/s"),
            "{}",
            summary_line(&s)
        );
    }

    /// An hour (and more) of sampling and polling: the rings stay at their bounds and the
    /// document stops growing once the history is full.
    #[test]
    fn a_day_of_samples_does_not_grow_the_board() {
        let b = board();
        b.progress
            .assigned
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for p in 0..3 {
            b.progress.partition(p);
        }
        let t0 = Instant::now();
        let mut size_at_history = 0;
        for i in 0..(3_600 * 2) {
            b.metrics.records.with_label_values(&["relay"]).inc_by(7);
            b.metrics.e2e_latency.observe(0.01 * (i % 50) as f64);
            b.sample(t0 + Duration::from_secs(i));
            if i == HISTORY as u64 + 10 {
                size_at_history = serde_json::to_vec(&b.status()).expect("json").len();
            }
        }
        let s = lock(&b.samples);
        for ring in &s.rates {
            assert_eq!(ring.len(), HISTORY);
            assert!(ring.allocated() <= HISTORY + 1, "{}", ring.allocated());
        }
        assert_eq!(s.e2e.snapshots.len(), LATENCY_WINDOW + 1);
        assert_eq!(s.latency_p99.len(), HISTORY);
        assert_eq!(s.committed.len(), 3);
        assert!(s.committed.values().all(|r| r.len() == LATENCY_WINDOW + 1));
        drop(s);
        let size = serde_json::to_vec(&b.status()).expect("json").len();
        assert!(
            size <= size_at_history + 64,
            "status grew from {size_at_history} to {size} bytes"
        );
        assert!(size < 64 * 1024, "{size}");
    }

    #[test]
    fn group_membership_is_shown() {
        let b = board();
        let s = b.status();
        assert_eq!(s.kafka.group, None, "static assignment: no group");
        assert!(
            !serde_json::to_string(&s.kafka)
                .expect("json")
                .contains("\"group\"")
        );
        b.progress.update_group(|g| {
            g.group = "pipeline".into();
            g.member_id = "pipeline-1234".into();
            g.generation = 7;
            g.leader = true;
            g.partitions = vec![1, 4];
        });
        let s = b.status();
        let g = s.kafka.group.clone().expect("group");
        assert_eq!((g.generation, g.partitions.clone()), (7, vec![1, 4]));
        let text = super::client::render_text(&s, 10, 0);
        assert!(
            text.contains("member pipeline-1234 generation 7 (leader) partitions [1, 4]"),
            "{text}"
        );
        let back: Status =
            serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parse");
        assert_eq!(back.kafka.group, Some(g));
    }

    #[test]
    fn config_is_shown_without_secrets() {
        let mut config = Config::default();
        config.postgres.password = Some(crate::config::Secret::new("pg-secret-771"));
        let b = StatusBoard::new(
            &config,
            Metrics::new(),
            Arc::new(Health::default()),
            Arc::new(Progress::default()),
        );
        let text = serde_json::to_string(&b.status()).expect("json");
        assert!(!text.contains("pg-secret-771"));
        assert!(text.contains("\"password\":\"***\""), "{text}");
        assert_eq!(b.status().config["kafka"]["topic"], "users_created");
    }
}
