//! Kafka consumer groups: membership, assignment and offset commits through the broker's
//! group coordinator (`consumer.assignment = "group"`).
//!
//! ```text
//!  FindCoordinator ─► JoinGroup ─► (leader: sticky assignor) ─► SyncGroup ─► Heartbeat …
//!        ▲                ▲                                                     │
//!        └ NOT_COORDINATOR └──── REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION ◄───┘
//!                                UNKNOWN_MEMBER_ID (rejoin with a new id)
//! ```
//!
//! rskafka (produce, fetch) has no group API: the messages are encoded with the
//! `kafka-protocol` codec ([`coordinator`]) and sent over rskafka's own authenticated broker
//! connections (`vendor/rskafka`, `Client::raw_connection`). The consumer protocol is
//! Kafka's standard one (protocol type `consumer`), so `kafka-consumer-groups.sh --describe`
//! shows the members, their partitions, committed offsets and lag.
//!
//! Rebalances are eager: a member stops all its partitions (letting in-flight batches commit)
//! before it rejoins; the assignment is sticky, so partitions mostly come back to the same
//! member. Fencing: every commit carries the member id and generation of the assignment the
//! partition was started under; the coordinator refuses a stale one, and the partition then
//! stops without moving its offset ([`Commit::Refused`]).

pub mod assignor;
pub mod coordinator;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use coordinator::Coordinator;

/// Kafka's error codes the group code acts on.
pub mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

/// The name of a Kafka error code (`UnknownMemberId`, …) for logs and errors.
pub fn error_name(error: i16) -> String {
    kafka_protocol::ResponseError::try_from_code(error)
        .map_or_else(|| format!("error {error}"), |e| format!("{e:?}"))
}

/// A group operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No broker connection (rskafka's connect, TLS, SASL).
    #[error("kafka group {op}: {source}")]
    Kafka {
        op: &'static str,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    /// The coordinator connection broke during the request.
    #[error("kafka group {op}: {source}")]
    Connection {
        op: &'static str,
        #[source]
        source: Box<rskafka::client::error::RequestError>,
    },
    #[error("kafka group {op}: no answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The broker answered with an error code.
    #[error("kafka group {op}: {name} ({code})")]
    Broker {
        op: &'static str,
        code: i16,
        name: String,
    },
    /// A message could not be encoded or decoded.
    #[error("kafka group {op}: {detail}")]
    Codec { op: &'static str, detail: String },
    /// The coordinator refused a partition's commit (fenced): the partition stops and its
    /// offset stays; the member rejoins.
    #[error("kafka group: commit of partition {partition} refused ({name}): no longer its owner")]
    Fenced {
        partition: i32,
        code: i16,
        name: String,
    },
    /// An admin commit while the group has members: Kafka accepts one only for an empty group.
    #[error(
        "group `{group}` has {members} active member(s) (state {state}): stop its daemons \
         before committing offsets for it"
    )]
    GroupActive {
        group: String,
        state: String,
        members: usize,
    },
}

impl GroupError {
    pub fn broker(op: &'static str, code: i16) -> Self {
        Self::Broker {
            op,
            code,
            name: error_name(code),
        }
    }

    /// Worth finding the coordinator again and retrying at once.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Connection { .. } | Self::Timeout { .. })
    }

    /// Whether the stage may succeed when run again: refused authorization or an invalid
    /// session timeout cannot fix themselves; connections, timeouts and the coordinator's
    /// transient states can.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => !crate::kafka::is_auth_or_certificate(source),
            Self::Connection { .. }
            | Self::Timeout { .. }
            | Self::Codec { .. }
            | Self::Fenced { .. } => true,
            Self::Broker { code, .. } => !matches!(
                *code,
                code::GROUP_AUTHORIZATION_FAILED
                    | code::INVALID_SESSION_TIMEOUT
                    | code::INCONSISTENT_GROUP_PROTOCOL
            ),
            Self::GroupActive { .. } => false,
        }
    }
}

/// The assignment of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub member_id: String,
    pub generation: i32,
    pub leader: bool,
    pub partitions: Vec<i32>,
}

/// What a partition's commits carry: the member and generation it was assigned under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub member_id: String,
    pub generation: i32,
}

