//! Typed configuration: `pipeline.toml` merged with `PIPELINE_<SECTION>__<KEY>` environment
//! variables, validated once at load.
//!
//! Every error names the key it is about (`source.results`, `kafka.compression`, ...), so an
//! operator can fix it without reading code. `pipeline check` and `pipeline run` exit with
//! [`EXIT_CONFIG`] (78, `EX_CONFIG` from sysexits.h) on any [`ConfigError`].
//!
//! Secrets (`*.password`, or a `*.password_file` read at load) are held in [`Secret`], whose
//! `Debug` and `Display` print `***`, so they cannot leak through logs, `check` output or panics.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Exit code for configuration errors (`EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

/// The whole configuration, one struct per section of `pipeline.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub postgres: PostgresConfig,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub cassandra: CassandraConfig,
    pub dlq: DlqConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
}

/// How the source schedules its requests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Fetch without pause (within the rate budget) until `max_records`/`max_duration`.
    Continuous,
    /// Fetch one bounded run (`max_records`) every `interval`, like the old `@daily` DAG.
    Interval,
}

/// `[source]`: the randomuser.me API client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Whether the daemon fetches at all (false: only relay and consume).
    pub enabled: bool,
    /// API endpoint; pin a version with `/api/1.4/`.
    pub url: String,
    /// Users per request, 1..=5000 (the API silently turns larger values into 1).
    pub results: u32,
    /// Seed for reproducible pages; pages 1, 2, ... are fetched in order and resumed after a
    /// restart. Empty: random users, no paging.
    pub seed: String,
    /// First page to fetch when seeded (1..=10000).
    pub start_page: u32,
    /// Nationalities (`nat`), e.g. ["us", "gb"]. Empty: all.
    pub nat: Vec<String>,
    /// Fields to include (`inc`). Empty: all. `login` is always needed (record id).
    pub inc: Vec<String>,
    /// Fields to exclude (`exc`).
    pub exc: Vec<String>,
    /// Requests per second across all workers (token bucket).
    pub requests_per_second: f64,
    /// Concurrent requests in flight.
    pub concurrency: u32,
    /// Per-request timeout (connect + body), e.g. "10s".
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per request before the stage fails and is restarted by the supervisor.
    pub max_attempts: u32,
    /// Schedule: "continuous" or "interval".
    pub mode: ScheduleMode,
    /// Period of interval mode, e.g. "1d".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stop after this many users (per run in interval mode). 0: no limit.
    pub max_records: u64,
    /// Stop after this long (per run). "0s": no limit.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Byte budget of the source's pages, from the request until landing commits them: a
    /// request reserves its page's estimated size (body plus split output, at the last page's
    /// measured bytes per user) before it is sent, and the page keeps its split size (landed
    /// JSON and messages) until committed. The source waits when a page does not fit; a page
    /// larger than the whole budget takes all of it.
    pub buffer_bytes: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "https://randomuser.me/api/1.4/".into(),
            results: 100,
            seed: String::new(),
            start_page: 1,
            nat: Vec::new(),
            inc: Vec::new(),
            exc: Vec::new(),
            requests_per_second: 0.5,
            concurrency: 1,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            mode: ScheduleMode::Continuous,
            interval: Duration::from_secs(86_400),
            max_records: 0,
            max_duration: Duration::ZERO,
            buffer_bytes: 24 * 1024 * 1024,
        }
    }
}

