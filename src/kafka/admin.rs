//! Admin requests rskafka does not have: CreateTopics with topic configs, DescribeConfigs,
//! and a full Metadata answer (controller, replicas, ISR) for `check --connect`.
//!
//! Encoded with the `kafka-protocol` codec and sent over rskafka's own authenticated broker
//! connections (`Client::raw_connection`, as `group::coordinator` does). Broker error codes
//! come back as rskafka's [`RsKafkaError::ServerError`], so [`KafkaError::protocol_error`]
//! and [`KafkaError::is_retriable`] treat them like any other rskafka error.
//!
//! Versions: Metadata v9, CreateTopics v5, DescribeConfigs v2 (all served by Kafka 2.4
//! through 4.x), DescribeQuorum v0 (KRaft clusters, Kafka 3.3+).
//!
//! Under KRaft a broker answers Metadata with a *random* live broker as the controller id
//! (the real controller is the leader of the metadata quorum, possibly not a broker), so the
//! controller shown is DescribeQuorum's leader, which brokers forward to the quorum;
//! Metadata's id only counts on a ZooKeeper cluster, where DescribeQuorum does not exist.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, DescribeQuorumRequest, MetadataRequest, TopicName,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    describe_configs_request::DescribeConfigsResource,
    describe_quorum_request::{PartitionData, TopicData},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use rskafka::client::Client;
use rskafka::client::error::{Error as RsKafkaError, ProtocolError, RequestContext};
use rskafka::client::raw::RawConnection;

use super::KafkaError;

const METADATA: i16 = 9;
const CREATE_TOPICS: i16 = 5;
const DESCRIBE_CONFIGS: i16 = 2;
const DESCRIBE_QUORUM: i16 = 0;
/// The KRaft metadata log, whose leader is the active controller.
const METADATA_LOG: &str = "__cluster_metadata";
/// DescribeConfigs' resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// The error code of a topic that does not exist.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The topic config `kafka.min_insync_replicas` sets.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// One broker of the cluster, as Metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlacement {
    pub partition: i32,
    /// -1: no leader (offline).
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The broker's error code for this partition (0: none; LEADER_NOT_AVAILABLE, …).
    pub error: i16,
}

/// What a Metadata request shows of the cluster and of the topics asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    /// Metadata's controller id (-1 when the broker does not say): a random live broker under
    /// KRaft, see the module doc.
    pub controller: i32,
    /// The KRaft metadata quorum's leader, the active controller (none: a ZooKeeper cluster,
    /// or the quorum did not answer).
    pub quorum_leader: Option<i32>,
    pub brokers: Vec<Broker>,
    /// Topic → its partitions by index (absent: the topic does not exist).
    pub topics: BTreeMap<String, Vec<PartitionPlacement>>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn client_error(op: &str, source: RsKafkaError) -> KafkaError {
    KafkaError::Client {
        op: op.to_string(),
        source: Box::new(source),
    }
}

/// The broker's `code` as the rskafka error the rest of the crate classifies.
fn broker_error(op: &str, topic: &str, code: i16, message: Option<&StrBytes>) -> KafkaError {
    client_error(
        op,
        RsKafkaError::ServerError {
            protocol_error: ProtocolError::new(code).unwrap_or(ProtocolError::Unknown(code)),
            error_message: message.map(|m| m.to_string()),
            request: RequestContext::Topic(topic.to_string()),
            response: None,
            is_virtual: false,
        },
    )
}

async fn connection(
    client: &Client,
    broker: Option<i32>,
    op: &str,
    timeout: Duration,
) -> Result<RawConnection, KafkaError> {
    super::deadline(op, timeout, client.raw_connection(broker)).await
}

/// Why one kafka-protocol exchange over a raw connection failed.
pub(crate) enum ExchangeError {
    Encode(String),
    Request(rskafka::client::error::RequestError),
    Decode(String),
}

