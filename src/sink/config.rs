//! `[cassandra]`: the sink's cluster, names, writes and the offset store.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigError, Secret, check_at_least, check_file, check_host_ports, check_non_zero, check_range,
};

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
    /// Contact points, "host:port", at least one. Default ["127.0.0.1:9042"].
    pub contact_points: Vec<String>,
    /// Keyspace of the table and the offset store (a CQL identifier). Default
    /// "spark_streams".
    pub keyspace: String,
    /// Table of users (a CQL identifier). Default "created_users".
    pub table: String,
    /// Table of stored consumer offsets (a CQL identifier, not `table`). Default
    /// "pipeline_offsets".
    pub offsets_table: String,
    /// Create keyspace and tables when missing. Default true.
    pub create_schema: bool,
    /// Replication of a created keyspace (SimpleStrategy factor), >= 1. Default 1.
    pub replication_factor: u32,
    /// Write consistency: any, one, two, three, quorum, all, local_quorum, each_quorum,
    /// local_one. Default "local_quorum".
    pub consistency: ConsistencyLevel,
    /// "concurrent" or "unlogged_batch". Default "unlogged_batch".
    pub write_mode: WriteMode,
    /// Writes (rows or batches) in flight per partition, 1..=4096. Default 64.
    pub write_concurrency: usize,
    /// Rows per unlogged batch, 1..=1000. Default 20.
    pub batch_rows: usize,
    /// Username for password auth (empty: no auth). Default "".
    pub username: String,
    /// Password (prefer env or `password_file`; needs `username`). Default none.
    pub password: Option<Secret>,
    /// File holding the password (first line), read at load. Default none.
    pub password_file: Option<PathBuf>,
    /// Timeout of one write, > 0. Default "10s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After this long without an answer, an idempotent request (every write and offset
    /// read is) is also sent to the next node, twice at most; the first answer wins. A node
    /// that stops answering without closing its connections (a long GC pause, SIGSTOP, a
    /// network partition) then costs this delay instead of `request_timeout`. "0s": off.
    /// Default "1s".
    #[serde(with = "humantime_serde")]
    pub speculative_delay: Duration,
    /// Connect with TLS. Default false.
    pub tls: bool,
    /// PEM file of the CA that signed the nodes' certificates (unset: public roots).
    /// Default none.
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
            speculative_delay: Duration::from_secs(1),
            tls: false,
            tls_ca_file: None,
        }
    }
}

impl CassandraConfig {
    /// Checks `[cassandra]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let cs = self;
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
        check_at_least("cassandra.replication_factor", cs.replication_factor, 1)?;
        check_range(
            "cassandra.write_concurrency",
            cs.write_concurrency,
            1..=4096,
        )?;
        check_range("cassandra.batch_rows", cs.batch_rows, 1..=1000)?;
        if cs.password.is_some() && cs.username.is_empty() {
            return Err(ConfigError::key(
                "cassandra.username",
                "a password is set but no username",
            ));
        }
        check_non_zero("cassandra.request_timeout", cs.request_timeout)?;
        check_file("cassandra.tls_ca_file", cs.tls_ca_file.as_ref())?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[cassandra]\nwrite_mode = \"concurrent\"\nconsistency = \"one\"\n")
            .expect("valid");
        assert_eq!(config.cassandra.write_mode, super::WriteMode::Concurrent);
        assert_eq!(config.cassandra.consistency, super::ConsistencyLevel::One);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[cassandra]\ncontact_points = []\n",
                "cassandra.contact_points",
            ),
            (
                "[cassandra]\noffsets_table = \"created_users\"\n",
                "cassandra.offsets_table",
            ),
            (
                "[cassandra]\nreplication_factor = 0\n",
                "cassandra.replication_factor",
            ),
            ("[cassandra]\nbatch_rows = 1001\n", "cassandra.batch_rows"),
            ("[cassandra]\npassword = \"x\"\n", "cassandra.username"),
            (
                "[cassandra]\nrequest_timeout = \"0s\"\n",
                "cassandra.request_timeout",
            ),
            (
                "[cassandra]\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
                "cassandra.tls_ca_file",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
