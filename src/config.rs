//! Typed configuration: `pipeline.toml` merged with `PIPELINE_<SECTION>__<KEY>` environment
//! variables, validated once at load.
//!
//! Each stage owns its section: the struct, its defaults and its `validate()` live beside the
//! stage's code (`source/config.rs`, `landing/config.rs`, `relay/config.rs`,
//! `lease/config.rs`, `kafka/config.rs`, `consume/config.rs`, `sink/config.rs`, `dlq/config.rs`,
//! `telemetry/config.rs`, `supervise/config.rs`) and are re-exported here. This module holds
//! what spans sections: [`Config`], loading (file, environment, secret files), the keys that
//! moved to another section, the cross-section checks, and the small checks every section
//! uses (`check_range` and friends).
//!
//! Every error names the key it is about (`source.results`, `kafka.compression`, ...), so an
//! operator can fix it without reading code. `pipeline check` and `pipeline run` exit with
//! [`EXIT_CONFIG`] (78, `EX_CONFIG` from sysexits.h) on any [`ConfigError`].
//!
//! Secrets (`*.password`, or a `*.password_file` read at load) are held in [`Secret`], whose
//! `Debug` and `Display` print `***`, so they cannot leak through logs, `check` output or panics.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::consume::config::{Assignment, ConsumerConfig, StartFrom};
pub use crate::dlq::config::DlqConfig;
pub use crate::kafka::config::{CompressionKind, KafkaConfig, KafkaSecurity, SaslMechanism};
pub use crate::landing::config::{LandingConfig, PostgresConfig};
pub use crate::lease::config::LeaseConfig;
pub use crate::registry::config::{SchemaRegistryConfig, ValueFormat};
pub use crate::relay::config::RelayConfig;
pub use crate::sink::config::{CassandraConfig, ConsistencyLevel, WriteMode};
pub use crate::source::config::{ScheduleMode, SourceConfig};
pub use crate::supervise::config::{BackoffConfig, RuntimeConfig};
pub use crate::telemetry::config::{HttpConfig, LogConfig, LogFormat, MIN_TOKEN_LEN};

/// Exit code for configuration errors (`EX_CONFIG`).
pub const EXIT_CONFIG: i32 = crate::exit::Exit::Config.code() as i32;

/// The whole configuration, one struct per section of `pipeline.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub postgres: PostgresConfig,
    pub landing: LandingConfig,
    pub relay: RelayConfig,
    pub lease: LeaseConfig,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub cassandra: CassandraConfig,
    pub dlq: DlqConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
    pub schema_registry: SchemaRegistryConfig,
    /// Deprecated spellings the loaded configuration used, one per key: logged as warnings
    /// once logging is up (`run`, `migrate`) and printed by `check`. Never part of the file.
    #[serde(skip)]
    pub deprecations: Vec<Deprecation>,
}

/// Sections a `PIPELINE_<SECTION>__<KEY>` variable may name.
const SECTIONS: &[&str] = &[
    "source",
    "postgres",
    "landing",
    "relay",
    "lease",
    "kafka",
    "consumer",
    "cassandra",
    "dlq",
    "http",
    "log",
    "runtime",
    "schema_registry",
];

/// A key written in its old spelling, which still works: it moved to another section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    /// The spelling that was used, e.g. `postgres.relay_batch_rows`.
    pub old: &'static str,
    /// The spelling to use instead, e.g. `relay.batch_rows`.
    pub new: &'static str,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config key `{}` ({}) is deprecated and will be removed: write `{}` ({}) instead",
            self.old,
            env_name(self.old),
            self.new,
            env_name(self.new)
        )
    }
}

/// `relay.batch_rows` -> `PIPELINE_RELAY__BATCH_ROWS`.
fn env_name(key: &str) -> String {
    format!("PIPELINE_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn key(key: &str, message: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key the error is about, if any.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Self::Key { key, .. } => Some(key),
            Self::File { .. } => None,
        }
    }

    /// An error about a key that was written in its deprecated spelling names that spelling.
    fn named_as_written(self, used: &[Deprecation]) -> Self {
        match self {
            Self::Key { key, message } => match used.iter().find(|d| d.new == key) {
                Some(d) => Self::Key {
                    key: d.old.to_string(),
                    message: format!(
                        "{message} (`{}` is the deprecated spelling of `{}`)",
                        d.old, d.new
                    ),
                },
                None => Self::Key { key, message },
            },
            other => other,
        }
    }
}

