//! `pipeline replay --from kafka`: move the stored consumer offsets so the consumers re-read
//! a range of the topic.
//!
//! The target of each partition comes from the broker (ListOffsets: by timestamp, earliest
//! or latest) or is an explicit offset checked against the partition's range. The offsets
//! live behind [`CommittedOffsets`]: with `consumer.assignment = "group"` (the default) the
//! consumer group's committed offsets, which the consumers start from, and the Cassandra
//! offsets table beside them ([`GroupOffsets`]); with `"static"` the Cassandra table alone
//! ([`CassandraOffsets`]).
//!
//! A running consumer keeps its position in memory and overwrites the stored offset with
//! its next commit, so the command refuses while daemons of this deployment are connected
//! (their Postgres sessions, `application_name = 'pipeline'`), unless `--force`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rskafka::client::partition::OffsetAt;

use super::ReplayError;
use crate::config::Config;
use crate::kafka;
use crate::landing::{self, pg_error};
use crate::sink::{CassandraSink, RowSink, SinkError};

/// Where consumers keep the next offset to read of each partition.
pub trait CommittedOffsets: Send + Sync {
    /// Where the offsets are, for messages ("cassandra ks.pipeline_offsets").
    fn describe(&self) -> String;
    /// The stored next offset of `partition` (`None`: never stored; the consumer then starts
    /// from `consumer.start_from`).
    fn read(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, ReplayError>> + Send;
    /// Stores `next` as the next offset to read of `partition`.
    fn write(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send;
}

/// The consumers' offsets table in Cassandra (`cassandra.offsets_table`).
pub struct CassandraOffsets {
    sink: CassandraSink,
    table: String,
}

impl CassandraOffsets {
    /// Connects to Cassandra as the consumers do.
    ///
    /// # Errors
    /// [`SinkError`] when Cassandra cannot be reached or refuses.
    pub async fn connect(config: &Config) -> Result<Self, SinkError> {
        let c = &config.cassandra;
        Ok(Self {
            sink: CassandraSink::connect(c).await?,
            table: format!("{}.{}", c.keyspace, c.offsets_table),
        })
    }
}

impl CommittedOffsets for CassandraOffsets {
    fn describe(&self) -> String {
        format!("cassandra {}", self.table)
    }

    async fn read(&self, topic: &str, partition: i32) -> Result<Option<i64>, ReplayError> {
        Ok(self.sink.load_offset(topic, partition).await?)
    }

    async fn write(&self, topic: &str, partition: i32, next: i64) -> Result<(), ReplayError> {
        Ok(self.sink.store_offset(topic, partition, next).await?)
    }
}

/// A consumer group's committed offsets (what its members start from), with the Cassandra
/// table kept equal beside them (what a group without offsets starts from).
///
/// Kafka accepts a commit from outside the group (no member id, generation -1) only while the
/// group has no members: with daemons consuming, [`CommittedOffsets::write`] fails with the
/// coordinator's refusal, `--force` or not.
pub struct GroupOffsets {
    client: Arc<rskafka::client::Client>,
    group: String,
    request_timeout: Duration,
    cassandra: CassandraOffsets,
    /// The group's committed offsets of the topic, fetched once (one OffsetFetch answers for
    /// every partition; all reads come before the first write).
    committed: tokio::sync::OnceCell<BTreeMap<i32, i64>>,
}

impl GroupOffsets {
    /// Connects to Kafka and Cassandra as the consumers do.
    ///
    /// # Errors
    /// [`ReplayError`] when Kafka or Cassandra cannot be reached.
    pub async fn connect(config: &Config) -> Result<Self, ReplayError> {
        Ok(Self {
            client: Arc::new(kafka::connect(&config.kafka).await?),
            group: config.consumer.group.clone(),
            request_timeout: config.kafka.request_timeout,
            cassandra: CassandraOffsets::connect(config).await?,
            committed: tokio::sync::OnceCell::new(),
        })
    }
}

impl CommittedOffsets for GroupOffsets {
    fn describe(&self) -> String {
        format!(
            "consumer group {} (and {})",
            self.group,
            self.cassandra.describe()
        )
    }

    async fn read(&self, topic: &str, partition: i32) -> Result<Option<i64>, ReplayError> {
        let committed = self
            .committed
            .get_or_try_init(|| {
                crate::group::fetch_committed(
                    Arc::clone(&self.client),
                    &self.group,
                    topic,
                    self.request_timeout,
                )
            })
            .await?;
        match committed.get(&partition) {
            Some(next) => Ok(Some(*next)),
            // The group has none: its members start from Cassandra's.
            None => self.cassandra.read(topic, partition).await,
        }
    }

    async fn write(&self, topic: &str, partition: i32, next: i64) -> Result<(), ReplayError> {
        crate::group::commit_admin(
            Arc::clone(&self.client),
            &self.group,
            topic,
            &BTreeMap::from([(partition, next)]),
            self.request_timeout,
        )
        .await?;
        self.cassandra.write(topic, partition, next).await
    }
}

/// Where to move the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The first record at or after this time (the end when there is none).
    Time(DateTime<Utc>),
    Earliest,
    Latest,
    /// This offset, which must be within the partition's earliest..=latest.
    Offset(i64),
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `--to-offset`: `earliest`, `latest` or a number.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Self::Offset)
                .ok_or_else(|| format!("`{s}` is not earliest, latest or an offset >= 0")),
        }
    }
}