/// One kafka-protocol request over a raw rskafka connection: encodes `request` at `version`,
/// sends it, decodes the answer. No timeout: each caller bounds it its own way (this module
/// by `kafka::deadline`, the group coordinator by its `GroupError::Timeout`).
pub(crate) async fn exchange<R: Request>(
    connection: &RawConnection,
    request: &R,
    version: i16,
) -> Result<R::Response, ExchangeError> {
    let mut body = BytesMut::new();
    request
        .encode(&mut body, version)
        .map_err(|e| ExchangeError::Encode(e.to_string()))?;
    let response = connection
        .request(
            R::KEY,
            version,
            R::header_version(version),
            R::Response::header_version(version),
            &body,
        )
        .await
        .map_err(ExchangeError::Request)?;
    let mut bytes = Bytes::from(response);
    R::Response::decode(&mut bytes, version).map_err(|e| ExchangeError::Decode(e.to_string()))
}

async fn send<R: Request>(
    connection: &RawConnection,
    request: &R,
    version: i16,
    op: &str,
    timeout: Duration,
) -> Result<R::Response, KafkaError> {
    super::deadline(op, timeout, async {
        exchange(connection, request, version)
            .await
            .map_err(|e| match e {
                ExchangeError::Encode(e) => RsKafkaError::InvalidResponse(format!("encode: {e}")),
                ExchangeError::Request(e) => RsKafkaError::Request(e),
                ExchangeError::Decode(e) => RsKafkaError::InvalidResponse(format!("decode: {e}")),
            })
    })
    .await
}

/// Metadata of the cluster and of `topics` (none asked: brokers and controller only).
///
/// # Errors
/// No broker answers within `timeout`.
pub async fn cluster(
    client: &Client,
    topics: &[&str],
    timeout: Duration,
) -> Result<ClusterView, KafkaError> {
    let conn = connection(client, None, "metadata", timeout).await?;
    let mut request = MetadataRequest::default();
    request.topics = Some(
        topics
            .iter()
            .map(|t| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(TopicName(str_bytes(t)));
                topic
            })
            .collect(),
    );
    request.allow_auto_topic_creation = false;
    let r = send(&conn, &request, METADATA, "metadata", timeout).await?;
    let mut view = ClusterView {
        cluster_id: r.cluster_id.map(|c| c.to_string()),
        controller: r.controller_id.0,
        quorum_leader: None,
        brokers: r
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect(),
        topics: BTreeMap::new(),
    };
    view.brokers.sort_by_key(|b| b.id);
    for t in &r.topics {
        let Some(name) = t.name.as_ref() else {
            continue;
        };
        if t.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            continue;
        }
        let mut partitions: Vec<PartitionPlacement> = t
            .partitions
            .iter()
            .map(|p| PartitionPlacement {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                error: p.error_code,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        view.topics.insert(name.0.to_string(), partitions);
    }
    view.quorum_leader = quorum_leader(client, timeout).await;
    Ok(view)
}

/// The KRaft quorum's leader, or none when the cluster does not answer DescribeQuorum (a
/// ZooKeeper cluster; on a connection of its own, as a broker may close one on an unknown
/// request).
async fn quorum_leader(client: &Client, timeout: Duration) -> Option<i32> {
    let conn = connection(client, None, "describe quorum", timeout)
        .await
        .ok()?;
    let mut partition = PartitionData::default();
    partition.partition_index = 0;
    let mut topic = TopicData::default();
    topic.topic_name = TopicName(str_bytes(METADATA_LOG));
    topic.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![topic];
    let r = send(&conn, &request, DESCRIBE_QUORUM, "describe quorum", timeout)
        .await
        .ok()?;
    if r.error_code != 0 {
        return None;
    }
    let p = r.topics.first()?.partitions.first()?;
    (p.error_code == 0 && p.leader_id.0 >= 0).then_some(p.leader_id.0)
}

impl ClusterView {
    /// The active controller: the KRaft quorum's leader, else Metadata's controller id.
    pub fn active_controller(&self) -> i32 {
        self.quorum_leader.unwrap_or(self.controller)
    }
}

