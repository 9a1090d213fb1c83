//! `pipeline replay --from landing`: re-publish landed users through the outbox.
//!
//! Each chunk is one statement: up to `chunk_rows` users after the job's cursor (in id
//! order, through the primary key) are inserted into the outbox *without* a message, and the
//! job's cursor, count and highest seq move in the same statement. The running daemon's
//! relay produces those rows like any other; for a row without a message it builds the
//! message from `users_landed.raw` ([`crate::outbox::Outbox::read`]), byte for byte what the
//! source built (`model::encode_message`), with the user id as key and the landed
//! `fetched_at` as header: the sink's upsert then writes the same cells with the same write
//! time.
//!
//! Locks and sharing: the replay takes its own advisory lock (one replay per database at a
//! time) and never the relay's: it *probes* that a relay holds the relay lock (in
//! `pg_locks`), because the outbox is drained by the relay of a running daemon, and exits 69
//! when none does. It waits while the outbox holds more than `max_outbox_rows` rows, so
//! neither the replay's memory (one chunk of ids, in Postgres) nor the outbox grows with the
//! size of the replay, and the daemon's own landings keep flowing between chunks.
//!
//! Crash safety: a chunk and its cursor commit together, so a replay killed at any point
//! resumes (same arguments) after the last committed chunk: no gap, no duplicate; the job
//! is `done` once the relay has sent every row it queued.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::ReplayError;
use super::progress::Progress;
use crate::config::Config;
use crate::landing::{self, pg_error};
use crate::lease::RELAY_LOCK_KEY;

/// `application_name` of the replay commands' Postgres sessions (the daemon's is "pipeline").
pub const APPLICATION_NAME: &str = "pipeline-replay";

/// Advisory lock key of the landing replay: one at a time per database ("replay\0\x01").
const REPLAY_LOCK_KEY: i64 = 0x7265_706c_6179_0001;

/// How long the relay lock may be missing while the replay waits before it gives up (a
/// relay restarting under its supervisor takes it again within its backoff).
const RELAY_GRACE: Duration = Duration::from_secs(30);

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct LandingOptions {
    /// Users fetched at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Users fetched before this time.
    pub until: Option<DateTime<Utc>>,
    /// Users of pages fetched with this seed (`landing_batches.seed`).
    pub seed: Option<String>,
    /// Count and report; change nothing.
    pub dry_run: bool,
    /// Wait while the outbox holds more rows than this.
    pub max_outbox_rows: i64,
    /// Users per chunk (one statement each).
    pub chunk_rows: i64,
    /// Abandon an unfinished job with other arguments instead of refusing.
    pub restart: bool,
}

impl LandingOptions {
    /// What identifies a job: the set of users asked for (not how fast).
    fn args_json(&self) -> serde_json::Value {
        serde_json::json!({
            "since": self.since.map(|t| t.to_rfc3339()),
            "until": self.until.map(|t| t.to_rfc3339()),
            "seed": self.seed,
        })
    }
}

/// What a landing replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingSummary {
    /// The job row (none for a dry run).
    pub job: Option<i64>,
    /// True when an unfinished job was resumed.
    pub resumed: bool,
    /// Landed users that match the arguments.
    pub matched: i64,
    /// Users the job queued in the outbox (over all its runs).
    pub queued: i64,
    /// A dry run: nothing was written.
    pub dry_run: bool,
    /// Whether a relay held the relay lock when the replay started.
    pub relay_running: bool,
}

impl std::fmt::Display for LandingSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dry_run {
            return write!(
                f,
                "dry run: {} landed users match; a relay {} the outbox lock; nothing written",
                self.matched,
                if self.relay_running {
                    "holds"
                } else {
                    "does NOT hold (start the daemon before replaying)"
                }
            );
        }
        write!(
            f,
            "replay job {} {}: {} of {} matching users queued and relayed",
            self.job.unwrap_or_default(),
            if self.resumed {
                "(resumed) done"
            } else {
                "done"
            },
            self.queued,
            self.matched
        )
    }
}

/// Whether some session holds the relay's advisory lock on this database, read from
/// `pg_locks` without taking it (a bigint key shows as classid = high half, objid = low
/// half, objsubid = 1).
///
/// # Errors
/// [`landing::PostgresError`] when Postgres does not answer.
pub async fn relay_is_running(pool: &PgPool) -> Result<bool, landing::PostgresError> {
    let (high, low) = lock_halves(RELAY_LOCK_KEY);
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1)",
    )
    .bind(high)
    .bind(low)
    .fetch_one(pool)
    .await
    .map_err(pg_error("probe relay lock"))
}

/// The two 32-bit halves of a bigint advisory lock key, as `pg_locks` shows them.
fn lock_halves(key: i64) -> (i64, i64) {
    let bits = key as u64;
    (i64::from((bits >> 32) as u32), i64::from(bits as u32))
}