impl Config {
    /// Loads `path` (which must exist unless `allow_missing`), then the environment, validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key for unknown keys, wrong types, out-of-range values,
    /// unreadable `*_file` keys and contradictory combinations; naming the file for a file
    /// that cannot be read or is not TOML.
    pub fn load(path: &Path, allow_missing: bool) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, allow_missing, &vars)
    }

    /// As [`Config::load`] with an explicit environment (tests).
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn load_with_env(
        path: &Path,
        allow_missing: bool,
        vars: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        if !path.exists() && !allow_missing {
            return Err(ConfigError::File {
                path: path.to_owned(),
                message: "not found (pass --config PATH)".into(),
            });
        }
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        } else {
            String::new()
        };
        // Syntax errors name the file that was read (figment's own error knows no path).
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(ConfigError::File {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_string(),
            });
        }
        Self::from_toml_and_env(&text, vars)
    }

    /// Parses TOML text and `PIPELINE_*` variables from `vars`, validates.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn from_toml_and_env(toml: &str, vars: &[(String, String)]) -> Result<Self, ConfigError> {
        // Check env keys ourselves first: figment's Env provider would silently ignore a
        // variable with an unknown section, and a typo there must not go unnoticed.
        let mut env_figment = Figment::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("PIPELINE_") else {
                continue;
            };
            if rest == "CONFIG" {
                continue; // the --config path itself
            }
            let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let key = parts.join(".");
            if parts.len() < 2 || !SECTIONS.contains(&parts[0].as_str()) {
                return Err(ConfigError::key(
                    &key,
                    format!(
                        "environment variable {name} does not name a config key \
                         (expected PIPELINE_<SECTION>__<KEY>, sections: {})",
                        SECTIONS.join(", ")
                    ),
                ));
            }
            let parsed: figment::value::Value = value
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            env_figment = env_figment.merge(Serialized::default(&key, parsed));
        }
        // Which layer set a key (rather than leaving its default): decides between the two
        // spellings of a moved key.
        let file_figment = Figment::from(Toml::string(toml));
        let layer = |key: &str| {
            if env_figment.contains(key) {
                Layer::Env
            } else if file_figment.contains(key) {
                Layer::File
            } else {
                Layer::Default
            }
        };
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .merge(env_figment.clone());
        let mut config: Config = figment.extract().map_err(figment_error)?;
        let taken = config.apply_moved_keys(layer)?;
        config.resolve_secret_files()?;
        config.validate().map_err(|e| e.named_as_written(&taken))?;
        Ok(config)
    }

    /// Moves the values of keys written in their old spelling to their new home, recording a
    /// [`Deprecation`] for each; returns those whose value was taken. `layer(key)`: where the
    /// value of `key` came from.
    fn apply_moved_keys(
        &mut self,
        layer: impl Fn(&str) -> Layer,
    ) -> Result<Vec<Deprecation>, ConfigError> {
        let mut taken = Vec::new();
        let notes = &mut self.deprecations;
        let old = &mut self.postgres;
        move_key(
            "postgres.channel_capacity",
            old.channel_capacity.take(),
            "landing.channel_capacity",
            &mut self.landing.channel_capacity,
            &layer,
            notes,
            &mut taken,
        )?;
        move_key(
            "postgres.relay_batch_rows",
            old.relay_batch_rows.take(),
            "relay.batch_rows",
            &mut self.relay.batch_rows,
            &layer,
            notes,
            &mut taken,
        )?;
        move_key(
            "postgres.relay_idle_poll",
            old.relay_idle_poll.take(),
            "relay.idle_poll",
            &mut self.relay.idle_poll,
            &layer,
            notes,
            &mut taken,
        )?;
        Ok(taken)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        read_secret_file(
            "postgres.password_file",
            &self.postgres.password_file,
            &mut self.postgres.password,
        )?;
        read_secret_file(
            "kafka.sasl_password_file",
            &self.kafka.sasl_password_file,
            &mut self.kafka.sasl_password,
        )?;
        read_secret_file(
            "cassandra.password_file",
            &self.cassandra.password_file,
            &mut self.cassandra.password,
        )?;
        read_secret_file(
            "schema_registry.password_file",
            &self.schema_registry.password_file,
            &mut self.schema_registry.password,
        )?;
        read_secret_file(
            "http.token_file",
            &self.http.token_file,
            &mut self.http.token,
        )?;
        Ok(())
    }

    /// Checks every section, then what spans sections. Called by [`Config::load`].
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.source.validate()?;
        self.postgres.validate()?;
        self.landing.validate()?;
        self.relay.validate()?;
        self.lease.validate()?;
        self.kafka.validate()?;
        self.dlq.validate()?;
        if self.kafka.topic == self.dlq.topic {
            return Err(ConfigError::key(
                "dlq.topic",
                "must differ from kafka.topic (dead letters would be consumed again)",
            ));
        }
        self.consumer.validate()?;
        // A fetch the broker holds for fetch_max_wait must end within rskafka's per-request
        // timeout, or every idle fetch would time out and reconnect.
        let per_broker = crate::kafka::broker_timeout(self.kafka.request_timeout);
        if self.consumer.fetch_max_wait >= per_broker {
            return Err(ConfigError::key(
                "consumer.fetch_max_wait",
                format!(
                    "must be below a third of kafka.request_timeout (1s..=10s): {per_broker:?} now"
                ),
            ));
        }
        self.cassandra.validate()?;
        self.http.validate()?;
        self.log.validate()?;
        self.runtime.validate()?;
        self.schema_registry.validate(self.kafka.value_format)?;
        Ok(())
    }

    /// The configuration as TOML with secrets masked, for `pipeline check`.
    pub fn to_redacted_toml(&self) -> String {
        // Secret serializes transparently; mask before rendering.
        let mut copy = self.clone();
        for secret in [
            &mut copy.postgres.password,
            &mut copy.cassandra.password,
            &mut copy.kafka.sasl_password,
            &mut copy.schema_registry.password,
        ]
        .into_iter()
        .flatten()
        {
            *secret = Secret::new("***");
        }
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Where a key's value came from; a later layer overrides an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Default,
    File,
    Env,
}

