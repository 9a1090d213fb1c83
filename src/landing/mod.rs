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
use crate::outbox::Outbox;
use crate::source::{FetchedPage, PageCursor};
use crate::supervise::{Stage, StageContext, StageError};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::observe_ms;

/// Embedded migrations from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A Postgres failure (landing, the outbox, migrations), with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// A statement or connection failed.
    #[error("postgres {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// `postgres.url` or `postgres.sslmode` cannot be used.
    #[error("{key}: {source}")]
    Options {
        key: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A migration other than a failing statement (missing, changed or out of order).
    #[error("postgres migrate: {source}")]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A value that does not fit the column (a page number, a count).
    #[error("postgres {op}: {detail}")]
    OutOfRange { op: &'static str, detail: String },
}

impl PostgresError {
    /// Authentication and permission problems, a missing database, an unusable URL, a broken
    /// migration and out-of-range values are fatal; the rest (connections, timeouts,
    /// serialization failures) is retried.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Query { source, .. } => !is_refusal(source),
            Self::Options { .. } | Self::Migrate { .. } | Self::OutOfRange { .. } => false,
        }
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<String> {
        match self {
            Self::Query {
                source: sqlx::Error::Database(db),
                ..
            } => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

/// 28xxx: invalid authorization; 42501: insufficient privilege; 3D000: no such database.
fn is_refusal(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("28") || code == "42501" || code == "3D000"),
        other => crate::tls::is_certificate_error(other),
    }
}

/// Maps a sqlx error of operation `op`.
pub fn pg_error(op: &'static str) -> impl FnOnce(sqlx::Error) -> PostgresError {
    move |source| PostgresError::Query { op, source }
}

/// Opens the pool (lazily: connections are made on first use).
///
/// # Errors
/// [`PostgresError::Options`] when the URL or sslmode cannot be used.
pub fn connect_lazy(config: &PostgresConfig) -> Result<PgPool, PostgresError> {
    connect_lazy_as(config, "pipeline")
}

/// [`connect_lazy`] under another `application_name` (what `pg_stat_activity` shows): the
/// daemon is "pipeline"; tools such as `pipeline replay` name themselves, so that they can
/// tell running daemons apart from themselves.
///
/// # Errors
/// [`PostgresError::Options`] when the URL or sslmode cannot be used.
pub fn connect_lazy_as(
    config: &PostgresConfig,
    application_name: &str,
) -> Result<PgPool, PostgresError> {
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.connect_timeout)
        .connect_lazy_with(connect_options_as(config, application_name)?))
}

/// The connection options of `[postgres]` (URL, TLS, password), for the pool and for the
/// dedicated lease sessions (src/lease).
///
/// # Errors
/// [`PostgresError::Options`] when the URL or sslmode cannot be used.
pub fn connect_options(config: &PostgresConfig) -> Result<PgConnectOptions, PostgresError> {
    connect_options_as(config, "pipeline")
}

fn connect_options_as(
    config: &PostgresConfig,
    application_name: &str,
) -> Result<PgConnectOptions, PostgresError> {
    let mut options = PgConnectOptions::from_str(&config.url)
        .map_err(|source| PostgresError::Options {
            key: "postgres.url",
            source,
        })?
        .ssl_mode(PgSslMode::from_str(&config.sslmode).map_err(|source| {
            PostgresError::Options {
                key: "postgres.sslmode",
                source,
            }
        })?)
        .application_name(application_name);
    if let Some(password) = &config.password {
        options = options.password(password.expose());
    }
    if let Some(ca) = &config.sslrootcert {
        options = options.ssl_root_cert(ca);
    }
    Ok(options)
}

/// Runs migrations.
///
/// # Errors
/// Fatal when a migration is broken, retriable when Postgres is unreachable.
pub async fn migrate(pool: &PgPool) -> Result<(), PostgresError> {
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(inner) => pg_error("migrate")(inner),
        source => PostgresError::Migrate { source },
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
    /// The outbox this landing writes to (in the same statement as the users); told after
    /// every commit that queued rows, so the relay of this process wakes at once.
    outbox: Outbox,
    /// `postgres.migrate_on_start`; the migrations run once per process, by whichever stage
    /// needs the tables first.
    migrate_on_start: bool,
    migrated: Arc<tokio::sync::OnceCell<()>>,
}

