//! Postgres landing and the transactional outbox.
//!
//! Delivery: one transaction per fetched page writes the batch row, the users and their
//! outbox rows together, so a user is either landed *and* queued for Kafka or not at all.
//! Re-landing is harmless: `(seed, page)` and the user id are unique and conflicts are
//! skipped. A page taken from the channel stays in hand (across stage restarts) until it
//! is committed, so a Postgres outage slows the source instead of losing pages.
//!
//! Gap safety of the outbox: see `migrations/0001_landing.sql` (rows are deleted after
//! relay, never skipped by a cursor).

pub(crate) mod config;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgPool, Row};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::PostgresConfig;
use crate::source::{FetchedPage, PageCursor};
use crate::supervise::StageError;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::observe_ms;

/// Embedded migrations from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool (lazily: connections are made on first use).
///
/// # Errors
/// A fatal [`StageError`] when the URL or sslmode cannot be used.
pub fn connect_lazy(config: &PostgresConfig) -> Result<PgPool, StageError> {
    let mut options = PgConnectOptions::from_str(&config.url)
        .map_err(|e| StageError::fatal(format!("postgres.url: {e}")))?
        .ssl_mode(
            PgSslMode::from_str(&config.sslmode)
                .map_err(|e| StageError::fatal(format!("postgres.sslmode: {e}")))?,
        )
        .application_name("pipeline");
    if let Some(password) = &config.password {
        options = options.password(password.expose());
    }
    if let Some(ca) = &config.sslrootcert {
        options = options.ssl_root_cert(ca);
    }
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.connect_timeout)
        .connect_lazy_with(options))
}

/// Classifies a Postgres error: authentication and permission problems are fatal.
pub fn pg_error(context: &str, e: &sqlx::Error) -> StageError {
    if let sqlx::Error::Database(db) = e {
        let code = db.code().unwrap_or_default();
        // 28xxx: invalid authorization; 42501: insufficient privilege; 3D000: no database.
        if code.starts_with("28") || code == "42501" || code == "3D000" {
            return StageError::fatal(format!(
                "postgres {context}: {} (SQLSTATE {code})",
                db.message()
            ));
        }
    }
    StageError::retriable(format!("postgres {context}: {e}"))
}

/// Runs migrations.
///
/// # Errors
/// Fatal when a migration is broken, retriable when Postgres is unreachable.
pub async fn migrate(pool: &PgPool) -> Result<(), StageError> {
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(inner) => pg_error("migrate", &inner),
        other => StageError::fatal(format!("postgres migrate: {other}")),
    })
}

/// What one landed page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    /// False when the page was already landed (nothing written).
    pub new_page: bool,
    /// Users inserted (duplicates of earlier pages are skipped).
    pub inserted: u64,
}

/// Landing tables writer and page cursor.
#[derive(Clone)]
pub struct Landing {
    pool: PgPool,
    /// Woken after every commit that queued outbox rows: the relay of this process waits on
    /// it (relays of other processes get the trigger's `NOTIFY pipeline_outbox`).
    wake: Arc<tokio::sync::Notify>,
}

impl Landing {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Notified when landed rows are waiting in the outbox.
    pub fn wake(&self) -> &tokio::sync::Notify {
        &self.wake
    }

    /// Lands one page in one statement (atomic on its own: batch row, users and outbox rows
    /// with their ready Kafka messages commit together, in one round trip).
    ///
    /// # Errors
    /// See [`pg_error`].
    pub async fn land(&self, page: &FetchedPage) -> Result<Landed, StageError> {
        // The statement expects distinct ids (it has no DISTINCT ON, which sorted every raw
        // user): the first occurrence of an id in the page wins, as before.
        let mut seen = std::collections::HashSet::with_capacity(page.users.len());
        let unique: Vec<&crate::model::RawUser> = page
            .users
            .iter()
            .filter(|u| seen.insert(u.id.as_str()))
            .collect();
        let ids: Vec<&str> = unique.iter().map(|u| u.id.as_str()).collect();
        let raws: Vec<&str> = unique.iter().map(|u| u.raw.as_str()).collect();
        let messages: Vec<&[u8]> = unique.iter().map(|u| u.message.as_slice()).collect();
        let page_no = page
            .page
            .map(i32::try_from)
            .transpose()
            .map_err(|_| StageError::fatal(format!("page {:?} out of range", page.page)))?;
        let users = i32::try_from(page.users.len())
            .map_err(|_| StageError::fatal("page has more than 2^31 users"))?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| pg_error("acquire", &e))?;
        let (new_page, inserted): (i64, i64) = sqlx::query_as(
            "WITH batch AS ( \
                 INSERT INTO landing_batches (seed, page, fetched_at, users) \
                 VALUES ($1, $2, 'epoch'::timestamptz + $3 * interval '1 millisecond', $4) \
                 ON CONFLICT (seed, page) DO NOTHING RETURNING batch_id, fetched_at), \
             ins AS ( \
                 INSERT INTO users_landed (id, fetched_at, batch_id, raw) \
                 SELECT unnest($5::text[]), b.fetched_at, b.batch_id, unnest($6::text[]) \
                 FROM batch b \
                 ON CONFLICT (id) DO NOTHING RETURNING id), \
             queued AS ( \
                 INSERT INTO outbox (user_id, fetched_at_ms, message) \
                 SELECT m.id, $3, m.message \
                 FROM (SELECT unnest($5::text[]) AS id, unnest($7::bytea[]) AS message, \
                              generate_subscripts($5::text[], 1) AS ord) m \
                 WHERE m.id IN (SELECT id FROM ins) \
                 ORDER BY m.ord \
                 RETURNING 1) \
             SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM queued)",
        )
        .bind(&page.seed)
        .bind(page_no)
        .bind(page.fetched_at_ms)
        .bind(users)
        .bind(&ids)
        .bind(&raws)
        .bind(&messages)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| pg_error("land page", &e))?;
        if page.size_bytes() > SHRINK_ABOVE_BYTES {
            // sqlx keeps a connection's write buffer at its largest statement; without this
            // every pooled connection that ever landed a big page holds a page-sized buffer.
            conn.shrink_buffers();
        }
        drop(conn);
        if inserted > 0 {
            self.wake.notify_one();
        }
        Ok(Landed {
            new_page: new_page > 0,
            inserted: inserted.unsigned_abs(),
        })
    }

    /// Rows waiting in the outbox.
    ///
    /// # Errors
    /// See [`pg_error`].
    pub async fn outbox_backlog(&self) -> Result<i64, StageError> {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_error("count outbox", &e))
    }
}