/// Moves `value` (set under the deprecated key `old`) to `target` (the key `new`), unless
/// `new` was set in a later layer (the environment overrides the file whatever the
/// spelling). Both spellings set in the same layer to different values is an error naming
/// both.
fn move_key<T: PartialEq + fmt::Debug>(
    old: &'static str,
    value: Option<T>,
    new: &'static str,
    target: &mut T,
    layer: &dyn Fn(&str) -> Layer,
    notes: &mut Vec<Deprecation>,
    taken: &mut Vec<Deprecation>,
) -> Result<(), ConfigError> {
    let Some(value) = value else { return Ok(()) };
    let deprecation = Deprecation { old, new };
    notes.push(deprecation);
    let (old_layer, new_layer) = (layer(old), layer(new));
    if old_layer == new_layer && *target != value {
        return Err(ConfigError::key(
            old,
            format!(
                "is {value:?} but `{new}` is {target:?}: `{old}` is the deprecated spelling of \
                 `{new}`; set only `{new}`"
            ),
        ));
    }
    if old_layer >= new_layer {
        *target = value;
        taken.push(deprecation);
    }
    Ok(())
}

/// `value` must lie in `range`; the message reads "must be in 1..=256" (durations "1ms..=60s").
pub(crate) fn check_range<T: PartialOrd + fmt::Debug>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("must be in {:?}..={:?}", range.start(), range.end()),
        ))
    }
}

