//! Wires the stages together: `run`, `check`, `migrate`.
//!
//! Shutdown order (SIGTERM/SIGINT, or `--drain-and-exit` once everything is through):
//! 1. the source stops fetching; landing drains the channel and commits what it holds;
//! 2. the relay finishes its round (unrelayed rows simply stay in the outbox);
//! 3. consumers stop fetching; writers finish the batches in hand and store offsets.
//!
//! All of it must end within `runtime.shutdown_deadline`, else the process exits 1 (no data is
//! lost either way: everything unacknowledged is re-read after a restart). A second signal
//! exits at once with 130.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consume::{self, Progress};
use crate::kafka;
use crate::landing::{self, Landing, LandingInput};
use crate::relay;
use crate::sink::CassandraSink;
use crate::source::{self, UserApiClient};
use crate::supervise::{Health, Supervisor};
use crate::telemetry::metrics::LatencyRecorder;
use crate::telemetry::notify::Notifier;
use crate::telemetry::status::{self, StatusBoard};
use crate::telemetry::{Metrics, http};

/// Options of `pipeline run` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (gracefully) once the bounded source is done and everything reached Cassandra.
    pub drain_and_exit: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Clean stop within the deadline.
    Stopped,
    /// A stage failed fatally.
    Fatal(String),
    /// The shutdown deadline passed.
    DeadlineExceeded,
}

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
fn process_cpu_s() -> Option<f64> {
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
fn process_rss_peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn report(metrics: &Metrics, latency: &LatencyRecorder, started: Instant) -> RunReport {
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

/// Runs the daemon until a signal, a fatal error, or (with `drain_and_exit`) the end of a
/// bounded run.
///
/// # Errors
/// Only start-up errors that precede supervision (the HTTP listener cannot bind).
pub async fn run(config: Config, options: RunOptions) -> Result<(Outcome, RunReport), String> {
    let started = Instant::now();
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let latency = Arc::new(LatencyRecorder::new());
    let health = Arc::new(Health::default());
    let notifier = Notifier::from_env();
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| format!("http.listen {}: cannot bind: {e}", config.http.listen))?;
    let progress = Arc::new(Progress::default());
    let board = Arc::new(StatusBoard::new(
        &config,
        metrics.clone(),
        Arc::clone(&health),
        Arc::clone(&progress),
    ));
    let http_stop = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(
        listener,
        http::HttpState {
            metrics: metrics.clone(),
            health: Arc::clone(&health),
            board: Arc::clone(&board),
            token: config.http.token.clone(),
        },
        http_stop.clone(),
    ));
    tracing::info!(
        listen = %config.http.listen,
        page = %format!("{}/", status::client::base_url(config.http.listen)),
        "status page, /api/status, /metrics and health endpoints up"
    );

    let (supervisor, mut fatal_rx) = Supervisor::new(
        metrics.clone(),
        Arc::clone(&health),
        config.runtime.backoff.clone(),
        config.runtime.healthy_after,
    );
    let source_token = CancellationToken::new();
    let landing_stop = CancellationToken::new();
    let relay_token = CancellationToken::new();
    let consumer_token = CancellationToken::new();
    // Cancelled when the bounded ingest is complete: the source finished *and* landing
    // committed every page it was handed (its channel closed and drained).
    let ingest_done = CancellationToken::new();

    let pool = landing::connect_lazy(&config.postgres).map_err(|e| e.to_string())?;
    let landing = Landing::new(pool);
    let sampler = tokio::spawn(status::run_sampler(
        Arc::clone(&board),
        Some(landing.pool().clone()),
        Notifier::from_env(),
        config.log.progress_interval,
        http_stop.clone(),
    ));
    let migrated = Arc::new(tokio::sync::OnceCell::new());
    let ensure_migrated = {
        let landing = landing.clone();
        let migrated = Arc::clone(&migrated);
        let enabled = config.postgres.migrate_on_start;
        move || {
            let landing = landing.clone();
            let migrated = Arc::clone(&migrated);
            async move {
                if enabled {
                    migrated
                        .get_or_try_init(|| landing::migrate(landing.pool()))
                        .await?;
                }
                Ok::<(), crate::supervise::StageError>(())
            }
        }
    };

    // The source starts once the stages after it are up (see `wait_for_downstream`).
    let relay_up = CancellationToken::new();
    let consumer_up = CancellationToken::new();
    if !config.consumer.enabled {
        consumer_up.cancel();
    }

    // Source and landing.
    let mut ingest_handles = Vec::new();
    if config.source.enabled {
        let (tx, rx) = mpsc::channel(config.landing.channel_capacity);
        metrics
            .channel_capacity
            .with_label_values(&["source_to_landing"])
            .set(config.landing.channel_capacity as i64);
        let input = LandingInput::new(rx);
        let client = UserApiClient::new(&config.source, &config.runtime.backoff, metrics.clone())
            .map_err(|e| format!("source: {e}"))?;
        {
            let landing = landing.clone();
            let ensure = ensure_migrated.clone();
            let tx = tx.clone();
            let downstream = [relay_up.clone(), consumer_up.clone()];
            ingest_handles.push(
                supervisor.spawn("source", source_token.clone(), move |ctx| {
                    let client = client.clone();
                    let cursor = Arc::new(landing.clone());
                    let tx = tx.clone();
                    let ensure = ensure.clone();
                    let downstream = downstream.clone();
                    async move {
                        ensure().await?;
                        if !wait_for_downstream(&ctx.token, &downstream).await {
                            return Ok(());
                        }
                        source::run_source(client, cursor, tx, ctx.token.clone(), || {
                            ctx.set_ready()
                        })
                        .await
                    }
                }),
            );
        }
        drop(tx);
        let landing2 = landing.clone();
        let m = metrics.clone();
        let ensure = ensure_migrated.clone();
        let stop = landing_stop.clone();
        let done = ingest_done.clone();
        ingest_handles.push(
            supervisor.spawn("landing", landing_stop.clone(), move |ctx| {
                let landing = landing2.clone();
                let input = Arc::clone(&input);
                let m = m.clone();
                let ensure = ensure.clone();
                let stop = stop.clone();
                let done = done.clone();
                async move {
                    ensure().await?;
                    landing::run_landing(landing, input, m, stop.clone(), || ctx.set_ready())
                        .await?;
                    if !stop.is_cancelled() {
                        done.cancel();
                    }
                    Ok(())
                }
            }),
        );
    } else {
        ingest_done.cancel();
    }

    // Relay.
    let relay_handle = {
        let config = Arc::clone(&config);
        let landing = landing.clone();
        let m = metrics.clone();
        let ensure = ensure_migrated.clone();
        let up = relay_up.clone();
        supervisor.spawn("relay", relay_token.clone(), move |ctx| {
            let config = Arc::clone(&config);
            let landing = landing.clone();
            let m = m.clone();
            let ensure = ensure.clone();
            let up = up.clone();
            async move {
                if test_hang_hook("relay") {
                    ctx.set_ready();
                    ctx.token.cancelled().await;
                    return Ok(());
                }
                let connect = async {
                    ensure().await?;
                    kafka::connect(&config.kafka).await
                };
                let Some(client) = until_cancelled(&ctx.token, connect).await? else {
                    return Ok(());
                };
                let client = Arc::new(client);
                relay::run_relay(config, landing, client, m, ctx.token.clone(), || {
                    ctx.set_ready();
                    up.cancel();
                })
                .await
            }
        })
    };

    // Consumers.
    let consumer_handle = if config.consumer.enabled {
        let config = Arc::clone(&config);
        let m = metrics.clone();
        let latency = Arc::clone(&latency);
        let progress = Arc::clone(&progress);
        let board = Arc::clone(&board);
        let up = consumer_up.clone();
        Some(
            supervisor.spawn("consumer", consumer_token.clone(), move |ctx| {
                let config = Arc::clone(&config);
                let m = m.clone();
                let latency = Arc::clone(&latency);
                let progress = Arc::clone(&progress);
                let board = Arc::clone(&board);
                let up = up.clone();
                async move {
                    let connect = async {
                        let sink = CassandraSink::connect(&config.cassandra).await?;
                        let client = kafka::connect(&config.kafka).await?;
                        Ok::<_, crate::supervise::StageError>((sink, client))
                    };
                    let Some((sink, client)) = until_cancelled(&ctx.token, connect).await? else {
                        return Ok(());
                    };
                    // For the status page only: a failure here is not the stage's.
                    if let Ok(version) = sink.release_version().await {
                        board.set_service_version("cassandra", &version);
                    }
                    let stage = consume::ConsumerStage {
                        config,
                        sink: Arc::new(sink),
                        client: Arc::new(client),
                        metrics: m,
                        latency,
                        progress,
                    };
                    consume::run_consumers(stage, ctx.token.clone(), || {
                        ctx.set_ready();
                        up.cancel();
                    })
                    .await
                }
            }),
        )
    } else {
        None
    };

    notifier.notify("READY=1");
    // The watchdog ping means "every connected stage is turning", not just "the runtime runs":
    // it is withheld while a stage is stalled (telemetry::heartbeat), so systemd restarts us.
    let watchdog = Notifier::watchdog_interval().map(|every| {
        let n = Notifier::from_env();
        let health = Arc::clone(&health);
        let heartbeats = Arc::clone(&metrics.heartbeats);
        let stall_after = config.runtime.stall_after;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut was_stalled = false;
            loop {
                tick.tick().await;
                let stalled = heartbeats.stalled(&health, stall_after);
                if stalled.is_empty() {
                    if was_stalled {
                        tracing::warn!("every stage is turning again; watchdog pings resume");
                    }
                    n.notify("WATCHDOG=1");
                } else {
                    if !was_stalled {
                        tracing::error!(stalled = %stalled.join(", "), ?stall_after, "stage stalled: withholding the watchdog ping (systemd will restart the daemon)");
                    }
                    n.notify(&format!("STATUS=stalled: {}", stalled.join(", ")));
                }
                was_stalled = !stalled.is_empty();
            }
        })
    });

    // Wait for a reason to stop.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install SIGTERM handler: {e}"))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot install SIGINT handler: {e}"))?;
    let drained = wait_drained(
        options.drain_and_exit,
        ingest_done.clone(),
        metrics.clone(),
        Arc::clone(&progress),
        config.consumer.enabled,
    );
    let mut outcome = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); Outcome::Stopped }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); Outcome::Stopped }
        Some(f) = fatal_rx.recv() => Outcome::Fatal(format!("{}: {}", f.task, f.message)),
        () = drained => { tracing::info!("everything drained; shutting down"); Outcome::Stopped }
    };
    notifier.notify("STOPPING=1");

    let shutdown = async {
        source_token.cancel();
        for h in ingest_handles {
            let _ = h.await;
        }
        relay_token.cancel();
        let _ = relay_handle.await;
        consumer_token.cancel();
        if let Some(h) = consumer_handle {
            let _ = h.await;
        }
        supervisor.wait().await;
    };
    let deadline = config.runtime.shutdown_deadline;
    tokio::select! {
        () = shutdown => {}
        () = tokio::time::sleep(deadline) => {
            tracing::error!(?deadline, "shutdown deadline passed; exiting with work in flight (it will be redone after restart)");
            if outcome == Outcome::Stopped {
                outcome = Outcome::DeadlineExceeded;
            }
        }
        _ = sigterm.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(130); }
        _ = sigint.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(130); }
    }
    landing_stop.cancel();
    if let Some(w) = watchdog {
        w.abort();
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sampler).await;
    Ok((outcome, report(&metrics, &latency, started)))
}