/// `[postgres]`: landing tables and the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL without password, e.g. "postgres://pipeline@127.0.0.1:5432/pipeline".
    pub url: String,
    /// Password (prefer env `PIPELINE_POSTGRES__PASSWORD` or `password_file`).
    pub password: Option<Secret>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// libpq-style sslmode: disable, prefer, require, verify-ca, verify-full.
    pub sslmode: String,
    /// PEM file of the CA for verify-ca / verify-full (empty: public roots).
    pub sslrootcert: Option<PathBuf>,
    /// Pool size.
    pub max_connections: u32,
    /// Connect/acquire timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Run migrations at start-up.
    pub migrate_on_start: bool,
    /// Fetched batches buffered between source and landing.
    pub channel_capacity: usize,
    /// Rows the relay reads from the outbox per round.
    pub relay_batch_rows: u32,
    /// Pause of the relay when the outbox is empty.
    #[serde(with = "humantime_serde")]
    pub relay_idle_poll: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://pipeline@127.0.0.1:5432/pipeline".into(),
            password: None,
            password_file: None,
            sslmode: "prefer".into(),
            sslrootcert: None,
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            migrate_on_start: true,
            channel_capacity: 4,
            relay_batch_rows: 2000,
            relay_idle_poll: Duration::from_secs(1),
        }
    }
}

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
    /// Bootstrap brokers, "host:port".
    pub bootstrap: Vec<String>,
    /// Topic the relay produces to and the consumers read.
    pub topic: String,
    /// Create `topic` and `dlq.topic` when missing.
    pub create_topics: bool,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i16,
    /// Compression of produced batches.
    pub compression: CompressionKind,
    /// Deadline for one produce request (rskafka alone would retry forever).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Client id sent to the broker.
    pub client_id: String,
    /// Largest record value accepted from the broker or produced, in bytes.
    pub max_message_bytes: usize,
    /// "plaintext", "ssl", "sasl_plaintext" or "sasl_ssl".
    pub security_protocol: KafkaSecurity,
    /// "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (with a sasl_* protocol).
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name.
    pub sasl_username: String,
    /// SASL password (prefer env `PIPELINE_KAFKA__SASL_PASSWORD` or `sasl_password_file`).
    pub sasl_password: Option<Secret>,
    /// File holding the SASL password.
    pub sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the brokers' certificates (empty: public roots).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec!["127.0.0.1:9092".into()],
            topic: "users_created".into(),
            create_topics: true,
            partitions: 3,
            replication_factor: 1,
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
        }
    }
}

/// Where a partition starts when no offset is stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// `[consumer]`: partition assignment and fetching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Whether this daemon consumes at all.
    pub enabled: bool,
    /// This daemon's index in a static split, 0..instances.
    pub instance: u32,
    /// Number of daemons sharing the partitions (partition p goes to p % instances).
    pub instances: u32,
    /// Start offset when none is stored.
    pub start_from: StartFrom,
    /// Upper bound of bytes per fetch.
    pub fetch_max_bytes: i32,
    /// Broker wait when no data is available.
    #[serde(with = "humantime_serde")]
    pub fetch_max_wait: Duration,
    /// Fetched batches buffered between fetcher and writer of one partition.
    pub channel_capacity: usize,
    /// Byte budget of fetched-but-unwritten records, all partitions together (their heap
    /// size: keys, values, headers and their allocations). A fetcher reserves its fetch's
    /// estimated size (the last batch, at least `fetch_max_bytes`) before sending it and
    /// waits when that does not fit; a batch keeps its share until its rows are written.
    pub buffer_bytes: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            instance: 0,
            instances: 1,
            start_from: StartFrom::Earliest,
            fetch_max_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(100),
            channel_capacity: 2,
            buffer_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Cassandra write consistency.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyLevel {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

/// How the sink sends a batch of rows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// One prepared INSERT per row, `write_concurrency` in flight.
    Concurrent,
    /// UNLOGGED BATCH per chunk of `batch_rows`, `write_concurrency` batches in flight.
    UnloggedBatch,
}

/// `[cassandra]`: the sink and the offset store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CassandraConfig {
    /// Contact points, "host:port".
    pub contact_points: Vec<String>,
    /// Keyspace of the table and the offset store.
    pub keyspace: String,
    /// Table of users.
    pub table: String,
    /// Table of stored consumer offsets.
    pub offsets_table: String,
    /// Create keyspace and tables when missing.
    pub create_schema: bool,
    /// Replication of a created keyspace (SimpleStrategy factor).
    pub replication_factor: u32,
    /// Write consistency.
    pub consistency: ConsistencyLevel,
    /// "concurrent" or "unlogged_batch".
    pub write_mode: WriteMode,
    /// Writes (rows or batches) in flight per partition.
    pub write_concurrency: usize,
    /// Rows per unlogged batch.
    pub batch_rows: usize,
    /// Username for password auth (empty: no auth).
    pub username: String,
    /// Password (prefer env or `password_file`).
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Timeout of one write.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connect with TLS.
    pub tls: bool,
    /// PEM file of the CA that signed the nodes' certificates (empty: public roots).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        Self {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "spark_streams".into(),
            table: "created_users".into(),
            offsets_table: "pipeline_offsets".into(),
            create_schema: true,
            replication_factor: 1,
            consistency: ConsistencyLevel::LocalQuorum,
            // Measured: +20% e2e throughput and -15% daemon CPU over concurrent single-row
            // writes on the local stack (docs/performance.md).
            write_mode: WriteMode::UnloggedBatch,
            write_concurrency: 64,
            batch_rows: 20,
            username: String::new(),
            password: None,
            password_file: None,
            request_timeout: Duration::from_secs(10),
            tls: false,
            tls_ca_file: None,
        }
    }
}

