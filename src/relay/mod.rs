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
//! partition, because one relay runs at a time (the relay lease, src/lease, elects it when
//! several daemons share a database) and it produces a partition's records in one request.
//! A relay that loses its lease stops at once (its round in flight is dropped; its rows stay
//! in the outbox for the next holder) and stands by again.
//!
//! Oversized records (larger than `kafka.max_message_bytes`, which the broker would refuse
//! forever) go to the dead-letter topic, truncated, with reason `too_large` and stage `relay`.
//!
//! Value format (`kafka.value_format`): `json` produces the stored message as it is; `json_sr`
//! registers the message schema at start (see [`crate::registry`]; a refusal stops the daemon)
//! and prepends the 5-byte Confluent frame (magic byte, schema id) to the same bytes.

pub(crate) mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::record::Record;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dlq::DeadLetter;
use crate::kafka::{self, Partitions};
use crate::landing::Landing;
use crate::lease::Elector;
use crate::model;
use crate::outbox::{Outbox, OutboxRow};
use crate::registry::{self, ValueFormat};
use crate::supervise::{Stage, StageContext, StageError};
use crate::telemetry::Metrics;

/// A landed row the relay cannot turn into a Kafka record. The row stays in the outbox and
/// the relay stops (fatal) rather than produce something else in its place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// `users_landed.raw` of a row landed by an older version does not encode.
    #[error("outbox row seq {seq} (user {id}): landed JSON does not encode: {source}")]
    LandedJson {
        seq: i64,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}
use crate::telemetry::metrics::observe_ms;

/// An oversized outbox row, as its dead letter.
struct Outgoing {
    partition: i32,
    record: Record,
}

/// The relay under supervision.
pub struct RelayStage {
    pub config: Arc<Config>,
    pub landing: Landing,
    pub metrics: Metrics,
    /// Cancelled once the relay is up (it leads, or stands by for another daemon's lease):
    /// the source waits for it at start-up.
    pub up: CancellationToken,
    /// The relay lease: one relay per database.
    pub lease: Elector,
}

impl Stage for RelayStage {
    /// The Kafka client, and the schema id values are framed with (`json_sr`).
    type Running = (Arc<rskafka::client::Client>, Option<u32>);

    fn name(&self) -> &'static str {
        "relay"
    }

    async fn start(&self, _ctx: &StageContext) -> Result<Self::Running, StageError> {
        self.landing.ensure_migrated().await?;
        let frame_id = match self.config.kafka.value_format {
            ValueFormat::Json => None,
            ValueFormat::JsonSr => {
                let registered = registry::register_message_schema(
                    &self.config,
                    self.metrics.schema_registry_errors.clone(),
                )
                .await?;
                tracing::info!(
                    subject = %registered.subject,
                    version = registered.version,
                    id = registered.id,
                    "message schema registered; values are framed (json_sr)"
                );
                self.metrics.schema_info.reset();
                self.metrics
                    .schema_info
                    .with_label_values(&[
                        registered.subject.as_str(),
                        &registered.version.to_string(),
                        &registered.id.to_string(),
                    ])
                    .set(1);
                Some(registered.id)
            }
        };
        Ok((
            Arc::new(kafka::connect(&self.config.kafka).await?),
            frame_id,
        ))
    }

    async fn run(
        &self,
        (client, frame_id): Self::Running,
        ctx: &StageContext,
    ) -> Result<(), StageError> {
        if test_hang_hook(self.name()) {
            ctx.set_ready();
            ctx.token.cancelled().await;
            return Ok(());
        }
        run_relay(
            Arc::clone(&self.config),
            self.landing.clone(),
            client,
            frame_id,
            self.metrics.clone(),
            ctx.token.clone(),
            &self.lease,
            || {
                ctx.set_ready();
                self.up.cancel();
            },
            || {
                ctx.set_standby();
                self.up.cancel();
            },
        )
        .await
    }
}

/// Test hook: `_PIPELINE_TEST_HANG=<task>` makes that task report ready and then stop turning
/// (it only waits for shutdown), for the watchdog test (tests/it/notify.rs). Not a config
/// key on purpose: no `PIPELINE_` prefix, never set outside tests.
fn test_hang_hook(task: &str) -> bool {
    std::env::var("_PIPELINE_TEST_HANG").is_ok_and(|v| v == task)
}

