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
pub mod nodes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
use cdrs_tokio::speculative_execution::ConstantSpeculativeExecutionPolicy;
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
use crate::tls::TlsError;

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

/// A Cassandra failure, with the operation it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// No answer within `cassandra.request_timeout`.
    #[error("cassandra {op}: timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The driver or the server refused a request.
    /// (Sources boxed: the driver's error is large and this travels in every `Result`.)
    #[error("cassandra {op}: {source}")]
    Cql {
        op: &'static str,
        #[source]
        source: Box<cdrs_tokio::error::Error>,
    },
    /// Opening a connection or session (STARTUP, authentication, TLS) failed.
    #[error("cassandra session: {source}")]
    Session {
        #[source]
        source: Box<cdrs_tokio::error::Error>,
    },
    /// The driver could not start its session (its control connection died while starting).
    #[error("cassandra session: {source}")]
    SessionBuild {
        #[source]
        source: cdrs_tokio::cluster::session::SessionBuildError,
    },
    /// An answer of an unexpected shape (not a rows result where one was asked for).
    #[error("cassandra {op}: {detail}")]
    Answer { op: &'static str, detail: String },
    #[error("cassandra.contact_points is empty")]
    NoContactPoints,
    #[error("cassandra connect: cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cassandra connect: {addr} has no address")]
    NoAddress { addr: String },
    #[error("cassandra.contact_points: `{host}` is not a TLS server name: {source}")]
    ServerName {
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl SinkError {
    /// Refused credentials or permissions, a schema or statement the server rejects (an
    /// undefined column, an unconfigured table), refused certificates and configuration
    /// cannot fix themselves; timeouts, unreachable or overloaded nodes can.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Answer { .. }
            | Self::Resolve { .. }
            | Self::NoAddress { .. }
            | Self::SessionBuild { .. } => true,
            Self::NoContactPoints | Self::ServerName { .. } | Self::Tls(_) => false,
            Self::Cql { source, .. } => driver_error_is_retriable(source),
            // While a connection is set up, the driver's untyped errors are the
            // authentication handshake's (no authenticator for a server that needs one, an
            // unexpected answer to our credentials): not transient.
            Self::Session { source } => {
                !matches!(
                    **source,
                    cdrs_tokio::error::Error::General(_)
                        | cdrs_tokio::error::Error::UnexpectedAuthResponse(_)
                ) && driver_error_is_retriable(source)
            }
        }
    }
}

fn driver_error_is_retriable(error: &cdrs_tokio::error::Error) -> bool {
    use cdrs_tokio::error::Error;
    use cdrs_tokio::frame::message_error::ErrorType;
    match error {
        Error::Server { body, .. } => !matches!(
            body.ty,
            ErrorType::Authentication
                | ErrorType::Unauthorized
                | ErrorType::Invalid
                | ErrorType::Syntax
                | ErrorType::Config
        ),
        Error::InvalidProtocol(_) => false,
        other => !crate::tls::is_certificate_error(other),
    }
}

/// Runs one request under `cassandra.request_timeout`.
///
/// # Errors
/// [`SinkError::Timeout`], or [`SinkError::Cql`] with the driver's error.
async fn timed<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, cdrs_tokio::error::Error>>,
) -> Result<T, SinkError> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| SinkError::Timeout { op, after })?
        .map_err(|source| SinkError::Cql {
            op,
            source: Box::new(source),
        })
}

/// The session's fail-over policies (issue 18, measured on the cluster stack):
/// - speculative execution of idempotent requests: after `delay` without an answer the request
///   also goes to the next node of the plan (at most two extra). Not installed for a zero
///   delay: cdrs-tokio 9's speculative loop has no way out once its timer is spent and its only
///   execution failed;
/// - reconnection to a node every second (the default grows to 60 s, so a node back from a
///   long outage would wait up to a minute for its first connection);
/// - a connect timeout on the pool (default none: a connection attempt to a stopped node held
///   the node's pool until the kernel gave up).
fn with_failover<B: SessionBuilder<T, CM, LB>, T, CM, LB>(builder: B, config: &CassandraConfig) -> B
where
    T: cdrs_tokio::transport::CdrsTransport + 'static,
    CM: cdrs_tokio::cluster::ConnectionManager<T> + 'static,
    LB: cdrs_tokio::load_balancing::LoadBalancingStrategy<T, CM> + Send + Sync + 'static,
{
    let builder = builder
        .with_reconnection_policy(Arc::new(
            cdrs_tokio::retry::ConstantReconnectionPolicy::new(Duration::from_secs(1)),
        ))
        .with_connection_pool_config(
            cdrs_tokio::cluster::connection_pool::ConnectionPoolConfigBuilder::new()
                .with_connect_timeout(Some(config.request_timeout.min(Duration::from_secs(5))))
                .build(),
        );
    if config.speculative_delay.is_zero() {
        builder
    } else {
        builder.with_speculative_execution_policy(Box::new(
            ConstantSpeculativeExecutionPolicy::new(2, config.speculative_delay),
        ))
    }
}

