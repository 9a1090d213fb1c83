//! Kafka client construction (rskafka), topic creation, partition clients.
//!
//! rskafka retries broker errors forever by default; every call here runs under a deadline
//! (`kafka.request_timeout`) so a dead broker surfaces as a retriable stage error the
//! supervisor can count and back off from, instead of a silent hang.

pub mod admin;
pub(crate) mod config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as RsKafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use tokio::sync::Mutex;

use crate::config::{CompressionKind, KafkaConfig, SaslMechanism};
use crate::tls::TlsError;

/// A Kafka failure, with the operation it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// No answer within `kafka.request_timeout` (rskafka itself would retry forever).
    #[error("kafka {op}: no answer within {after:?}")]
    Timeout { op: String, after: Duration },
    /// The client or the broker refused the request.
    /// (Boxed: rskafka's error is large and this travels in every `Result`.)
    #[error("kafka {op}: {source}")]
    Client {
        op: String,
        #[source]
        source: Box<RsKafkaError>,
    },
    /// The topic is missing and we may not create it.
    #[error("kafka topic `{topic}` does not exist and kafka.create_topics is false")]
    TopicMissing { topic: String },
    /// The topic exists but metadata shows no partitions yet (just created).
    #[error("kafka topic `{topic}` has no partitions in metadata yet")]
    NoPartitions { topic: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl KafkaError {
    /// Refused credentials and refused certificates cannot fix themselves, nor can a missing
    /// topic we may not create or a TLS file we cannot use; the rest (timeouts, connections,
    /// leader changes) can.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::NoPartitions { .. } => true,
            Self::TopicMissing { .. } | Self::Tls(_) => false,
            Self::Client { source, .. } => !is_auth_or_certificate(source),
        }
    }

    /// The broker's protocol error code, when the broker answered with one.
    pub fn protocol_error(&self) -> Option<ProtocolError> {
        match self {
            Self::Client { source, .. } => match **source {
                RsKafkaError::ServerError { protocol_error, .. } => Some(protocol_error),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Walks `error`'s causes for a refused SASL authentication or a refused certificate.
pub(crate) fn is_auth_or_certificate(error: &RsKafkaError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(RsKafkaError::ServerError { protocol_error, .. }) = e.downcast_ref()
            && matches!(
                protocol_error,
                ProtocolError::SaslAuthenticationFailed
                    | ProtocolError::IllegalSaslState
                    | ProtocolError::UnsupportedSaslMechanism
                    | ProtocolError::TopicAuthorizationFailed
                    | ProtocolError::ClusterAuthorizationFailed
            )
        {
            return true;
        }
        if let Some(sasl) = e.downcast_ref::<rskafka::SaslError>() {
            // Only a transport failure during the handshake is worth retrying.
            return !matches!(sasl, rskafka::SaslError::RequestError(_));
        }
        if crate::tls::is_certificate_error(e) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Runs `fut` under `timeout`.
///
/// # Errors
/// [`KafkaError::Timeout`], or [`KafkaError::Client`] with the client's error.
pub async fn deadline<T>(
    op: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, RsKafkaError>>,
) -> Result<T, KafkaError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(KafkaError::Client {
            op: op.to_string(),
            source: Box::new(source),
        }),
        Err(_) => Err(KafkaError::Timeout {
            op: op.to_string(),
            after: timeout,
        }),
    }
}

/// Connects to the cluster.
///
/// # Errors
/// Retriable when no broker answers within the deadline.
pub async fn connect(config: &KafkaConfig) -> Result<Client, KafkaError> {
    // A probe with a single attempt first: rskafka retries every connection error, refused
    // credentials included, until its deadline; the probe reports those at once (fatal)
    // instead of a retry storm. Other probe failures fall through to the patient client.
    if config.security_protocol.uses_sasl() || config.security_protocol.uses_tls() {
        // (rskafka samples its jitter from init..max: the range must not be empty.)
        let once = rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            base: 2.0,
            deadline: Some(Duration::from_millis(1)),
        };
        if let Err(e) = deadline(
            "connect",
            config.request_timeout,
            builder(config, once)?.build(),
        )
        .await
            && !e.is_retriable()
        {
            return Err(e);
        }
    }
    let backoff = rskafka::BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
        deadline: Some(config.request_timeout),
    };
    deadline(
        "connect",
        config.request_timeout,
        builder(config, backoff)?.build(),
    )
    .await
}