/// `[dlq]`: the dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Topic for records that fail validation.
    pub topic: String,
    /// Prefix of the headers that explain a dead letter.
    pub header_prefix: String,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            topic: "users_created.dlq".into(),
            header_prefix: "pipeline.error.".into(),
        }
    }
}

/// `[http]`: metrics, health, the status page and `/api/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of /, /api/status, /metrics, /healthz, /readyz. Default
    /// "127.0.0.1:9898" (loopback).
    pub listen: SocketAddr,
    /// File holding the bearer token (first line, at least 16 characters) that `/` and
    /// `/api/status` require. Required when `listen` is not a loopback address, because the
    /// page shows dead-letter previews and the effective config. Default none.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file` at load; never serialized or printed.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
            token_file: None,
            token: None,
        }
    }
}

/// Shortest bearer token `http.token_file` may hold.
pub const MIN_TOKEN_LEN: usize = 16;

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "pretty" or "json".
    pub format: LogFormat,
    /// Filter directive, e.g. "info" or "pipeline=debug,info"; `RUST_LOG` wins when set.
    /// The client libraries (rskafka, cdrs_tokio, sqlx, hyper, ...) log at `warn` unless the
    /// directive names them (`info,rskafka=info`).
    pub level: String,
    /// Interval of the one-line progress summary logged at info while running (rates,
    /// backlog, lag); "0s" turns it off. Default "30s".
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
            progress_interval: Duration::from_secs(30),
        }
    }
}

/// `[runtime.backoff]`: the one backoff every stage and the supervisor use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor per attempt (> 1).
    pub multiplier: f64,
    /// Random spread, 0..=1: a delay d becomes d * (1 - jitter * U[0,1)).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

/// `[runtime]`: supervision and shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Time a graceful shutdown may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Restart backoff (and retry backoff inside stages).
    pub backoff: BackoffConfig,
    /// A stage that ran this long without failing gets its backoff reset.
    #[serde(with = "humantime_serde")]
    pub healthy_after: Duration,
    /// A connected stage whose loop has neither made progress nor reported idle (or a known
    /// wait) for this long is stalled: the systemd watchdog ping is withheld (so systemd
    /// restarts the daemon) and the status page says so. Longer than any request timeout.
    /// Default "60s".
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// Let the kernel back the heap with 2 MiB transparent huge pages. Default false: a huge
    /// page stays resident while any 4 KiB of it is in use, which held 43–98 MB of the
    /// daemon's RSS at peak (docs/performance.md).
    pub transparent_huge_pages: bool,
    /// How long mimalloc keeps freed memory before returning it to the kernel
    /// (`MIMALLOC_PURGE_DELAY` in the environment wins). mimalloc's own default is 1 s.
    #[serde(with = "humantime_serde")]
    pub allocator_purge_delay: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shutdown_deadline: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            healthy_after: Duration::from_secs(30),
            stall_after: Duration::from_secs(60),
            transparent_huge_pages: false,
            allocator_purge_delay: Duration::from_millis(0),
        }
    }
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
    fn key(key: &str, message: impl Into<String>) -> Self {
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
}

const SECTIONS: &[&str] = &[
    "source",
    "postgres",
    "kafka",
    "consumer",
    "cassandra",
    "dlq",
    "http",
    "log",
    "runtime",
];

