//! Per-partition consumers: fetch, validate, write, dead-letter, store offsets.
//!
//! ```text
//!  Kafka partition p ──► fetcher ──(bounded channel)──► writer ──► Cassandra rows
//!                                                         ├──► dead-letter topic
//!                                                         └──► offset store (after both)
//! ```
//!
//! Assignment: with `consumer.assignment = "group"` (the default) Kafka's group coordinator
//! shares the partitions among the daemons of `consumer.group` and rebalances them when one
//! comes or goes ([`crate::group`]); each batch's offset is committed to the group (fenced by
//! member id and generation) and then stored in Cassandra. With `"static"`, partition p belongs
//! to instance `p % consumer.instances` and the offsets live in Cassandra only.
//! Delivery: a batch's offset is stored only after its rows *and* its dead letters were
//! acknowledged; a crash re-delivers from the stored offset, and the writes are idempotent
//! (see [`crate::sink`]). Dead letters are at-least-once: a replay may repeat one.
//! A bad record never stops the partition: it is dead-lettered and the offset moves on.
//!
//! Values are plain JSON or Confluent-framed (`json_sr`; the first byte tells, see
//! [`crate::registry`]): a framed value's schema is fetched by id (cached) and checked before
//! the usual validation; an unknown id is dead-lettered `unknown_schema`, a violation
//! `schema_violation`, and an unreachable registry restarts the stage (nothing is
//! dead-lettered for it). Dead letters carry the record's original bytes, frame included.

pub(crate) mod config;
mod membership;

pub use membership::{Held, HeldMembership, HoldSettings};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::config::{Assignment, Config, StartFrom};
use crate::dlq::DeadLetter;
use crate::group::{
    self, Commit, Fence, GroupError, GroupMembership, GroupView, Heartbeat, error_name,
};
use crate::kafka::{self, Partitions};
use crate::model;
use crate::registry::{self, Lookup, SchemaRegistry};
use crate::sink::{CassandraSink, RowSink};
use crate::supervise::{Stage, StageContext, StageError};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{LatencyRecorder, observe_ms};
use crate::telemetry::status::StatusBoard;

/// Progress of each assigned partition, for lag, readiness and drain detection.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: Mutex<HashMap<i32, Arc<PartitionProgress>>>,
    /// Set once the assignment is known.
    pub assigned: AtomicBool,
    /// This daemon's place in its consumer group (assignment = "group").
    group: Mutex<Option<GroupView>>,
}

#[derive(Debug, Default)]
pub struct PartitionProgress {
    /// Next offset whose processing is committed (stored).
    pub committed: AtomicI64,
    /// High watermark seen by the latest fetch.
    pub high_watermark: AtomicI64,
    /// Unix ms when the latest completed fetch was *started*.
    pub last_fetch_started_ms: AtomicI64,
}

impl Progress {
    pub fn partition(&self, p: i32) -> Arc<PartitionProgress> {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(p).or_default())
    }

    /// True when every assigned partition (also one that never had data) has committed up to
    /// the high watermark returned by a fetch started after `since_ms`. The fetcher publishes
    /// a fetch's watermark before its start time, so a fetch that is still in the channel
    /// (not yet written) keeps this false.
    pub fn caught_up_since(&self, since_ms: i64) -> bool {
        if !self.assigned.load(Ordering::SeqCst) {
            return false;
        }
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        !map.is_empty()
            && map.values().all(|p| {
                p.last_fetch_started_ms.load(Ordering::SeqCst) > since_ms
                    && p.committed.load(Ordering::SeqCst) >= p.high_watermark.load(Ordering::SeqCst)
            })
    }
}