/// Test hook: `_PIPELINE_TEST_HANG=<task>` makes that task report ready and then stop turning
/// (it only waits for shutdown), for the watchdog test (tests/it/notify.rs). Not a config
/// key on purpose: no `PIPELINE_` prefix, never set outside tests.
fn test_hang_hook(task: &str) -> bool {
    std::env::var("_PIPELINE_TEST_HANG").is_ok_and(|v| v == task)
}

/// Resolves when `enabled` and the bounded ingest is complete (every fetched page landed),
/// the outbox is empty and every partition committed up to a high watermark fetched after the
/// relay went idle.
async fn wait_drained(
    enabled: bool,
    ingest_done: CancellationToken,
    metrics: Metrics,
    progress: Arc<Progress>,
    consumers: bool,
) {
    if !enabled {
        return std::future::pending().await;
    }
    ingest_done.cancelled().await;
    let relayed = metrics.records.with_label_values(&["relay"]);
    let landed = metrics.records.with_label_values(&["landing"]);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The relay has nothing left: backlog 0 observed after the last landing.
        if metrics.outbox_backlog.get() != 0 {
            continue;
        }
        let mark_relayed = relayed.get();
        let mark_landed = landed.get();
        let since = chrono::Utc::now().timestamp_millis();
        tokio::time::sleep(consume::DRAIN_SETTLE).await;
        if relayed.get() != mark_relayed
            || landed.get() != mark_landed
            || metrics.outbox_backlog.get() != 0
        {
            continue;
        }
        if !consumers {
            return;
        }
        // Wait for fetches that started after `since` to confirm everything is committed.
        let wait_until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < wait_until {
            if progress.caught_up_since(since) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Longest the source waits at start-up for the relay and the consumers (`wait_for_downstream`).
const SOURCE_START_WAIT: Duration = Duration::from_secs(10);

/// Holds the source back at start-up until the relay and this daemon's consumers are up
/// (topics created, connections open, partitions assigned), so the first pages do not wait
/// in the outbox for them: without it, the records of the first ~0.3 s queued behind
/// start-up and were the p99 of a 20 s run at 2,000/s. At most [`SOURCE_START_WAIT`]: a
/// relay standing by for another daemon's lock, or Kafka down, must not keep the source from
/// landing (the outbox is durable). A restarted source does not wait again. False when the
/// daemon stops first.
async fn wait_for_downstream(token: &CancellationToken, up: &[CancellationToken]) -> bool {
    let all_up = async {
        for stage in up {
            stage.cancelled().await;
        }
    };
    tokio::select! {
        () = all_up => true,
        () = tokio::time::sleep(SOURCE_START_WAIT) => {
            tracing::info!(
                waited = ?SOURCE_START_WAIT,
                "relay or consumers not up yet; the source starts anyway (the outbox keeps the records)"
            );
            true
        }
        () = token.cancelled() => false,
    }
}

/// Runs a connect phase unless `token` is cancelled first (then `Ok(None)`): a stage that is
/// still connecting when shutdown starts must not hold the shutdown for a whole timeout.
///
/// # Errors
/// The connect phase's error.
async fn until_cancelled<T>(
    token: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, crate::supervise::StageError>>,
) -> Result<Option<T>, crate::supervise::StageError> {
    tokio::select! {
        r = fut => r.map(Some),
        () = token.cancelled() => Ok(None),
    }
}

/// `pipeline migrate`.
///
/// # Errors
/// The migration error.
pub async fn migrate(config: &Config) -> Result<(), String> {
    let pool = landing::connect_lazy(&config.postgres).map_err(|e| e.to_string())?;
    landing::migrate(&pool).await.map_err(|e| e.to_string())
}

/// `pipeline check --connect`: reaches each service, returns one line per service.
pub async fn check_connect(config: &Config) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    let pg = async {
        let pool = landing::connect_lazy(&config.postgres).map_err(|e| e.to_string())?;
        let v: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(v.split(',').next().unwrap_or_default().to_string())
    };
    out.push(("postgres".to_string(), pg.await));
    let kafka = async {
        let client = kafka::connect(&config.kafka)
            .await
            .map_err(|e| e.to_string())?;
        let topics = kafka::deadline(
            "list topics",
            config.kafka.request_timeout,
            client.list_topics(),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(format!("{} topics", topics.len()))
    };
    out.push(("kafka".to_string(), kafka.await));
    let cassandra = async {
        let _sink = CassandraSink::connect(&config.cassandra)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(format!("keyspace {} ready", config.cassandra.keyspace))
    };
    out.push(("cassandra".to_string(), cassandra.await));
    let api = async {
        let client = UserApiClient::new(&config.source, &config.runtime.backoff, Metrics::new())
            .map_err(|e| e.to_string())?;
        let page = client
            .fetch_once(Some(1))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(format!("{} users in a test page", page.users.len()))
    };
    if config.source.enabled {
        out.push(("source".to_string(), api.await));
    }
    out
}
