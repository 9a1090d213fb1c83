//! Cassandra: schema, idempotent row writes, and the offset store.
//!
//! Replays are harmless by construction. A row is an upsert keyed by the user id, with every
//! column bound from the Kafka record and written `USING TIMESTAMP` of the record's fetch time
//! (microseconds). Writing the same record twice therefore produces the same cells with the
//! same write timestamps: byte-identical state, whatever the order or number of replays.
//! Offsets are stored (`pipeline_offsets`) only *after* every row and dead letter of a batch
//! was acknowledged, so a crash re-delivers from the last stored offset and at worst repeats
//! writes that were already made.
//!
//! The driver sits behind [`RowSink`] so it can be swapped (see docs/performance.md).

pub(crate) mod config;

use std::future::Future;
use std::sync::Arc;

use cdrs_tokio::authenticators::{
    NoneAuthenticatorProvider, SaslAuthenticatorProvider, StaticPasswordAuthenticatorProvider,
};
use cdrs_tokio::cluster::session::{
    RustlsSessionBuilder, Session, SessionBuilder, TcpSessionBuilder,
};
use cdrs_tokio::cluster::{
    ConnectionManager, KeyspaceHolder, NodeAddress, NodeRustlsConfigBuilder, NodeTcpConfigBuilder,
    RustlsConnectionManager, TcpConnectionManager,
};
use cdrs_tokio::consistency::Consistency;
use cdrs_tokio::frame::message_batch::BatchType;
use cdrs_tokio::frame::{Envelope, Version};
use cdrs_tokio::frame_encoding::ProtocolFrameEncodingFactory;
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::query::QueryBatch;
use cdrs_tokio::query::{BatchQueryBuilder, PreparedQuery, QueryValues};
use cdrs_tokio::statement::StatementParams;
use cdrs_tokio::statement::StatementParamsBuilder;
use cdrs_tokio::transport::TransportRustls;
use cdrs_tokio::transport::TransportTcp;
use cdrs_tokio::types::IntoRustByName;
use cdrs_tokio::types::value::Value;
use futures::StreamExt;
use rustls::pki_types::ServerName;

use crate::config::{CassandraConfig, ConsistencyLevel, WriteMode};
use crate::model::UserRow;
use crate::supervise::StageError;

type TcpSession = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;
type TlsSession = Session<
    TransportRustls,
    RustlsConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportRustls, RustlsConnectionManager>,
>;

/// A cdrs session over plain TCP or TLS; the same calls either way.
enum CdrsSession {
    Tcp(TcpSession),
    Tls(TlsSession),
}

impl CdrsSession {
    async fn exec_with_params(
        &self,
        prepared: &PreparedQuery,
        params: &StatementParams,
    ) -> cdrs_tokio::error::Result<Envelope> {
        match self {
            Self::Tcp(s) => s.exec_with_params(prepared, params).await,
            Self::Tls(s) => s.exec_with_params(prepared, params).await,
        }
    }

    async fn batch(&self, batch: QueryBatch) -> cdrs_tokio::error::Result<Envelope> {
        match self {
            Self::Tcp(s) => s.batch(batch).await,
            Self::Tls(s) => s.batch(batch).await,
        }
    }

    async fn prepare(&self, cql: String) -> cdrs_tokio::error::Result<PreparedQuery> {
        match self {
            Self::Tcp(s) => s.prepare(cql).await,
            Self::Tls(s) => s.prepare(cql).await,
        }
    }

    async fn query(&self, cql: String) -> cdrs_tokio::error::Result<Envelope> {
        match self {
            Self::Tcp(s) => s.query(cql).await,
            Self::Tls(s) => s.query(cql).await,
        }
    }
}

/// Where rows and offsets go.
pub trait RowSink: Send + Sync + 'static {
    /// Writes rows; returns when every one is acknowledged.
    /// Takes the rows by value: their strings move into the request without a copy.
    fn write_rows(&self, rows: Vec<UserRow>)
    -> impl Future<Output = Result<(), StageError>> + Send;
    /// The stored next offset of a partition.
    fn load_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, StageError>> + Send;
    /// Stores the next offset to process of a partition.
    fn store_offset(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> impl Future<Output = Result<(), StageError>> + Send;
}

/// CQL of the users table: the old stack's columns plus `dob` and `fetched_at`.
pub fn users_table_cql(keyspace: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{table} (\
         id uuid PRIMARY KEY, first_name text, last_name text, gender text, address text, \
         post_code text, email text, username text, dob text, registered_date text, \
         phone text, picture text, fetched_at timestamp)"
    )
}

