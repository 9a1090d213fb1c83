//! # pipeline
//!
//! One supervised daemon that replaces an Airflow + Kafka + Spark + Cassandra demo stack:
//!
//! ```text
//!  randomuser API ──► source ──► landing (Postgres: users + outbox) ──► relay ──► Kafka
//!  (or emulator)      rate limit,  one transaction per fetched page       acked      users_created
//!                     retries      credentials stripped                   batches    key = user id
//!                                                                                      │
//!  Cassandra ◄── sink ◄── validate ◄── per-partition consumers ◄──────────────────────┘
//!  created_users  idempotent   bad record ──► users_created.dlq (reason headers)
//!  + offsets      upserts, offsets stored after the write
//! ```
//!
//! Delivery is effectively once: at-least-once transport everywhere, and idempotent writes
//! (keyed by `login.uuid`, `USING TIMESTAMP` of the fetch time) at the end.
//!
//! # Layout
//! - [`config`]: `pipeline.toml` + `PIPELINE_*` env, validated once; each stage's section
//!   lives in that stage's `config.rs` (re-exported here).
//! - [`model`]: the user record, message format, validation, PII rules (pure).
//! - [`source`]: the HTTP client for the user API (rate limit, retries, schedule).
//! - [`emulator`]: a randomuser-compatible server with fault injection (the `randomuser`
//!   crate's, `crates/randomuser`, which also holds the API's types and limits; feature
//!   `emulator`, on by default).
//! - [`landing`]: Postgres landing tables and the transactional outbox.
//! - [`outbox`]: the outbox's read, acknowledge and backlog, wake-ups.
//! - [`relay`]: outbox → Kafka.
//! - [`lease`]: the relay and source leases (one holder per database among daemons).
//! - [`kafka`]: client construction, topics (with their configs), partitioning, the cluster view.
//! - [`registry`]: the value schema in a Confluent-compatible schema registry; `json_sr`
//!   framing.
//! - [`consume`]: per-partition consumers, dead letters, the group member held across restarts.
//! - [`group`]: Kafka consumer groups (membership, sticky assignment, offset commits).
//! - [`dlq`]: dead letters: the record with its reason headers, and the topic's settings.
//! - [`sink`]: Cassandra schema, writes, the offset store, the nodes as `check` reports them.
//! - [`replay`]: `pipeline replay --from landing|kafka` and `pipeline dlq redrive`.
//! - [`supervise`]: restart with backoff, fatal stop, readiness.
//! - [`telemetry`]: metrics, HTTP endpoints, the status page and `/api/status`
//!   (`telemetry::status`, also `pipeline status` / `pipeline top`), logs, systemd notify.
//! - [`tls`]: rustls client configuration for Kafka and Cassandra.
//! - [`budget`]: byte budgets of the buffers between stages.
//! - [`memory`]: transparent huge pages and the allocator's purge delay, set at start-up.
//! - [`shutdown`]: SIGTERM/SIGINT handling; [`exit`]: the process's exit codes.
//! - [`app`]: wires the stages together; `run`, `check`, `migrate`.

pub mod app;
pub mod budget;
pub mod config;
pub mod consume;
pub mod dlq;
pub mod exit;
pub mod group;
pub mod kafka;
pub mod landing;
pub mod lease;
pub mod memory;
pub mod model;
pub mod outbox;
pub mod registry;
pub mod relay;
pub mod replay;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod supervise;
pub mod telemetry;
pub mod tls;

/// The `randomuser` crate's emulator. Also in unit tests without the feature: they draw users
/// from it (the dev-dependency turns it on in `randomuser`).
#[cfg(any(feature = "emulator", test))]
pub use randomuser::emulator;