/// A heartbeat's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The generation stands.
    Stable,
    /// Rejoin: a rebalance started (`REBALANCE_IN_PROGRESS`), the generation is gone
    /// (`ILLEGAL_GENERATION`), or this member is (`UNKNOWN_MEMBER_ID`: rejoins with a new id).
    Rejoin(i16),
}

/// An offset commit's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// The coordinator fenced this member or generation off the partition (the code): the
    /// offset did not move and the partition must stop.
    Refused(i16),
}

/// Group membership and offset commits, as the consumer uses them. Implemented by
/// [`Member`] over Kafka's coordinator; a trait so the consumer does not depend on the
/// protocol (and another implementation, e.g. librdkafka's, could replace it).
pub trait GroupMembership: Send + Sync {
    /// Joins (or rejoins) the group and waits for this generation's assignment of
    /// `partitions` partitions.
    fn join(&self, partitions: i32) -> BoxFuture<'_, Result<Assignment, GroupError>>;
    /// One heartbeat for the current generation.
    fn heartbeat(&self) -> BoxFuture<'_, Result<Heartbeat, GroupError>>;
    /// Commits `next_offset` of `partition` under `fence`.
    fn commit<'a>(
        &'a self,
        fence: &'a Fence,
        partition: i32,
        next_offset: i64,
    ) -> BoxFuture<'a, Result<Commit, GroupError>>;
    /// The group's committed offsets of `partitions`.
    fn committed<'a>(
        &'a self,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<BTreeMap<i32, i64>, GroupError>>;
    /// Leaves the group (clean shutdown): the partitions move at once, not after the
    /// session timeout.
    fn leave(&self) -> BoxFuture<'_, ()>;
}

/// Timeouts of a member (`consumer.session_timeout` etc.).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub session: Duration,
    pub rebalance: Duration,
    pub heartbeat: Duration,
}

#[derive(Debug, Default)]
struct MemberState {
    member_id: String,
    generation: i32,
    partitions: Vec<i32>,
}

/// A member of a consumer group on one topic.
#[derive(Debug)]
pub struct Member {
    coordinator: Coordinator,
    topic: String,
    timeouts: Timeouts,
    state: Mutex<MemberState>,
}

impl Member {
    pub fn new(
        client: Arc<rskafka::client::Client>,
        group: &str,
        topic: &str,
        timeouts: Timeouts,
        request_timeout: Duration,
    ) -> Self {
        Self {
            coordinator: Coordinator::new(client, group, request_timeout),
            topic: topic.to_string(),
            timeouts,
            state: Mutex::new(MemberState {
                generation: -1,
                ..MemberState::default()
            }),
        }
    }

    pub fn group(&self) -> &str {
        self.coordinator.group()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn join_once(&self, partitions: i32) -> Result<Option<Assignment>, GroupError> {
        let (member_id, owned) = {
            let s = self.state();
            (s.member_id.clone(), s.partitions.clone())
        };
        let subscription = coordinator::encode_subscription(&self.topic, &owned)?;
        let t = self.timeouts;
        let joined = self
            .coordinator
            .join(&member_id, t.session, t.rebalance, subscription)
            .await?;
        match joined.error_code {
            code::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                self.state().member_id = joined.member_id.as_str().to_string();
                return Ok(None);
            }
            code::UNKNOWN_MEMBER_ID => {
                self.state().member_id.clear();
                return Ok(None);
            }
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => return Ok(None),
            other => return Err(GroupError::broker("join group", other)),
        }
        let member_id = joined.member_id.as_str().to_string();
        let generation = joined.generation_id;
        let leader = joined.leader.as_str() == member_id;
        let assignments = if leader {
            let mut owned = BTreeMap::new();
            let mut elsewhere = Vec::new();
            for m in &joined.members {
                let id = m.member_id.as_str().to_string();
                match coordinator::decode_subscription(&self.topic, &m.metadata) {
                    Ok((true, parts)) => {
                        owned.insert(id, parts);
                    }
                    Ok((false, _)) => elsewhere.push(id),
                    Err(e) => {
                        tracing::warn!(member = %id, error = %e,
                            "unreadable subscription: treated as owning nothing");
                        owned.insert(id, Vec::new());
                    }
                }
            }
            if !elsewhere.is_empty() {
                tracing::warn!(group = %self.group(), topic = %self.topic, members = ?elsewhere,
                    "members of this group subscribe to another topic: they get no partitions \
                     (give each topic its own consumer.group)");
            }
            let plan = assignor::assign(partitions, &owned);
            tracing::info!(generation, members = plan.len(), plan = ?plan, "group leader assigned partitions");
            plan.iter()
                .map(|(m, ps)| Ok((m.clone(), coordinator::encode_assignment(&self.topic, ps)?)))
                .chain(
                    elsewhere
                        .into_iter()
                        .map(|m| Ok((m, coordinator::encode_assignment(&self.topic, &[])?))),
                )
                .collect::<Result<Vec<_>, GroupError>>()?
        } else {
            Vec::new()
        };
        {
            let mut s = self.state();
            s.member_id = member_id.clone();
            s.generation = generation;
        }
        let synced = self
            .coordinator
            .sync(&member_id, generation, assignments, t.rebalance)
            .await?;
        match synced.error_code {
            code::NONE => {}
            code::UNKNOWN_MEMBER_ID => {
                self.state().member_id.clear();
                return Ok(None);
            }
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => return Ok(None),
            other => return Err(GroupError::broker("sync group", other)),
        }
        let assigned = coordinator::decode_assignment(&self.topic, &synced.assignment)?;
        self.state().partitions.clone_from(&assigned);
        Ok(Some(Assignment {
            member_id,
            generation,
            leader,
            partitions: assigned,
        }))
    }
}

