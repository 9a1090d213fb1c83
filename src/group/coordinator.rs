//! The group coordinator client: Kafka's group messages, encoded with the `kafka-protocol`
//! codec and sent over a dedicated rskafka connection to the coordinator broker (so TLS and
//! SASL are rskafka's own).
//!
//! Versions (all served by Kafka 2.4 through 4.x): FindCoordinator v3, JoinGroup v5,
//! SyncGroup v3, Heartbeat v3, LeaveGroup v3, OffsetCommit v7, OffsetFetch v6,
//! DescribeGroups v4.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
    consumer_protocol_assignment, consumer_protocol_subscription,
    join_group_request::JoinGroupRequestProtocol,
    leave_group_request::MemberIdentity,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    sync_group_request::SyncGroupRequestAssignment,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use rskafka::client::raw::RawConnection;
use tokio::sync::Mutex;

use super::{GroupError, code};
use crate::kafka::admin::{ExchangeError, exchange};

const FIND_COORDINATOR: i16 = 3;
const JOIN_GROUP: i16 = 5;
const SYNC_GROUP: i16 = 3;
const HEARTBEAT: i16 = 3;
const LEAVE_GROUP: i16 = 3;
const OFFSET_COMMIT: i16 = 7;
const OFFSET_FETCH: i16 = 6;
const DESCRIBE_GROUPS: i16 = 4;