/// `value` must be at least `min`: "must be >= 1".
pub(crate) fn check_at_least<T: PartialOrd + fmt::Debug>(
    key: &str,
    value: T,
    min: T,
) -> Result<(), ConfigError> {
    if value >= min {
        Ok(())
    } else {
        Err(ConfigError::key(key, format!("must be >= {min:?}")))
    }
}

/// A duration that must not be zero (a zero timeout fails at once, a zero poll spins).
pub(crate) fn check_non_zero(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::key(key, "must be > 0"))
    } else {
        Ok(())
    }
}

/// A byte budget between stages: 64 KiB ..= 16 GiB.
pub(crate) const BUFFER_BYTES: RangeInclusive<u64> = 64 * 1024..=16 * 1024 * 1024 * 1024;

/// Capacity of a channel between stages, in items: at least one, and far below what tokio
/// refuses (the items' bytes are bounded by a budget; the count only needs to be sane).
pub(crate) const CHANNEL_CAPACITY: RangeInclusive<usize> = 1..=65_536;

/// A non-empty list of "host:port" entries.
pub(crate) fn check_host_ports(key: &str, list: &[String]) -> Result<(), ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::key(key, "needs at least one host:port"));
    }
    for entry in list {
        let ok = entry.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(ConfigError::key(key, format!("`{entry}` is not host:port")));
        }
    }
    Ok(())
}

/// A CA (or other) file named by `key`, when set, must be a readable file.
pub(crate) fn check_file(key: &str, file: Option<&PathBuf>) -> Result<(), ConfigError> {
    match file {
        Some(path) if !path.is_file() => Err(ConfigError::key(
            key,
            format!("{} is not a readable file", path.display()),
        )),
        _ => Ok(()),
    }
}

