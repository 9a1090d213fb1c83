//! Leases: one holder of a role among the daemons that share a Postgres database.
//!
//! Two roles are leased: the relay (one per database, so a partition's records are produced
//! in outbox order) and the source (one per database, API url and seed, so N daemons do not
//! spend N times the API's rate budget). A lease is a Postgres *session-level advisory lock*
//! held on a dedicated connection (not from the pool): it lives exactly as long as that
//! session, whatever happens to the process.
//!
//! ```text
//!  standby ── pg_try_advisory_lock(key) every check_interval ──► holder
//!     ▲                                                             │ SELECT pg_sleep(check_interval)
//!     │                                                             │ on the lease session, bounded
//!     └──── step down: cancel the stage's work, drop the session ◄──┘ by check_interval + timeout
//! ```
//!
//! How a dead holder is seen:
//! - process killed: the kernel closes its socket; the server ends the session (at once, or
//!   within `client_connection_check_interval` while the check sleeps) and frees the lock.
//! - session terminated (`pg_terminate_backend`, a server restart): the holder's check
//!   fails at once and it steps down.
//! - network cut or frozen holder: the server ends a session silent for
//!   `lease.session_timeout` (`idle_session_timeout`, `tcp_user_timeout`, keepalives); the
//!   holder's own check times out after `check_interval + timeout`, which validation keeps
//!   below `session_timeout`, so the old holder has stopped before anyone can take over.
//!
//! A standby takes over at its next try, so the lease moves within
//! [`LeaseConfig::takeover_bound`] of the holder's death in the worst case (a cut network: 4 s
//! with the defaults), and within about `check_interval` otherwise. Needs Postgres 14 or later (`idle_session_timeout`).

pub(crate) mod config;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::config::{LeaseConfig, PostgresConfig};
use crate::landing::{PostgresError, connect_options, pg_error};
use crate::telemetry::Metrics;

/// Advisory lock key of the relay lease. The value earlier versions locked, so that daemons
/// of mixed versions still exclude each other.
pub const RELAY_LOCK_KEY: i64 = 0x7069_7065_6c69_6e65; // "pipeline"

/// How often the server checks a lease session's socket while its check sleeps (a killed
/// holder frees the lease this soon rather than at the end of the sleep).
const CLIENT_CHECK: Duration = Duration::from_millis(200);

/// Advisory lock key of the source lease of API `url` and `seed`: different APIs or seeds
/// fetch in parallel, the same ones exclude each other. A stable hash (FNV-1a, 64 bits), so
/// every version and build agrees.
pub fn source_key(url: &str, seed: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"pipeline source\0"
        .iter()
        .chain(url.as_bytes())
        .chain(b"\0")
        .chain(seed.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let key = i64::from_ne_bytes(hash.to_ne_bytes());
    if key == RELAY_LOCK_KEY { key ^ 1 } else { key }
}

/// Why a lease could not be taken or was lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease session could not be opened or a statement on it failed.
    #[error("{lease} lease: {source}")]
    Session {
        lease: &'static str,
        #[source]
        source: PostgresError,
    },
    /// The server refused the lease session's settings: Postgres before 14 has no
    /// `idle_session_timeout` (or a pooler in between does not pass startup options).
    #[error(
        "{lease} lease: the server refused the lease session's settings \
         (idle_session_timeout, tcp_user_timeout, client_connection_check_interval): leases \
         need Postgres 14 or later, connected directly: {source}"
    )]
    Unsupported {
        lease: &'static str,
        #[source]
        source: PostgresError,
    },
    /// Postgres did not answer within `lease.timeout` (connect: `postgres.connect_timeout`).
    #[error("{lease} lease: {op} got no answer within {after:?}")]
    Timeout {
        lease: &'static str,
        op: &'static str,
        after: Duration,
    },
}

impl LeaseError {
    /// Refused credentials and unusable options are fatal; the rest is retried.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Session { source, .. } => source.is_retriable(),
            Self::Unsupported { .. } => false,
            Self::Timeout { .. } => true,
        }
    }
}

/// What `/api/status` shows of one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSnapshot {
    /// "relay" or "source".
    pub name: &'static str,
    /// Whether this daemon holds it now.
    pub held: bool,
    /// Unix ms since when it is held, or since when this daemon stands by (or lost it).
    pub since_ms: i64,
    /// Unix ms when this daemon last lost it (stepped down), if it ever did.
    pub lost_at_ms: Option<i64>,
}

/// The leases of this daemon, as the status page shows them (one entry per lease name:
/// bounded).
#[derive(Debug, Default)]
pub struct LeaseBoard {
    leases: Mutex<BTreeMap<&'static str, LeaseSnapshot>>,
}