fn consistency(level: ConsistencyLevel) -> Consistency {
    match level {
        ConsistencyLevel::Any => Consistency::Any,
        ConsistencyLevel::One => Consistency::One,
        ConsistencyLevel::Two => Consistency::Two,
        ConsistencyLevel::Three => Consistency::Three,
        ConsistencyLevel::Quorum => Consistency::Quorum,
        ConsistencyLevel::All => Consistency::All,
        ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
        ConsistencyLevel::EachQuorum => Consistency::EachQuorum,
        ConsistencyLevel::LocalOne => Consistency::LocalOne,
    }
}

/// Classifies a driver error: authentication and schema problems are fatal.
pub fn cql_error(context: &str, e: &cdrs_tokio::error::Error) -> StageError {
    let text = e.to_string();
    let fatal = text.contains("AuthenticationError")
        || text.contains("Unauthorized")
        || text.contains("Bad credentials")
        || text.contains("Undefined column")
        || text.contains("unconfigured table");
    if fatal {
        StageError::fatal(format!("cassandra {context}: {text}"))
    } else {
        StageError::retriable(format!("cassandra {context}: {text}"))
    }
}

/// One authenticated connection to the first contact point, then closed.
async fn probe(
    config: &CassandraConfig,
    auth: Arc<dyn SaslAuthenticatorProvider + Send + Sync>,
    tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
) -> Result<(), StageError> {
    let Some(first) = config.contact_points.first() else {
        return Err(StageError::fatal("cassandra.contact_points is empty"));
    };
    let addr = tokio::net::lookup_host(first.as_str())
        .await
        .map_err(|e| {
            StageError::retriable(format!("cassandra connect: cannot resolve {first}: {e}"))
        })?
        .next()
        .ok_or_else(|| {
            StageError::retriable(format!("cassandra connect: {first} has no address"))
        })?;
    let keyspace = Arc::new(KeyspaceHolder::new(tokio::sync::watch::channel(None).0));
    let encoder = Box::new(ProtocolFrameEncodingFactory);
    let result = match tls {
        Some((server_name, tls)) => RustlsConnectionManager::new(
            server_name,
            auth,
            tls,
            keyspace,
            encoder,
            cdrs_tokio::compression::Compression::None,
            64 * 1024,
            true,
            Version::V4,
        )
        .connection(None, None, addr)
        .await
        .map(drop),
        None => TcpConnectionManager::new(
            auth,
            keyspace,
            encoder,
            cdrs_tokio::compression::Compression::None,
            64 * 1024,
            true,
            Version::V4,
        )
        .connection(None, None, addr)
        .await
        .map(drop),
    };
    result.map_err(|e| session_error(&e))
}

fn session_error(e: &dyn std::fmt::Display) -> StageError {
    let text = e.to_string();
    if text.contains("Authentication") || text.contains("password") || text.contains("credentials")
    {
        StageError::fatal(format!("cassandra session: {text}"))
    } else {
        StageError::retriable(format!("cassandra session: {text}"))
    }
}

/// The cdrs-tokio sink.
pub struct CassandraSink {
    session: Arc<CdrsSession>,
    insert: PreparedQuery,
    store_offset: PreparedQuery,
    load_offset: PreparedQuery,
    config: CassandraConfig,
}