fn read_secret_file(
    key: &str,
    path: &Option<PathBuf>,
    target: &mut Option<Secret>,
) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    if target.is_some() {
        return Err(ConfigError::key(
            key,
            "both the password and its *_file are set; keep one",
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::key(key, format!("cannot read {}: {e}", path.display())))?;
    let first = text.lines().next().unwrap_or("").trim_end();
    if first.is_empty() {
        return Err(ConfigError::key(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    *target = Some(Secret::new(first));
    Ok(())
}

fn figment_error(error: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let mut path = error.path.clone();
    let message = match &error.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key, expected one of: {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            if path.last().map(String::as_str) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            "missing".into()
        }
        Kind::InvalidType(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::UnknownVariant(found, expected) => {
            format!("`{found}` is not one of: {}", expected.join(", "))
        }
        other => other.to_string(),
    };
    if path.is_empty() {
        return ConfigError::File {
            path: PathBuf::from("(configuration)"),
            message,
        };
    }
    ConfigError::key(&path.join("."), message)
}

/// Test helpers for the sections' own tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Config, ConfigError};

    /// Loads `toml` (no environment).
    pub(crate) fn load(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(toml, &[])
    }

    /// The key a config error names; panics when `toml` loads.
    pub(crate) fn key_of(toml: &str) -> String {
        match load(toml) {
            Ok(_) => panic!("expected a config error for {toml:?}"),
            Err(e) => e.key_name().unwrap_or("<none>").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_syntax_errors_name_the_file_read_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "[source\nresults = 1\n").expect("write");
        let err = Config::load_with_env(&path, false, &[]).expect_err("syntax error");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains("pipeline.toml"), "{text}");
        assert_eq!(text.matches("invalid table header").count(), 1, "{text}");
        assert_eq!(err.key_name(), None);
    }

    fn load(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(toml, &[])
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn key_of(result: Result<Config, ConfigError>) -> String {
        match result {
            Ok(_) => panic!("expected a config error"),
            Err(e) => e.key_name().unwrap_or("<none>").to_string(),
        }
    }

    #[test]
    fn fetch_max_wait_must_end_before_the_per_broker_timeout() {
        // kafka.request_timeout 30s: 10s per broker.
        assert_eq!(
            key_of(load("[consumer]\nfetch_max_wait = \"10s\"\n")),
            "consumer.fetch_max_wait"
        );
        load("[consumer]\nfetch_max_wait = \"9s\"\n").expect("9s < 10s");
        // The tests' short deadlines keep the default 100ms valid (1s per broker).
        load("[kafka]\nrequest_timeout = \"1s\"\n").expect("100ms < 1s");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = load("").expect("defaults are valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.kafka.topic, "users_created");
        assert_eq!(config.cassandra.keyspace, "spark_streams");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:9898");
    }

    #[test]
    fn repository_pipeline_toml_is_valid_and_documented() {
        let text = include_str!("../pipeline.toml");
        let config = load(text).expect("pipeline.toml must load");
        assert_eq!(config.kafka.topic, "users_created");
        assert!(
            config.deprecations.is_empty(),
            "pipeline.toml uses deprecated keys: {:?}",
            config.deprecations
        );
        // Every key of every section appears in the documented file.
        let rendered: toml::Table =
            toml::from_str(&toml::to_string(&Config::default()).expect("render")).expect("parse");
        let documented: toml::Table = toml::from_str(text).expect("parse pipeline.toml");
        for (section, value) in &rendered {
            let Some(table) = value.as_table() else {
                continue;
            };
            let doc = documented
                .get(section)
                .and_then(|v| v.as_table())
                .unwrap_or_else(|| panic!("section [{section}] missing from pipeline.toml"));
            for key in table.keys() {
                assert!(
                    doc.contains_key(key) || text.contains(&format!("# {key} =")),
                    "key {section}.{key} is not documented in pipeline.toml"
                );
            }
        }
    }

    #[test]
    fn env_overrides_file() {
        let config = Config::from_toml_and_env(
            "[kafka]\ntopic = \"a\"\n",
            &env(&[
                ("PIPELINE_KAFKA__TOPIC", "b"),
                ("PIPELINE_SOURCE__RESULTS", "5000"),
                ("PIPELINE_SOURCE__URL", "http://127.0.0.1:8080/api/"),
                ("PIPELINE_RUNTIME__BACKOFF__MAX", "5s"),
                ("PIPELINE_KAFKA__BOOTSTRAP", "[\"127.0.0.1:19092\"]"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.kafka.topic, "b");
        assert_eq!(config.source.results, 5000);
        assert_eq!(config.runtime.backoff.max, Duration::from_secs(5));
        assert_eq!(config.kafka.bootstrap, vec!["127.0.0.1:19092".to_string()]);
    }

    #[test]
    fn bad_configs_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("[source]\nresults = 5001\n", "source.results"),
            ("[source]\nresults = 0\n", "source.results"),
            ("[source]\nresults = \"many\"\n", "source.results"),
            ("[source]\nurl = \"ftp://x/\"\n", "source.url"),
            ("[source]\nbogus = 1\n", "source.bogus"),
            ("[bogus]\nx = 1\n", "bogus"),
            (
                "[source]\nrequests_per_second = 10.0\nresults = 5000\n",
                "source.requests_per_second",
            ),
            (
                "[source]\nrequests_per_second = -1.0\n",
                "source.requests_per_second",
            ),
            ("[source]\ntimeout = \"soon\"\n", "source.timeout"),
            ("[source]\nmode = \"sometimes\"\n", "source.mode"),
            ("[source]\nmode = \"interval\"\n", "source.max_records"),
            ("[source]\nnat = [\"XX\"]\n", "source.nat"),
            ("[source]\nexc = [\"login\"]\n", "source.inc"),
            (
                "[postgres]\nurl = \"postgres://u:pw@h/db\"\n",
                "postgres.url",
            ),
            ("[postgres]\nsslmode = \"maybe\"\n", "postgres.sslmode"),
            (
                "[postgres]\npassword_file = \"/nonexistent/pw\"\n",
                "postgres.password_file",
            ),
            ("[kafka]\nbootstrap = []\n", "kafka.bootstrap"),
            ("[kafka]\nbootstrap = [\"nohost\"]\n", "kafka.bootstrap"),
            ("[kafka]\ntopic = \"bad topic\"\n", "kafka.topic"),
            ("[kafka]\npartitions = 0\n", "kafka.partitions"),
            ("[kafka]\ncompression = \"brotli\"\n", "kafka.compression"),
            ("[dlq]\ntopic = \"users_created\"\n", "dlq.topic"),
            (
                "[consumer]\ninstance = 2\ninstances = 2\n",
                "consumer.instance",
            ),
            (
                "[consumer]\nstart_from = \"middle\"\n",
                "consumer.start_from",
            ),
            (
                "[cassandra]\nkeyspace = \"drop table\"\n",
                "cassandra.keyspace",
            ),
            (
                "[cassandra]\nconsistency = \"most\"\n",
                "cassandra.consistency",
            ),
            (
                "[cassandra]\nwrite_concurrency = 0\n",
                "cassandra.write_concurrency",
            ),
            ("[http]\nlisten = \"nowhere\"\n", "http.listen"),
            ("[http]\nlisten = \"0.0.0.0:9898\"\n", "http.token_file"),
            ("[http]\nlisten = \"[::]:9898\"\n", "http.token_file"),
            (
                "[http]\ntoken_file = \"/nonexistent/token\"\n",
                "http.token_file",
            ),
            (
                "[log]\nprogress_interval = \"10ms\"\n",
                "log.progress_interval",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[log]\nlevel = \"pipeline=loud\"\n", "log.level"),
            (
                "[runtime.backoff]\njitter = 2.0\n",
                "runtime.backoff.jitter",
            ),
            ("[runtime.backoff]\nmax = \"1ms\"\n", "runtime.backoff.max"),
            ("[runtime]\nstall_after = \"0s\"\n", "runtime.stall_after"),
            (
                "[runtime]\nallocator_purge_delay = \"2m\"\n",
                "runtime.allocator_purge_delay",
            ),
            (
                "[kafka]\nsecurity_protocol = \"sasl_ssl\"\n",
                "kafka.sasl_username",
            ),
            (
                "[kafka]\nsasl_mechanism = \"MD5\"\n",
                "kafka.sasl_mechanism",
            ),
            (
                "[kafka]\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
                "kafka.tls_ca_file",
            ),
            (
                "[kafka]\nsasl_password = \"x\"\n",
                "kafka.security_protocol",
            ),
            (
                "[postgres]\nsslrootcert = \"/nonexistent/ca.pem\"\n",
                "postgres.sslrootcert",
            ),
        ];
        assert!(cases.len() >= 15);
        for (toml, key) in cases {
            let got = key_of(load(toml));
            assert_eq!(&got, key, "config {toml:?}");
        }
    }

    #[test]
    fn bad_env_names_key() {
        let got = key_of(Config::from_toml_and_env(
            "",
            &env(&[("PIPELINE_KAFKA__PARTITIONS", "lots")]),
        ));
        assert_eq!(got, "kafka.partitions");
        let got = key_of(Config::from_toml_and_env(
            "",
            &env(&[("PIPELINE_KAFKAA__TOPIC", "x")]),
        ));
        assert_eq!(got, "kafkaa.topic");
    }

    #[test]
    fn http_token_is_read_checked_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n").expect("write");
        let toml = format!(
            "[http]\nlisten = \"0.0.0.0:9898\"\ntoken_file = {:?}\n",
            file.display().to_string()
        );
        assert_eq!(key_of(load(&toml)), "http.token_file");
        std::fs::write(&file, "0123456789abcdef-token-4471\n").expect("write");
        let config = load(&toml).expect("valid with a token");
        assert_eq!(
            config.http.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-token-4471")
        );
        let shown = format!("{config:?}\n{}", config.to_redacted_toml());
        assert!(!shown.contains("token-4471"), "token leaked: {shown}");
        // Loopback needs none.
        let config = load("[http]\nlisten = \"127.0.0.1:9898\"\n").expect("loopback");
        assert!(config.http.token.is_none());
    }

    #[test]
    fn secrets_are_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cr3t-from-file\n").expect("write");
        let config = Config::from_toml_and_env(
            &format!(
                "[postgres]\npassword_file = {:?}\n",
                file.display().to_string()
            ),
            &env(&[
                ("PIPELINE_CASSANDRA__PASSWORD", "s3cr3t-env"),
                ("PIPELINE_CASSANDRA__USERNAME", "u"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            config.postgres.password.as_ref().map(Secret::expose),
            Some("s3cr3t-from-file")
        );
        let shown = format!("{config:?}\n{}", config.to_redacted_toml());
        assert!(!shown.contains("s3cr3t"), "secret leaked: {shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn moved_keys_keep_their_old_spelling_with_a_warning() {
        let config = load(
            "[postgres]\nchannel_capacity = 7\nrelay_batch_rows = 700\nrelay_idle_poll = \"50ms\"\n",
        )
        .expect("old spellings still load");
        assert_eq!(config.landing.channel_capacity, 7);
        assert_eq!(config.relay.batch_rows, 700);
        assert_eq!(config.relay.idle_poll, Duration::from_millis(50));
        let moved: Vec<(&str, &str)> = config.deprecations.iter().map(|d| (d.old, d.new)).collect();
        assert_eq!(
            moved,
            [
                ("postgres.channel_capacity", "landing.channel_capacity"),
                ("postgres.relay_batch_rows", "relay.batch_rows"),
                ("postgres.relay_idle_poll", "relay.idle_poll"),
            ]
        );
        let warning = config.deprecations[1].to_string();
        for part in [
            "`postgres.relay_batch_rows`",
            "PIPELINE_POSTGRES__RELAY_BATCH_ROWS",
            "`relay.batch_rows`",
            "PIPELINE_RELAY__BATCH_ROWS",
        ] {
            assert!(warning.contains(part), "{warning}");
        }
        // `check` shows the new spelling only.
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("relay_batch_rows"), "{shown}");
        assert!(shown.contains("[relay]\nbatch_rows = 700\n"), "{shown}");
        // The same as the new spelling, apart from the warnings.
        let new = load(
            "[landing]\nchannel_capacity = 7\n[relay]\nbatch_rows = 700\nidle_poll = \"50ms\"\n",
        )
        .expect("new spellings");
        assert!(new.deprecations.is_empty());
        assert_eq!(
            Config {
                deprecations: Vec::new(),
                ..config
            },
            new
        );
    }

    #[test]
    fn moved_keys_old_spelling_from_the_environment() {
        let config = Config::from_toml_and_env(
            "",
            &env(&[
                ("PIPELINE_POSTGRES__RELAY_BATCH_ROWS", "700"),
                ("PIPELINE_POSTGRES__RELAY_IDLE_POLL", "2s"),
                ("PIPELINE_POSTGRES__CHANNEL_CAPACITY", "3"),
            ]),
        )
        .expect("old env spellings still load");
        assert_eq!(config.relay.batch_rows, 700);
        assert_eq!(config.relay.idle_poll, Duration::from_secs(2));
        assert_eq!(config.landing.channel_capacity, 3);
        assert_eq!(config.deprecations.len(), 3);
        let config = Config::from_toml_and_env(
            "",
            &env(&[
                ("PIPELINE_RELAY__BATCH_ROWS", "700"),
                ("PIPELINE_LANDING__CHANNEL_CAPACITY", "3"),
            ]),
        )
        .expect("new env spellings");
        assert_eq!(config.relay.batch_rows, 700);
        assert_eq!(config.landing.channel_capacity, 3);
        assert!(config.deprecations.is_empty());
    }

    #[test]
    fn moved_keys_both_spellings_must_agree() {
        let conflicts = [
            (
                "[postgres]\nrelay_batch_rows = 700\n[relay]\nbatch_rows = 800\n",
                Vec::new(),
                "postgres.relay_batch_rows",
                "relay.batch_rows",
            ),
            (
                // The new spelling set to its default value still counts as set.
                "[postgres]\nrelay_idle_poll = \"5s\"\n[relay]\nidle_poll = \"1s\"\n",
                Vec::new(),
                "postgres.relay_idle_poll",
                "relay.idle_poll",
            ),
            (
                "",
                env(&[
                    ("PIPELINE_POSTGRES__CHANNEL_CAPACITY", "9"),
                    ("PIPELINE_LANDING__CHANNEL_CAPACITY", "8"),
                ]),
                "postgres.channel_capacity",
                "landing.channel_capacity",
            ),
        ];
        for (toml, vars, old, new) in conflicts {
            let err = Config::from_toml_and_env(toml, &vars).expect_err("conflict");
            assert_eq!(err.key_name(), Some(old), "{err}");
            assert!(err.to_string().contains(&format!("`{new}`")), "{err}");
        }
        // Equal values are no conflict (a migration in progress); the old key still warns.
        let config =
            load("[postgres]\nrelay_idle_poll = \"1000ms\"\n[relay]\nidle_poll = \"1s\"\n")
                .expect("same value twice");
        assert_eq!(config.deprecations.len(), 1);
    }

    #[test]
    fn moved_keys_environment_overrides_file_whatever_the_spelling() {
        // Today's env file with the old spelling over the new documented pipeline.toml.
        let config = Config::from_toml_and_env(
            include_str!("../pipeline.toml"),
            &env(&[("PIPELINE_POSTGRES__RELAY_BATCH_ROWS", "700")]),
        )
        .expect("env wins");
        assert_eq!(config.relay.batch_rows, 700);
        assert_eq!(config.deprecations.len(), 1);
        // An old file with the new spelling in the environment.
        let config = Config::from_toml_and_env(
            "[postgres]\nrelay_idle_poll = \"5s\"\n",
            &env(&[("PIPELINE_RELAY__IDLE_POLL", "2s")]),
        )
        .expect("env wins");
        assert_eq!(config.relay.idle_poll, Duration::from_secs(2));
        assert_eq!(
            config.deprecations.len(),
            1,
            "the file's old key still warns"
        );
        // An error about the environment's value names the environment's key.
        let err = Config::from_toml_and_env(
            "[postgres]\nrelay_idle_poll = \"5s\"\n",
            &env(&[("PIPELINE_RELAY__IDLE_POLL", "0s")]),
        )
        .expect_err("0s");
        assert_eq!(err.key_name(), Some("relay.idle_poll"));
    }

    #[test]
    fn moved_keys_errors_name_the_spelling_used() {
        for (toml, key) in [
            (
                "[postgres]\nrelay_idle_poll = \"0s\"\n",
                "postgres.relay_idle_poll",
            ),
            (
                "[postgres]\nrelay_batch_rows = 0\n",
                "postgres.relay_batch_rows",
            ),
            (
                "[postgres]\nrelay_batch_rows = \"many\"\n",
                "postgres.relay_batch_rows",
            ),
            (
                "[postgres]\nchannel_capacity = 0\n",
                "postgres.channel_capacity",
            ),
            ("[relay]\nidle_poll = \"0s\"\n", "relay.idle_poll"),
            (
                "[landing]\nchannel_capacity = 0\n",
                "landing.channel_capacity",
            ),
        ] {
            assert_eq!(key_of(load(toml)), key, "{toml:?}");
        }
    }

    #[test]
    fn range_check_messages() {
        let message = |r: Result<(), ConfigError>| r.expect_err("out of range").to_string();
        assert_eq!(
            message(check_range("a.b", 0u32, 1..=256)),
            "config key `a.b`: must be in 1..=256"
        );
        assert_eq!(
            message(check_range(
                "a.b",
                Duration::ZERO,
                Duration::from_millis(1)..=Duration::from_secs(60)
            )),
            "config key `a.b`: must be in 1ms..=60s"
        );
        assert_eq!(
            message(check_range("a.b", 1.5, 0.0..=1.0)),
            "config key `a.b`: must be in 0.0..=1.0"
        );
        assert!(check_range("a.b", 256u32, 1..=256).is_ok());
        assert!(check_range("a.b", f64::NAN, 0.0..=1.0).is_err());
        assert_eq!(
            message(check_at_least("a.b", 0, 1)),
            "config key `a.b`: must be >= 1"
        );
        assert_eq!(
            message(check_non_zero("a.b", Duration::ZERO)),
            "config key `a.b`: must be > 0"
        );
    }
}
