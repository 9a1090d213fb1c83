//! `[kafka]`: brokers, the topic, the relay's producer and how the connection is secured.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigError, Secret, ValueFormat, check_at_least, check_file, check_host_ports, check_non_zero,
    check_range,
};

/// Kafka record compression.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CompressionKind {
    None,
    Gzip,
    Lz4,
    Snappy,
    Zstd,
}

/// How the Kafka connection is secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaSecurity {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// SASL mechanism for Kafka.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// `[kafka]`: brokers, the topic, and the relay's producer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, "host:port", at least one. Default ["127.0.0.1:9092"].
    pub bootstrap: Vec<String>,
    /// Topic the relay produces to and the consumers read ([a-zA-Z0-9._-], 1..=249 chars).
    /// Default "users_created".
    pub topic: String,
    /// Create `topic` and `dlq.topic` when missing. Default true.
    pub create_topics: bool,
    /// Partitions of created topics, 1..=10000. Default 3.
    pub partitions: i32,
    /// Replication factor of created topics, >= 1. Default 1.
    pub replication_factor: i16,
    /// `min.insync.replicas` of created topics (`topic` and `dlq.topic`), 1..=
    /// `replication_factor`; an existing topic whose value differs gets a warning at start.
    /// Unset: the broker's default. Default none.
    pub min_insync_replicas: Option<i16>,
    /// Compression of produced batches: none, gzip, lz4, snappy, zstd. Default "lz4".
    pub compression: CompressionKind,
    /// Deadline for one Kafka request, > 0 (rskafka alone would retry forever). Default "30s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Client id sent to the broker. Default "pipeline".
    pub client_id: String,
    /// Largest record value accepted from the broker or produced, bytes, 1024..=104857600.
    /// Default 1048576.
    pub max_message_bytes: usize,
    /// "plaintext", "ssl", "sasl_plaintext" or "sasl_ssl". Default "plaintext".
    pub security_protocol: KafkaSecurity,
    /// "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (with a sasl_* protocol). Default "PLAIN".
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name (required with a sasl_* protocol). Default "".
    pub sasl_username: String,
    /// SASL password (prefer env `PIPELINE_KAFKA__SASL_PASSWORD` or `sasl_password_file`).
    /// Default none.
    pub sasl_password: Option<Secret>,
    /// File holding the SASL password (first line), read at load. Default none.
    pub sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the brokers' certificates (unset: public roots).
    /// Default none.
    pub tls_ca_file: Option<PathBuf>,
    /// Format of produced values: "json" (the old stack's bytes) or "json_sr" (Confluent
    /// JSON Schema framing, schema in `[schema_registry]`). Consumers read both whatever
    /// this says. Default "json".
    pub value_format: ValueFormat,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec!["127.0.0.1:9092".into()],
            topic: "users_created".into(),
            create_topics: true,
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: None,
            compression: CompressionKind::Lz4,
            request_timeout: Duration::from_secs(30),
            client_id: "pipeline".into(),
            max_message_bytes: 1024 * 1024,
            security_protocol: KafkaSecurity::Plaintext,
            sasl_mechanism: SaslMechanism::Plain,
            sasl_username: String::new(),
            sasl_password: None,
            sasl_password_file: None,
            tls_ca_file: None,
            value_format: ValueFormat::Json,
        }
    }
}

impl KafkaConfig {
    /// Checks `[kafka]` (the dead-letter topic is checked against `topic` by
    /// [`crate::config::Config::validate`]).
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = self;
        check_host_ports("kafka.bootstrap", &k.bootstrap)?;
        check_topic("kafka.topic", &k.topic)?;
        check_range("kafka.partitions", k.partitions, 1..=10_000)?;
        check_at_least("kafka.replication_factor", k.replication_factor, 1)?;
        if let Some(min_isr) = k.min_insync_replicas {
            check_at_least("kafka.min_insync_replicas", min_isr, 1)?;
            if min_isr > k.replication_factor {
                return Err(ConfigError::key(
                    "kafka.min_insync_replicas",
                    format!(
                        "{min_isr} is more than kafka.replication_factor ({}): no write could ever be acknowledged",
                        k.replication_factor
                    ),
                ));
            }
        }
        check_non_zero("kafka.request_timeout", k.request_timeout)?;
        check_range(
            "kafka.max_message_bytes",
            k.max_message_bytes,
            1024..=100 * 1024 * 1024,
        )?;
        if k.security_protocol.uses_sasl()
            && (k.sasl_username.is_empty() || k.sasl_password.is_none())
        {
            return Err(ConfigError::key(
                "kafka.sasl_username",
                "a sasl_* security_protocol needs sasl_username and a sasl_password (or sasl_password_file)",
            ));
        }
        if !k.security_protocol.uses_sasl() && k.sasl_password.is_some() {
            return Err(ConfigError::key(
                "kafka.security_protocol",
                "a SASL password is set but the protocol is not sasl_plaintext or sasl_ssl",
            ));
        }
        check_file("kafka.tls_ca_file", k.tls_ca_file.as_ref())?;
        Ok(())
    }
}

/// A Kafka topic name: [a-zA-Z0-9._-], 1..=249 characters, not "." or "..".
pub(crate) fn check_topic(key: &str, topic: &str) -> Result<(), ConfigError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("`{topic}` is not a valid Kafka topic name ([a-zA-Z0-9._-], 1..=249 chars)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config =
            load("[kafka]\nbootstrap = [\"k1:9092\", \"k2:9092\"]\ncompression = \"zstd\"\n")
                .expect("valid");
        assert_eq!(config.kafka.bootstrap.len(), 2);
        assert_eq!(config.kafka.compression, super::CompressionKind::Zstd);
        assert_eq!(config.kafka.min_insync_replicas, None);
        let cluster = load("[kafka]\nreplication_factor = 3\nmin_insync_replicas = 2\n")
            .expect("min ISR below the replication factor");
        assert_eq!(cluster.kafka.min_insync_replicas, Some(2));
        let equal = load("[kafka]\nreplication_factor = 1\nmin_insync_replicas = 1\n")
            .expect("min ISR equal to the replication factor");
        assert_eq!(equal.kafka.min_insync_replicas, Some(1));
        let env = crate::config::Config::from_toml_and_env(
            "[kafka]\nreplication_factor = 3\n",
            &[(
                "PIPELINE_KAFKA__MIN_INSYNC_REPLICAS".to_string(),
                "2".to_string(),
            )],
        )
        .expect("env override");
        assert_eq!(env.kafka.min_insync_replicas, Some(2));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[kafka]\ntopic = \"..\"\n", "kafka.topic"),
            ("[kafka]\npartitions = 10001\n", "kafka.partitions"),
            (
                "[kafka]\nreplication_factor = 0\n",
                "kafka.replication_factor",
            ),
            (
                "[kafka]\nmin_insync_replicas = 0\n",
                "kafka.min_insync_replicas",
            ),
            (
                "[kafka]\nmin_insync_replicas = 2\n",
                "kafka.min_insync_replicas",
            ),
            (
                "[kafka]\nreplication_factor = 2\nmin_insync_replicas = 3\n",
                "kafka.min_insync_replicas",
            ),
            (
                "[kafka]\nrequest_timeout = \"0s\"\n",
                "kafka.request_timeout",
            ),
            (
                "[kafka]\nmax_message_bytes = 1023\n",
                "kafka.max_message_bytes",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