impl CassandraSink {
    /// Connects, creates the schema when allowed, prepares statements.
    ///
    /// # Errors
    /// Retriable when Cassandra is unreachable; fatal on auth or schema errors.
    pub async fn connect(config: &CassandraConfig) -> Result<Self, StageError> {
        let contact_points: Vec<NodeAddress> = config
            .contact_points
            .iter()
            .map(|c| c.as_str().into())
            .collect();
        let auth: Arc<dyn SaslAuthenticatorProvider + Send + Sync> = match &config.password {
            Some(password) => Arc::new(StaticPasswordAuthenticatorProvider::new(
                &config.username,
                &password.expose().to_string(),
            )),
            None => Arc::new(NoneAuthenticatorProvider),
        };
        let timeout = config.request_timeout;
        let timed_out = |what: &str| StageError::retriable(format!("cassandra {what}: timed out"));
        // First one bare connection (STARTUP + authentication) to the first contact point: a
        // refused password or a TLS mismatch then surfaces at once as a fatal error; a cdrs
        // session would keep reconnecting until our timeout, hiding the cause.
        let tls = if config.tls {
            let host = config
                .contact_points
                .first()
                .and_then(|c| c.rsplit_once(':'))
                .map_or("localhost", |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let server_name = ServerName::try_from(host.clone()).map_err(|e| {
                StageError::fatal(format!(
                    "cassandra.contact_points: `{host}` is not a TLS server name: {e}"
                ))
            })?;
            let tls =
                crate::tls::client_config(config.tls_ca_file.as_deref(), "cassandra.tls_ca_file")?;
            Some((server_name, tls))
        } else {
            None
        };
        let build = || {
            let contact_points = contact_points.clone();
            let auth = Arc::clone(&auth);
            let tls = tls.clone();
            async move {
                let result = match tls {
                    Some((server_name, tls)) => {
                        let node_config = NodeRustlsConfigBuilder::new(server_name, tls)
                            .with_contact_points(contact_points)
                            .with_authenticator_provider(auth)
                            .build()
                            .await
                            .map_err(|e| cql_error("connect", &e))?;
                        RustlsSessionBuilder::new(
                            RoundRobinLoadBalancingStrategy::new(),
                            node_config,
                        )
                        .build()
                        .await
                        .map(CdrsSession::Tls)
                    }
                    None => {
                        let node_config = NodeTcpConfigBuilder::new()
                            .with_contact_points(contact_points)
                            .with_authenticator_provider(auth)
                            .build()
                            .await
                            .map_err(|e| cql_error("connect", &e))?;
                        TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), node_config)
                            .build()
                            .await
                            .map(CdrsSession::Tcp)
                    }
                };
                result.map_err(|e| session_error(&e))
            }
        };
        tokio::time::timeout(timeout, probe(config, Arc::clone(&auth), tls.clone()))
            .await
            .map_err(|_| timed_out("connect"))??;
        let session = tokio::time::timeout(timeout, build())
            .await
            .map_err(|_| timed_out("session"))??;
        let session = Arc::new(session);
        let ks = &config.keyspace;
        if config.create_schema {
            for cql in [
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                    config.replication_factor
                ),
                users_table_cql(ks, &config.table),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.{} (topic text, partition int, \
                     next_offset bigint, updated_at timestamp, PRIMARY KEY ((topic), partition))",
                    config.offsets_table
                ),
            ] {
                session
                    .query(cql)
                    .await
                    .map_err(|e| cql_error("create schema", &e))?;
            }
        }
        let prepare = |cql: String| {
            let session = Arc::clone(&session);
            async move {
                session
                    .prepare(cql)
                    .await
                    .map_err(|e| cql_error("prepare", &e))
            }
        };
        let insert = prepare(format!(
            "INSERT INTO {ks}.{} (id, first_name, last_name, gender, address, post_code, email, \
             username, dob, registered_date, phone, picture, fetched_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            config.table
        ))
        .await?;
        let store_offset = prepare(format!(
            "INSERT INTO {ks}.{} (topic, partition, next_offset, updated_at) VALUES (?, ?, ?, ?)",
            config.offsets_table
        ))
        .await?;
        let load_offset = prepare(format!(
            "SELECT next_offset FROM {ks}.{} WHERE topic = ? AND partition = ?",
            config.offsets_table
        ))
        .await?;
        Ok(Self {
            session,
            insert,
            store_offset,
            load_offset,
            config: config.clone(),
        })
    }

    fn row_values(row: UserRow) -> QueryValues {
        QueryValues::SimpleValues(vec![
            Value::from(row.id),
            Value::from(row.first_name),
            Value::from(row.last_name),
            Value::from(row.gender),
            Value::from(row.address),
            Value::from(row.post_code),
            Value::from(row.email),
            Value::from(row.username),
            Value::from(row.dob),
            Value::from(row.registered_date),
            Value::from(row.phone),
            Value::from(row.picture),
            Value::from(row.fetched_at_ms),
            // Write timestamp in microseconds: the fetch time, identical on every replay.
            Value::from(row.fetched_at_ms.saturating_mul(1000)),
        ])
    }

    fn params(&self, values: QueryValues) -> cdrs_tokio::statement::StatementParams {
        StatementParamsBuilder::new()
            .with_values(values)
            .with_consistency(consistency(self.config.consistency))
            .idempotent(true)
            .build()
    }

    async fn exec(
        &self,
        prepared: &PreparedQuery,
        values: QueryValues,
        what: &str,
    ) -> Result<(), StageError> {
        let params = self.params(values);
        tokio::time::timeout(
            self.config.request_timeout,
            self.session.exec_with_params(prepared, &params),
        )
        .await
        .map_err(|_| StageError::retriable(format!("cassandra {what}: timed out")))?
        .map(|_| ())
        .map_err(|e| cql_error(what, &e))
    }
}