impl Config {
    /// Loads `path` (which must exist unless `allow_missing`), then the environment, validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key for unknown keys, wrong types, out-of-range values,
    /// unreadable `*_file` keys and contradictory combinations.
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
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .merge(env_figment);
        let mut config: Config = figment.extract().map_err(figment_error)?;
        config.resolve_secret_files()?;
        config.validate()?;
        Ok(config)
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
            "http.token_file",
            &self.http.token_file,
            &mut self.http.token,
        )?;
        Ok(())
    }

    /// Checks ranges and combinations. Called by [`Config::load`].
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.source;
        let url = reqwest::Url::parse(&s.url)
            .map_err(|e| ConfigError::key("source.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::key(
                "source.url",
                "scheme must be http or https",
            ));
        }
        if !(1..=5000).contains(&s.results) {
            return Err(ConfigError::key(
                "source.results",
                format!(
                    "{} is out of range 1..=5000 (the API silently answers 1 user above 5000)",
                    s.results
                ),
            ));
        }
        if !(1..=10_000).contains(&s.start_page) {
            return Err(ConfigError::key(
                "source.start_page",
                "must be in 1..=10000",
            ));
        }
        if !(s.requests_per_second.is_finite() && s.requests_per_second > 0.0) {
            return Err(ConfigError::key(
                "source.requests_per_second",
                "must be a positive number",
            ));
        }
        if url.host_str().is_some_and(|h| h.ends_with("randomuser.me")) {
            // The public API allows 20,000 users per IP per 5 minutes, then answers 429.
            let per_5min = s.requests_per_second * f64::from(s.results) * 300.0;
            if per_5min > 20_000.0 {
                return Err(ConfigError::key(
                    "source.requests_per_second",
                    format!(
                        "{} req/s x {} results = {per_5min:.0} users per 5 minutes, over \
                         randomuser.me's limit of 20000; lower requests_per_second or results",
                        s.requests_per_second, s.results
                    ),
                ));
            }
        }
        if !(1..=256).contains(&s.concurrency) {
            return Err(ConfigError::key("source.concurrency", "must be in 1..=256"));
        }
        check_buffer_bytes("source.buffer_bytes", s.buffer_bytes)?;
        if s.timeout.is_zero() {
            return Err(ConfigError::key("source.timeout", "must be > 0"));
        }
        if s.max_attempts == 0 {
            return Err(ConfigError::key("source.max_attempts", "must be >= 1"));
        }
        if s.mode == ScheduleMode::Interval {
            if s.interval.is_zero() {
                return Err(ConfigError::key(
                    "source.interval",
                    "must be > 0 in interval mode",
                ));
            }
            if s.max_records == 0 && s.max_duration.is_zero() {
                return Err(ConfigError::key(
                    "source.max_records",
                    "interval mode needs a bounded run: set max_records or max_duration",
                ));
            }
        }
        const FIELDS: &[&str] = &[
            "gender",
            "name",
            "location",
            "email",
            "login",
            "registered",
            "dob",
            "phone",
            "cell",
            "id",
            "picture",
            "nat",
        ];
        for (key, list) in [("source.inc", &s.inc), ("source.exc", &s.exc)] {
            if let Some(bad) = list.iter().find(|f| !FIELDS.contains(&f.as_str())) {
                return Err(ConfigError::key(
                    key,
                    format!(
                        "unknown field `{bad}`, expected one of {}",
                        FIELDS.join(", ")
                    ),
                ));
            }
        }
        if (!s.inc.is_empty() && !s.inc.iter().any(|f| f == "login"))
            || s.exc.iter().any(|f| f == "login")
        {
            return Err(ConfigError::key(
                "source.inc",
                "`login` must be fetched: login.uuid is the record id",
            ));
        }
        const NATS: &[&str] = &[
            "AU", "BR", "CA", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IN", "IR", "MX",
            "NL", "NO", "NZ", "RS", "TR", "UA", "US",
        ];
        if let Some(bad) = s
            .nat
            .iter()
            .find(|n| !NATS.contains(&n.to_ascii_uppercase().as_str()))
        {
            return Err(ConfigError::key(
                "source.nat",
                format!(
                    "unknown nationality `{bad}`, expected some of {}",
                    NATS.join(" ")
                ),
            ));
        }

        let p = &self.postgres;
        let pg_url = reqwest::Url::parse(&p.url)
            .map_err(|e| ConfigError::key("postgres.url", format!("not a URL: {e}")))?;
        if !matches!(pg_url.scheme(), "postgres" | "postgresql") {
            return Err(ConfigError::key(
                "postgres.url",
                "scheme must be postgres:// or postgresql://",
            ));
        }
        if pg_url.password().is_some() {
            return Err(ConfigError::key(
                "postgres.url",
                "must not contain a password; use postgres.password or postgres.password_file",
            ));
        }
        if !matches!(
            p.sslmode.as_str(),
            "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
        ) {
            return Err(ConfigError::key(
                "postgres.sslmode",
                "expected disable, allow, prefer, require, verify-ca or verify-full",
            ));
        }
        if !(1..=256).contains(&p.max_connections) {
            return Err(ConfigError::key(
                "postgres.max_connections",
                "must be in 1..=256",
            ));
        }
        if p.channel_capacity == 0 {
            return Err(ConfigError::key(
                "postgres.channel_capacity",
                "must be >= 1",
            ));
        }
        if p.relay_idle_poll < Duration::from_millis(1)
            || p.relay_idle_poll > Duration::from_secs(60)
        {
            return Err(ConfigError::key(
                "postgres.relay_idle_poll",
                "must be in 1ms..=60s",
            ));
        }
        if !(1..=100_000).contains(&p.relay_batch_rows) {
            return Err(ConfigError::key(
                "postgres.relay_batch_rows",
                "must be in 1..=100000",
            ));
        }

        let k = &self.kafka;
        if k.bootstrap.is_empty() {
            return Err(ConfigError::key(
                "kafka.bootstrap",
                "needs at least one host:port",
            ));
        }
        check_host_ports("kafka.bootstrap", &k.bootstrap)?;
        check_topic("kafka.topic", &k.topic)?;
        check_topic("dlq.topic", &self.dlq.topic)?;
        if k.topic == self.dlq.topic {
            return Err(ConfigError::key(
                "dlq.topic",
                "must differ from kafka.topic (dead letters would be consumed again)",
            ));
        }
        if !(1..=10_000).contains(&k.partitions) {
            return Err(ConfigError::key("kafka.partitions", "must be in 1..=10000"));
        }
        if k.replication_factor < 1 {
            return Err(ConfigError::key("kafka.replication_factor", "must be >= 1"));
        }
        if k.request_timeout.is_zero() {
            return Err(ConfigError::key("kafka.request_timeout", "must be > 0"));
        }
        if !(1024..=100 * 1024 * 1024).contains(&k.max_message_bytes) {
            return Err(ConfigError::key(
                "kafka.max_message_bytes",
                "must be in 1024..=104857600",
            ));
        }

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
        for (key, file) in [
            ("kafka.tls_ca_file", &k.tls_ca_file),
            ("cassandra.tls_ca_file", &self.cassandra.tls_ca_file),
            ("postgres.sslrootcert", &self.postgres.sslrootcert),
        ] {
            if let Some(path) = file
                && !path.is_file()
            {
                return Err(ConfigError::key(
                    key,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }

        let c = &self.consumer;
        if c.instances == 0 {
            return Err(ConfigError::key("consumer.instances", "must be >= 1"));
        }
        if c.instance >= c.instances {
            return Err(ConfigError::key(
                "consumer.instance",
                format!(
                    "{} must be < consumer.instances ({})",
                    c.instance, c.instances
                ),
            ));
        }
        if c.fetch_max_bytes < 1024 {
            return Err(ConfigError::key(
                "consumer.fetch_max_bytes",
                "must be >= 1024",
            ));
        }
        if c.fetch_max_wait > Duration::from_secs(30) {
            return Err(ConfigError::key(
                "consumer.fetch_max_wait",
                "must be <= 30s",
            ));
        }
        if c.channel_capacity == 0 {
            return Err(ConfigError::key(
                "consumer.channel_capacity",
                "must be >= 1",
            ));
        }
        check_buffer_bytes("consumer.buffer_bytes", c.buffer_bytes)?;

        let cs = &self.cassandra;
        if cs.contact_points.is_empty() {
            return Err(ConfigError::key(
                "cassandra.contact_points",
                "needs at least one host:port",
            ));
        }
        check_host_ports("cassandra.contact_points", &cs.contact_points)?;
        for (key, name) in [
            ("cassandra.keyspace", &cs.keyspace),
            ("cassandra.table", &cs.table),
            ("cassandra.offsets_table", &cs.offsets_table),
        ] {
            check_cql_identifier(key, name)?;
        }
        if cs.table == cs.offsets_table {
            return Err(ConfigError::key(
                "cassandra.offsets_table",
                "must differ from cassandra.table",
            ));
        }
        if cs.replication_factor == 0 {
            return Err(ConfigError::key(
                "cassandra.replication_factor",
                "must be >= 1",
            ));
        }
        if !(1..=4096).contains(&cs.write_concurrency) {
            return Err(ConfigError::key(
                "cassandra.write_concurrency",
                "must be in 1..=4096",
            ));
        }
        if !(1..=1000).contains(&cs.batch_rows) {
            return Err(ConfigError::key(
                "cassandra.batch_rows",
                "must be in 1..=1000",
            ));
        }
        if cs.password.is_some() && cs.username.is_empty() {
            return Err(ConfigError::key(
                "cassandra.username",
                "a password is set but no username",
            ));
        }
        if cs.request_timeout.is_zero() {
            return Err(ConfigError::key("cassandra.request_timeout", "must be > 0"));
        }

        if self.dlq.header_prefix.is_empty() {
            return Err(ConfigError::key("dlq.header_prefix", "must not be empty"));
        }
        if let Some(token) = &self.http.token
            && token.expose().chars().count() < MIN_TOKEN_LEN
        {
            return Err(ConfigError::key(
                "http.token_file",
                format!("the token must be at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        if !self.http.listen.ip().is_loopback() && self.http.token.is_none() {
            return Err(ConfigError::key(
                "http.token_file",
                format!(
                    "required when http.listen ({}) is not a loopback address: the status page \
                     and /api/status show dead letters and the config (e.g. `openssl rand -hex 24 \
                     > /etc/pipeline/http.token`)",
                    self.http.listen
                ),
            ));
        }
        if !self.log.progress_interval.is_zero()
            && self.log.progress_interval < Duration::from_secs(1)
        {
            return Err(ConfigError::key(
                "log.progress_interval",
                "must be 0s (off) or at least 1s",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::key(
                "log.level",
                format!("`{}` is not a level or filter directive", self.log.level),
            ));
        }

        let b = &self.runtime.backoff;
        if b.initial.is_zero() {
            return Err(ConfigError::key("runtime.backoff.initial", "must be > 0"));
        }
        if b.max < b.initial {
            return Err(ConfigError::key(
                "runtime.backoff.max",
                "must be >= runtime.backoff.initial",
            ));
        }
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(ConfigError::key(
                "runtime.backoff.multiplier",
                "must be >= 1.0",
            ));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(ConfigError::key(
                "runtime.backoff.jitter",
                "must be in 0.0..=1.0",
            ));
        }
        if self.runtime.stall_after < Duration::from_secs(1) {
            return Err(ConfigError::key(
                "runtime.stall_after",
                "must be at least 1s",
            ));
        }
        if self.runtime.allocator_purge_delay > Duration::from_secs(60) {
            return Err(ConfigError::key(
                "runtime.allocator_purge_delay",
                "must be <= 60s (memory freed is kept this long before it is returned)",
            ));
        }
        if self.runtime.shutdown_deadline.is_zero() {
            return Err(ConfigError::key("runtime.shutdown_deadline", "must be > 0"));
        }
        if !self.source.enabled && !self.consumer.enabled && self.postgres.relay_batch_rows == 0 {
            return Err(ConfigError::key("source.enabled", "nothing to run"));
        }
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
        ]
        .into_iter()
        .flatten()
        {
            *secret = Secret::new("***");
        }
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
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

fn check_host_ports(key: &str, list: &[String]) -> Result<(), ConfigError> {
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

fn check_topic(key: &str, topic: &str) -> Result<(), ConfigError> {
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

fn check_cql_identifier(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("`{name}` is not a CQL identifier ([a-zA-Z][a-zA-Z0-9_]*, at most 48 chars)"),
        ))
    }
}

/// A byte budget between stages: 64 KiB ..= 16 GiB.
fn check_buffer_bytes(key: &str, value: u64) -> Result<(), ConfigError> {
    if (64 * 1024..=16 * 1024 * 1024 * 1024).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::key(key, "must be in 65536..=17179869184"))
    }
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
}
