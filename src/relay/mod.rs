//! Outbox → Kafka.
//!
//! ```text
//!  outbox (seq order) ──► encode (compat JSON, key = id, headers) ──► group by partition
//!       ▲                                                                   │ produce, acks
//!       └──────────────── DELETE acknowledged seqs ◄────────────────────────┘
//! ```
//!
//! Rounds overlap: round N is produced and deleted while round N+1 is read and encoded, so
//! Postgres and Kafka work at the same time; only one round is produced at a time.
//!
//! Delivery: at least once. Rows leave the outbox only after every partition they went to
//! acknowledged them. A crash between the acknowledgement and the DELETE re-sends those rows:
//! duplicates in Kafka, made harmless downstream because the sink's writes are idempotent
//! (same key, same values, same write timestamp).
//!
//! Order: per key, trivially (a user id lands once); across keys, seq order within each
//! partition, because one relay runs at a time (a Postgres advisory lock elects it when
//! several daemons share a database) and it produces a partition's records in one request.
//!
//! Oversized records (larger than `kafka.max_message_bytes`, which the broker would refuse
//! forever) go to the dead-letter topic, truncated, with reason `too_large` and stage `relay`.

pub(crate) mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::record::Record;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DlqConfig};
use crate::kafka::{self, Partitions};
use crate::landing::{Landing, pg_error};
use crate::model;
use crate::supervise::StageError;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::observe_ms;

/// Advisory lock key electing the single relay of a database.
const RELAY_LOCK_KEY: i64 = 0x7069_7065_6c69_6e65; // "pipeline"

/// Why and where a record is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Stage that rejected it: "relay" or "validate".
    pub stage: &'a str,
    /// Bounded reason (a [`model::RejectReason`] name).
    pub reason: &'a str,
    /// Human detail naming the field.
    pub detail: &'a str,
    /// Origin topic, partition, offset (none for records that never reached Kafka).
    pub origin: Option<(&'a str, i32, i64)>,
}

impl DeadLetter<'_> {
    /// Builds the dead-letter record for `value`: original bytes (truncated to fit
    /// `max_bytes`) and headers naming stage, reason, detail and origin.
    pub fn record(
        &self,
        dlq: &DlqConfig,
        key: Option<Vec<u8>>,
        value: &[u8],
        mut headers: BTreeMap<String, Vec<u8>>,
        max_bytes: usize,
    ) -> Record {
        let p = &dlq.header_prefix;
        let keep = value.len().min(max_bytes.saturating_sub(4096));
        if keep < value.len() {
            headers.insert(
                format!("{p}original_bytes"),
                value.len().to_string().into_bytes(),
            );
        }
        headers.insert(format!("{p}stage"), self.stage.as_bytes().to_vec());
        headers.insert(format!("{p}reason"), self.reason.as_bytes().to_vec());
        let mut end = self.detail.len().min(1024);
        while !self.detail.is_char_boundary(end) {
            end -= 1;
        }
        headers.insert(format!("{p}detail"), self.detail.as_bytes()[..end].to_vec());
        if let Some((topic, partition, offset)) = self.origin {
            headers.insert(format!("{p}topic"), topic.as_bytes().to_vec());
            headers.insert(format!("{p}partition"), partition.to_string().into_bytes());
            headers.insert(format!("{p}offset"), offset.to_string().into_bytes());
        }
        Record {
            key,
            value: Some(value[..keep].to_vec()),
            headers,
            timestamp: chrono::Utc::now(),
        }
    }
}

/// An oversized outbox row, as its dead letter.
struct Outgoing {
    partition: i32,
    record: Record,
}