impl LeaseBoard {
    /// Records whether lease `name` is held now (the time is kept from the last change).
    pub(crate) fn set(&self, name: &'static str, held: bool) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let now_ms = chrono::Utc::now().timestamp_millis();
        let lease = leases.entry(name).or_insert(LeaseSnapshot {
            name,
            held: !held,
            since_ms: now_ms,
            lost_at_ms: None,
        });
        if lease.held != held {
            lease.held = held;
            lease.since_ms = now_ms;
        }
    }

    /// Records that lease `name` was lost now.
    pub(crate) fn lost(&self, name: &'static str) {
        self.set(name, false);
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lease) = leases.get_mut(name) {
            lease.lost_at_ms = Some(lease.since_ms);
        }
    }

    /// Every lease this daemon holds or waits for, by name.
    pub fn snapshot(&self) -> Vec<LeaseSnapshot> {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.values().cloned().collect()
    }
}

/// Takes one lease (see the module doc); cheap to clone.
#[derive(Clone)]
pub struct Elector {
    name: &'static str,
    key: i64,
    /// `[postgres]`'s options plus the session settings that detect a silent peer.
    options: PgConnectOptions,
    connect_timeout: Duration,
    config: LeaseConfig,
    metrics: Metrics,
    /// Set when this daemon stood by or lost the lease: its next acquisition is a takeover.
    contested: Arc<AtomicBool>,
}

impl Elector {
    /// The elector of lease `name` ("relay" or "source") under advisory lock `key`.
    ///
    /// # Errors
    /// [`PostgresError::Options`] when `postgres.url` or `postgres.sslmode` cannot be used.
    pub fn new(
        name: &'static str,
        key: i64,
        postgres: &PostgresConfig,
        config: &LeaseConfig,
        metrics: Metrics,
    ) -> Result<Self, PostgresError> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let silent = config.session_timeout;
        let options = connect_options(postgres)?
            .application_name(&format!("pipeline {name} lease"))
            .options([
                // A holder whose checks stop arriving (network cut, frozen process) loses
                // its session, and so the lock, after this long.
                ("idle_session_timeout", ms(silent)),
                // Unacknowledged data to a peer that is gone ends the session as well.
                ("tcp_user_timeout", ms(silent)),
                ("tcp_keepalives_idle", "1".to_string()),
                ("tcp_keepalives_interval", "1".to_string()),
                (
                    "tcp_keepalives_count",
                    silent.as_secs().saturating_sub(1).max(1).to_string(),
                ),
                // A closed socket is seen during the check's sleep, not after it.
                ("client_connection_check_interval", ms(CLIENT_CHECK)),
                (
                    "statement_timeout",
                    ms(config.check_interval + config.timeout),
                ),
            ]);
        metrics.lease_held.with_label_values(&[name]).set(0);
        metrics.lease_takeovers.with_label_values(&[name]);
        metrics.lease_lost.with_label_values(&[name]);
        Ok(Self {
            name,
            key,
            options,
            connect_timeout: postgres.connect_timeout,
            config: config.clone(),
            metrics,
            contested: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The lease's name ("relay" or "source").
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `lease.check_interval`: how long a standby waits between tries.
    pub fn check_interval(&self) -> Duration {
        self.config.check_interval
    }

    async fn connect(&self) -> Result<PgConnection, LeaseError> {
        let name = self.name;
        tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| LeaseError::Timeout {
            lease: name,
            op: "connect",
            after: self.connect_timeout,
        })?
        .map_err(|e| {
            let source = pg_error("connect lease session")(e);
            // 42704 undefined_object: "unrecognized configuration parameter".
            if source.code().as_deref() == Some("42704") {
                LeaseError::Unsupported {
                    lease: name,
                    source,
                }
            } else {
                LeaseError::Session {
                    lease: name,
                    source,
                }
            }
        })
    }

    /// Waits until this daemon holds the lease: tries at once, then every
    /// `lease.check_interval`, calling `standby` each time another daemon holds it.
    /// `Ok(None)` when `token` is cancelled first.
    ///
    /// # Errors
    /// [`LeaseError`] when Postgres cannot be reached or does not answer in time.
    ///
    /// # Cancellation
    /// Dropping the future drops the session; a lock taken in that instant is freed with it.
    pub async fn acquire(
        &self,
        token: &CancellationToken,
        mut standby: impl FnMut(),
    ) -> Result<Option<Lease>, LeaseError> {
        let name = self.name;
        let after = self.config.timeout;
        let mut session: Option<PgConnection> = None;
        let mut standing_by = false;
        loop {
            if token.is_cancelled() {
                return Ok(None);
            }
            let conn = match session.as_mut() {
                Some(conn) => conn,
                None => session.insert(self.connect().await?),
            };
            let got: bool = tokio::time::timeout(
                after,
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(self.key)
                    .fetch_one(&mut *conn),
            )
            .await
            .map_err(|_| LeaseError::Timeout {
                lease: name,
                op: "pg_try_advisory_lock",
                after,
            })?
            .map_err(|e| LeaseError::Session {
                lease: name,
                source: pg_error("pg_try_advisory_lock")(e),
            })?;
            if got && let Some(conn) = session.take() {
                if self.contested.swap(false, Ordering::SeqCst) {
                    self.metrics
                        .lease_takeovers
                        .with_label_values(&[name])
                        .inc();
                    tracing::warn!(lease = name, "took over the lease");
                } else {
                    tracing::info!(lease = name, "holding the lease");
                }
                return Ok(Some(Lease::start(self, conn)));
            }
            if !standing_by {
                standing_by = true;
                self.contested.store(true, Ordering::SeqCst);
                self.metrics.leases.set(name, false);
                tracing::info!(
                    lease = name,
                    check_interval = ?self.config.check_interval,
                    "another daemon holds the lease; standing by"
                );
            }
            standby();
            tokio::select! {
                () = tokio::time::sleep(self.config.check_interval) => {}
                () = token.cancelled() => return Ok(None),
            }
        }
    }
}

/// A held lease. Its session is checked in the background; [`Lease::lost`] resolves when the
/// check fails, and the holder must then stop its work at once. Dropping the lease ends the
/// session, which frees the lock.
pub struct Lease {
    name: &'static str,
    lost: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Lease {
    fn start(elector: &Elector, conn: PgConnection) -> Self {
        let name = elector.name;
        let metrics = elector.metrics.clone();
        metrics.lease_held.with_label_values(&[name]).set(1);
        metrics.leases.set(name, true);
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep(
            conn,
            elector.config.clone(),
            name,
            lost.clone(),
            metrics.clone(),
            Arc::clone(&elector.contested),
        ));
        Self {
            name,
            lost,
            keeper,
            metrics,
        }
    }

