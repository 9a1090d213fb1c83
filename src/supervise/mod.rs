//! Task supervision: restart with backoff and jitter, fatal stop, readiness.
//!
//! Each stage is a function that builds and runs the stage once. The supervisor calls it
//! again after a *retriable* failure (after a backoff delay that grows with consecutive
//! failures and resets after `healthy_after` of good running), and stops the daemon on a
//! *fatal* one (bad credentials, a schema the daemon cannot use): retrying those would only
//! hammer a service with requests that cannot succeed.
//!
//! # Cancellation
//! A stage receives its own `CancellationToken`; cancelling it ends the stage's loop at its
//! next safe point (after the batch in hand), and the supervisor does not restart a stage
//! whose token is cancelled.

pub(crate) mod config;
pub mod probe;

pub use probe::{Probes, Service};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BackoffConfig;
use crate::telemetry::Metrics;

/// A stage's failure: the typed error of the module that knows the cause, with its context
/// (service, key, record, partition) and `#[source]` chain. The supervisor's one decision,
/// retry or stop, is [`StageError::is_retriable`]; each module classifies its own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The randomuser API (`source`).
    #[error("source: {0}")]
    Source(#[from] crate::source::FetchError),
    /// Postgres: landing, the outbox, migrations.
    #[error(transparent)]
    Postgres(#[from] crate::landing::PostgresError),
    /// Kafka: connect, topics, produce, fetch.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// Cassandra: connect, rows, offsets.
    #[error(transparent)]
    Cassandra(#[from] crate::sink::SinkError),
    /// A lease session (src/lease) failed or did not answer.
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    /// Kafka's group coordinator: membership, offset commits.
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
    /// The schema registry: unreachable (retriable), or it refused our schema (fatal).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A record the relay cannot produce (a corrupted landed row): the row stays in the outbox.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    /// A stage this one hands records to (or takes budget from) has gone away: only during
    /// shutdown or after that stage failed, which the supervisor handles; a restart is right.
    #[error("{0} is gone")]
    Disconnected(&'static str),
    /// The stage's task panicked: a bug, but data is safe by construction (offsets after
    /// writes), so it is restarted like a failure.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// Supervisor tests only.
    #[cfg(test)]
    #[error("{message}")]
    Test {
        message: String,
        retriable: bool,
        service: Option<Service>,
    },
}

impl StageError {
    /// Whether running the stage again may succeed: transient network and server conditions
    /// are; refused credentials, unusable certificates, a schema or request the service
    /// rejects and corrupted data are not (retrying would only hammer the service).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Source(e) => e.is_retriable(),
            Self::Postgres(e) => e.is_retriable(),
            Self::Kafka(e) => e.is_retriable(),
            Self::Cassandra(e) => e.is_retriable(),
            Self::Lease(e) => e.is_retriable(),
            Self::Group(e) => e.is_retriable(),
            Self::Registry(e) => e.is_retriable(),
            Self::Relay(_) => false,
            Self::Disconnected(_) | Self::Panicked(_) => true,
            #[cfg(test)]
            Self::Test { retriable, .. } => *retriable,
        }
    }

    /// The service the failure came from, whose return the supervisor watches for.
    pub fn service(&self) -> Option<Service> {
        match self {
            Self::Source(_) => Some(Service::Api),
            Self::Postgres(_) | Self::Lease(_) => Some(Service::Postgres),
            Self::Kafka(_) | Self::Group(_) => Some(Service::Kafka),
            Self::Cassandra(_) => Some(Service::Cassandra),
            Self::Registry(_) | Self::Relay(_) | Self::Disconnected(_) | Self::Panicked(_) => None,
            #[cfg(test)]
            Self::Test { service, .. } => *service,
        }
    }

    /// The error and its causes, `: `-joined (for logs, `/readyz` and the status page).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let next = cause.to_string();
            // thiserror's `transparent` and "{0}" formats already include the cause.
            if !text.contains(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = cause.source();
        }
        text
    }
}