/// The timeout of one request to one broker (and of one connection attempt) inside rskafka:
/// a third of `kafka.request_timeout`, within 1..=10 s (10 s by default).
///
/// Without it a request to a stopped broker (SIGSTOP, a partitioned host: the TCP connection
/// stays open) waits forever, and a `PartitionClient` keeps asking the old leader until our
/// outer deadline gives up on the whole call. With it, the request fails as a broken
/// connection: rskafka drops the cached leader, looks the leader up again (on another broker
/// if the metadata one is the stopped one) and retries, all within `kafka.request_timeout`.
/// Longer than a fetch's `max_wait` (`consumer.fetch_max_wait`, 100 ms by default) and about
/// the broker's session timeout (KRaft `broker.session.timeout.ms`, 9 s), after which a stopped
/// broker leaves the ISR and produces with `acks=all` complete again.
pub(crate) fn broker_timeout(request_timeout: Duration) -> Duration {
    (request_timeout / 3).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn builder(
    config: &KafkaConfig,
    backoff: rskafka::BackoffConfig,
) -> Result<ClientBuilder, KafkaError> {
    let per_broker = broker_timeout(config.request_timeout);
    let mut builder = ClientBuilder::new(config.bootstrap.clone())
        .client_id(config.client_id.clone())
        .max_message_size(config.max_message_bytes.max(16 * 1024 * 1024))
        .backoff_config(backoff)
        .connect_timeout(Some(per_broker))
        .timeout(Some(per_broker));
    if config.security_protocol.uses_tls() {
        builder = builder.tls_config(crate::tls::client_config(
            config.tls_ca_file.as_deref(),
            "kafka.tls_ca_file",
        )?);
    }
    if config.security_protocol.uses_sasl() {
        let credentials = Credentials::new(
            config.sasl_username.clone(),
            config
                .sasl_password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        );
        builder = builder.sasl_config(match config.sasl_mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        });
    }
    Ok(builder)
}