/// Runs an idempotent request, and up to four times more (after 50 ms, 250 ms, 1 s, 2 s) after
/// a transient failure that did not take `request_timeout`: a node dying under the request
/// resets its connections, and when it held the driver's control connection the plan holds no
/// node for up to ~2 s ("No nodes available in query plan!", measured: a stage restart and
/// 2 s unready with 300 ms of retries). A fresh plan later reaches a live node, so the stage
/// is not restarted (and unready) for one lost node of a cluster.
async fn once_more<T, F, Fut>(op: &'static str, request: F) -> Result<T, SinkError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut result = request().await;
    for pause in [50, 250, 1_000, 2_000] {
        match &result {
            Err(e) if e.is_retriable() && !matches!(e, SinkError::Timeout { .. }) => {
                tracing::debug!(op, error = %e, pause_ms = pause, "cassandra: retrying on a fresh plan");
                tokio::time::sleep(Duration::from_millis(pause)).await;
                result = request().await;
            }
            _ => break,
        }
    }
    result
}

/// How long a new schema may take to reach every node before the statements are prepared.
const SCHEMA_AGREEMENT_LIMIT: Duration = Duration::from_secs(10);

/// "table … does not exist", "Keyspace … doesn't exist", "unconfigured table": the answer of
/// a node a schema change has not reached yet.
fn is_unknown_table(error: &cdrs_tokio::error::Error) -> bool {
    match error {
        cdrs_tokio::error::Error::Server { body, .. } => {
            ["does not exist", "doesn't exist", "unconfigured table"]
                .iter()
                .any(|m| body.message.contains(m))
        }
        _ => false,
    }
}

/// Runs a schema change or a prepare, and again every 200 ms for up to
/// [`SCHEMA_AGREEMENT_LIMIT`] while the node asked answers that the keyspace or table does not
/// exist: on a cluster a change reaches the other nodes a moment later, and round robin asks
/// another node each time.
async fn until_schema_is_there<T, F, Fut>(op: &'static str, request: F) -> Result<T, SinkError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = cdrs_tokio::error::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + SCHEMA_AGREEMENT_LIMIT;
    loop {
        match request().await {
            Ok(answer) => return Ok(answer),
            Err(source) if is_unknown_table(&source) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(op, error = %source, "cassandra: the schema is not on this node yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(source) => {
                return Err(SinkError::Cql {
                    op,
                    source: Box::new(source),
                });
            }
        }
    }
}