/// The delay before retry number `attempt` (0-based): `initial * multiplier^attempt`, capped at
/// `max`, then reduced by up to `jitter` of itself at random ("equal-ish jitter": spreads
/// retries of many tasks without ever exceeding the cap).
pub fn backoff_delay(config: &BackoffConfig, attempt: u32, random01: f64) -> Duration {
    let base = config.initial.as_secs_f64() * config.multiplier.powi(attempt.min(64) as i32);
    let capped = base.min(config.max.as_secs_f64());
    let factor = 1.0 - config.jitter * random01.clamp(0.0, 1.0);
    Duration::from_secs_f64((capped * factor).max(0.0))
}

/// Consecutive-failure backoff for a loop inside a stage.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: &BackoffConfig) -> Self {
        Self {
            config: config.clone(),
            attempt: 0,
        }
    }
    /// The next delay; each call grows it.
    pub fn next_delay(&mut self) -> Duration {
        let d = backoff_delay(&self.config, self.attempt, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        d
    }
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A stage as the supervisor runs it: the one shape every stage of the daemon has.
///
/// One value lives for the whole daemon, so state that must survive a restart (landing's page
/// in hand, the source's channel) lives in it. Each (re)start calls [`Stage::start`] (connect,
/// create what is missing) and then [`Stage::run`] until the stage's token is cancelled or its
/// input ends; [`Stage::drain`] runs after `run` returned `Ok` (the input ended or the token
/// was cancelled) and hands on what the stage still holds. An error from any of them goes to
/// the supervisor, which restarts the stage after a backoff or stops the daemon
/// ([`StageError::is_retriable`]).
///
/// # Cancellation
/// A `start` that is still connecting when the token is cancelled is dropped (no shutdown
/// waits for a connect timeout); `run` is expected to stop at its next safe point (after the
/// batch in hand) once the token is cancelled.
pub trait Stage: Send + Sync + 'static {
    /// What `start` hands to `run`: the stage's connections.
    type Running: Send;

    /// Name in logs, metrics, `/readyz` and the status page.
    fn name(&self) -> &'static str;

    /// Connects and prepares. Call [`StageContext::set_ready`] here or in `run` once the
    /// stage does work.
    fn start(
        &self,
        ctx: &StageContext,
    ) -> impl Future<Output = Result<Self::Running, StageError>> + Send;

    /// Does the stage's work until the token is cancelled or the input ends.
    fn run(
        &self,
        running: Self::Running,
        ctx: &StageContext,
    ) -> impl Future<Output = Result<(), StageError>> + Send;

    /// After `run` returned `Ok`: finishes what the stage holds. Nothing by default.
    fn drain(&self, _ctx: &StageContext) -> impl Future<Output = Result<(), StageError>> + Send {
        async { Ok(()) }
    }
}

/// State of one supervised task, as `/readyz` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Starting,
    Ready,
    /// Connected, waiting for a lease another daemon holds (src/lease): healthy, so it counts
    /// as ready for `/readyz`.
    Standby,
    Failed,
    Finished,
}

/// The latest failure of a task, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The error as the stage reported it.
    pub message: String,
    /// Unix ms when it happened.
    pub at_ms: i64,
    /// Fatal errors stop the daemon; retriable ones restart the task.
    pub fatal: bool,
}

/// What the status page knows of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub name: String,
    pub state: TaskState,
    pub last_error: Option<TaskError>,
}

/// Readiness of all supervised tasks.
#[derive(Debug, Default)]
pub struct Health {
    tasks: Mutex<BTreeMap<String, TaskState>>,
    /// Latest failure per task (one entry per task: bounded).
    errors: Mutex<BTreeMap<String, TaskError>>,
}