/// The users of the job that are still to queue (after `cursor`).
async fn count_matching(
    pool: &PgPool,
    opts: &LandingOptions,
    cursor: &str,
) -> Result<i64, ReplayError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM users_landed u \
         WHERE u.id > $1 \
           AND ($2::timestamptz IS NULL OR u.fetched_at >= $2) \
           AND ($3::timestamptz IS NULL OR u.fetched_at < $3) \
           AND ($4::text IS NULL OR u.batch_id IN \
                (SELECT batch_id FROM landing_batches WHERE seed = $4))",
    )
    .bind(cursor)
    .bind(opts.since)
    .bind(opts.until)
    .bind(opts.seed.as_deref())
    .fetch_one(pool)
    .await
    .map_err(pg_error("count landed users"))?)
}

/// An unfinished landing job: id, whether its args equal ours, its args, cursor, queued.
type JobRow = (i64, bool, String, Option<String>, i64);

async fn unfinished_job(
    pool: &PgPool,
    args: &serde_json::Value,
) -> Result<Option<JobRow>, ReplayError> {
    Ok(sqlx::query_as(
        "SELECT id, args = $1::jsonb, args::text, cursor, queued FROM replay_jobs \
         WHERE kind = 'landing' AND state = 'running' ORDER BY id DESC LIMIT 1",
    )
    .bind(args)
    .fetch_optional(pool)
    .await
    .map_err(pg_error("read replay jobs"))?)
}

/// Runs (or resumes) a landing replay; see the module doc.
///
/// # Errors
/// [`ReplayError::NoRelay`] (exit 69) when no relay drains the outbox, [`ReplayError::Busy`]
/// when another replay runs, [`ReplayError::UnfinishedJob`], Postgres failures.
///
/// # Cancellation
/// Safe at any await: the committed chunks stay counted in the job, which a rerun resumes.
pub async fn replay_landing(
    config: &Config,
    opts: &LandingOptions,
) -> Result<LandingSummary, ReplayError> {
    let pool = landing::connect_lazy_as(&config.postgres, APPLICATION_NAME)?;
    let args = opts.args_json();
    if opts.dry_run {
        let matched = count_matching(&pool, opts, "").await?;
        let relay_running = relay_is_running(&pool).await?;
        let jobs: Option<String> = sqlx::query_scalar("SELECT to_regclass('replay_jobs')::text")
            .fetch_one(&pool)
            .await
            .map_err(pg_error("read replay jobs"))?;
        if jobs.is_some()
            && let Some((id, same, old_args, cursor, queued)) = unfinished_job(&pool, &args).await?
        {
            eprintln!(
                "unfinished job {id} ({old_args}): {queued} queued, cursor {cursor:?}; {}",
                if same {
                    "this command would resume it"
                } else {
                    "other arguments: this command would refuse without --restart"
                }
            );
        }
        return Ok(LandingSummary {
            job: None,
            resumed: false,
            matched,
            queued: 0,
            dry_run: true,
            relay_running,
        });
    }

    landing::migrate(&pool).await?;
    // Held on this connection until the process ends (a crash releases it with the session).
    let mut lock = pool.acquire().await.map_err(pg_error("acquire"))?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPLAY_LOCK_KEY)
        .fetch_one(&mut lock)
        .await
        .map_err(pg_error("replay lock"))?;
    if !got {
        return Err(ReplayError::Busy);
    }
    if !relay_is_running(&pool).await? {
        return Err(ReplayError::NoRelay);
    }

    let (job, resumed, cursor, queued_before) = match unfinished_job(&pool, &args).await? {
        Some((id, true, _, cursor, queued)) => (id, true, cursor.unwrap_or_default(), queued),
        Some((id, false, old_args, _, _)) if !opts.restart => {
            return Err(ReplayError::UnfinishedJob {
                job: id,
                args: old_args,
            });
        }
        other => {
            if let Some((id, ..)) = other {
                sqlx::query(
                    "UPDATE replay_jobs SET state = 'abandoned', updated_at = now() WHERE id = $1",
                )
                .bind(id)
                .execute(&pool)
                .await
                .map_err(pg_error("abandon replay job"))?;
                eprintln!("abandoned unfinished replay job {id}");
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO replay_jobs (kind, args) VALUES ('landing', $1) RETURNING id",
            )
            .bind(&args)
            .fetch_one(&pool)
            .await
            .map_err(pg_error("create replay job"))?;
            (id, false, String::new(), 0)
        }
    };
    let remaining = count_matching(&pool, opts, &cursor).await?;
    let matched = remaining + queued_before;
    sqlx::query("UPDATE replay_jobs SET total = $2, updated_at = now() WHERE id = $1")
        .bind(job)
        .bind(matched)
        .execute(&pool)
        .await
        .map_err(pg_error("update replay job"))?;
    eprintln!(
        "replay job {job}{}: {remaining} of {matched} landed users to queue (chunks of {}, \
         outbox held under {} rows)",
        if resumed { " resumed" } else { "" },
        opts.chunk_rows,
        opts.max_outbox_rows
    );

    let mut progress = Progress::new("users queued", u64::try_from(matched).ok());
    progress.set(u64::try_from(queued_before).unwrap_or_default());
    let mut queued;
    loop {
        wait_for_room(&pool, opts.max_outbox_rows, job).await?;
        let (n, total_queued): (i64, i64) = sqlx::query_as(
            "WITH chunk AS ( \
                 SELECT u.id FROM users_landed u \
                 WHERE u.id > COALESCE((SELECT cursor FROM replay_jobs WHERE id = $5), '') \
                   AND ($1::timestamptz IS NULL OR u.fetched_at >= $1) \
                   AND ($2::timestamptz IS NULL OR u.fetched_at < $2) \
                   AND ($3::text IS NULL OR u.batch_id IN \
                        (SELECT batch_id FROM landing_batches WHERE seed = $3)) \
                 ORDER BY u.id LIMIT $4), \
             ins AS ( \
                 INSERT INTO outbox (user_id) SELECT id FROM chunk ORDER BY id \
                 RETURNING seq, user_id), \
             job AS ( \
                 UPDATE replay_jobs SET \
                     cursor = COALESCE((SELECT max(user_id) FROM ins), cursor), \
                     queued = queued + (SELECT count(*) FROM ins), \
                     max_seq = GREATEST(max_seq, COALESCE((SELECT max(seq) FROM ins), 0)), \
                     updated_at = now() \
                 WHERE id = $5 RETURNING queued) \
             SELECT (SELECT count(*) FROM ins), (SELECT queued FROM job)",
        )
        .bind(opts.since)
        .bind(opts.until)
        .bind(opts.seed.as_deref())
        .bind(opts.chunk_rows)
        .bind(job)
        .fetch_one(&pool)
        .await
        .map_err(pg_error("queue replay chunk"))?;
        queued = total_queued;
        progress.set(u64::try_from(queued).unwrap_or_default());
        if n == 0 {
            break;
        }
    }
    progress.finish();

    // Done once the relay has sent every row this job queued.
    let max_seq: i64 = sqlx::query_scalar("SELECT max_seq FROM replay_jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&pool)
        .await
        .map_err(pg_error("read replay job"))?;
    let mut relay_missing_since: Option<Instant> = None;
    let mut last_line: Option<Instant> = None;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE seq <= $1")
            .bind(max_seq)
            .fetch_one(&pool)
            .await
            .map_err(pg_error("count outbox"))?;
        if left == 0 {
            break;
        }
        if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            eprintln!("waiting for the relay: {left} queued rows still in the outbox");
            last_line = Some(Instant::now());
        }
        check_relay(&pool, job, left, &mut relay_missing_since).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query(
        "UPDATE replay_jobs SET state = 'done', finished_at = now(), updated_at = now() \
         WHERE id = $1",
    )
    .bind(job)
    .execute(&pool)
    .await
    .map_err(pg_error("finish replay job"))?;
    drop(lock);
    Ok(LandingSummary {
        job: Some(job),
        resumed,
        matched,
        queued,
        dry_run: false,
        relay_running: true,
    })
}