    /// Resolves when the lease is lost (its session failed or went silent).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Ends the session (the keeper owns it): Postgres frees the lock.
        self.keeper.abort();
        if !self.lost.is_cancelled() {
            self.metrics
                .lease_held
                .with_label_values(&[self.name])
                .set(0);
            self.metrics.leases.set(self.name, false);
            tracing::info!(lease = self.name, "released the lease");
        }
    }
}

/// Checks the lease session until a check fails or times out, then steps down: cancels
/// `lost` and drops the session.
async fn keep(
    mut conn: PgConnection,
    config: LeaseConfig,
    name: &'static str,
    lost: CancellationToken,
    metrics: Metrics,
    contested: Arc<AtomicBool>,
) {
    let sleep = config.check_interval / 2;
    let bound = sleep + config.timeout;
    let reason = loop {
        // The check sleeps on the server, so a terminated session fails it at once; half an
        // interval, so the last answer of a holder cut off is at most that old.
        let check = sqlx::query("SELECT pg_sleep($1)")
            .bind(sleep.as_secs_f64())
            .execute(&mut conn);
        match tokio::time::timeout(bound, check).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break format!("the lease session failed: {e}"),
            Err(_) => break format!("the lease check got no answer within {bound:?}"),
        }
    };
    // Metrics first: whoever `lost` wakes must already see the lease counted as lost (a CI
    // run read `lease_lost` 0 right after `Lease::lost()` resolved).
    metrics.lease_held.with_label_values(&[name]).set(0);
    metrics.lease_lost.with_label_values(&[name]).inc();
    metrics.leases.lost(name);
    contested.store(true, Ordering::SeqCst);
    lost.cancel();
    tracing::warn!(lease = name, %reason, "lost the lease; stepping down");
    drop(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_differ_by_api_and_seed_and_never_take_the_relays() {
        let a = source_key("https://randomuser.me/api/1.4/", "");
        assert_eq!(a, source_key("https://randomuser.me/api/1.4/", ""));
        assert_ne!(a, source_key("https://randomuser.me/api/1.4/", "s1"));
        assert_ne!(a, source_key("http://127.0.0.1:8080/api/1.4/", ""));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(source_key("ab", "c"), source_key("a", "bc"));
        assert_ne!(a, RELAY_LOCK_KEY);
    }

    #[test]
    fn the_board_keeps_the_time_of_the_last_change() {
        let board = LeaseBoard::default();
        board.set("relay", true);
        let first = board.snapshot();
        assert_eq!(first.len(), 1);
        assert!(first[0].held);
        std::thread::sleep(Duration::from_millis(5));
        board.set("relay", true);
        assert_eq!(board.snapshot(), first, "no change, same since");
        board.set("relay", false);
        board.set("source", false);
        let now = board.snapshot();
        assert_eq!(now.len(), 2);
        assert!(!now[0].held && now[0].since_ms >= first[0].since_ms);
        assert_eq!(now[0].lost_at_ms, None, "released, not lost");
        board.set("relay", true);
        board.lost("relay");
        let lost = &board.snapshot()[0];
        assert!(!lost.held && lost.lost_at_ms == Some(lost.since_ms));
    }
}