impl GroupMembership for Member {
    fn join(&self, partitions: i32) -> BoxFuture<'_, Result<Assignment, GroupError>> {
        Box::pin(async move {
            loop {
                if let Some(a) = self.join_once(partitions).await? {
                    return Ok(a);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn heartbeat(&self) -> BoxFuture<'_, Result<Heartbeat, GroupError>> {
        Box::pin(async move {
            let (member_id, generation) = {
                let s = self.state();
                (s.member_id.clone(), s.generation)
            };
            match self.coordinator.heartbeat(&member_id, generation).await? {
                code::NONE => Ok(Heartbeat::Stable),
                c @ (code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION) => {
                    Ok(Heartbeat::Rejoin(c))
                }
                c @ (code::UNKNOWN_MEMBER_ID | code::FENCED_INSTANCE_ID) => {
                    let mut s = self.state();
                    s.member_id.clear();
                    s.partitions.clear();
                    Ok(Heartbeat::Rejoin(c))
                }
                other => Err(GroupError::broker("heartbeat", other)),
            }
        })
    }

    fn commit<'a>(
        &'a self,
        fence: &'a Fence,
        partition: i32,
        next_offset: i64,
    ) -> BoxFuture<'a, Result<Commit, GroupError>> {
        Box::pin(async move {
            let offsets = BTreeMap::from([(partition, next_offset)]);
            let codes = self
                .coordinator
                .commit(&self.topic, &offsets, &fence.member_id, fence.generation)
                .await?;
            match codes.get(&partition).copied().unwrap_or(code::NONE) {
                code::NONE => Ok(Commit::Committed),
                c @ (code::ILLEGAL_GENERATION
                | code::UNKNOWN_MEMBER_ID
                | code::REBALANCE_IN_PROGRESS
                | code::FENCED_INSTANCE_ID) => Ok(Commit::Refused(c)),
                other => Err(GroupError::broker("offset commit", other)),
            }
        })
    }

    fn committed<'a>(
        &'a self,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<BTreeMap<i32, i64>, GroupError>> {
        Box::pin(async move {
            self.coordinator
                .committed(&self.topic, Some(partitions))
                .await
        })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let member_id = {
                let mut s = self.state();
                s.partitions.clear();
                s.generation = -1;
                std::mem::take(&mut s.member_id)
            };
            if member_id.is_empty() {
                return;
            }
            match self.coordinator.leave(&member_id).await {
                Ok(code::NONE) => {
                    tracing::info!(group = %self.group(), member_id, "left the group")
                }
                Ok(c) => tracing::warn!(group = %self.group(), member_id, error = %error_name(c),
                    "leave group refused (the session timeout will remove the member)"),
                Err(e) => tracing::warn!(group = %self.group(), member_id, error = %e,
                    "leave group failed (the session timeout will remove the member)"),
            }
        })
    }
}

