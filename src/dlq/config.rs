//! `[dlq]`: the dead-letter topic.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::kafka::config::check_topic;

/// `[dlq]`: the dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Topic for records that fail validation (a Kafka topic name, not `kafka.topic`).
    /// Default "users_created.dlq".
    pub topic: String,
    /// Prefix of the headers that explain a dead letter, not empty. Default
    /// "pipeline.error.".
    pub header_prefix: String,
    /// Testing only (undocumented in pipeline.toml on purpose): records whose `email` ends
    /// with this text are rejected by validation with reason `test_rule`, so that a test
    /// can send good records to the dead-letter topic and redrive them. Unset by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_reject_email_suffix: Option<String>,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            topic: "users_created.dlq".into(),
            header_prefix: "pipeline.error.".into(),
            test_reject_email_suffix: None,
        }
    }
}

impl DlqConfig {
    /// Checks `[dlq]` (that `topic` differs from `kafka.topic` is checked by
    /// [`crate::config::Config::validate`]).
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_topic("dlq.topic", &self.topic)?;
        if self.header_prefix.is_empty() {
            return Err(ConfigError::key("dlq.header_prefix", "must not be empty"));
        }
        if self.test_reject_email_suffix.as_deref() == Some("") {
            return Err(ConfigError::key(
                "dlq.test_reject_email_suffix",
                "must not be empty (it would reject every record)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[dlq]\ntopic = \"x.dlq\"\nheader_prefix = \"x.\"\n").expect("valid");
        assert_eq!(config.dlq.topic, "x.dlq");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[dlq]\ntopic = \"a b\"\n", "dlq.topic"),
            ("[dlq]\nheader_prefix = \"\"\n", "dlq.header_prefix"),
            (
                "[dlq]\ntest_reject_email_suffix = \"\"\n",
                "dlq.test_reject_email_suffix",
            ),
            (
                "[kafka]\ntopic = \"t\"\n[dlq]\ntopic = \"t\"\n",
                "dlq.topic",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
