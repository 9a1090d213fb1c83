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
use crate::consume::{self, ConsumerStage, Progress};
use crate::exit::Exit;
use crate::kafka;
use crate::landing::{self, Landing, LandingInput, LandingStage};
use crate::lease::{self, Elector};
use crate::relay::RelayStage;
use crate::shutdown::Signals;
use crate::sink::CassandraSink;
use crate::source::{SourceStage, UserApiClient};
use crate::supervise::{Health, Probes, Supervisor};
use crate::telemetry::metrics::LatencyRecorder;
use crate::telemetry::notify::Notifier;
use crate::telemetry::report::{self, RunReport};
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
    let supervisor = supervisor.with_probes(Probes::from_config(&config));
    // Shutdown order: the source stops first; landing runs until its channel closes (its
    // token is only the deadline's hard stop); then the relay; then the consumers.
    let source_token = CancellationToken::new();
    let landing_stop = CancellationToken::new();
    let relay_token = CancellationToken::new();
    let consumer_token = CancellationToken::new();
    // Cancelled when the bounded ingest is complete: the source finished *and* landing
    // committed every page it was handed (its channel closed and drained).
    let ingest_done = CancellationToken::new();
    // The source starts once the stages after it are up (`source::wait_for_downstream`).
    let relay_up = CancellationToken::new();
    let consumer_up = CancellationToken::new();

    let pool = landing::connect_lazy(&config.postgres).map_err(|e| e.to_string())?;
    let landing = Landing::new(pool).with_migrate_on_start(config.postgres.migrate_on_start);
    let sampler = tokio::spawn(status::run_sampler(
        Arc::clone(&board),
        Some(landing.pool().clone()),
        Notifier::from_env(),
        config.log.progress_interval,
        http_stop.clone(),
    ));

    // API ──► source ──► (bounded channel) ──► landing ──► Postgres users + outbox
    let mut ingest_handles = Vec::new();
    if config.source.enabled {
        let (tx, rx) = mpsc::channel(config.landing.channel_capacity);
        metrics
            .channel_capacity
            .with_label_values(&["source_to_landing"])
            .set(config.landing.channel_capacity as i64);
        let client = UserApiClient::new(&config.source, &config.runtime.backoff, metrics.clone())
            .map_err(|e| format!("source: {e}"))?;
        let source = SourceStage {
            client,
            cursor: Arc::new(landing.clone()),
            out: tx,
            downstream: vec![relay_up.clone(), consumer_up.clone()],
            lease: if config.source.exclusive {
                let key = lease::source_key(&config.source.url, &config.source.seed);
                Some(
                    Elector::new(
                        "source",
                        key,
                        &config.postgres,
                        &config.lease,
                        metrics.clone(),
                    )
                    .map_err(|e| e.to_string())?,
                )
            } else {
                None
            },
            kept: std::sync::Mutex::new(None),
        };
        ingest_handles.push(supervisor.run(source, source_token.clone()));
        let landing_stage = LandingStage {
            landing: landing.clone(),
            input: LandingInput::new(rx),
            metrics: metrics.clone(),
            done: ingest_done.clone(),
        };
        ingest_handles.push(supervisor.run(landing_stage, landing_stop.clone()));
    } else {
        ingest_done.cancel();
    }

    // outbox ──► relay ──► Kafka `kafka.topic` (oversized records ──► `dlq.topic`)
    let relay = RelayStage {
        config: Arc::clone(&config),
        landing: landing.clone(),
        metrics: metrics.clone(),
        up: relay_up,
        lease: Elector::new(
            "relay",
            lease::RELAY_LOCK_KEY,
            &config.postgres,
            &config.lease,
            metrics.clone(),
        )
        .map_err(|e| e.to_string())?,
    };
    let relay_handle = supervisor.run(relay, relay_token.clone());

    // Kafka ──► per-partition consumers ──► validate ──► Cassandra rows + offsets
    //                                          └──► `dlq.topic` with a reason
    let consumer_handle = if config.consumer.enabled {
        let consumers = ConsumerStage {
            config: Arc::clone(&config),
            metrics: metrics.clone(),
            latency: Arc::clone(&latency),
            progress: Arc::clone(&progress),
            board: Arc::clone(&board),
            up: consumer_up,
            membership: Arc::default(),
        };
        Some(supervisor.run(consumers, consumer_token.clone()))
    } else {
        consumer_up.cancel();
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
    let mut signals =
        Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let drained = wait_drained(
        options.drain_and_exit,
        ingest_done.clone(),
        metrics.clone(),
        Arc::clone(&progress),
        config.consumer.enabled,
    );
    let mut outcome = tokio::select! {
        signal = signals.recv() => { tracing::info!("{signal}: shutting down"); Outcome::Stopped }
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
        signal = signals.recv() => {
            tracing::warn!("second signal ({signal}): exiting now");
            Exit::Interrupted.now();
        }
    }
    landing_stop.cancel();
    if let Some(w) = watchdog {
        w.abort();
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sampler).await;
    Ok((outcome, report::report(&metrics, &latency, started)))
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

/// `pipeline migrate`.
///
/// # Errors
/// The migration error.
pub async fn migrate(config: &Config) -> Result<(), String> {
    let pool = landing::connect_lazy(&config.postgres).map_err(|e| e.to_string())?;
    landing::migrate(&pool).await.map_err(|e| e.to_string())
}

/// `pipeline check --connect`: each service's answer (lines after the first detail what Kafka and
/// Cassandra show of their clusters), or why it did not answer.
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
        let k = &config.kafka;
        let client = kafka::connect(k).await.map_err(|e| e.to_string())?;
        let topics = kafka::deadline("list topics", k.request_timeout, client.list_topics())
            .await
            .map_err(|e| e.to_string())?;
        let names = [k.topic.as_str(), config.dlq.topic.as_str()];
        let view = kafka::admin::cluster(&client, &names, k.request_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut with_min_isr = Vec::new();
        for topic in names {
            // The topic's own value (what the broker enforces), else what we would create.
            let min_isr = if view.topics.contains_key(topic) {
                kafka::admin::topic_configs(
                    &client,
                    topic,
                    &[kafka::admin::MIN_INSYNC_REPLICAS],
                    k.request_timeout,
                )
                .await
                .ok()
                .and_then(|c| c.get(kafka::admin::MIN_INSYNC_REPLICAS).cloned().flatten())
                .and_then(|v| v.parse().ok())
            } else {
                k.min_insync_replicas.map(i32::from)
            };
            with_min_isr.push((topic, min_isr));
        }
        let mut lines = vec![format!(
            "{} topics; cluster {} with {} broker(s), controller {}",
            topics.len(),
            view.cluster_id.as_deref().unwrap_or("?"),
            view.brokers.len(),
            view.active_controller()
        )];
        lines.extend(view.report_lines(&with_min_isr));
        Ok::<_, String>(lines.join("\n"))
    };
    out.push(("kafka".to_string(), kafka.await));
    let cassandra = async {
        let sink = CassandraSink::connect(&config.cassandra).await;
        // The nodes also when the sink cannot start (a missing keyspace, a node down).
        let nodes = match crate::sink::nodes::cluster(&config.cassandra).await {
            Ok(cluster) => cluster.report_lines(&config.cassandra.keyspace),
            Err(e) => vec![format!("cluster: cannot read the nodes: {e}")],
        };
        let first = match sink {
            Ok(_) => format!("keyspace {} ready", config.cassandra.keyspace),
            Err(e) => {
                return Err(std::iter::once(e.to_string())
                    .chain(nodes)
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
        };
        Ok::<_, String>(
            std::iter::once(first)
                .chain(nodes)
                .collect::<Vec<_>>()
                .join("\n"),
        )
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
    if config.schema_registry.enabled() {
        let registry = async {
            let errors = Metrics::new().schema_registry_errors;
            let client = crate::registry::SchemaRegistry::new(&config.schema_registry, errors)
                .map_err(|e| e.to_string())?;
            let subject = config.schema_registry.subject_for(&config.kafka.topic);
            let schema = crate::registry::message_schema();
            match client.lookup(&subject, &schema).await {
                Ok(Some(r)) => Ok(format!(
                    "subject {} version {} id {} (value_format {:?})",
                    r.subject, r.version, r.id, config.kafka.value_format
                )),
                Ok(None) => Ok(format!(
                    "subject {subject}: the message schema is not registered yet (the relay registers it at start with value_format json_sr)"
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        out.push(("schema_registry".to_string(), registry.await));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A drain whose conditions all hold: ingest done, outbox empty, one partition committed
    /// up to its high watermark by a fetch that started after the relay went idle.
    fn drained_state() -> (CancellationToken, Metrics, Arc<Progress>) {
        let done = CancellationToken::new();
        done.cancel();
        let metrics = Metrics::new();
        metrics.outbox_backlog.set(0);
        let progress = Arc::new(Progress::default());
        progress.assigned.store(true, Ordering::SeqCst);
        let p = progress.partition(0);
        p.committed.store(10, Ordering::SeqCst);
        p.high_watermark.store(10, Ordering::SeqCst);
        (done, metrics, progress)
    }

    /// Keeps partition 0's latest fetch "started now", as a live fetcher does.
    fn keep_fetching(progress: &Arc<Progress>) -> tokio::task::JoinHandle<()> {
        let p = progress.partition(0);
        tokio::spawn(async move {
            loop {
                p.last_fetch_started_ms
                    .store(chrono::Utc::now().timestamp_millis(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    #[tokio::test]
    async fn drain_waits_for_every_condition() {
        let (done, metrics, progress) = drained_state();
        let fetcher = keep_fetching(&progress);
        let drained = wait_drained(true, done, metrics, Arc::clone(&progress), true);
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("drained once everything is committed");
        fetcher.abort();
    }

    #[tokio::test]
    async fn drain_does_not_end_with_work_left() {
        // Rows waiting in the outbox.
        let (done, metrics, progress) = drained_state();
        let fetcher = keep_fetching(&progress);
        metrics.outbox_backlog.set(3);
        let drained = wait_drained(true, done, metrics.clone(), Arc::clone(&progress), true);
        assert!(
            tokio::time::timeout(Duration::from_millis(800), drained)
                .await
                .is_err(),
            "drained with 3 rows in the outbox"
        );
        // A partition behind its high watermark.
        let (done, metrics, progress) = drained_state();
        let behind = keep_fetching(&progress);
        progress
            .partition(0)
            .high_watermark
            .store(11, Ordering::SeqCst);
        let drained = wait_drained(true, done, metrics, Arc::clone(&progress), true);
        assert!(
            tokio::time::timeout(Duration::from_millis(800), drained)
                .await
                .is_err(),
            "drained with a record not committed"
        );
        behind.abort();
        // Ingest not done (the source still runs).
        let (_, metrics, progress) = drained_state();
        let drained = wait_drained(
            true,
            CancellationToken::new(),
            metrics,
            Arc::clone(&progress),
            true,
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(500), drained)
                .await
                .is_err(),
            "drained before the source finished"
        );
        fetcher.abort();
    }

    #[tokio::test]
    async fn without_drain_and_exit_the_daemon_runs_until_a_signal() {
        let (done, metrics, progress) = drained_state();
        let drained = wait_drained(false, done, metrics, progress, true);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), drained)
                .await
                .is_err()
        );
    }
}