impl Health {
    pub fn set(&self, task: &str, state: TaskState) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(task.to_string(), state);
        }
    }

    /// Remembers `task`'s latest failure (kept after it recovers, with its time).
    pub fn record_error(&self, task: &str, message: &str, fatal: bool) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.insert(
                task.to_string(),
                TaskError {
                    message: crate::model::truncate_utf8(message, 1024).to_string(),
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    fatal,
                },
            );
        }
    }

    /// Every task with its state and latest failure, by name.
    pub fn snapshot(&self) -> Vec<TaskSnapshot> {
        let tasks = match self.tasks.lock() {
            Ok(t) => t.clone(),
            Err(_) => return Vec::new(),
        };
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        tasks
            .into_iter()
            .map(|(name, state)| TaskSnapshot {
                last_error: errors.get(&name).cloned(),
                name,
                state,
            })
            .collect()
    }

    /// Tasks that are neither ready nor finished; empty means ready.
    pub fn not_ready(&self) -> Vec<String> {
        match self.tasks.lock() {
            Ok(tasks) if !tasks.is_empty() => tasks
                .iter()
                .filter(|(_, s)| {
                    !matches!(
                        s,
                        TaskState::Ready | TaskState::Standby | TaskState::Finished
                    )
                })
                .map(|(name, s)| format!("{name} ({s:?})"))
                .collect(),
            Ok(_) => vec!["no tasks started".into()],
            Err(_) => vec!["health lock poisoned".into()],
        }
    }

    pub fn state(&self, task: &str) -> Option<TaskState> {
        self.tasks.lock().ok()?.get(task).copied()
    }
}

/// Handed to a stage on every (re)start: its name, its token, a way to say "connected".
#[derive(Clone)]
pub struct StageContext {
    pub name: String,
    pub token: CancellationToken,
    health: Arc<Health>,
    metrics: Metrics,
}

impl StageContext {
    /// Marks the stage ready (connected, doing work). Call after connecting.
    pub fn set_ready(&self) {
        self.metrics.heartbeats.beat(&self.name);
        self.health.set(&self.name, TaskState::Ready);
        self.metrics.task_up.with_label_values(&[&self.name]).set(1);
    }

    /// Marks the stage standing by for a lease another daemon holds: running, connected and
    /// healthy (ready for `/readyz`, `pipeline_task_up` 1), but not working, so the stall
    /// watch leaves it alone (`pipeline_lease_held` says who works).
    pub fn set_standby(&self) {
        self.health.set(&self.name, TaskState::Standby);
        self.metrics.task_up.with_label_values(&[&self.name]).set(1);
    }
}

/// Why the daemon is stopping on its own.
#[derive(Debug, Clone)]
pub struct Fatal {
    pub task: String,
    pub message: String,
}

/// Spawns and restarts stages; reports fatal errors on a channel.
pub struct Supervisor {
    tracker: TaskTracker,
    metrics: Metrics,
    health: Arc<Health>,
    backoff: BackoffConfig,
    healthy_after: Duration,
    probes: Arc<Probes>,
    fatal_tx: mpsc::UnboundedSender<Fatal>,
}