/// Waits while the outbox holds more than `max_rows` rows (flow control).
async fn wait_for_room(pool: &PgPool, max_rows: i64, job: i64) -> Result<(), ReplayError> {
    let mut relay_missing_since: Option<Instant> = None;
    let mut said = false;
    loop {
        // Bounded: counting stops past the limit.
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT $1 + 1) o")
                .bind(max_rows)
                .fetch_one(pool)
                .await
                .map_err(pg_error("count outbox"))?;
        if backlog <= max_rows {
            return Ok(());
        }
        if !said {
            tracing::debug!(backlog, max_rows, "outbox full; waiting for the relay");
            said = true;
        }
        check_relay(pool, job, backlog, &mut relay_missing_since).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails when no relay has held the relay lock for [`RELAY_GRACE`].
async fn check_relay(
    pool: &PgPool,
    job: i64,
    backlog: i64,
    missing_since: &mut Option<Instant>,
) -> Result<(), ReplayError> {
    if relay_is_running(pool).await? {
        *missing_since = None;
        return Ok(());
    }
    let since = *missing_since.get_or_insert_with(Instant::now);
    if since.elapsed() > RELAY_GRACE {
        return Err(ReplayError::RelayLost { job, backlog });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_halves_are_what_pg_locks_shows() {
        // "pipeline" = 0x70697065_6c696e65: classid 0x70697065, objid 0x6c696e65.
        assert_eq!(lock_halves(RELAY_LOCK_KEY), (0x7069_7065, 0x6c69_6e65));
        assert_eq!(lock_halves(-1), (0xffff_ffff, 0xffff_ffff));
    }

    #[test]
    fn job_args_name_the_set_not_the_speed() {
        let mut a = LandingOptions {
            since: None,
            until: None,
            seed: Some("s".into()),
            dry_run: false,
            max_outbox_rows: 10_000,
            chunk_rows: 2_000,
            restart: false,
        };
        let before = a.args_json();
        a.chunk_rows = 10;
        a.max_outbox_rows = 5;
        assert_eq!(a.args_json(), before);
        a.seed = None;
        assert_ne!(a.args_json(), before);
    }
}