impl CassandraSink {
    async fn exec_batch(&self, chunk: Vec<QueryValues>) -> Result<(), StageError> {
        let mut batch = BatchQueryBuilder::new()
            .with_batch_type(BatchType::Unlogged)
            .with_consistency(consistency(self.config.consistency));
        for values in chunk {
            batch = batch.add_query_prepared(&self.insert, values);
        }
        let batch = batch
            .build()
            .map_err(|e| StageError::retriable(format!("cassandra batch: {e}")))?;
        tokio::time::timeout(self.config.request_timeout, self.session.batch(batch))
            .await
            .map_err(|_| StageError::retriable("cassandra batch: timed out"))?
            .map(|_| ())
            .map_err(|e| cql_error("batch", &e))
    }
}

impl RowSink for CassandraSink {
    async fn write_rows(&self, rows: Vec<UserRow>) -> Result<(), StageError> {
        let values: Vec<QueryValues> = rows.into_iter().map(Self::row_values).collect();
        match self.config.write_mode {
            WriteMode::Concurrent => {
                let mut writes = futures::stream::iter(values)
                    .map(|v| self.exec(&self.insert, v, "insert"))
                    .buffer_unordered(self.config.write_concurrency);
                while let Some(result) = writes.next().await {
                    result?;
                }
                Ok(())
            }
            WriteMode::UnloggedBatch => {
                let mut chunks: Vec<Vec<QueryValues>> = Vec::new();
                let mut iter = values.into_iter().peekable();
                while iter.peek().is_some() {
                    chunks.push(iter.by_ref().take(self.config.batch_rows).collect());
                }
                let mut writes = futures::stream::iter(chunks)
                    .map(|chunk| self.exec_batch(chunk))
                    .buffer_unordered(self.config.write_concurrency);
                while let Some(result) = writes.next().await {
                    result?;
                }
                Ok(())
            }
        }
    }

    async fn load_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StageError> {
        let params = StatementParamsBuilder::new()
            .with_values(QueryValues::SimpleValues(vec![
                Value::from(topic.to_string()),
                Value::from(partition),
            ]))
            .with_consistency(consistency(self.config.consistency))
            .idempotent(true)
            .build();
        let envelope = tokio::time::timeout(
            self.config.request_timeout,
            self.session.exec_with_params(&self.load_offset, &params),
        )
        .await
        .map_err(|_| StageError::retriable("cassandra load offset: timed out"))?
        .map_err(|e| cql_error("load offset", &e))?;
        // Anything but a rows answer is an error, not "no offset": with `start_from = latest`
        // a missing offset would skip data.
        let rows = envelope
            .response_body()
            .map_err(|e| cql_error("load offset", &e))?
            .into_rows()
            .ok_or_else(|| {
                StageError::retriable(format!(
                    "cassandra load offset of {topic}/{partition}: the answer has no rows section"
                ))
            })?;
        match rows.first() {
            None => Ok(None),
            Some(row) => row
                .get_by_name("next_offset")
                .map_err(|e| cql_error("load offset", &e)),
        }
    }

    async fn store_offset(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), StageError> {
        let values = QueryValues::SimpleValues(vec![
            Value::from(topic.to_string()),
            Value::from(partition),
            Value::from(next_offset),
            Value::from(chrono::Utc::now().timestamp_millis()),
        ]);
        self.exec(&self.store_offset, values, "store offset").await
    }
}

impl CassandraSink {
    /// `release_version` of the node that answers (for the status page).
    ///
    /// # Errors
    /// Retriable on timeouts and CQL errors.
    pub async fn release_version(&self) -> Result<String, StageError> {
        let cql = "SELECT release_version FROM system.local".to_string();
        let envelope = tokio::time::timeout(self.config.request_timeout, self.session.query(cql))
            .await
            .map_err(|_| StageError::retriable("cassandra release_version: timed out"))?
            .map_err(|e| cql_error("release_version", &e))?;
        let rows = envelope
            .response_body()
            .map_err(|e| cql_error("release_version", &e))?
            .into_rows()
            .unwrap_or_default();
        let version: Option<String> = match rows.first() {
            Some(row) => row
                .get_by_name("release_version")
                .map_err(|e| cql_error("release_version", &e))?,
            None => None,
        };
        version.ok_or_else(|| StageError::retriable("cassandra release_version: no row"))
    }
}