/// Creates `topic` with `partitions`, `replication_factor` and (when set)
/// `min.insync.replicas` when it does not exist; returns its partition count. An existing
/// topic whose `min.insync.replicas` differs from `kafka.min_insync_replicas` is used as it
/// is, with a warning.
///
/// # Errors
/// Retriable Kafka errors; fatal when the topic is missing and creation is not allowed.
pub async fn ensure_topic(
    client: &Client,
    config: &KafkaConfig,
    topic: &str,
) -> Result<i32, KafkaError> {
    let timeout = config.request_timeout;
    for _ in 0..50 {
        let topics = deadline("list topics", timeout, client.list_topics()).await?;
        if let Some(t) = topics.iter().find(|t| t.name == topic) {
            if !t.partitions.is_empty() {
                if let Some(wanted) = config.min_insync_replicas {
                    warn_on_min_isr(client, topic, wanted, timeout).await;
                }
                return Ok(i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
            }
        } else {
            if !config.create_topics {
                return Err(KafkaError::TopicMissing {
                    topic: topic.to_string(),
                });
            }
            let configs: Vec<(&str, String)> = config
                .min_insync_replicas
                .map(|n| (admin::MIN_INSYNC_REPLICAS, n.to_string()))
                .into_iter()
                .collect();
            let created = admin::create_topic(
                client,
                topic,
                config.partitions,
                config.replication_factor,
                &configs,
                timeout,
            )
            .await;
            match created {
                Ok(()) => tracing::info!(
                    topic,
                    partitions = config.partitions,
                    replication_factor = config.replication_factor,
                    min_insync_replicas = ?config.min_insync_replicas,
                    "created topic"
                ),
                Err(e) if e.protocol_error() == Some(ProtocolError::TopicAlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(KafkaError::NoPartitions {
        topic: topic.to_string(),
    })
}

/// Warns when `topic`'s `min.insync.replicas` is not `wanted` (or cannot be read: a
/// principal without DescribeConfigs may still produce and fetch).
async fn warn_on_min_isr(client: &Client, topic: &str, wanted: i16, timeout: Duration) {
    match admin::topic_configs(client, topic, &[admin::MIN_INSYNC_REPLICAS], timeout).await {
        Ok(configs) => {
            let actual = configs.get(admin::MIN_INSYNC_REPLICAS).cloned().flatten();
            if actual.as_deref() != Some(wanted.to_string().as_str()) {
                tracing::warn!(
                    topic,
                    actual = actual.as_deref().unwrap_or("unknown"),
                    configured = wanted,
                    "the topic's min.insync.replicas differs from kafka.min_insync_replicas \
                     (an existing topic is not altered: kafka-configs.sh --alter changes it)"
                );
            }
        }
        Err(e) => tracing::warn!(
            topic,
            error = %e,
            "cannot read the topic's min.insync.replicas to compare with kafka.min_insync_replicas"
        ),
    }
}

/// rskafka's compression for the configured kind.
pub fn compression(kind: CompressionKind) -> Compression {
    match kind {
        CompressionKind::None => Compression::NoCompression,
        CompressionKind::Gzip => Compression::Gzip,
        CompressionKind::Lz4 => Compression::Lz4,
        CompressionKind::Snappy => Compression::Snappy,
        CompressionKind::Zstd => Compression::Zstd,
    }
}

/// Per-record framing overhead assumed when sizing a produce request (record header, varints,
/// header keys); generous on purpose.
const RECORD_OVERHEAD_BYTES: usize = 128;

/// Splits `records` (kept in order) into requests whose estimated size stays within
/// `max_bytes`, so that several large records of one partition never form a request the
/// broker refuses forever (`MessageTooLarge`). A record larger than `max_bytes` on its own
/// goes alone (callers dead-letter those before producing).
pub fn chunk_records(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let budget = max_bytes.saturating_sub(1024).max(1);
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for record in records {
        let n = record.approximate_size() + RECORD_OVERHEAD_BYTES;
        if !current.is_empty() && size + n > budget {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += n;
        current.push(record);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Produces `records` to `pc` in order, in as many requests as their size needs.
///
/// # Errors
/// The first failed request (records before it may have been written: at-least-once).
pub async fn produce_chunked(
    pc: &PartitionClient,
    records: Vec<Record>,
    compression: Compression,
    config: &KafkaConfig,
    what: &str,
) -> Result<usize, KafkaError> {
    let mut produced = 0;
    for chunk in chunk_records(records, config.max_message_bytes) {
        produced += deadline(what, config.request_timeout, pc.produce(chunk, compression))
            .await?
            .len();
    }
    Ok(produced)
}

/// Lazily created partition clients of one topic.
pub struct Partitions {
    client: Arc<Client>,
    topic: String,
    timeout: Duration,
    clients: Mutex<HashMap<i32, Arc<PartitionClient>>>,
}

impl Partitions {
    pub fn new(client: Arc<Client>, topic: &str, timeout: Duration) -> Self {
        Self {
            client,
            topic: topic.to_string(),
            timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `partition`.
    ///
    /// # Errors
    /// Retriable when the leader cannot be found in time.
    pub async fn get(&self, partition: i32) -> Result<Arc<PartitionClient>, KafkaError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&partition) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(
            deadline(
                "partition client",
                self.timeout,
                self.client
                    .partition_client(&self.topic, partition, UnknownTopicHandling::Retry),
            )
            .await?,
        );
        clients.insert(partition, Arc::clone(&c));
        Ok(c)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::client::error::{RequestContext, RequestError};

    fn server_error(protocol_error: ProtocolError) -> KafkaError {
        KafkaError::Client {
            op: "fetch".into(),
            source: Box::new(RsKafkaError::ServerError {
                protocol_error,
                error_message: None,
                request: RequestContext::Partition("t".into(), 0),
                response: None,
                is_virtual: false,
            }),
        }
    }

    #[test]
    fn broker_timeout_is_a_third_of_the_request_timeout_within_bounds() {
        assert_eq!(
            broker_timeout(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            broker_timeout(Duration::from_secs(6)),
            Duration::from_secs(2)
        );
        assert_eq!(
            broker_timeout(Duration::from_secs(300)),
            Duration::from_secs(10)
        );
        assert_eq!(
            broker_timeout(Duration::from_millis(500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn errors_are_classified_by_kind_not_text() {
        let timeout = KafkaError::Timeout {
            op: "fetch".into(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retriable());
        assert_eq!(timeout.protocol_error(), None);
        assert!(
            !KafkaError::TopicMissing { topic: "t".into() }.is_retriable(),
            "a topic we may not create does not appear by retrying"
        );
        let out_of_range = server_error(ProtocolError::OffsetOutOfRange);
        assert!(out_of_range.is_retriable());
        assert_eq!(
            out_of_range.protocol_error(),
            Some(ProtocolError::OffsetOutOfRange)
        );
        assert_eq!(
            server_error(ProtocolError::TopicAlreadyExists).protocol_error(),
            Some(ProtocolError::TopicAlreadyExists)
        );
        assert!(!server_error(ProtocolError::SaslAuthenticationFailed).is_retriable());
        assert!(server_error(ProtocolError::NotLeaderOrFollower).is_retriable());
        // A certificate we refuse, as rustls reports it through the transport's io::Error.
        let refused = KafkaError::Client {
            op: "connect".into(),
            source: Box::new(RsKafkaError::Request(RequestError::IO(
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ),
            ))),
        };
        assert!(!refused.is_retriable(), "{refused}");
        let reset = KafkaError::Client {
            op: "connect".into(),
            source: Box::new(RsKafkaError::Request(RequestError::IO(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            ))),
        };
        assert!(reset.is_retriable());
        // The stage error keeps the context and the cause.
        let stage = crate::supervise::StageError::from(refused);
        assert!(!stage.is_retriable());
        assert!(
            stage.chain().starts_with("kafka connect: "),
            "{}",
            stage.chain()
        );
        assert!(stage.chain().contains("UnknownIssuer"), "{}", stage.chain());
    }

    fn record(value_bytes: usize) -> Record {
        Record {
            key: Some(b"k".to_vec()),
            value: Some(vec![b'x'; value_bytes]),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        }
    }

    #[test]
    fn chunks_stay_within_the_request_limit_and_keep_order() {
        let records: Vec<Record> = (0..6).map(|i| record(400_000 + i)).collect();
        let chunks = chunk_records(records, 1024 * 1024);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let mut sizes = Vec::new();
        for chunk in &chunks {
            let total: usize = chunk
                .iter()
                .map(|r| r.approximate_size() + RECORD_OVERHEAD_BYTES)
                .sum();
            assert!(total <= 1024 * 1024, "chunk of {total} bytes");
            sizes.extend(chunk.iter().map(|r| r.value.as_ref().map_or(0, Vec::len)));
        }
        assert_eq!(sizes, (0..6).map(|i| 400_000 + i).collect::<Vec<_>>());
        // Small records share one request; an oversized one goes alone.
        assert_eq!(
            chunk_records((0..1000).map(|_| record(100)).collect(), 1024 * 1024).len(),
            1
        );
        assert_eq!(chunk_records(vec![record(2_000_000)], 1024 * 1024).len(), 1);
        assert!(chunk_records(Vec::new(), 1024).is_empty());
    }
}