/// The consumer protocol's name for our assignor (eager and sticky; see `assignor`).
pub const PROTOCOL_NAME: &str = "pipeline-sticky";
/// Subscription version: 1 carries the owned partitions the sticky assignor needs.
const SUBSCRIPTION_VERSION: i16 = 1;
const ASSIGNMENT_VERSION: i16 = 0;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A connection to one group's coordinator, found (and found again after NOT_COORDINATOR,
/// COORDINATOR_NOT_AVAILABLE or a broken connection) on demand.
pub struct Coordinator {
    client: Arc<rskafka::client::Client>,
    group: String,
    /// Per request (JoinGroup adds the rebalance timeout: the broker holds it that long).
    timeout: Duration,
    connection: Mutex<Option<RawConnection>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// Whether a broker error code means "ask another broker for the coordinator".
fn is_coordinator_moved(error: i16) -> bool {
    matches!(
        error,
        code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
            | code::COORDINATOR_LOAD_IN_PROGRESS
    )
}

/// How often a request is retried after the coordinator moved or its connection broke.
const ATTEMPTS: u32 = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(250);

impl Coordinator {
    pub fn new(client: Arc<rskafka::client::Client>, group: &str, timeout: Duration) -> Self {
        Self {
            client,
            group: group.to_string(),
            timeout,
            connection: Mutex::new(None),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    async fn send<R: Request>(
        connection: &RawConnection,
        request: &R,
        version: i16,
        op: &'static str,
        timeout: Duration,
    ) -> Result<R::Response, GroupError> {
        tokio::time::timeout(timeout, exchange(connection, request, version))
            .await
            .map_err(|_| GroupError::Timeout { op, after: timeout })?
            .map_err(|e| match e {
                ExchangeError::Encode(detail) | ExchangeError::Decode(detail) => {
                    GroupError::Codec { op, detail }
                }
                ExchangeError::Request(e) => GroupError::Connection {
                    op,
                    source: Box::new(e),
                },
            })
    }

    async fn find(&self) -> Result<RawConnection, GroupError> {
        let any = kafka_connection(&self.client, None, "find coordinator").await?;
        let mut request = FindCoordinatorRequest::default();
        request.key = str_bytes(&self.group);
        request.key_type = 0;
        let response = Self::send(
            &any,
            &request,
            FIND_COORDINATOR,
            "find coordinator",
            self.timeout,
        )
        .await?;
        if response.error_code != code::NONE {
            return Err(GroupError::broker("find coordinator", response.error_code));
        }
        kafka_connection(
            &self.client,
            Some(response.node_id.0),
            "connect coordinator",
        )
        .await
    }

    async fn connection(&self) -> Result<RawConnection, GroupError> {
        let mut guard = self.connection.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.find().await?;
        tracing::debug!(group = %self.group, broker = ?c.broker(), "group coordinator found");
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        self.connection.lock().await.take();
    }

    /// Sends `request` to the coordinator; finds it again and retries when it moved
    /// (`error_of` reads the response's top-level error code) or the connection broke.
    pub async fn call<R: Request>(
        &self,
        request: &R,
        version: i16,
        op: &'static str,
        extra_wait: Duration,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, GroupError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.connection().await {
                Ok(c) => Self::send(&c, request, version, op, self.timeout + extra_wait).await,
                Err(e) => Err(e),
            };
            let retry = match &result {
                Ok(r) => is_coordinator_moved(error_of(r)),
                Err(e) => e.is_transient(),
            };
            if !retry || attempt >= ATTEMPTS {
                return result;
            }
            tracing::debug!(group = %self.group, op, attempt, "finding the coordinator again");
            self.forget().await;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn group_id(&self) -> GroupId {
        GroupId(str_bytes(&self.group))
    }

    /// JoinGroup: returns the response (the caller handles its error code).
    pub async fn join(
        &self,
        member_id: &str,
        session: Duration,
        rebalance: Duration,
        subscription: Bytes,
    ) -> Result<kafka_protocol::messages::JoinGroupResponse, GroupError> {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = str_bytes(PROTOCOL_NAME);
        protocol.metadata = subscription;
        let mut request = JoinGroupRequest::default();
        request.group_id = self.group_id();
        request.session_timeout_ms = millis(session);
        request.rebalance_timeout_ms = millis(rebalance);
        request.member_id = str_bytes(member_id);
        request.protocol_type = str_bytes("consumer");
        request.protocols = vec![protocol];
        self.call(&request, JOIN_GROUP, "join group", rebalance, |r| {
            r.error_code
        })
        .await
    }

    /// SyncGroup: the leader sends every member's assignment, followers none.
    pub async fn sync(
        &self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        rebalance: Duration,
    ) -> Result<kafka_protocol::messages::SyncGroupResponse, GroupError> {
        let mut request = SyncGroupRequest::default();
        request.group_id = self.group_id();
        request.generation_id = generation;
        request.member_id = str_bytes(member_id);
        request.assignments = assignments
            .into_iter()
            .map(|(member, assignment)| {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = str_bytes(&member);
                a.assignment = assignment;
                a
            })
            .collect();
        self.call(&request, SYNC_GROUP, "sync group", rebalance, |r| {
            r.error_code
        })
        .await
    }

    /// Heartbeat: the broker's error code (0 while the generation stands).
    pub async fn heartbeat(&self, member_id: &str, generation: i32) -> Result<i16, GroupError> {
        let mut request = HeartbeatRequest::default();
        request.group_id = self.group_id();
        request.generation_id = generation;
        request.member_id = str_bytes(member_id);
        let r = self
            .call(&request, HEARTBEAT, "heartbeat", Duration::ZERO, |r| {
                r.error_code
            })
            .await?;
        Ok(r.error_code)
    }

    /// LeaveGroup for `member_id`: the broker's error code.
    pub async fn leave(&self, member_id: &str) -> Result<i16, GroupError> {
        let mut member = MemberIdentity::default();
        member.member_id = str_bytes(member_id);
        let mut request = LeaveGroupRequest::default();
        request.group_id = self.group_id();
        request.members = vec![member];
        let r = self
            .call(&request, LEAVE_GROUP, "leave group", Duration::ZERO, |r| {
                r.error_code
            })
            .await?;
        Ok(r.error_code)
    }

    /// OffsetCommit of `offsets` (partition → next offset) of `topic` as `member_id` in
    /// `generation` (-1 and "" for an admin commit): the per-partition error codes.
    pub async fn commit(
        &self,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
        member_id: &str,
        generation: i32,
    ) -> Result<BTreeMap<i32, i16>, GroupError> {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(str_bytes(topic));
        t.partitions = offsets
            .iter()
            .map(|(p, o)| {
                let mut part = OffsetCommitRequestPartition::default();
                part.partition_index = *p;
                part.committed_offset = *o;
                part.committed_leader_epoch = -1;
                part
            })
            .collect();
        let mut request = OffsetCommitRequest::default();
        request.group_id = self.group_id();
        request.generation_id_or_member_epoch = generation;
        request.member_id = str_bytes(member_id);
        request.retention_time_ms = -1;
        request.topics = vec![t];
        let r = self
            .call(
                &request,
                OFFSET_COMMIT,
                "offset commit",
                Duration::ZERO,
                |r| {
                    // The coordinator's errors are per partition; all carry the same one.
                    r.topics
                        .first()
                        .and_then(|t| t.partitions.first())
                        .map_or(code::NONE, |p| p.error_code)
                },
            )
            .await?;
        Ok(r.topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect())
    }

    /// OffsetFetch: partition → committed next offset, for the partitions that have one.
    pub async fn committed(
        &self,
        topic: &str,
        partitions: Option<&[i32]>,
    ) -> Result<BTreeMap<i32, i64>, GroupError> {
        let mut request = OffsetFetchRequest::default();
        request.group_id = self.group_id();
        request.topics = partitions.map(|ps| {
            let mut t = OffsetFetchRequestTopic::default();
            t.name = TopicName(str_bytes(topic));
            t.partition_indexes = ps.to_vec();
            vec![t]
        });
        let r = self
            .call(
                &request,
                OFFSET_FETCH,
                "offset fetch",
                Duration::ZERO,
                |r| r.error_code,
            )
            .await?;
        if r.error_code != code::NONE {
            return Err(GroupError::broker("offset fetch", r.error_code));
        }
        let mut out = BTreeMap::new();
        for t in r.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                if p.error_code != code::NONE {
                    return Err(GroupError::broker("offset fetch", p.error_code));
                }
                if p.committed_offset >= 0 {
                    out.insert(p.partition_index, p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// DescribeGroups for this group.
    pub async fn describe(
        &self,
    ) -> Result<kafka_protocol::messages::describe_groups_response::DescribedGroup, GroupError>
    {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![self.group_id()];
        let r = self
            .call(
                &request,
                DESCRIBE_GROUPS,
                "describe group",
                Duration::ZERO,
                |r| r.groups.first().map_or(code::NONE, |g| g.error_code),
            )
            .await?;
        let group = r.groups.into_iter().next().ok_or(GroupError::Codec {
            op: "describe group",
            detail: "no group in the response".into(),
        })?;
        if group.error_code != code::NONE {
            return Err(GroupError::broker("describe group", group.error_code));
        }
        Ok(group)
    }
}

async fn kafka_connection(
    client: &rskafka::client::Client,
    broker: Option<i32>,
    op: &'static str,
) -> Result<RawConnection, GroupError> {
    client
        .raw_connection(broker)
        .await
        .map_err(|e| GroupError::Kafka {
            op,
            source: Box::new(e),
        })
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The consumer protocol's subscription (version prefix + ConsumerProtocolSubscription v1):
/// the topic and the partitions this member owns now (for the sticky assignor).
pub fn encode_subscription(topic: &str, owned: &[i32]) -> Result<Bytes, GroupError> {
    let mut tp = consumer_protocol_subscription::TopicPartition::default();
    tp.topic = TopicName(str_bytes(topic));
    tp.partitions = owned.to_vec();
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = vec![str_bytes(topic)];
    s.owned_partitions = if owned.is_empty() { vec![] } else { vec![tp] };
    versioned(SUBSCRIPTION_VERSION, &s, "encode subscription")
}

/// Whether a member subscribes to `topic`, and the partitions of it the member owns.
pub fn decode_subscription(topic: &str, data: &[u8]) -> Result<(bool, Vec<i32>), GroupError> {
    let (version, mut rest) = split_version(data, "decode subscription")?;
    let s = ConsumerProtocolSubscription::decode(&mut rest, version).map_err(|e| {
        GroupError::Codec {
            op: "decode subscription",
            detail: e.to_string(),
        }
    })?;
    let subscribed = s.topics.iter().any(|t| t.as_str() == topic);
    let owned = s
        .owned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    Ok((subscribed, owned))
}

/// The consumer protocol's assignment (version prefix + ConsumerProtocolAssignment v0).
pub fn encode_assignment(topic: &str, partitions: &[i32]) -> Result<Bytes, GroupError> {
    let mut tp = consumer_protocol_assignment::TopicPartition::default();
    tp.topic = TopicName(str_bytes(topic));
    tp.partitions = partitions.to_vec();
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = vec![tp];
    versioned(ASSIGNMENT_VERSION, &a, "encode assignment")
}

/// The partitions of `topic` in an assignment (an empty one: none).
pub fn decode_assignment(topic: &str, data: &[u8]) -> Result<Vec<i32>, GroupError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let (version, mut rest) = split_version(data, "decode assignment")?;
    let a =
        ConsumerProtocolAssignment::decode(&mut rest, version).map_err(|e| GroupError::Codec {
            op: "decode assignment",
            detail: e.to_string(),
        })?;
    let mut out: Vec<i32> = a
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn versioned<T: Encodable>(version: i16, value: &T, op: &'static str) -> Result<Bytes, GroupError> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    value
        .encode(&mut buf, version)
        .map_err(|e| GroupError::Codec {
            op,
            detail: e.to_string(),
        })?;
    Ok(buf.freeze())
}

fn split_version<'a>(data: &'a [u8], op: &'static str) -> Result<(i16, &'a [u8]), GroupError> {
    let (head, rest) = data.split_at_checked(2).ok_or(GroupError::Codec {
        op,
        detail: "shorter than its version".into(),
    })?;
    let version = i16::from_be_bytes([head[0], head[1]]);
    // A newer member's version: decode the fields this codec knows (they are a prefix).
    Ok((version.clamp(0, 3), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_and_assignment_round_trip() {
        let s = encode_subscription("t", &[1, 4]).expect("encode");
        assert_eq!(&s[..2], &[0, 1], "version prefix");
        assert_eq!(
            decode_subscription("t", &s).expect("decode"),
            (true, vec![1, 4])
        );
        assert_eq!(
            decode_subscription("other", &s).expect("decode"),
            (false, Vec::<i32>::new())
        );
        let a = encode_assignment("t", &[5, 2]).expect("encode");
        assert_eq!(decode_assignment("t", &a).expect("decode"), vec![2, 5]);
        assert_eq!(
            decode_assignment("t", &[]).expect("empty"),
            Vec::<i32>::new()
        );
        assert!(decode_assignment("t", &[0]).is_err());
    }
}