impl Landing {
    pub fn new(pool: PgPool) -> Self {
        Self {
            outbox: Outbox::new(pool.clone()),
            pool,
            migrate_on_start: false,
            migrated: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Runs the migrations in [`Landing::ensure_migrated`] (`postgres.migrate_on_start`).
    #[must_use]
    pub fn with_migrate_on_start(mut self, enabled: bool) -> Self {
        self.migrate_on_start = enabled;
        self
    }

    /// Applies the migrations once per process when `migrate_on_start` (a no-op otherwise,
    /// and after the first success).
    ///
    /// # Errors
    /// See [`migrate`].
    pub async fn ensure_migrated(&self) -> Result<(), PostgresError> {
        if self.migrate_on_start {
            self.migrated
                .get_or_try_init(|| migrate(&self.pool))
                .await?;
        }
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Notified when landed rows are waiting in the outbox.
    /// The outbox of this database (the relay's side of it).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Lands one page in one statement (atomic on its own: batch row, users and outbox rows
    /// with their ready Kafka messages commit together, in one round trip).
    ///
    /// # Errors
    /// [`PostgresError`]; see [`PostgresError::is_retriable`].
    pub async fn land(&self, page: &FetchedPage) -> Result<Landed, PostgresError> {
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
        let page_no =
            page.page
                .map(i32::try_from)
                .transpose()
                .map_err(|_| PostgresError::OutOfRange {
                    op: "land page",
                    detail: format!("page {:?} does not fit an int", page.page),
                })?;
        let users = i32::try_from(page.users.len()).map_err(|_| PostgresError::OutOfRange {
            op: "land page",
            detail: "page has more than 2^31 users".into(),
        })?;
        let mut conn = self.pool.acquire().await.map_err(pg_error("acquire"))?;
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
        .map_err(pg_error("land page"))?;
        if page.size_bytes() > SHRINK_ABOVE_BYTES {
            // sqlx keeps a connection's write buffer at its largest statement; without this
            // every pooled connection that ever landed a big page holds a page-sized buffer.
            conn.shrink_buffers();
        }
        drop(conn);
        if inserted > 0 {
            self.outbox.notify_committed();
        }
        Ok(Landed {
            new_page: new_page > 0,
            inserted: inserted.unsigned_abs(),
        })
    }
}

/// Pages larger than this (their users' bytes) shrink the connection's buffers after landing.
const SHRINK_ABOVE_BYTES: usize = 1 << 20;

impl PageCursor for Landing {
    async fn ready(&self) -> Result<(), StageError> {
        Ok(self.ensure_migrated().await?)
    }

    async fn landed_pages(&self, seed: &str, candidates: &[u32]) -> Result<Vec<u32>, StageError> {
        let pages = candidates
            .iter()
            .map(|&p| i32::try_from(p))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| PostgresError::OutOfRange {
                op: "read landed pages",
                detail: format!("a page number of {candidates:?} does not fit an int"),
            })?;
        let rows =
            sqlx::query("SELECT page FROM landing_batches WHERE seed = $1 AND page = ANY($2)")
                .bind(seed)
                .bind(&pages)
                .fetch_all(&self.pool)
                .await
                .map_err(pg_error("read landed pages"))?;
        // A row that does not decode is an error, not a page to skip: skipping would make the
        // source fetch (and land) that page again.
        let mut landed = Vec::with_capacity(rows.len());
        for row in &rows {
            let page: i32 = row.try_get(0).map_err(pg_error("read landed pages"))?;
            landed.push(page_number(page, "read landed pages")?);
        }
        Ok(landed)
    }

    async fn last_page(&self, seed: &str) -> Result<Option<u32>, StageError> {
        let max: Option<i32> =
            sqlx::query_scalar("SELECT max(page) FROM landing_batches WHERE seed = $1")
                .bind(seed)
                .fetch_one(&self.pool)
                .await
                .map_err(pg_error("read last page"))?;
        Ok(max.map(|p| page_number(p, "read last page")).transpose()?)
    }
}

/// A stored page number (an `int` column written from a `u32`) back as the source's `u32`.
fn page_number(stored: i32, op: &'static str) -> Result<u32, PostgresError> {
    u32::try_from(stored).map_err(|_| PostgresError::OutOfRange {
        op,
        detail: format!("landing_batches holds page {stored}"),
    })
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

/// The landing stage under supervision: lands pages until the source's channel closes.
pub struct LandingStage {
    pub landing: Landing,
    pub input: Arc<LandingInput>,
    pub metrics: Metrics,
    /// Cancelled once every page the source sent is committed (the channel closed and
    /// drained, not cut short by the shutdown deadline): the bounded ingest is complete.
    pub done: CancellationToken,
}

impl Stage for LandingStage {
    type Running = ();

    fn name(&self) -> &'static str {
        "landing"
    }

    async fn start(&self, _ctx: &StageContext) -> Result<(), StageError> {
        Ok(self.landing.ensure_migrated().await?)
    }

    /// The stage's token is the hard stop: landing otherwise runs until the source's channel
    /// closes, so that every fetched page is committed.
    async fn run(&self, (): (), ctx: &StageContext) -> Result<(), StageError> {
        run_landing(
            self.landing.clone(),
            Arc::clone(&self.input),
            self.metrics.clone(),
            ctx.token.clone(),
            || ctx.set_ready(),
        )
        .await
    }

    async fn drain(&self, ctx: &StageContext) -> Result<(), StageError> {
        if !ctx.token.is_cancelled() {
            self.done.cancel();
        }
        Ok(())
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
        .map_err(pg_error("connect"))?;
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
                return Err(e.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_page_numbers_come_back_exactly_or_as_an_error() {
        assert_eq!(page_number(7, "read last page").expect("fits"), 7);
        let e = page_number(-1, "read last page").expect_err("negative");
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("page -1"), "{e}");
        let busy = PostgresError::Query {
            op: "land page",
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(busy.is_retriable());
        assert_eq!(busy.code(), None);
    }
}