/// Creates `topic` with `configs` (name → value) on the controller.
///
/// # Errors
/// The broker's error (`TopicAlreadyExists` included: callers decide), or no answer.
pub async fn create_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, String)],
    timeout: Duration,
) -> Result<(), KafkaError> {
    // Kafka before KRaft only creates on the controller (KRaft brokers forward).
    let controller = cluster(client, &[], timeout).await?.controller;
    let conn = connection(
        client,
        (controller >= 0).then_some(controller),
        "create topic",
        timeout,
    )
    .await?;
    let mut creatable = CreatableTopic::default();
    creatable.name = TopicName(str_bytes(topic));
    creatable.num_partitions = partitions;
    creatable.replication_factor = replication_factor;
    creatable.configs = configs
        .iter()
        .map(|(name, value)| {
            let mut c = CreatableTopicConfig::default();
            c.name = str_bytes(name);
            c.value = Some(str_bytes(value));
            c
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![creatable];
    request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let r = send(&conn, &request, CREATE_TOPICS, "create topic", timeout).await?;
    let result = r
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .ok_or_else(|| {
            client_error(
                "create topic",
                RsKafkaError::InvalidResponse(format!("no result for topic `{topic}`")),
            )
        })?;
    if result.error_code != 0 {
        return Err(broker_error(
            "create topic",
            topic,
            result.error_code,
            result.error_message.as_ref(),
        ));
    }
    Ok(())
}

/// The topic's configs named in `keys` (all of them for an empty `keys`): name → value
/// (`None` for a sensitive or unset value).
///
/// # Errors
/// The broker's error (`UnknownTopicOrPartition` for a missing topic), or no answer.
pub async fn topic_configs(
    client: &Client,
    topic: &str,
    keys: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, Option<String>>, KafkaError> {
    let conn = connection(client, None, "describe configs", timeout).await?;
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = str_bytes(topic);
    resource.configuration_keys =
        (!keys.is_empty()).then(|| keys.iter().map(|k| str_bytes(k)).collect());
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let r = send(
        &conn,
        &request,
        DESCRIBE_CONFIGS,
        "describe configs",
        timeout,
    )
    .await?;
    let result = r.results.first().ok_or_else(|| {
        client_error(
            "describe configs",
            RsKafkaError::InvalidResponse(format!("no result for topic `{topic}`")),
        )
    })?;
    if result.error_code != 0 {
        return Err(broker_error(
            "describe configs",
            topic,
            result.error_code,
            result.error_message.as_ref(),
        ));
    }
    Ok(result
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect())
}

impl ClusterView {
    /// `check --connect`'s lines: the brokers (which one is the controller), then per topic
    /// (with its `min.insync.replicas`, when known) every partition's leader, replicas and
    /// ISR, flagged when the ISR is short of the replicas or of the minimum.
    pub fn report_lines(&self, topics: &[(&str, Option<i32>)]) -> Vec<String> {
        let mut lines = Vec::new();
        let controller = self.active_controller();
        for b in &self.brokers {
            lines.push(format!(
                "broker {} {}:{}{}{}",
                b.id,
                b.host,
                b.port,
                b.rack
                    .as_ref()
                    .map_or(String::new(), |r| format!(" rack {r}")),
                if b.id == controller {
                    " (controller)"
                } else {
                    ""
                }
            ));
        }
        if !self.brokers.iter().any(|b| b.id == controller) {
            lines.push(format!(
                "controller {controller} (a KRaft controller that is not a broker)"
            ));
        }
        for (topic, min_isr) in topics {
            let Some(partitions) = self.topics.get(*topic) else {
                lines.push(format!("topic {topic}: does not exist yet"));
                continue;
            };
            let flagged = partitions
                .iter()
                .filter(|p| !partition_flags(p, *min_isr).is_empty())
                .count();
            lines.push(format!(
                "topic {topic}: {} partitions, min.insync.replicas {}, {flagged} flagged",
                partitions.len(),
                min_isr.map_or_else(|| "unknown".to_string(), |m| m.to_string()),
            ));
            for p in partitions {
                let flags = partition_flags(p, *min_isr);
                lines.push(format!(
                    "  partition {} leader {} replicas {:?} isr {:?}{}",
                    p.partition,
                    if p.leader < 0 {
                        "none".to_string()
                    } else {
                        p.leader.to_string()
                    },
                    p.replicas,
                    p.isr,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", flags.join(" "))
                    }
                ));
            }
        }
        lines
    }
}

/// What is wrong with a partition's placement, in capitals for the eye.
fn partition_flags(p: &PartitionPlacement, min_isr: Option<i32>) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if p.leader < 0 {
        flags.push("NO-LEADER");
    }
    if p.isr.len() < p.replicas.len() {
        flags.push("UNDER-REPLICATED");
    }
    if min_isr.is_some_and(|m| (p.isr.len() as i64) < i64::from(m)) {
        flags.push("BELOW-MIN-ISR");
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionPlacement {
        PartitionPlacement {
            partition,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            error: 0,
        }
    }

    #[test]
    fn report_names_the_controller_and_flags_short_isrs() {
        let view = ClusterView {
            cluster_id: Some("c".into()),
            // Metadata's random pick under KRaft; the quorum leader wins.
            controller: 3,
            quorum_leader: Some(2),
            brokers: (1..=3)
                .map(|id| Broker {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    rack: None,
                })
                .collect(),
            topics: BTreeMap::from([(
                "t".to_string(),
                vec![
                    partition(0, 1, &[1, 2, 3], &[1, 2, 3]),
                    partition(1, 2, &[2, 3, 1], &[2, 3]),
                    partition(2, 3, &[3, 1, 2], &[3]),
                    partition(3, -1, &[1, 2, 3], &[]),
                ],
            )]),
        };
        let lines = view.report_lines(&[("t", Some(2)), ("missing", None)]);
        assert_eq!(lines[0], "broker 1 127.0.0.1:9091");
        assert_eq!(lines[1], "broker 2 127.0.0.1:9092 (controller)");
        assert_eq!(
            lines[3],
            "topic t: 4 partitions, min.insync.replicas 2, 3 flagged"
        );
        assert_eq!(
            lines[4],
            "  partition 0 leader 1 replicas [1, 2, 3] isr [1, 2, 3]"
        );
        assert_eq!(
            lines[5],
            "  partition 1 leader 2 replicas [2, 3, 1] isr [2, 3]  UNDER-REPLICATED"
        );
        assert_eq!(
            lines[6],
            "  partition 2 leader 3 replicas [3, 1, 2] isr [3]  UNDER-REPLICATED BELOW-MIN-ISR"
        );
        assert!(
            lines[7].starts_with("  partition 3 leader none"),
            "{}",
            lines[7]
        );
        assert!(
            lines[7].ends_with("NO-LEADER UNDER-REPLICATED BELOW-MIN-ISR"),
            "{}",
            lines[7]
        );
        assert_eq!(lines[8], "topic missing: does not exist yet");
        // Dedicated KRaft controllers: the leader is no broker.
        let dedicated = ClusterView {
            quorum_leader: Some(3000),
            topics: BTreeMap::new(),
            ..view.clone()
        };
        let lines = dedicated.report_lines(&[]);
        assert!(
            lines.iter().all(|l| !l.ends_with("(controller)")),
            "{lines:?}"
        );
        assert_eq!(
            lines[3],
            "controller 3000 (a KRaft controller that is not a broker)"
        );
        // ZooKeeper: no quorum, Metadata's controller id.
        let zk = ClusterView {
            quorum_leader: None,
            ..view
        };
        assert_eq!(
            zk.report_lines(&[])[2],
            "broker 3 127.0.0.1:9093 (controller)"
        );
    }
}
