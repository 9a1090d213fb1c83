//! The transactional outbox: the rows landing writes in the same statement as the users
//! (`outbox`: seq, user id, fetch time, the ready Kafka message), read by the relay in seq
//! order and deleted once Kafka acknowledged them.
//!
//! Landing owns the write (it must be atomic with the users); everything else the relay needs
//! of Postgres is here: [`Outbox::read`], [`Outbox::acknowledge`], [`Outbox::backlog`] and
//! the wake-ups ([`Outbox::woken`], [`Outbox::listen`]). The single-relay election is the
//! relay lease (src/lease).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::landing::{PostgresError, pg_error};
use crate::model;
use crate::relay::RelayError;
use crate::supervise::StageError;

/// The Postgres channel the outbox trigger notifies on every insert.
const CHANNEL: &str = "pipeline_outbox";

/// An outbox row, ready to produce.
#[derive(Debug)]
pub struct OutboxRow {
    pub seq: i64,
    /// The user id: the record's key.
    pub id: String,
    pub fetched_at_ms: i64,
    /// The Kafka message bytes.
    pub message: Vec<u8>,
}

/// A handle on the outbox (cheap to clone: a pool and a shared wake-up).
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    /// Woken after every commit that queued outbox rows: the relay of this process waits on
    /// it (relays of other processes get the trigger's `NOTIFY pipeline_outbox`).
    wake: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Called by landing after a commit that queued rows.
    pub fn notify_committed(&self) {
        self.wake.notify_one();
    }

    /// Resolves after rows were committed by this process (or forwarded by [`Outbox::listen`]).
    pub fn woken(&self) -> &tokio::sync::Notify {
        &self.wake
    }

    /// Reads up to `limit` rows in seq order outside `skip` (inclusive; `(0, 0)` skips
    /// nothing, seqs start at 1).
    ///
    /// # Errors
    /// [`PostgresError`], or [`RelayError`] for a row landed by an older version whose JSON
    /// does not encode (the row stays; see [`legacy_rows`]).
    pub async fn read(&self, skip: (i64, i64), limit: i64) -> Result<Vec<OutboxRow>, StageError> {
        let rows = sqlx::query(
            "(SELECT seq, user_id, fetched_at_ms, message FROM outbox \
               WHERE seq < $1 ORDER BY seq LIMIT $3) \
             UNION ALL \
             (SELECT seq, user_id, fetched_at_ms, message FROM outbox \
               WHERE seq > $2 ORDER BY seq LIMIT $3) \
             ORDER BY seq LIMIT $3",
        )
        .bind(skip.0)
        .bind(skip.1)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error("read outbox"))?;
        let mut legacy: Vec<i64> = Vec::new();
        let mut out: Vec<OutboxRow> = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(pg_error("decode outbox row"))?;
            let id: String = row.try_get(1).map_err(pg_error("decode outbox row"))?;
            let fetched_at_ms: Option<i64> =
                row.try_get(2).map_err(pg_error("decode outbox row"))?;
            let message: Option<Vec<u8>> = row.try_get(3).map_err(pg_error("decode outbox row"))?;
            match (fetched_at_ms, message) {
                (Some(fetched_at_ms), Some(message)) => out.push(OutboxRow {
                    seq,
                    id,
                    fetched_at_ms,
                    message,
                }),
                _ => legacy.push(seq),
            }
        }
        drop(rows);
        if !legacy.is_empty() {
            // Keep seq order: a partition's records are produced in outbox order.
            out.extend(self.legacy_rows(&legacy).await?);
            out.sort_unstable_by_key(|r| r.seq);
        }
        Ok(out)
    }

    /// Rows landed by a version that did not store the message, and rows queued by
    /// `pipeline replay --from landing` (`crate::replay::landing`): built from
    /// `users_landed.raw`.
    async fn legacy_rows(&self, seqs: &[i64]) -> Result<Vec<OutboxRow>, StageError> {
        let rows = sqlx::query(
            "SELECT o.seq, u.id, (extract(epoch FROM u.fetched_at) * 1000)::bigint, u.raw \
             FROM outbox o JOIN users_landed u ON u.id = o.user_id \
             WHERE o.seq = ANY($1) ORDER BY o.seq",
        )
        .bind(seqs)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error("read legacy outbox rows"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(pg_error("decode outbox row"))?;
            let id: String = row.try_get(1).map_err(pg_error("decode outbox row"))?;
            let fetched_at_ms: i64 = row.try_get(2).map_err(pg_error("decode outbox row"))?;
            let raw: String = row.try_get(3).map_err(pg_error("decode outbox row"))?;
            // `raw` is what an older version landed as jsonb, so this fails only on a
            // corrupted row: stop and say which (the row stays in the outbox) rather than
            // produce something else in its place.
            let message = serde_json::from_str::<serde_json::Value>(&raw)
                .and_then(|user| model::encode_message(&id, &user))
                .map_err(|source| RelayError::LandedJson {
                    seq,
                    id: id.clone(),
                    source,
                })?;
            out.push(OutboxRow {
                seq,
                id,
                fetched_at_ms,
                message,
            });
        }
        Ok(out)
    }

    /// Deletes relayed rows (after Kafka acknowledged every one of them).
    ///
    /// # Errors
    /// [`PostgresError`]; the rows stay and are relayed again (at-least-once).
    pub async fn acknowledge(&self, seqs: &[i64]) -> Result<(), PostgresError> {
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&self.pool)
            .await
            .map_err(pg_error("delete relayed"))?;
        Ok(())
    }

    /// Rows waiting (a full count: for a slow gauge, not the hot loop).
    ///
    /// # Errors
    /// [`PostgresError`].
    pub async fn backlog(&self) -> Result<i64, PostgresError> {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error("count outbox"))
    }

    /// Forwards `NOTIFY pipeline_outbox` (other daemons' landings, replays) to
    /// [`Outbox::woken`] until `token`, reconnecting after errors; a missed notification
    /// costs at most one `relay.idle_poll`.
    pub async fn listen(self, token: CancellationToken) {
        while !token.is_cancelled() {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
                l.listen(CHANNEL).await?;
                loop {
                    l.recv().await?;
                    self.wake.notify_one();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            let result = tokio::select! {
                r = listener => r,
                () = token.cancelled() => return,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "outbox listener lost; falling back to the poll");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = token.cancelled() => return,
            }
        }
    }
}
