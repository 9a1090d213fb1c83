//! `[schema_registry]`: where the topic's value schema is registered, and `kafka.value_format`
//! (the format of produced values, which decides whether the registry is needed).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret, check_non_zero};

/// Format of the values the relay produces (`kafka.value_format`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// The old stack's JSON, byte for byte (what its Spark job reads).
    #[default]
    Json,
    /// Confluent JSON Schema framing: magic byte 0, the schema id (4 bytes, big-endian),
    /// then the same JSON. Needs `[schema_registry] url`.
    JsonSr,
}

/// `[schema_registry]`: a Confluent-compatible schema registry (Confluent Schema Registry,
/// Apicurio's `/apis/ccompat/v7`, Karapace, Redpanda).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL of the Confluent-compatible API, http(s), e.g.
    /// "http://127.0.0.1:8081/apis/ccompat/v7" (Apicurio) or "http://registry:8081"
    /// (Confluent). Empty: no registry (framed records are then dead-lettered
    /// `unknown_schema`). Required by `kafka.value_format = "json_sr"`. Default "".
    pub url: String,
    /// Basic-auth user; empty: no authentication. Default "".
    pub username: String,
    /// Basic-auth password (prefer env `PIPELINE_SCHEMA_REGISTRY__PASSWORD` or
    /// `password_file`); never printed. Default none.
    pub password: Option<Secret>,
    /// File holding the basic-auth password (first line), read at load. Default none.
    pub password_file: Option<PathBuf>,
    /// Subject of the value schema; empty: `<kafka.topic>-value` (Confluent's
    /// TopicNameStrategy). Default "".
    pub subject: String,
    /// Deadline of one registry request, > 0. Default "10s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: String::new(),
            password: None,
            password_file: None,
            subject: String::new(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl SchemaRegistryConfig {
    /// The subject the daemon registers its value schema under.
    pub fn subject_for(&self, topic: &str) -> String {
        if self.subject.is_empty() {
            format!("{topic}-value")
        } else {
            self.subject.clone()
        }
    }

    /// Whether a registry is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks `[schema_registry]` against `kafka.value_format`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self, format: ValueFormat) -> Result<(), ConfigError> {
        if format == ValueFormat::JsonSr && self.url.is_empty() {
            return Err(ConfigError::key(
                "schema_registry.url",
                "kafka.value_format = \"json_sr\" needs the schema registry's URL",
            ));
        }
        if !self.url.is_empty() {
            let parsed = reqwest::Url::parse(&self.url)
                .map_err(|e| ConfigError::key("schema_registry.url", format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(ConfigError::key(
                    "schema_registry.url",
                    "must be an http:// or https:// URL with a host",
                ));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(ConfigError::key(
                    "schema_registry.url",
                    "credentials do not belong in the URL: use username and password_file",
                ));
            }
        }
        if self.username.is_empty() != self.password.is_none() {
            return Err(ConfigError::key(
                "schema_registry.username",
                "basic auth needs both username and a password (or password_file)",
            ));
        }
        if !self.subject.is_empty()
            && (self.subject.len() > 255 || self.subject.chars().any(char::is_control))
        {
            return Err(ConfigError::key(
                "schema_registry.subject",
                "at most 255 characters, no control characters",
            ));
        }
        check_non_zero("schema_registry.request_timeout", self.request_timeout)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ValueFormat;
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load(
            "[kafka]\ntopic = \"t\"\nvalue_format = \"json_sr\"\n\
             [schema_registry]\nurl = \"http://127.0.0.1:8081/apis/ccompat/v7\"\n",
        )
        .expect("valid");
        assert_eq!(config.kafka.value_format, ValueFormat::JsonSr);
        assert_eq!(config.schema_registry.subject_for("t"), "t-value");
        let config = load("[schema_registry]\nsubject = \"s\"\n").expect("valid");
        assert_eq!(config.schema_registry.subject_for("t"), "s");
        assert_eq!(
            load("").expect("defaults").kafka.value_format,
            ValueFormat::Json
        );
    }

    #[test]
    fn the_password_is_read_from_its_file_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-registry-pw\n").expect("write");
        let config = load(&format!(
            "[schema_registry]\nurl = \"https://sr.example:8081\"\nusername = \"u\"\n\
             password_file = {:?}\n",
            file.display().to_string()
        ))
        .expect("valid");
        let password = config.schema_registry.password.as_ref().expect("read");
        assert_eq!(password.expose(), "s3cret-registry-pw");
        for shown in [
            config.to_redacted_toml(),
            format!("{config:?}"),
            format!("{:?}", config.schema_registry),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[kafka]\nvalue_format = \"json_sr\"\n",
                "schema_registry.url",
            ),
            ("[kafka]\nvalue_format = \"avro\"\n", "kafka.value_format"),
            (
                "[schema_registry]\nurl = \"ftp://x\"\n",
                "schema_registry.url",
            ),
            (
                "[schema_registry]\nurl = \"nowhere\"\n",
                "schema_registry.url",
            ),
            (
                "[schema_registry]\nurl = \"http://u:p@h:8081\"\n",
                "schema_registry.url",
            ),
            (
                "[schema_registry]\nurl = \"http://h:8081\"\nusername = \"u\"\n",
                "schema_registry.username",
            ),
            (
                "[schema_registry]\nrequest_timeout = \"0s\"\n",
                "schema_registry.request_timeout",
            ),
            (
                "[schema_registry]\npassword_file = \"/nonexistent/pw\"\n",
                "schema_registry.password_file",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