/// This daemon's place in its group, for `/api/status`, the status page and `pipeline
/// status`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct GroupView {
    pub group: String,
    /// Empty until the first join.
    pub member_id: String,
    pub generation: i32,
    pub leader: bool,
    pub partitions: Vec<i32>,
    pub rebalances: u64,
    pub commits_refused: u64,
}

/// A group's state as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Dead`.
    pub state: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_host: String,
    /// Partitions of the topic asked for (empty when the assignment is for another topic).
    pub partitions: Vec<i32>,
}

/// The group's committed offsets of `topic`: partition → next offset (partitions without a
/// commit are absent). Independent of a running member (for `pipeline replay` and tests).
///
/// # Errors
/// The coordinator could not be reached or refused the request.
pub async fn fetch_committed(
    client: Arc<rskafka::client::Client>,
    group: &str,
    topic: &str,
    request_timeout: Duration,
) -> Result<BTreeMap<i32, i64>, GroupError> {
    Coordinator::new(client, group, request_timeout)
        .committed(topic, None)
        .await
}

/// DescribeGroups: the group's state and members (with their partitions of `topic`).
///
/// # Errors
/// The coordinator could not be reached or refused the request.
pub async fn describe_members(
    client: Arc<rskafka::client::Client>,
    group: &str,
    topic: &str,
    request_timeout: Duration,
) -> Result<GroupDescription, GroupError> {
    let g = Coordinator::new(client, group, request_timeout)
        .describe()
        .await?;
    Ok(GroupDescription {
        state: g.group_state.as_str().to_string(),
        protocol: g.protocol_data.as_str().to_string(),
        members: g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.as_str().to_string(),
                client_host: m.client_host.as_str().to_string(),
                partitions: coordinator::decode_assignment(topic, &m.member_assignment)
                    .unwrap_or_default(),
            })
            .collect(),
    })
}

/// Commits `offsets` (partition → next offset) of `topic` for `group` as an administrator
/// (generation -1, no member id). Kafka accepts this only while the group has no members.
///
/// # Errors
/// [`GroupError::GroupActive`] when daemons are in the group; otherwise the coordinator's
/// refusal.
pub async fn commit_admin(
    client: Arc<rskafka::client::Client>,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
    request_timeout: Duration,
) -> Result<(), GroupError> {
    let coordinator = Coordinator::new(Arc::clone(&client), group, request_timeout);
    let codes = coordinator.commit(topic, offsets, "", -1).await?;
    let refused = codes.values().copied().find(|c| *c != code::NONE);
    match refused {
        None => Ok(()),
        Some(code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION | code::REBALANCE_IN_PROGRESS) => {
            let (state, members) = match coordinator.describe().await {
                Ok(g) => (g.group_state.as_str().to_string(), g.members.len()),
                Err(_) => ("unknown".to_string(), 0),
            };
            Err(GroupError::GroupActive {
                group: group.to_string(),
                state,
                members,
            })
        }
        Some(c) => Err(GroupError::broker("offset commit", c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_and_retries() {
        assert_eq!(error_name(code::UNKNOWN_MEMBER_ID), "UnknownMemberId");
        assert_eq!(error_name(code::ILLEGAL_GENERATION), "IllegalGeneration");
        assert!(error_name(-999).contains("-999"));
        assert!(GroupError::broker("join group", code::COORDINATOR_NOT_AVAILABLE).is_retriable());
        assert!(!GroupError::broker("join group", code::GROUP_AUTHORIZATION_FAILED).is_retriable());
        assert!(!GroupError::broker("join group", code::INVALID_SESSION_TIMEOUT).is_retriable());
        let fenced = GroupError::Fenced {
            partition: 3,
            code: code::ILLEGAL_GENERATION,
            name: error_name(code::ILLEGAL_GENERATION),
        };
        assert!(fenced.is_retriable());
        assert!(fenced.to_string().contains("partition 3"));
        let active = GroupError::GroupActive {
            group: "g".into(),
            state: "Stable".into(),
            members: 2,
        };
        assert!(!active.is_retriable());
        assert!(active.to_string().contains("2 active member"), "{active}");
    }
}