/// The relay stage.
///
/// # Errors
/// Retriable on Postgres or Kafka failures (rows stay in the outbox).
pub async fn run_relay(
    config: Arc<Config>,
    landing: Landing,
    client: Arc<rskafka::client::Client>,
    metrics: Metrics,
    token: CancellationToken,
    mark_ready: impl Fn(),
) -> Result<(), StageError> {
    let k = &config.kafka;
    let partitions = kafka::ensure_topic(&client, k, &k.topic).await?;
    let dlq_partitions = kafka::ensure_topic(&client, k, &config.dlq.topic).await?;
    let topic = Partitions::new(Arc::clone(&client), &k.topic, k.request_timeout);
    let dlq = Partitions::new(Arc::clone(&client), &config.dlq.topic, k.request_timeout);
    let compression = kafka::compression(k.compression);

    // Single relay per database: hold the advisory lock on a connection of our own.
    let mut lock_conn = landing
        .pool()
        .acquire()
        .await
        .map_err(|e| pg_error("acquire", &e))?
        .detach();
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut lock_conn)
            .await
            .map_err(|e| pg_error("advisory lock", &e))?;
        if got {
            break;
        }
        mark_ready();
        metrics
            .heartbeats
            .waiting_for("relay", Duration::from_secs(5));
        tracing::info!("another relay holds the outbox lock; standing by");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = token.cancelled() => return Ok(()),
        }
    }
    mark_ready();

    // Other daemons' landings (and replays) wake us through the outbox trigger's NOTIFY.
    let listener = tokio::spawn(forward_notifications(landing.clone(), token.clone()));
    let _listener = AbortOnDrop(listener);

    let relay = Relay {
        config: &config,
        landing: &landing,
        metrics: &metrics,
        topic,
        dlq,
        partitions,
        dlq_partitions,
        compression,
    };
    // Two rounds overlap: round N is produced (and then deleted from the outbox) while round
    // N+1 is read and encoded. Round N+1's read skips the seq range of round N, whose rows are
    // still in the outbox; a row that committed late inside that range is read one round
    // later, so there is still no gap. A partition's records are produced in read order
    // because only one round is produced at a time.
    let mut last_backlog_check = Instant::now() - BACKLOG_EVERY;
    let mut pending: Option<Round> = None;
    while !token.is_cancelled() {
        metrics.heartbeats.beat("relay");
        if last_backlog_check.elapsed() >= BACKLOG_EVERY {
            metrics.outbox_backlog.set(landing.outbox_backlog().await?);
            last_backlog_check = Instant::now();
        }
        let skip = pending.as_ref().map_or((0, 0), |r| r.seq_range);
        let produce = async {
            match pending.take() {
                Some(round) => relay.produce(round).await.map(|()| true),
                None => Ok(false),
            }
        };
        let (produced, next) = tokio::try_join!(produce, relay.read(skip))?;
        pending = next;
        if pending.is_none() && !produced {
            metrics.outbox_backlog.set(0);
            metrics
                .heartbeats
                .waiting_for("relay", config.relay.idle_poll);
            tokio::select! {
                () = landing.wake().notified() => {}
                () = tokio::time::sleep(config.relay.idle_poll) => {}
                () = token.cancelled() => {}
            }
        }
    }
    Ok(())
}

/// What one relay round needs of the stage.
struct Relay<'a> {
    config: &'a Config,
    landing: &'a Landing,
    metrics: &'a Metrics,
    topic: Partitions,
    dlq: Partitions,
    partitions: i32,
    dlq_partitions: i32,
    compression: rskafka::client::partition::Compression,
}

/// Outbox rows read and encoded, waiting to be produced.
struct Round {
    /// Lowest and highest seq read (the next read skips this range).
    seq_range: (i64, i64),
    /// Every seq of the round, deleted once Kafka acknowledged them.
    seqs: Vec<i64>,
    by_partition: BTreeMap<i32, Vec<Record>>,
    too_large: Vec<Outgoing>,
    read_at: Instant,
}

