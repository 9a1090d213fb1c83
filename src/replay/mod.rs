//! Replay and backfill: rebuild the table from the landing zone or from Kafka, and redrive
//! dead letters. Operator commands, run beside (not inside) the daemon.
//!
//! ```text
//!  replay --from landing:  users_landed ──(INSERT…SELECT per chunk, cursor in replay_jobs)──► outbox
//!                          └─► the running daemon's relay ──► Kafka ──► consumers ──► Cassandra
//!  replay --from kafka:    ListOffsets(time | earliest | latest | N) ──► stored consumer offsets
//!  dlq redrive:            dead-letter topic ──► validate (current rules) ──► sink upsert
//!                                      └─► dlq_redrive_progress (next offset per partition)
//! ```
//!
//! Every path ends in the sink's idempotent upsert (same key, same values, `USING TIMESTAMP`
//! of the fetch time), so replaying more than needed changes nothing.
//!
//! - [`landing`]: `pipeline replay --from landing` (resumable job, flow control).
//! - [`kafka`]: `pipeline replay --from kafka` and the [`kafka::CommittedOffsets`] trait.
//! - [`redrive`]: `pipeline dlq redrive`.
//! - [`progress`]: the bar on a terminal, plain lines elsewhere.

pub mod kafka;
pub mod landing;
pub mod progress;
pub mod redrive;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient};

use crate::exit::Exit;
use crate::kafka::{self as kafka_io, KafkaError};
use crate::landing::PostgresError;
use crate::sink::SinkError;

/// Why a replay command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The consumer group's coordinator refused or did not answer (offsets of a group with
    /// active members cannot be moved from outside it).
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
    /// The schema registry did not answer (framed letters need their schema).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Nothing drains the outbox: a landing replay would only fill it.
    #[error(
        "no relay holds the outbox lock of this database: start the daemon (`pipeline run`), \
         whose relay drains the outbox, then replay again"
    )]
    NoRelay,
    /// The relay lock was released while the replay waited for the outbox to drain.
    #[error(
        "the relay stopped while the replay waited (outbox {backlog} rows): restart the \
         daemon, then rerun the same command to resume job {job}"
    )]
    RelayLost { job: i64, backlog: i64 },
    /// Another replay holds the replay lock.
    #[error("another `pipeline replay --from landing` runs on this database (one at a time)")]
    Busy,
    /// An unfinished job was asked something else.
    #[error(
        "replay job {job} is unfinished and was started with {args}: rerun with the same \
         arguments to resume it, or add --restart to abandon it"
    )]
    UnfinishedJob { job: i64, args: String },
    /// Daemons of this deployment are connected: they would overwrite moved offsets.
    #[error(
        "{count} daemon connection(s) to this database ({detail}): a running consumer keeps \
         its position in memory and would overwrite the moved offsets with its next commit; \
         stop the daemons first, or pass --force"
    )]
    DaemonsRunning { count: i64, detail: String },
    /// A partition or offset that the topic does not have.
    #[error("{0}")]
    Target(String),
    /// The topic does not exist.
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    /// A stored value that cannot be used.
    #[error("{0}")]
    Corrupt(String),
}

impl ReplayError {
    /// The exit code: 69 when a service (or the relay) is missing, 1 otherwise.
    pub fn exit(&self) -> Exit {
        match self {
            Self::NoRelay | Self::RelayLost { .. } => Exit::Unavailable,
            Self::Postgres(e) if e.is_retriable() => Exit::Unavailable,
            Self::Kafka(e) if e.is_retriable() => Exit::Unavailable,
            Self::Sink(e) if e.is_retriable() => Exit::Unavailable,
            Self::Group(e) if e.is_retriable() => Exit::Unavailable,
            Self::Registry(e) if e.is_retriable() => Exit::Unavailable,
            _ => Exit::Failure,
        }
    }
}

/// One partition of a topic a command reads or moves: its client and its earliest and end
/// offsets when looked at.
struct PartitionBounds {
    partition: i32,
    client: Arc<PartitionClient>,
    earliest: i64,
    end: i64,
}

/// The partitions of `topic` (all of them, or `only` after checking each exists) with their
/// bounds (ListOffsets earliest and latest).
///
/// # Errors
/// [`ReplayError::NoTopic`], [`ReplayError::Target`] for a partition the topic does not have,
/// Kafka failures.
async fn partition_bounds(
    client: Arc<Client>,
    config: &crate::config::KafkaConfig,
    topic: &str,
    only: &[i32],
) -> Result<Vec<PartitionBounds>, ReplayError> {
    let timeout = config.request_timeout;
    let topics = kafka_io::deadline("list topics", timeout, client.list_topics()).await?;
    let all: Vec<i32> = topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.iter().copied().collect())
        .ok_or_else(|| ReplayError::NoTopic(topic.to_string()))?;
    let chosen = if only.is_empty() {
        all
    } else {
        if let Some(p) = only.iter().find(|p| !all.contains(p)) {
            return Err(ReplayError::Target(format!(
                "--partitions: topic `{topic}` has no partition {p} (it has {all:?})"
            )));
        }
        only.to_vec()
    };
    let clients = kafka_io::Partitions::new(client, topic, timeout);
    let mut bounds = Vec::with_capacity(chosen.len());
    for partition in chosen {
        let client = clients.get(partition).await?;
        let offset = |at| kafka_io::deadline("list offsets", timeout, client.get_offset(at));
        let earliest = offset(OffsetAt::Earliest).await?;
        let end = offset(OffsetAt::Latest).await?;
        bounds.push(PartitionBounds {
            partition,
            client,
            earliest,
            end,
        });
    }
    Ok(bounds)
}

/// Parses an RFC 3339 time (`2026-12-06T18:00:00Z`) for `--since`, `--until`, `--to-time`.
///
/// # Errors
/// A message for clap.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (2026-12-06T18:00:00Z): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        let t = parse_time("2026-12-06T18:00:00.250+01:00").expect("valid");
        assert_eq!(t.timestamp_millis(), 1_796_576_400_250);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-12-06").is_err());
    }

    #[test]
    fn missing_services_and_relay_exit_69() {
        assert_eq!(ReplayError::NoRelay.exit(), Exit::Unavailable);
        assert_eq!(ReplayError::Busy.exit(), Exit::Failure);
        let down = ReplayError::Postgres(PostgresError::Query {
            op: "connect",
            source: sqlx::Error::PoolTimedOut,
        });
        assert_eq!(down.exit(), Exit::Unavailable);
    }
}