/// The longest wait between attempts once a service answers again after an outage, until the
/// stage has run for `healthy_after`: the service may accept connections a little before it
/// serves (a broker still loading, a node joining), and the grown backoff must not come back.
const RECOVERY_MAX_DELAY: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Returns the supervisor and the receiver of fatal errors.
    pub fn new(
        metrics: Metrics,
        health: Arc<Health>,
        backoff: BackoffConfig,
        healthy_after: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<Fatal>) {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        (
            Self {
                tracker: TaskTracker::new(),
                metrics,
                health,
                backoff,
                healthy_after,
                probes: Arc::new(Probes::default()),
                fatal_tx,
            },
            fatal_rx,
        )
    }

    /// Watches the services of failed stages with `probes` (see [`probe`]): a stage waiting
    /// to retry a service that was down retries as soon as it answers again.
    #[must_use]
    pub fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = Arc::new(probes);
        self
    }

    /// Runs `stage` under supervision until it returns `Ok`, fails fatally, or `token` is
    /// cancelled. The handle resolves when supervision of this stage ends.
    pub fn spawn<F, Fut>(
        &self,
        name: impl Into<String>,
        token: CancellationToken,
        mut stage: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(StageContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StageError>> + Send + 'static,
    {
        let name = name.into();
        let ctx = StageContext {
            name: name.clone(),
            token: token.clone(),
            health: Arc::clone(&self.health),
            metrics: self.metrics.clone(),
        };
        let metrics = self.metrics.clone();
        let health = Arc::clone(&self.health);
        let backoff = self.backoff.clone();
        let healthy_after = self.healthy_after;
        let probes = Arc::clone(&self.probes);
        let fatal_tx = self.fatal_tx.clone();
        health.set(&name, TaskState::Starting);
        metrics.task_restarts.with_label_values(&[&name]);
        self.tracker.spawn(async move {
            let mut attempt: u32 = 0;
            let mut episode = probe::Episode::default();
            let mut recovering = false;
            loop {
                let started = Instant::now();
                let result = tokio::spawn(stage(ctx.clone())).await;
                metrics.task_up.with_label_values(&[&name]).set(0);
                let error = match result {
                    Ok(Ok(())) => {
                        tracing::info!(task = %name, "task finished");
                        health.set(&name, TaskState::Finished);
                        return;
                    }
                    Ok(Err(e)) => e,
                    // A panic inside a stage is a bug, but the daemon keeps the data safe by
                    // construction (offsets after writes), so treat it like a failure.
                    Err(join) => StageError::Panicked(join.to_string()),
                };
                if token.is_cancelled() {
                    tracing::info!(task = %name, error = %error.chain(), "task stopped during shutdown");
                    health.set(&name, TaskState::Finished);
                    return;
                }
                let message = error.chain();
                let retriable = error.is_retriable();
                health.record_error(&name, &message, !retriable);
                health.set(&name, TaskState::Failed);
                if !retriable {
                    tracing::error!(task = %name, error = %message, "fatal error; stopping the daemon");
                    let _ = fatal_tx.send(Fatal {
                        task: name.clone(),
                        message,
                    });
                    return;
                }
                if started.elapsed() >= healthy_after {
                    attempt = 0;
                    episode = probe::Episode::default();
                    recovering = false;
                }
                let mut delay = backoff_delay(&backoff, attempt, fastrand::f64());
                if recovering {
                    delay = delay.min(RECOVERY_MAX_DELAY);
                }
                attempt = attempt.saturating_add(1);
                metrics.task_restarts.with_label_values(&[&name]).inc();
                tracing::warn!(task = %name, error = %message, attempt, delay_ms = delay.as_millis() as u64, "task failed; restarting");
                tokio::select! {
                    wake = probes.sleep(error.service(), delay, &mut episode) => {
                        if wake == probe::Wake::ServiceBack {
                            attempt = 0;
                            recovering = true;
                        }
                    }
                    () = token.cancelled() => {
                        health.set(&name, TaskState::Finished);
                        return;
                    }
                }
                health.set(&name, TaskState::Starting);
            }
        })
    }

    /// Runs `stage` under supervision (see [`Stage`]) until it finishes, fails fatally, or
    /// `token` is cancelled. The handle resolves when supervision of this stage ends.
    pub fn run<S: Stage>(&self, stage: S, token: CancellationToken) -> tokio::task::JoinHandle<()> {
        let stage = Arc::new(stage);
        let name = stage.name();
        self.spawn(name, token, move |ctx| {
            let stage = Arc::clone(&stage);
            async move {
                let running = tokio::select! {
                    r = stage.start(&ctx) => r?,
                    () = ctx.token.cancelled() => return Ok(()),
                };
                stage.run(running, &ctx).await?;
                stage.drain(&ctx).await
            }
        })
    }

    /// Stops accepting tasks and waits for all spawned ones to end.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast_backoff() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            multiplier: 2.0,
            jitter: 0.0,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters_down() {
        let c = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            ..BackoffConfig::default()
        };
        assert_eq!(backoff_delay(&c, 0, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&c, 1, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&c, 3, 0.0), Duration::from_millis(800));
        assert_eq!(backoff_delay(&c, 10, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&c, 10, 1.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(&c, u32::MAX, 0.0), Duration::from_secs(1));
        let mut b = Backoff::new(&c);
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(50));
        b.next_delay();
        assert_eq!(b.attempts(), 2);
        b.reset();
        assert_eq!(b.attempts(), 0);
    }

    #[tokio::test]
    async fn restarts_retriable_failures_and_counts_them() {
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let (sup, _fatal) = Supervisor::new(
            metrics.clone(),
            Arc::clone(&health),
            fast_backoff(),
            Duration::from_secs(60),
        );
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        sup.spawn("flaky", CancellationToken::new(), move |ctx| {
            let r = Arc::clone(&r);
            async move {
                ctx.set_ready();
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(StageError::Test {
                        message: "boom".into(),
                        retriable: true,
                        service: None,
                    })
                } else {
                    Ok(())
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), sup.wait())
            .await
            .expect("finishes");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert_eq!(metrics.task_restarts.with_label_values(&["flaky"]).get(), 3);
        let snapshot = health.snapshot();
        let error = snapshot[0].last_error.as_ref().expect("error kept");
        assert!(!error.fatal && error.message == "boom");
        assert_eq!(health.state("flaky"), Some(TaskState::Finished));
    }

    #[tokio::test]
    async fn a_service_that_returns_cuts_the_grown_backoff_short() {
        // A 10 s backoff, a service that is down for 300 ms: the retry comes when it answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr").to_string();
        drop(listener);
        let backoff = BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(10),
            jitter: 0.0,
            ..BackoffConfig::default()
        };
        let (sup, _fatal) = Supervisor::new(
            Metrics::new(),
            Arc::new(Health::default()),
            backoff,
            Duration::from_secs(60),
        );
        let sup = sup.with_probes(
            Probes::new(Duration::from_millis(20)).with(Service::Postgres, vec![address.clone()]),
        );
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let started = tokio::time::Instant::now();
        sup.spawn("landing", CancellationToken::new(), move |_ctx| {
            let r = Arc::clone(&r);
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(StageError::Test {
                        message: "connection refused".into(),
                        retriable: true,
                        service: Some(Service::Postgres),
                    })
                } else {
                    Ok(())
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _back = tokio::net::TcpListener::bind(&address)
            .await
            .expect("rebind");
        tokio::time::timeout(Duration::from_secs(5), sup.wait())
            .await
            .expect("retried long before the 10 s backoff");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn fatal_error_is_reported_not_retried() {
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let (sup, mut fatal) = Supervisor::new(
            metrics.clone(),
            Arc::clone(&health),
            fast_backoff(),
            Duration::from_secs(60),
        );
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        sup.spawn("auth", CancellationToken::new(), move |_ctx| {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Err(StageError::Test {
                    message: "password refused".into(),
                    retriable: false,
                    service: None,
                })
            }
        });
        let f = tokio::time::timeout(Duration::from_secs(5), fatal.recv())
            .await
            .expect("in time")
            .expect("a fatal");
        assert_eq!(f.task, "auth");
        assert!(f.message.contains("refused"));
        sup.wait().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.task_restarts.with_label_values(&["auth"]).get(), 0);
        assert_eq!(health.not_ready(), vec!["auth (Failed)".to_string()]);
        let snapshot = health.snapshot();
        let error = snapshot[0].last_error.as_ref().expect("error kept");
        assert!(error.fatal && error.message.contains("refused"));
    }

    #[tokio::test]
    async fn panics_are_restarted_and_readiness_tracks_state() {
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let (sup, _fatal) = Supervisor::new(
            metrics.clone(),
            Arc::clone(&health),
            fast_backoff(),
            Duration::from_secs(60),
        );
        let token = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        sup.spawn("worker", token.clone(), move |ctx| {
            let r = Arc::clone(&r);
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run panics");
                }
                ctx.set_ready();
                ctx.token.cancelled().await;
                Ok(())
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while health.state("worker") != Some(TaskState::Ready) {
            assert!(Instant::now() < deadline, "never became ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(health.not_ready().is_empty());
        assert_eq!(
            metrics.task_restarts.with_label_values(&["worker"]).get(),
            1
        );
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), sup.wait())
            .await
            .expect("stops on cancel");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