impl Progress {
    /// Forgets the partitions not in `keep` (moved to another member).
    pub fn retain(&self, keep: &[i32]) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|p, _| keep.contains(p));
    }

    /// This daemon's group membership, when it has one.
    pub fn group(&self) -> Option<GroupView> {
        self.group.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn update_group(&self, f: impl FnOnce(&mut GroupView)) {
        let mut g = self.group.lock().unwrap_or_else(|e| e.into_inner());
        f(g.get_or_insert_with(GroupView::default));
    }

    /// `(partition, committed, high watermark)` of every assigned partition, in order (for
    /// the status page).
    pub fn snapshot(&self) -> Vec<(i32, i64, i64)> {
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .map(|(p, s)| {
                (
                    *p,
                    s.committed.load(Ordering::SeqCst),
                    s.high_watermark.load(Ordering::SeqCst),
                )
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// Partitions of `count` that belong to `instance` of `instances`.
pub fn assigned_partitions(count: i32, instance: u32, instances: u32) -> Vec<i32> {
    (0..count)
        .filter(|p| (*p as u32) % instances.max(1) == instance)
        .collect()
}

/// Shared dependencies of the partition tasks.
pub struct ConsumerDeps<S: RowSink> {
    pub config: Arc<Config>,
    pub sink: Arc<S>,
    pub topic: Arc<Partitions>,
    pub dlq: Arc<Partitions>,
    pub dlq_partitions: i32,
    pub metrics: Metrics,
    pub latency: Arc<LatencyRecorder>,
    pub progress: Arc<Progress>,
    /// `consumer.buffer_bytes`: fetched-but-unwritten records of all partitions.
    pub budget: ByteBudget,
    /// The group member committing offsets (assignment = "group").
    pub group: Option<Arc<dyn GroupMembership>>,
    /// Resolves the schema ids of framed values (none without `[schema_registry] url`).
    pub schemas: Option<Arc<SchemaRegistry>>,
}

/// What one heap allocation costs besides its bytes (allocator header and rounding).
const ALLOCATION_OVERHEAD: usize = 16;

/// What a non-empty header map costs before its entries: rskafka decodes headers into a
/// `BTreeMap<String, Vec<u8>>`, whose first leaf node holds room for 11 entries.
const HEADER_MAP_NODE: usize = 8 + 2 + 2 + 11 * 2 * std::mem::size_of::<String>();

/// Heap size of a fetched record as the budget counts it: key, value, each header's key and
/// value, the header map's node, and the record itself. Measured with heaptrack
/// (docs/performance.md, "Memory"): counting the headers as bytes only made the budget see
/// about half of what the records held.
fn record_bytes(r: &RecordAndOffset) -> u64 {
    let record = &r.record;
    let bytes = |len: usize| len + ALLOCATION_OVERHEAD;
    let headers: usize = record
        .headers
        .iter()
        .map(|(k, v)| bytes(k.len()) + bytes(v.len()))
        .sum::<usize>()
        + if record.headers.is_empty() {
            0
        } else {
            bytes(HEADER_MAP_NODE)
        };
    let len = record.key.as_ref().map_or(0, |k| bytes(k.len()))
        + record.value.as_ref().map_or(0, |v| bytes(v.len()))
        + headers
        + std::mem::size_of::<RecordAndOffset>();
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// The consumers under supervision: one Cassandra session and one Kafka client shared by a
/// fetcher and a writer per assigned partition.
pub struct ConsumerStage {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub latency: Arc<LatencyRecorder>,
    pub progress: Arc<Progress>,
    pub board: Arc<StatusBoard>,
    /// Cancelled once partitions are assigned and consumed: the source waits for it.
    pub up: CancellationToken,
    /// The group member between runs: a restart after a sink failure resumes it instead of
    /// leaving and rejoining the group (`membership`).
    pub membership: Arc<HeldMembership>,
}

impl Stage for ConsumerStage {
    type Running = (CassandraSink, rskafka::client::Client);

    fn name(&self) -> &'static str {
        "consumer"
    }

    async fn start(&self, _ctx: &StageContext) -> Result<Self::Running, StageError> {
        let sink = CassandraSink::connect(&self.config.cassandra).await?;
        let client = kafka::connect(&self.config.kafka).await?;
        // For the status page only: a failure here is not the stage's.
        if let Ok(version) = sink.release_version().await {
            self.board.set_service_version("cassandra", &version);
        }
        Ok((sink, client))
    }

    async fn run(
        &self,
        (sink, client): Self::Running,
        ctx: &StageContext,
    ) -> Result<(), StageError> {
        let consumers = Consumers {
            config: Arc::clone(&self.config),
            sink: Arc::new(sink),
            client: Arc::new(client),
            metrics: self.metrics.clone(),
            latency: Arc::clone(&self.latency),
            progress: Arc::clone(&self.progress),
            membership: Arc::clone(&self.membership),
        };
        run_consumers(consumers, ctx.token.clone(), || {
            ctx.set_ready();
            self.up.cancel();
        })
        .await
    }
}

/// What the consumers run with, for any [`RowSink`].
pub struct Consumers<S: RowSink> {
    pub config: Arc<Config>,
    pub sink: Arc<S>,
    pub client: Arc<rskafka::client::Client>,
    pub metrics: Metrics,
    pub latency: Arc<LatencyRecorder>,
    pub progress: Arc<Progress>,
    /// Where the group member waits between runs (assignment = "group").
    pub membership: Arc<HeldMembership>,
}

/// The consumer stage: connects, assigns, and runs one task per partition until `token`.
///
/// In group mode the member of a previous run, held since that run failed, is resumed with
/// its assignment; after a retriable failure the member is held again (see `membership`),
/// after a clean stop or a fatal error it leaves the group.
///
/// # Errors
/// The first partition failure (all partitions then restart from their stored offsets).
pub async fn run_consumers<S: RowSink>(
    stage: Consumers<S>,
    token: CancellationToken,
    mark_ready: impl Fn(),
) -> Result<(), StageError> {
    let Consumers {
        config,
        sink,
        client,
        metrics,
        latency,
        progress,
        membership,
    } = stage;
    let k = &config.kafka;
    let c = &config.consumer;
    // Taken back first: while the topic checks below run, nobody heartbeats for it (the
    // next heartbeat comes from `run_group` at once).
    let held = match c.assignment {
        Assignment::Static => None,
        Assignment::Group => membership.take().await,
    };
    let (held_member, mut resume) = match held {
        Some(Held { member, assignment }) => (Some(member), Some(assignment)),
        None => (None, None),
    };
    let topics = async {
        let count = kafka::ensure_topic(&client, k, &k.topic).await?;
        let dlq_partitions = kafka::ensure_topic(&client, k, &config.dlq.topic).await?;
        Ok::<_, StageError>((count, dlq_partitions))
    };
    let (count, dlq_partitions) = match topics.await {
        Ok(counts) => counts,
        Err(e) => {
            if let (Some(member), Some(assignment)) = (held_member, resume) {
                let settings = hold_settings(&config, &token, &progress, &metrics);
                membership.hold(Held { member, assignment }, settings).await;
            }
            return Err(e);
        }
    };
    if resume
        .as_ref()
        .is_some_and(|a| a.partitions.iter().any(|p| *p >= count))
    {
        // The topic changed under the held assignment: join afresh.
        resume = None;
    }
    let member: Option<Arc<dyn GroupMembership>> = match c.assignment {
        Assignment::Static => None,
        Assignment::Group => Some(held_member.unwrap_or_else(|| {
            Arc::new(group::Member::new(
                Arc::clone(&client),
                &c.group,
                &k.topic,
                group::Timeouts {
                    session: c.session_timeout,
                    rebalance: c.rebalance_timeout,
                    heartbeat: c.heartbeat_interval,
                },
                k.request_timeout,
            ))
        })),
    };
    let schemas = if config.schema_registry.enabled() {
        match SchemaRegistry::new(
            &config.schema_registry,
            metrics.schema_registry_errors.clone(),
        ) {
            Ok(registry) => Some(Arc::new(registry)),
            Err(e) => {
                if let Some(member) = &member {
                    // Not resumed: leave as a run that ends on this error would.
                    let _ = tokio::time::timeout(k.request_timeout, member.leave()).await;
                    membership::forget(&progress, &metrics);
                }
                return Err(e.into());
            }
        }
    } else {
        None
    };
    let deps = Arc::new(ConsumerDeps {
        group: member.clone(),
        schemas,
        budget: ByteBudget::new(config.consumer.buffer_bytes),
        topic: Arc::new(Partitions::new(
            Arc::clone(&client),
            &k.topic,
            k.request_timeout,
        )),
        dlq: Arc::new(Partitions::new(
            Arc::clone(&client),
            &config.dlq.topic,
            k.request_timeout,
        )),
        config: Arc::clone(&config),
        sink,
        dlq_partitions,
        metrics,
        latency,
        progress,
    });
    if let Some(member) = member {
        let (result, standing) =
            run_group(&deps, member.as_ref(), count, &token, &mark_ready, resume).await;
        let retriable = result.as_ref().err().is_some_and(StageError::is_retriable);
        match standing {
            // The stage will be restarted: the member stays in the group meanwhile.
            Some(assignment) if retriable && !token.is_cancelled() => {
                let settings = hold_settings(&config, &token, &deps.progress, &deps.metrics);
                membership.hold(Held { member, assignment }, settings).await;
            }
            _ => {
                // Within a bound: a dead coordinator must not hold the shutdown.
                let leave = tokio::time::timeout(k.request_timeout, member.leave()).await;
                if leave.is_err() {
                    tracing::warn!(
                        "leave group: no answer (the session timeout will remove the member)"
                    );
                }
                membership::forget(&deps.progress, &deps.metrics);
            }
        }
        return result;
    }
    let assigned = assigned_partitions(count, config.consumer.instance, config.consumer.instances);
    for p in &assigned {
        deps.progress.partition(*p);
    }
    deps.progress.assigned.store(true, Ordering::SeqCst);
    tracing::info!(partitions = ?assigned, "consuming");
    let mut tasks = tokio::task::JoinSet::new();
    for p in assigned {
        tasks.spawn(run_partition(
            Arc::clone(&deps),
            p,
            token.clone(),
            None,
            None,
        ));
    }
    mark_ready();
    while let Some(joined) = tasks.join_next().await {
        let result =
            joined.unwrap_or_else(|e| Err(StageError::Panicked(format!("partition task: {e}"))));
        if let Err(e) = result {
            tasks.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

struct Fetched {
    records: Vec<RecordAndOffset>,
    high_watermark: i64,
    /// This batch's share of `consumer.buffer_bytes` (reserved before its fetch), released
    /// when its rows are written (the rows replace the records).
    _budget: tokio::sync::OwnedSemaphorePermit,
    /// When the fetch returned (for `kafka_to_consumer` / `write` latencies).
    fetched_ms: i64,
}

/// Where a partition starts: the group's committed offset (`group_committed`), else the one
/// stored in Cassandra (a deployment upgrading from static assignment re-reads nothing),
/// else `consumer.start_from`.
async fn start_offset<S: RowSink>(
    deps: &ConsumerDeps<S>,
    pc: &PartitionClient,
    partition: i32,
    group_committed: Option<i64>,
) -> Result<i64, StageError> {
    let k = &deps.config.kafka;
    if let Some(committed) = group_committed {
        return Ok(committed);
    }
    if let Some(stored) = deps.sink.load_offset(&k.topic, partition).await? {
        if deps.group.is_some() {
            tracing::info!(
                partition,
                offset = stored,
                "no group offset: starting from the offset stored in Cassandra"
            );
        }
        return Ok(stored);
    }
    let at = match deps.config.consumer.start_from {
        StartFrom::Earliest => OffsetAt::Earliest,
        StartFrom::Latest => OffsetAt::Latest,
    };
    Ok(kafka::deadline("get offset", k.request_timeout, pc.get_offset(at)).await?)
}

/// One partition: fetcher and writer joined by a bounded channel.
async fn run_partition<S: RowSink>(
    deps: Arc<ConsumerDeps<S>>,
    partition: i32,
    token: CancellationToken,
    fence: Option<Arc<Fence>>,
    group_committed: Option<i64>,
) -> Result<(), StageError> {
    let pc = deps.topic.get(partition).await?;
    let start = start_offset(&deps, &pc, partition, group_committed).await?;
    let progress = deps.progress.partition(partition);
    progress.committed.store(start, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel::<Fetched>(deps.config.consumer.channel_capacity);
    let fetcher = fetch_loop(
        Arc::clone(&deps),
        Arc::clone(&pc),
        partition,
        start,
        tx,
        token,
    );
    let writer = write_loop(Arc::clone(&deps), partition, start, rx, fence);
    tokio::try_join!(fetcher, writer)?;
    Ok(())
}

async fn fetch_loop<S: RowSink>(
    deps: Arc<ConsumerDeps<S>>,
    pc: Arc<PartitionClient>,
    partition: i32,
    mut next: i64,
    tx: mpsc::Sender<Fetched>,
    token: CancellationToken,
) -> Result<(), StageError> {
    let c = &deps.config.consumer;
    let k = &deps.config.kafka;
    let progress = deps.progress.partition(partition);
    let max_wait_ms = i32::try_from(c.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
    let deadline = k.request_timeout + c.fetch_max_wait;
    let label = partition.to_string();
    // What the next fetch reserves of `consumer.buffer_bytes` before it is sent: the last
    // non-empty fetch's decoded size, at least the wire limit (a fetch after a small one
    // can be full).
    let wire_limit = u64::try_from(c.fetch_max_bytes).unwrap_or(u64::MAX);
    let mut estimate = wire_limit;
    let depth = deps
        .metrics
        .channel_depth
        .with_label_values(&[&format!("fetch_to_write_p{partition}")]);
    while !token.is_cancelled() {
        deps.metrics.heartbeats.beat("consumer");
        // Reserve before fetching, so the records a fetch decodes are inside the budget.
        let mut reserved = tokio::select! {
            p = deps.budget.acquire(estimate) => p.map_err(|_| {
                StageError::Disconnected("the consumer's byte budget")
            })?,
            () = token.cancelled() => break,
        };
        let started_ms = chrono::Utc::now().timestamp_millis();
        let fetch = kafka::deadline(
            "fetch",
            deadline,
            pc.fetch_records(next, 1..c.fetch_max_bytes, max_wait_ms),
        );
        let result = tokio::select! {
            r = fetch => r,
            () = token.cancelled() => break,
        };
        let (records, high_watermark) = match result {
            Ok(v) => v,
            Err(e) if e.protocol_error() == Some(ProtocolError::OffsetOutOfRange) => {
                let earliest = kafka::deadline(
                    "get offset",
                    k.request_timeout,
                    pc.get_offset(OffsetAt::Earliest),
                )
                .await?;
                tracing::warn!(
                    partition,
                    next,
                    earliest,
                    "offset out of range (retention?); skipping to earliest"
                );
                deps.metrics
                    .errors
                    .with_label_values(&["consumer", "offset_out_of_range"])
                    .inc();
                next = earliest.max(next.min(earliest));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let records: Vec<RecordAndOffset> =
            records.into_iter().filter(|r| r.offset >= next).collect();
        deps.metrics
            .consumer_lag
            .with_label_values(&[&label])
            .set((high_watermark - next).max(0));
        if let Some(last) = records.last() {
            next = last.offset + 1;
        }
        // The watermark is published *before* the fetch time: whoever sees a fetch started
        // after its mark also sees that fetch's watermark, so "committed >= watermark" can
        // only hold once the writer has stored everything below it (see `caught_up_since`).
        progress
            .high_watermark
            .fetch_max(high_watermark, Ordering::SeqCst);
        if !records.is_empty() {
            let fetched_ms = chrono::Utc::now().timestamp_millis();
            let to_consumer = deps.metrics.stage("kafka_to_consumer");
            for r in &records {
                observe_ms(
                    &to_consumer,
                    r.record.timestamp.timestamp_millis(),
                    fetched_ms,
                );
            }
            // The reservation becomes what the records hold (a shortfall only if it is free).
            let bytes: u64 = records.iter().map(record_bytes).sum();
            deps.budget.resize(&mut reserved, bytes);
            estimate = bytes.max(wire_limit);
            if tx
                .send(Fetched {
                    records,
                    high_watermark,
                    _budget: reserved,
                    fetched_ms,
                })
                .await
                .is_err()
            {
                break; // writer failed; its error is returned by try_join
            }
            depth.set((tx.max_capacity() - tx.capacity()) as i64);
        }
        progress
            .last_fetch_started_ms
            .store(started_ms, Ordering::SeqCst);
    }
    Ok(())
}

/// The writer of one partition: validate, write rows, then (in the background, while the
/// next batch's rows are written) produce the dead letters and store the offset. A batch's
/// offset is stored only after its rows and dead letters are acknowledged, and only after
/// the previous batch's offset, so stored offsets never pass unwritten records.
async fn write_loop<S: RowSink>(
    deps: Arc<ConsumerDeps<S>>,
    partition: i32,
    committed: i64,
    mut rx: mpsc::Receiver<Fetched>,
    fence: Option<Arc<Fence>>,
) -> Result<(), StageError> {
    let config = &deps.config;
    let topic = config.kafka.topic.as_str();
    let mut last = committed - 1;
    let mut pending: Option<tokio::task::JoinHandle<Result<(), StageError>>> = None;
    while let Some(batch) = rx.recv().await {
        let started = Instant::now();
        let mut rows = Vec::with_capacity(batch.records.len());
        let mut dead = Vec::new();
        for r in &batch.records {
            last = r.offset;
            let record = &r.record;
            let fetched_at_ms = model::fetched_at_header(&record.headers)
                .unwrap_or_else(|| record.timestamp.timestamp_millis());
            let checked =
                match unframe_and_check(deps.schemas.as_deref(), record.value.as_deref()).await? {
                    Ok(payload) => {
                        config
                            .dlq
                            .check_record(record.key.as_deref(), payload, fetched_at_ms)
                    }
                    Err(model::Rejection { reason, detail }) => Err((reason.as_str(), detail)),
                };
            match checked {
                Ok(row) => rows.push(row),
                Err((reason, detail)) => {
                    deps.metrics.dead_letters.with_label_values(&[reason]).inc();
                    let letter = DeadLetter {
                        stage: "validate",
                        reason,
                        detail: &detail,
                        origin: Some((topic, partition, r.offset)),
                    };
                    dead.push(letter.record(
                        &config.dlq,
                        record.key.clone(),
                        record.value.as_deref().unwrap_or_default(),
                        record.headers.clone(),
                        config.kafka.max_message_bytes,
                    ));
                }
            }
        }
        let consumed = batch.records.len();
        let written_at: Vec<i64> = rows.iter().map(|r| r.fetched_at_ms).collect();
        let written = rows.len();
        // The records are validated: the rows (and dead letters) replace them, inside the
        // batch's share of the budget until they are written.
        let Fetched {
            records,
            high_watermark,
            _budget,
            fetched_ms,
        } = batch;
        drop(records);
        deps.sink.write_rows(rows).await.inspect_err(|_| {
            deps.metrics
                .errors
                .with_label_values(&["sink", "cassandra"])
                .inc();
        })?;
        drop(_budget);
        let acked_ms = chrono::Utc::now().timestamp_millis();
        observe_ms(&deps.metrics.stage("write"), fetched_ms, acked_ms);
        for fetched_at_ms in written_at {
            let ms = u64::try_from(acked_ms - fetched_at_ms).unwrap_or_default();
            deps.latency.record_ms(ms);
            deps.metrics.e2e_latency.observe(ms as f64 / 1000.0);
        }
        deps.metrics
            .records
            .with_label_values(&["sink"])
            .inc_by(written as u64);
        deps.metrics
            .batch_duration
            .with_label_values(&["sink"])
            .observe(started.elapsed().as_secs_f64());
        // The previous batch's commit must be done before this one's starts.
        if let Some(previous) = pending.take() {
            join_commit(previous).await?;
        }
        pending = Some(tokio::spawn(commit(
            Arc::clone(&deps),
            fence.clone(),
            partition,
            dead,
            last + 1,
            high_watermark,
            consumed,
        )));
    }
    if let Some(previous) = pending.take() {
        join_commit(previous).await?;
    }
    Ok(())
}

/// A value's JSON: the value itself, or a framed value's payload once its schema (fetched by
/// id) accepts it.
///
/// # Errors
/// Outer: the registry could not answer (the consumer restarts, `dlq redrive` stops; nothing
/// is dead-lettered).
/// Inner: the record's dead-letter reason (`unknown_schema`, `schema_violation`).
pub(crate) async fn unframe_and_check<'a>(
    schemas: Option<&SchemaRegistry>,
    value: Option<&'a [u8]>,
) -> Result<Result<Option<&'a [u8]>, model::Rejection>, crate::registry::RegistryError> {
    let Some(bytes) = value else {
        return Ok(Ok(None));
    };
    let (id, payload) = match registry::unframe(bytes) {
        Ok(Some(framed)) => framed,
        Ok(None) => return Ok(Ok(Some(bytes))),
        Err(rejection) => return Ok(Err(rejection)),
    };
    let unknown = |detail: String| model::Rejection {
        reason: model::RejectReason::UnknownSchema,
        detail,
    };
    let Some(schemas) = schemas else {
        return Ok(Err(unknown(format!(
            "value is framed with schema id {id} but no [schema_registry] url is configured"
        ))));
    };
    let schema = match schemas.schema(id).await? {
        Lookup::Json(schema) => schema,
        Lookup::Unknown => {
            return Ok(Err(unknown(format!(
                "schema id {id} is not in the registry"
            ))));
        }
        Lookup::OtherType(kind) => {
            return Ok(Err(unknown(format!(
                "schema id {id} is a {kind} schema, not JSON Schema"
            ))));
        }
    };
    // Not JSON at all: validation names it (`not_json`) below.
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Ok(Ok(Some(payload)));
    };
    Ok(match schema.check(&json) {
        Ok(()) => Ok(Some(payload)),
        Err(detail) => Err(model::Rejection {
            reason: model::RejectReason::SchemaViolation,
            detail: format!("schema id {id}: {detail}"),
        }),
    })
}

async fn join_commit(
    handle: tokio::task::JoinHandle<Result<(), StageError>>,
) -> Result<(), StageError> {
    handle
        .await
        .map_err(|e| StageError::Panicked(format!("offset commit task: {e}")))?
}

/// Produces a written batch's dead letters, then commits its offset to the group (when
/// there is one) and stores it in Cassandra. A commit the group refuses ends the partition
/// with [`GroupError::Fenced`] and stores nothing.
async fn commit<S: RowSink>(
    deps: Arc<ConsumerDeps<S>>,
    fence: Option<Arc<Fence>>,
    partition: i32,
    dead: Vec<rskafka::record::Record>,
    next_offset: i64,
    high_watermark: i64,
    consumed: usize,
) -> Result<(), StageError> {
    let config = &deps.config;
    let topic = config.kafka.topic.as_str();
    if !dead.is_empty() {
        for r in &dead {
            let recent = &deps.metrics.recent_dead_letters;
            recent.push_record(r, &config.dlq.header_prefix);
        }
        let dlq_partition = partition % deps.dlq_partitions.max(1);
        let pc = deps.dlq.get(dlq_partition).await?;
        let n = dead.len();
        let compression = kafka::compression(config.kafka.compression);
        kafka::produce_chunked(&pc, dead, compression, &config.kafka, "produce dlq").await?;
        deps.metrics
            .records
            .with_label_values(&["dlq"])
            .inc_by(n as u64);
        tracing::info!(partition, dead_letters = n, "dead-lettered invalid records");
    }
    // A commit the coordinator cannot take now (it died, moved, or is loading the group) is
    // skipped, not fatal: the rows are written and Cassandra stores the offset below; the next
    // commit carries a later offset. Restarting the stage for it would make it unready while
    // a broker of a cluster is down (measured: 15 s when the coordinator's broker died).
    let commit = match (&deps.group, &fence) {
        (Some(member), Some(fence)) => match member.commit(fence, partition, next_offset).await {
            Ok(commit) => Some(commit),
            Err(e) if e.is_retriable() => {
                deps.metrics
                    .errors
                    .with_label_values(&["consumer", "group_commit"])
                    .inc();
                tracing::debug!(partition, next_offset, error = %e, "offset commit to the group failed; the next one carries it");
                None
            }
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    if let (Some(Commit::Refused(code)), Some(fence)) = (commit, &fence) {
        let name = error_name(code);
        deps.metrics
            .group
            .commits_refused
            .with_label_values(&[&name])
            .inc();
        deps.progress.update_group(|g| g.commits_refused += 1);
        tracing::warn!(
            partition,
            next_offset,
            member_id = %fence.member_id,
            generation = fence.generation,
            reason = %name,
            "offset commit refused: this member no longer owns the partition; stopping it"
        );
        return Err(GroupError::Fenced {
            partition,
            code,
            name,
        }
        .into());
    }
    deps.sink
        .store_offset(topic, partition, next_offset)
        .await?;
    let progress = deps.progress.partition(partition);
    progress.committed.store(next_offset, Ordering::SeqCst);
    progress
        .high_watermark
        .fetch_max(high_watermark, Ordering::SeqCst);
    deps.metrics
        .records
        .with_label_values(&["consumer"])
        .inc_by(consumed as u64);
    deps.metrics
        .consumer_lag
        .with_label_values(&[&partition.to_string()])
        .set((high_watermark - next_offset).max(0));
    Ok(())
}

/// How a generation's heartbeats ended.
enum Generation {
    /// Rejoin: a rebalance, a lost generation or member id, or a fenced commit.
    Rejoin,
    /// The stage is stopping.
    Shutdown,
}

type PartitionTasks = tokio::task::JoinSet<(i32, Result<(), StageError>)>;

fn hold_settings(
    config: &Config,
    token: &CancellationToken,
    progress: &Arc<Progress>,
    metrics: &Metrics,
) -> HoldSettings {
    HoldSettings {
        heartbeat: config.consumer.heartbeat_interval,
        limit: config.consumer.rebalance_timeout,
        leave_timeout: config.kafka.request_timeout,
        token: token.clone(),
        progress: Arc::clone(progress),
        metrics: metrics.clone(),
    }
}

/// Group mode: join (or resume the assignment held since the previous run), run the assigned
/// partitions while heartbeating, and on a rebalance stop them all (in-flight batches still
/// commit under the old generation, which the coordinator accepts until the group moves on)
/// and rejoin. Eager: every partition pauses in a rebalance; the sticky assignor gives most
/// of them back to the same member.
///
/// Returns, besides the outcome, the assignment whose generation still stands when a
/// partition or an offset fetch failed (the caller holds the member for the next run), none
/// when the generation ended or was never reached.
async fn run_group<S: RowSink>(
    deps: &Arc<ConsumerDeps<S>>,
    member: &dyn GroupMembership,
    count: i32,
    token: &CancellationToken,
    mark_ready: &impl Fn(),
    mut resume: Option<group::Assignment>,
) -> (Result<(), StageError>, Option<group::Assignment>) {
    let c = &deps.config.consumer;
    let gm = &deps.metrics.group;
    let mut previous: Vec<i32> = Vec::new();
    let mut ready = false;
    loop {
        let started = Instant::now();
        let resumed = resume.is_some();
        let assignment = match resume.take() {
            Some(a) => a,
            None => tokio::select! {
                a = member.join(count) => match a {
                    Ok(a) => a,
                    Err(e) => return (Err(e.into()), None),
                },
                () = token.cancelled() => return (Ok(()), None),
            },
        };
        let gained: Vec<i32> = assignment
            .partitions
            .iter()
            .filter(|p| !previous.contains(p))
            .copied()
            .collect();
        let lost: Vec<i32> = previous
            .iter()
            .filter(|p| !assignment.partitions.contains(p))
            .copied()
            .collect();
        tracing::info!(
            group = %c.group,
            member_id = %assignment.member_id,
            generation = assignment.generation,
            leader = assignment.leader,
            partitions = ?assignment.partitions,
            gained = ?gained,
            lost = ?lost,
            resumed,
            took_ms = started.elapsed().as_millis() as u64,
            "group assignment"
        );
        if !resumed {
            gm.rebalances.inc();
        }
        gm.generation.set(i64::from(assignment.generation));
        gm.assigned_partitions
            .set(i64::try_from(assignment.partitions.len()).unwrap_or_default());
        gm.member.reset();
        gm.member
            .with_label_values(&[&c.group, &assignment.member_id])
            .set(1);
        deps.progress.update_group(|g| {
            g.group.clone_from(&c.group);
            g.member_id.clone_from(&assignment.member_id);
            g.generation = assignment.generation;
            g.leader = assignment.leader;
            g.partitions.clone_from(&assignment.partitions);
            if !resumed {
                g.rebalances += 1;
            }
        });
        for p in &lost {
            let _ = deps
                .metrics
                .consumer_lag
                .remove_label_values(&[&p.to_string()]);
        }
        deps.progress.retain(&assignment.partitions);
        let committed = match member.committed(&assignment.partitions).await {
            Ok(committed) => committed,
            Err(e) => return (Err(e.into()), Some(assignment)),
        };
        let fence = Arc::new(Fence {
            member_id: assignment.member_id.clone(),
            generation: assignment.generation,
        });
        let stop = token.child_token();
        let mut tasks = PartitionTasks::new();
        for &p in &assignment.partitions {
            deps.progress.partition(p);
            let (deps, stop, fence) = (Arc::clone(deps), stop.clone(), Arc::clone(&fence));
            let from = committed.get(&p).copied();
            tasks.spawn(async move { (p, run_partition(deps, p, stop, Some(fence), from).await) });
        }
        deps.progress.assigned.store(true, Ordering::SeqCst);
        if !ready {
            ready = true;
            mark_ready();
        }
        let outcome = heartbeat(deps, member, &mut tasks, token).await;
        // Stop every partition (eager) and let in-flight batches commit.
        stop.cancel();
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(()) | Err(StageError::Group(GroupError::Fenced { .. })))) => {}
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(StageError::Panicked(format!("partition task: {e}")));
                }
            }
        }
        match (outcome, failure) {
            // A partition failed (the sink, a fetch) while the generation stood.
            (Err(e), _) => return (Err(e), Some(assignment)),
            (Ok(Generation::Rejoin), Some(e)) => return (Err(e), None),
            (Ok(Generation::Shutdown), Some(e)) => return (Err(e), Some(assignment)),
            (Ok(Generation::Shutdown), None) => return (Ok(()), None),
            (Ok(Generation::Rejoin), None) => previous = assignment.partitions,
        }
    }
}

/// Heartbeats until the generation ends, the stage stops, or a partition fails.
async fn heartbeat<S: RowSink>(
    deps: &ConsumerDeps<S>,
    member: &dyn GroupMembership,
    tasks: &mut PartitionTasks,
    token: &CancellationToken,
) -> Result<Generation, StageError> {
    let mut tick = tokio::time::interval(deps.config.consumer.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(Generation::Shutdown),
            _ = tick.tick() => match member.heartbeat().await {
                Ok(Heartbeat::Stable) => {}
                Ok(Heartbeat::Rejoin(code)) => {
                    tracing::info!(reason = %error_name(code), "group rebalance: stopping the partitions to rejoin");
                    return Ok(Generation::Rejoin);
                }
                Err(e) if e.is_retriable() => {
                    deps.metrics.errors.with_label_values(&["consumer", "group_heartbeat"]).inc();
                    tracing::warn!(error = %e, "group heartbeat failed; retrying");
                }
                Err(e) => return Err(e.into()),
            },
            Some(joined) = tasks.join_next() => match joined {
                Ok((_, Ok(()))) => {}
                Ok((partition, Err(StageError::Group(GroupError::Fenced { .. })))) => {
                    tracing::info!(partition, "partition fenced off: rejoining the group");
                    return Ok(Generation::Rejoin);
                }
                Ok((_, Err(e))) => return Err(e),
                Err(e) => return Err(StageError::Panicked(format!("partition task: {e}"))),
            },
        }
    }
}

/// How long a drained state must hold before `--drain-and-exit` stops (guards against a
/// relay round that is about to produce).
pub const DRAIN_SETTLE: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_assignment_splits_partitions() {
        assert_eq!(assigned_partitions(6, 0, 1), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(assigned_partitions(6, 0, 2), vec![0, 2, 4]);
        assert_eq!(assigned_partitions(6, 1, 2), vec![1, 3, 5]);
        assert_eq!(assigned_partitions(2, 2, 3), Vec::<i32>::new());
        let all: Vec<i32> = (0..3).flat_map(|i| assigned_partitions(7, i, 3)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn caught_up_needs_fresh_fetches() {
        let progress = Progress::default();
        assert!(!progress.caught_up_since(0));
        progress.assigned.store(true, Ordering::SeqCst);
        let p = progress.partition(0);
        p.high_watermark.store(10, Ordering::SeqCst);
        p.committed.store(10, Ordering::SeqCst);
        p.last_fetch_started_ms.store(100, Ordering::SeqCst);
        assert!(progress.caught_up_since(50));
        assert!(!progress.caught_up_since(100));
        p.high_watermark.store(11, Ordering::SeqCst);
        assert!(!progress.caught_up_since(50));
    }
}