impl Relay<'_> {
    /// Reads up to `relay.batch_rows` outbox rows in seq order outside `skip`
    /// (inclusive; `(0, 0)` skips nothing, seqs start at 1) and encodes them.
    async fn read(&self, skip: (i64, i64)) -> Result<Option<Round>, StageError> {
        let k = &self.config.kafka;
        let limit = i64::from(self.config.relay.batch_rows);
        let reading = Instant::now();
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
        .fetch_all(self.landing.pool())
        .await
        .map_err(|e| pg_error("read outbox", &e))?;
        self.metrics
            .batch_duration
            .with_label_values(&["relay_read"])
            .observe(reading.elapsed().as_secs_f64());
        if rows.is_empty() {
            return Ok(None);
        }
        let read_at = Instant::now();
        // A full read means at least this many wait; the slow count corrects it.
        let read = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let backlog = &self.metrics.outbox_backlog;
        backlog.set(if read == limit {
            read.max(backlog.get())
        } else {
            read
        });
        let mut legacy: Vec<i64> = Vec::new();
        let mut queued: Vec<Queued> = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(|e| pg_error("decode", &e))?;
            let id: String = row.try_get(1).map_err(|e| pg_error("decode", &e))?;
            let fetched_at_ms: Option<i64> = row.try_get(2).map_err(|e| pg_error("decode", &e))?;
            let message: Option<Vec<u8>> = row.try_get(3).map_err(|e| pg_error("decode", &e))?;
            match (fetched_at_ms, message) {
                (Some(fetched_at_ms), Some(value)) => queued.push(Queued {
                    seq,
                    id,
                    fetched_at_ms,
                    value,
                }),
                _ => legacy.push(seq),
            }
        }
        drop(rows);
        if !legacy.is_empty() {
            // Keep seq order: a partition's records are produced in outbox order.
            queued.extend(legacy_rows(self.landing, &legacy).await?);
            queued.sort_unstable_by_key(|q| q.seq);
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let relay_wait = self.metrics.stage("relay_wait");
        let mut round = Round {
            seq_range: (
                queued.first().map_or(0, |q| q.seq),
                queued.last().map_or(0, |q| q.seq),
            ),
            seqs: queued.iter().map(|q| q.seq).collect(),
            by_partition: BTreeMap::new(),
            too_large: Vec::new(),
            read_at,
        };
        for Queued {
            id,
            fetched_at_ms,
            value,
            ..
        } in queued
        {
            observe_ms(&relay_wait, fetched_at_ms, now_ms);
            let key = id.into_bytes();
            let headers = model::message_headers(fetched_at_ms);
            if value.len() + key.len() + 512 > k.max_message_bytes {
                let detail = format!(
                    "encoded message is {} bytes, kafka.max_message_bytes is {}",
                    value.len(),
                    k.max_message_bytes
                );
                let record = DeadLetter {
                    stage: "relay",
                    reason: model::RejectReason::TooLarge.as_str(),
                    detail: &detail,
                    origin: None,
                }
                .record(
                    &self.config.dlq,
                    Some(key.clone()),
                    &value,
                    headers,
                    k.max_message_bytes,
                );
                round.too_large.push(Outgoing {
                    partition: model::partition_for_key(&key, self.dlq_partitions),
                    record,
                });
                continue;
            }
            let partition = model::partition_for_key(&key, self.partitions);
            round
                .by_partition
                .entry(partition)
                .or_default()
                .push(Record {
                    key: Some(key),
                    value: Some(value),
                    headers,
                    timestamp: chrono::Utc::now(),
                });
        }
        Ok(Some(round))
    }

    /// Produces a round (every partition in parallel, oversized records to the dead-letter
    /// topic) and, once everything is acknowledged, deletes its rows from the outbox.
    async fn produce(&self, round: Round) -> Result<(), StageError> {
        let k = &self.config.kafka;
        let compression = self.compression;
        let produces = round
            .by_partition
            .into_iter()
            .map(|(partition, records)| async move {
                let pc = self.topic.get(partition).await?;
                kafka::produce_chunked(&pc, records, compression, k, "produce").await
            });
        let produced: usize = futures::future::try_join_all(produces)
            .await?
            .into_iter()
            .sum();
        let dead = round.too_large.len();
        for o in round.too_large {
            self.metrics
                .recent_dead_letters
                .push_record(&o.record, &self.config.dlq.header_prefix);
            let pc = self.dlq.get(o.partition).await?;
            kafka::deadline(
                "produce dlq",
                k.request_timeout,
                pc.produce(vec![o.record], compression),
            )
            .await?;
            self.metrics
                .dead_letters
                .with_label_values(&[model::RejectReason::TooLarge.as_str()])
                .inc();
        }
        let acked = round.read_at.elapsed().as_secs_f64();
        let deleting = Instant::now();
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(&round.seqs)
            .execute(self.landing.pool())
            .await
            .map_err(|e| pg_error("delete relayed", &e))?;
        self.metrics
            .batch_duration
            .with_label_values(&["relay_delete"])
            .observe(deleting.elapsed().as_secs_f64());
        self.metrics
            .records
            .with_label_values(&["relay"])
            .inc_by(produced as u64);
        self.metrics
            .batch_duration
            .with_label_values(&["relay"])
            .observe(round.read_at.elapsed().as_secs_f64());
        self.metrics.stage("produce").observe(acked);
        tracing::debug!(produced, dead, "relayed");
        Ok(())
    }
}

/// How often the relay counts the outbox for `pipeline_outbox_backlog_rows` (the hot loop
/// only knows what it read).
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// An outbox row ready to produce.
struct Queued {
    seq: i64,
    id: String,
    fetched_at_ms: i64,
    value: Vec<u8>,
}

/// Rows landed by a version that did not store the message: built from `users_landed.raw`.
async fn legacy_rows(landing: &Landing, seqs: &[i64]) -> Result<Vec<Queued>, StageError> {
    let rows = sqlx::query(
        "SELECT o.seq, u.id, (extract(epoch FROM u.fetched_at) * 1000)::bigint, u.raw \
         FROM outbox o JOIN users_landed u ON u.id = o.user_id \
         WHERE o.seq = ANY($1) ORDER BY o.seq",
    )
    .bind(seqs)
    .fetch_all(landing.pool())
    .await
    .map_err(|e| pg_error("read legacy outbox rows", &e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get(0).map_err(|e| pg_error("decode", &e))?;
        let id: String = row.try_get(1).map_err(|e| pg_error("decode", &e))?;
        let fetched_at_ms: i64 = row.try_get(2).map_err(|e| pg_error("decode", &e))?;
        let raw: String = row.try_get(3).map_err(|e| pg_error("decode", &e))?;
        // `raw` is what an older version landed as jsonb, so this fails only on a corrupted
        // row: stop and say which (the row stays in the outbox) rather than produce something
        // else in its place.
        let value = serde_json::from_str::<serde_json::Value>(&raw)
            .and_then(|user| model::encode_message(&id, &user))
            .map_err(|e| {
                StageError::fatal(format!(
                    "outbox row seq {seq} (user {id}): landed JSON does not encode: {e}"
                ))
            })?;
        out.push(Queued {
            seq,
            id,
            fetched_at_ms,
            value,
        });
    }
    Ok(out)
}

/// Forwards `NOTIFY pipeline_outbox` to the in-process wake-up, reconnecting after errors;
/// a missed notification costs at most one `relay.idle_poll`.
async fn forward_notifications(landing: Landing, token: CancellationToken) {
    while !token.is_cancelled() {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect_with(landing.pool()).await?;
            l.listen("pipeline_outbox").await?;
            loop {
                l.recv().await?;
                landing.wake().notify_one();
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

/// Aborts a spawned task when dropped (the relay's listener ends with the relay).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