/// The relay stage: relays while this daemon holds the relay lease, stands by while another
/// daemon holds it, and stops relaying at once when the lease is lost. `frame_id`: the schema
/// id of `json_sr` framing (none: plain JSON).
///
/// # Errors
/// Retriable on Postgres or Kafka failures (rows stay in the outbox).
#[allow(clippy::too_many_arguments)]
pub async fn run_relay(
    config: Arc<Config>,
    landing: Landing,
    client: Arc<rskafka::client::Client>,
    frame_id: Option<u32>,
    metrics: Metrics,
    token: CancellationToken,
    lease: &Elector,
    mark_ready: impl Fn(),
    mark_standby: impl Fn(),
) -> Result<(), StageError> {
    loop {
        let standby = || {
            mark_standby();
            metrics
                .heartbeats
                .waiting_for("relay", config.lease.check_interval);
        };
        let Some(held) = lease.acquire(&token, standby).await? else {
            return Ok(());
        };
        mark_ready();
        let relaying = relay_while_held(
            Arc::clone(&config),
            landing.clone(),
            Arc::clone(&client),
            frame_id,
            metrics.clone(),
            token.clone(),
        );
        tokio::select! {
            result = relaying => return result,
            // Step down: the round in flight is dropped (its rows stay in the outbox).
            () = held.lost() => mark_standby(),
        }
    }
}

/// Relays until `token` is cancelled (the caller holds the lease).
async fn relay_while_held(
    config: Arc<Config>,
    landing: Landing,
    client: Arc<rskafka::client::Client>,
    frame_id: Option<u32>,
    metrics: Metrics,
    token: CancellationToken,
) -> Result<(), StageError> {
    let k = &config.kafka;
    let partitions = kafka::ensure_topic(&client, k, &k.topic).await?;
    let dlq_partitions = kafka::ensure_topic(&client, k, &config.dlq.topic).await?;
    let topic = Partitions::new(Arc::clone(&client), &k.topic, k.request_timeout);
    let dlq = Partitions::new(Arc::clone(&client), &config.dlq.topic, k.request_timeout);
    let compression = kafka::compression(k.compression);

    let outbox = landing.outbox();
    // Other daemons' landings (and replays) wake us through the outbox trigger's NOTIFY.
    let listener = tokio::spawn(outbox.clone().listen(token.clone()));
    let _listener = AbortOnDrop(listener);

    let relay = Relay {
        config: &config,
        outbox,
        metrics: &metrics,
        topic,
        dlq,
        partitions,
        dlq_partitions,
        compression,
        frame_id,
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
            metrics.outbox_backlog.set(outbox.backlog().await?);
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
                () = outbox.woken().notified() => {}
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
    outbox: &'a Outbox,
    metrics: &'a Metrics,
    topic: Partitions,
    dlq: Partitions,
    partitions: i32,
    dlq_partitions: i32,
    compression: rskafka::client::partition::Compression,
    /// `json_sr`: the registered schema's id, prepended to every value.
    frame_id: Option<u32>,
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
        let queued = self.outbox.read(skip, limit).await?;
        self.metrics
            .batch_duration
            .with_label_values(&["relay_read"])
            .observe(reading.elapsed().as_secs_f64());
        if queued.is_empty() {
            return Ok(None);
        }
        let read_at = Instant::now();
        // A full read means at least this many wait; the slow count corrects it.
        let read = i64::try_from(queued.len()).unwrap_or(i64::MAX);
        let backlog = &self.metrics.outbox_backlog;
        backlog.set(if read == limit {
            read.max(backlog.get())
        } else {
            read
        });
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
        for OutboxRow {
            id,
            fetched_at_ms,
            message: value,
            ..
        } in queued
        {
            observe_ms(&relay_wait, fetched_at_ms, now_ms);
            let key = id.into_bytes();
            let headers = model::message_headers(fetched_at_ms);
            let framing = self.frame_id.map_or(0, |_| registry::FRAME_HEADER);
            if value.len() + framing + key.len() + 512 > k.max_message_bytes {
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
            // The stored bytes with the frame in front: never reparsed.
            let value = match self.frame_id {
                Some(id) => registry::frame(id, &value),
                None => value,
            };
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
        self.outbox.acknowledge(&round.seqs).await?;
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

/// Aborts a spawned task when dropped (the relay's listener ends with the relay).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