/// What to move.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub target: Target,
    /// Partitions to move; empty: all of the topic's.
    pub partitions: Vec<i32>,
    /// Move even while daemons are connected.
    pub force: bool,
    /// Print the moves; change nothing.
    pub dry_run: bool,
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub partition: i32,
    /// The stored offset before (`None`: none stored).
    pub before: Option<i64>,
    pub after: i64,
    /// The partition's earliest and latest (end) offsets.
    pub range: (i64, i64),
}

impl std::fmt::Display for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let before = self
            .before
            .map_or_else(|| "none".to_string(), |b| b.to_string());
        let delta = match self.before {
            Some(b) if b > self.after => format!(" (re-reads {})", b - self.after),
            Some(b) if b < self.after => format!(" (skips {})", self.after - b),
            _ => String::new(),
        };
        write!(
            f,
            "partition {}: {before} -> {}{delta}  [earliest {}, end {}]",
            self.partition, self.after, self.range.0, self.range.1
        )
    }
}

/// The Postgres sessions of running daemons on this deployment's database (not tools).
///
/// # Errors
/// [`landing::PostgresError`] when Postgres does not answer.
pub async fn daemon_sessions(config: &Config) -> Result<(i64, String), ReplayError> {
    let pool = landing::connect_lazy_as(&config.postgres, super::landing::APPLICATION_NAME)?;
    let (count, clients): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), string_agg(DISTINCT COALESCE(host(client_addr), 'local'), ', ') \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'pipeline'",
    )
    .fetch_one(&pool)
    .await
    .map_err(pg_error("read pg_stat_activity"))?;
    pool.close().await;
    Ok((count, clients.unwrap_or_default()))
}

/// Computes and (unless a dry run) stores the new offsets of `topic`'s partitions.
///
/// # Errors
/// [`ReplayError::DaemonsRunning`] without `--force`, [`ReplayError::Target`] for a partition
/// or offset the topic does not have, Kafka and offset-store failures. Partitions are moved
/// one by one: after a failure, the ones printed before it were moved.
pub async fn replay_kafka<O: CommittedOffsets>(
    config: &Config,
    offsets: &O,
    opts: &KafkaOptions,
) -> Result<Vec<Move>, ReplayError> {
    if !opts.dry_run {
        let (count, clients) = daemon_sessions(config).await?;
        if count > 0 {
            if !opts.force {
                return Err(ReplayError::DaemonsRunning {
                    count,
                    detail: format!("from {clients}"),
                });
            }
            eprintln!(
                "warning: --force with {count} daemon connection(s) ({clients}): a running \
                 consumer may overwrite the moved offsets"
            );
        }
    }
    let k = &config.kafka;
    let topic = &k.topic;
    let client = kafka::connect(k).await?;
    let bounds = super::partition_bounds(Arc::new(client), k, topic, &opts.partitions).await?;
    let mut planned: BTreeMap<i32, Move> = BTreeMap::new();
    for super::PartitionBounds {
        partition: p,
        client: pc,
        earliest,
        end: latest,
    } in bounds
    {
        let offset = |at| kafka::deadline("list offsets", k.request_timeout, pc.get_offset(at));
        let after = match opts.target {
            Target::Earliest => earliest,
            Target::Latest => latest,
            // -1: no record at or after the time: the end.
            Target::Time(t) => match offset(OffsetAt::Timestamp(t)).await? {
                n if n < 0 => latest,
                n => n.clamp(earliest, latest),
            },
            Target::Offset(n) if (earliest..=latest).contains(&n) => n,
            Target::Offset(n) => {
                return Err(ReplayError::Target(format!(
                    "--to-offset {n}: partition {p} holds offsets {earliest}..{latest}"
                )));
            }
        };
        let before = offsets.read(topic, p).await?;
        planned.insert(
            p,
            Move {
                partition: p,
                before,
                after,
                range: (earliest, latest),
            },
        );
    }
    let mut moved = Vec::with_capacity(planned.len());
    for (p, m) in planned {
        if !opts.dry_run {
            offsets.write(topic, p, m.after).await?;
        }
        println!("{m}");
        moved.push(m);
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_targets_parse() {
        assert_eq!("earliest".parse::<Target>(), Ok(Target::Earliest));
        assert_eq!("latest".parse::<Target>(), Ok(Target::Latest));
        assert_eq!("42".parse::<Target>(), Ok(Target::Offset(42)));
        assert!("-1".parse::<Target>().is_err());
        assert!("first".parse::<Target>().is_err());
    }

    #[test]
    fn moves_print_before_and_after() {
        let m = Move {
            partition: 2,
            before: Some(120),
            after: 100,
            range: (0, 130),
        };
        assert_eq!(
            m.to_string(),
            "partition 2: 120 -> 100 (re-reads 20)  [earliest 0, end 130]"
        );
        let fresh = Move { before: None, ..m };
        assert!(fresh.to_string().starts_with("partition 2: none -> 100  ["));
    }
}