/// Pages larger than this (their users' bytes) shrink the connection's buffers after landing.
const SHRINK_ABOVE_BYTES: usize = 1 << 20;

impl PageCursor for Landing {
    async fn landed_pages(&self, seed: &str, candidates: &[u32]) -> Result<Vec<u32>, StageError> {
        let pages: Vec<i32> = candidates.iter().map(|p| *p as i32).collect();
        let rows =
            sqlx::query("SELECT page FROM landing_batches WHERE seed = $1 AND page = ANY($2)")
                .bind(seed)
                .bind(&pages)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| pg_error("read landed pages", &e))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<i32, _>(0).ok())
            .map(|p| p as u32)
            .collect())
    }

    async fn last_page(&self, seed: &str) -> Result<Option<u32>, StageError> {
        let max: Option<i32> =
            sqlx::query_scalar("SELECT max(page) FROM landing_batches WHERE seed = $1")
                .bind(seed)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| pg_error("read last page", &e))?;
        Ok(max.map(|p| p as u32))
    }
}

/// State that outlives restarts of the landing stage: the channel and the page in hand.
pub struct LandingInput {
    rx: Mutex<mpsc::Receiver<FetchedPage>>,
    in_hand: Mutex<Option<FetchedPage>>,
}

impl LandingInput {
    pub fn new(rx: mpsc::Receiver<FetchedPage>) -> Arc<Self> {
        Arc::new(Self {
            rx: Mutex::new(rx),
            in_hand: Mutex::new(None),
        })
    }
}

/// The landing stage: lands pages until the channel closes (the source is done or stopped).
///
/// # Errors
/// A Postgres failure; the page in hand is kept and landed first after the restart.
///
/// # Cancellation
/// `hard_stop` abandons the page in hand (it was never acknowledged, so it is fetched again).
pub async fn run_landing(
    landing: Landing,
    input: Arc<LandingInput>,
    metrics: Metrics,
    hard_stop: CancellationToken,
    mark_ready: impl Fn(),
) -> Result<(), StageError> {
    let mut rx = input.rx.lock().await;
    let mut in_hand = input.in_hand.lock().await;
    // Touch the database once so readiness means "Postgres answers".
    sqlx::query("SELECT 1")
        .execute(landing.pool())
        .await
        .map_err(|e| pg_error("connect", &e))?;
    mark_ready();
    let depth = metrics
        .channel_depth
        .with_label_values(&["source_to_landing"]);
    loop {
        metrics.heartbeats.beat("landing");
        if in_hand.is_none() {
            metrics.heartbeats.idle("landing");
            *in_hand = tokio::select! {
                page = rx.recv() => match page {
                    Some(p) => Some(p),
                    None => return Ok(()),
                },
                () = hard_stop.cancelled() => return Ok(()),
            };
        }
        depth.set(rx.len() as i64);
        let Some(page) = in_hand.as_ref() else {
            continue;
        };
        let started = Instant::now();
        let landed = landing.land(page).await;
        metrics
            .batch_duration
            .with_label_values(&["landing"])
            .observe(started.elapsed().as_secs_f64());
        let landed = match landed {
            Ok(l) => l,
            Err(e) => {
                metrics
                    .errors
                    .with_label_values(&["landing", "postgres"])
                    .inc();
                return Err(e);
            }
        };
        metrics
            .records
            .with_label_values(&["source"])
            .inc_by(page.users.len() as u64);
        metrics
            .records
            .with_label_values(&["landing"])
            .inc_by(landed.inserted);
        observe_ms(
            &metrics.stage("land"),
            page.fetched_at_ms,
            chrono::Utc::now().timestamp_millis(),
        );
        tracing::debug!(page = ?page.page, users = page.users.len(), inserted = landed.inserted, new_page = landed.new_page, "landed");
        *in_hand = None;
    }
}