/// Waits until every node reports the same schema version, at most `limit`; true when they
/// did. The versions come from `system.local` and `system.peers`, asked several times so that
/// round robin lets every node answer; three agreeing rounds in a row count as agreement.
async fn await_schema_agreement(session: &CdrsSession, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut agreeing = 0;
    while tokio::time::Instant::now() < deadline {
        let mut versions = std::collections::BTreeSet::new();
        let mut complete = true;
        for cql in [
            "SELECT schema_version FROM system.local",
            "SELECT schema_version FROM system.peers",
        ] {
            let rows = tokio::time::timeout(Duration::from_secs(2), session.query(cql.into()))
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|envelope| envelope.response_body().ok())
                .and_then(|body| body.into_rows());
            let Some(rows) = rows else {
                complete = false;
                continue;
            };
            for row in rows {
                match IntoRustByName::<uuid::Uuid>::get_by_name(&row, "schema_version") {
                    Ok(Some(version)) => {
                        versions.insert(version);
                    }
                    _ => complete = false,
                }
            }
        }
        if complete && versions.len() == 1 {
            agreeing += 1;
            if agreeing >= 3 {
                return true;
            }
        } else {
            agreeing = 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

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

    async fn batch(
        &self,
        batch: QueryBatch,
        params: &StatementParams,
    ) -> cdrs_tokio::error::Result<Envelope> {
        match self {
            Self::Tcp(s) => s.batch_with_params(batch, params).await,
            Self::Tls(s) => s.batch_with_params(batch, params).await,
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
    fn write_rows(&self, rows: Vec<UserRow>) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// The stored next offset of a partition.
    fn load_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, SinkError>> + Send;
    /// Stores the next offset to process of a partition.
    fn store_offset(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
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

/// One authenticated connection to every contact point at once, each closed again; returns the
/// index of the first that answered. On a cluster one node down (refusing, or stopped and
/// silent) must not keep the sink down, so the first answer wins; a refusal no other node
/// would answer differently (credentials, TLS) ends it at once.
async fn probe(
    config: &CassandraConfig,
    auth: Arc<dyn SaslAuthenticatorProvider + Send + Sync>,
    tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
) -> Result<usize, SinkError> {
    let mut attempts: futures::stream::FuturesUnordered<_> = config
        .contact_points
        .iter()
        .enumerate()
        .map(|(i, point)| {
            let auth = Arc::clone(&auth);
            let tls = tls.clone();
            async move {
                let result = async {
                    let addr = resolve(point).await?;
                    NodeConnection::open(auth, tls, addr).await.map(drop)
                }
                .await;
                (i, point, result)
            }
        })
        .collect();
    let mut last = SinkError::NoContactPoints;
    while let Some((i, point, result)) = attempts.next().await {
        match result {
            Ok(()) => return Ok(i),
            Err(e) if e.is_retriable() => {
                tracing::debug!(contact_point = %point, error = %e, "cassandra: contact point did not answer");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The first address `host:port` resolves to.
pub(crate) async fn resolve(host_port: &str) -> Result<std::net::SocketAddr, SinkError> {
    tokio::net::lookup_host(host_port)
        .await
        .map_err(|source| SinkError::Resolve {
            addr: host_port.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| SinkError::NoAddress {
            addr: host_port.to_string(),
        })
}

/// One bare, authenticated connection to one node: no session, no pool, no discovery (a
/// session would route a query to any node; this asks the node itself).
pub(crate) enum NodeConnection {
    Tcp(TransportTcp),
    Tls(TransportRustls),
}

impl NodeConnection {
    /// Connects to `addr` and authenticates (STARTUP).
    ///
    /// # Errors
    /// [`SinkError::Session`] with the driver's error.
    pub(crate) async fn open(
        auth: Arc<dyn SaslAuthenticatorProvider + Send + Sync>,
        tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
        addr: std::net::SocketAddr,
    ) -> Result<Self, SinkError> {
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
            .map(Self::Tls),
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
            .map(Self::Tcp),
        };
        result.map_err(|source| SinkError::Session {
            source: Box::new(source),
        })
    }

    /// Runs `cql` (consistency ONE) on this node and returns its rows.
    ///
    /// # Errors
    /// [`SinkError::Cql`] with the driver's or the server's error.
    pub(crate) async fn query(
        &self,
        cql: &str,
        op: &'static str,
    ) -> Result<Vec<cdrs_tokio::types::rows::Row>, SinkError> {
        use cdrs_tokio::transport::CdrsTransport;
        let envelope = Envelope::new_req_query(
            cql.to_string(),
            Consistency::One,
            None,
            true,
            None,
            None,
            None,
            None,
            None,
            None,
            cdrs_tokio::frame::Flags::empty(),
            Version::V4,
        );
        let answer = match self {
            Self::Tcp(t) => t.write_envelope(&envelope, false).await,
            Self::Tls(t) => t.write_envelope(&envelope, false).await,
        };
        let cql_error = |source| SinkError::Cql {
            op,
            source: Box::new(source),
        };
        let body = answer
            .map_err(cql_error)?
            .response_body()
            .map_err(cql_error)?;
        Ok(body.into_rows().unwrap_or_default())
    }
}

/// The authenticator `config` asks for.
pub(crate) fn authenticator(
    config: &CassandraConfig,
) -> Arc<dyn SaslAuthenticatorProvider + Send + Sync> {
    match &config.password {
        Some(password) => Arc::new(StaticPasswordAuthenticatorProvider::new(
            &config.username,
            &password.expose().to_string(),
        )),
        None => Arc::new(NoneAuthenticatorProvider),
    }
}

/// The TLS server name (the first contact point's host) and client config, with `tls`.
///
/// # Errors
/// A host that is no TLS server name, an unusable CA file.
pub(crate) fn tls_target(
    config: &CassandraConfig,
) -> Result<Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>, SinkError> {
    if !config.tls {
        return Ok(None);
    }
    let host = config
        .contact_points
        .first()
        .and_then(|c| c.rsplit_once(':'))
        .map_or("localhost", |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name = ServerName::try_from(host.clone())
        .map_err(|source| SinkError::ServerName { host, source })?;
    let tls = crate::tls::client_config(config.tls_ca_file.as_deref(), "cassandra.tls_ca_file")?;
    Ok(Some((server_name, tls)))
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
    pub async fn connect(config: &CassandraConfig) -> Result<Self, SinkError> {
        let contact_points: Vec<NodeAddress> = config
            .contact_points
            .iter()
            .map(|c| c.as_str().into())
            .collect();
        let auth = authenticator(config);
        let timeout = config.request_timeout;
        let timed_out = |op: &'static str| SinkError::Timeout { op, after: timeout };
        // First one bare connection (STARTUP + authentication) to a contact point: a
        // refused password or a TLS mismatch then surfaces at once as a fatal error; a cdrs
        // session would keep reconnecting until our timeout, hiding the cause.
        let tls = tls_target(config)?;
        let build = |contact_points: Vec<NodeAddress>| {
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
                            .map_err(|source| SinkError::Session {
                                source: Box::new(source),
                            })?;
                        with_failover(
                            RustlsSessionBuilder::new(
                                RoundRobinLoadBalancingStrategy::new(),
                                node_config,
                            ),
                            config,
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
                            .map_err(|source| SinkError::Session {
                                source: Box::new(source),
                            })?;
                        with_failover(
                            TcpSessionBuilder::new(
                                RoundRobinLoadBalancingStrategy::new(),
                                node_config,
                            ),
                            config,
                        )
                        .build()
                        .await
                        .map(CdrsSession::Tcp)
                    }
                };
                result.map_err(|source| SinkError::SessionBuild { source })
            }
        };
        let first = tokio::time::timeout(timeout, probe(config, Arc::clone(&auth), tls.clone()))
            .await
            .map_err(|_| timed_out("connect"))??;
        // The session's control connection goes to its first contact point: start it at the
        // one that answered (a silent node listed first would hold the session's start).
        let mut contact_points = contact_points;
        contact_points.rotate_left(first);
        let session = tokio::time::timeout(timeout, build(contact_points))
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
                // Not under request_timeout: a schema change on a cold node can take longer.
                // On a cluster a change reaches the other nodes a moment later: the next
                // statement (round robin: another node) may not find the keyspace yet, so it
                // is retried, and every change waits for the nodes to agree. A statement that
                // changed nothing (the usual case: a restart) answers Void and waits for nothing.
                let answer =
                    until_schema_is_there("create schema", || session.query(cql.clone())).await?;
                let changed = !matches!(
                    answer.response_body(),
                    Ok(cdrs_tokio::frame::message_response::ResponseBody::Result(
                        cdrs_tokio::frame::message_result::ResResultBody::Void
                    ))
                );
                if changed && !await_schema_agreement(&session, SCHEMA_AGREEMENT_LIMIT).await {
                    tracing::warn!(
                        limit = ?SCHEMA_AGREEMENT_LIMIT,
                        "cassandra: the nodes did not agree on one schema version in time (a node down?); going on"
                    );
                }
            }
        }
        let prepare = |cql: String| {
            let session = Arc::clone(&session);
            async move { until_schema_is_there("prepare", || session.prepare(cql.clone())).await }
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
        op: &'static str,
    ) -> Result<(), SinkError> {
        let params = self.params(values);
        let timeout = self.config.request_timeout;
        once_more(op, || {
            timed(
                op,
                timeout,
                self.session.exec_with_params(prepared, &params),
            )
        })
        .await
        .map(drop)
    }
}

impl CassandraSink {
    async fn exec_batch(&self, chunk: Vec<QueryValues>) -> Result<(), SinkError> {
        let mut batch = BatchQueryBuilder::new()
            .with_batch_type(BatchType::Unlogged)
            .with_consistency(consistency(self.config.consistency));
        for values in chunk {
            batch = batch.add_query_prepared(&self.insert, values);
        }
        let batch = batch.build().map_err(|source| SinkError::Cql {
            op: "batch",
            source: Box::new(source),
        })?;
        // Idempotent (every row carries its own write time): the driver may send it to the
        // next node after a connection error or, past `speculative_delay`, in parallel.
        let params = StatementParamsBuilder::new()
            .with_consistency(consistency(self.config.consistency))
            .idempotent(true)
            .build();
        let timeout = self.config.request_timeout;
        once_more("batch", || {
            timed("batch", timeout, self.session.batch(batch.clone(), &params))
        })
        .await
        .map(drop)
    }
}

impl RowSink for CassandraSink {
    async fn write_rows(&self, rows: Vec<UserRow>) -> Result<(), SinkError> {
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

    async fn load_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, SinkError> {
        let params = StatementParamsBuilder::new()
            .with_values(QueryValues::SimpleValues(vec![
                Value::from(topic.to_string()),
                Value::from(partition),
            ]))
            .with_consistency(consistency(self.config.consistency))
            .idempotent(true)
            .build();
        let envelope = timed(
            "load offset",
            self.config.request_timeout,
            self.session.exec_with_params(&self.load_offset, &params),
        )
        .await?;
        let cql = |source| SinkError::Cql {
            op: "load offset",
            source: Box::new(source),
        };
        // Anything but a rows answer is an error, not "no offset": with `start_from = latest`
        // a missing offset would skip data.
        let rows = envelope
            .response_body()
            .map_err(cql)?
            .into_rows()
            .ok_or_else(|| SinkError::Answer {
                op: "load offset",
                detail: format!("the answer for {topic}/{partition} has no rows section"),
            })?;
        match rows.first() {
            None => Ok(None),
            Some(row) => row.get_by_name("next_offset").map_err(cql),
        }
    }

    async fn store_offset(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), SinkError> {
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
    pub async fn release_version(&self) -> Result<String, SinkError> {
        let cql = "SELECT release_version FROM system.local".to_string();
        let envelope = timed(
            "release_version",
            self.config.request_timeout,
            self.session.query(cql),
        )
        .await?;
        let cql = |source| SinkError::Cql {
            op: "release_version",
            source: Box::new(source),
        };
        let rows = envelope.response_body().map_err(cql)?.into_rows();
        let version: Option<String> = match rows.as_deref().and_then(<[_]>::first) {
            Some(row) => row.get_by_name("release_version").map_err(cql)?,
            None => None,
        };
        version.ok_or_else(|| SinkError::Answer {
            op: "release_version",
            detail: "no row".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdrs_tokio::error::Error;
    use cdrs_tokio::frame::message_error::{ErrorBody, ErrorType};

    fn server(ty: ErrorType) -> Error {
        Error::Server {
            body: ErrorBody {
                message: "refused".into(),
                ty,
            },
            addr: "127.0.0.1:9042".parse().expect("addr"),
        }
    }

    #[test]
    fn errors_are_classified_by_kind_not_text() {
        let cql = |source| SinkError::Cql {
            op: "insert",
            source: Box::new(source),
        };
        assert!(!cql(server(ErrorType::Authentication)).is_retriable());
        assert!(!cql(server(ErrorType::Unauthorized)).is_retriable());
        assert!(
            !cql(server(ErrorType::Invalid)).is_retriable(),
            "undefined column / unconfigured table"
        );
        assert!(cql(server(ErrorType::Overloaded)).is_retriable());
        assert!(cql(server(ErrorType::IsBootstrapping)).is_retriable());
        assert!(cql(Error::Io(std::io::ErrorKind::ConnectionRefused.into())).is_retriable());
        assert!(cql(Error::Timeout("t".into())).is_retriable());
        let refused_certificate = Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        ));
        assert!(!cql(refused_certificate).is_retriable());
        // During the handshake, the driver's untyped errors are authentication's.
        let no_authenticator = SinkError::Session {
            source: Box::new(Error::General("No authenticator was provided".into())),
        };
        assert!(!no_authenticator.is_retriable());
        assert!(
            SinkError::Session {
                source: Box::new(Error::Io(std::io::ErrorKind::ConnectionRefused.into())),
            }
            .is_retriable()
        );
        let timeout = SinkError::Timeout {
            op: "batch",
            after: Duration::from_secs(10),
        };
        assert!(timeout.is_retriable());
        assert!(
            timeout.to_string().contains("cassandra batch: timed out"),
            "{timeout}"
        );
        assert!(!SinkError::NoContactPoints.is_retriable());
    }
}
