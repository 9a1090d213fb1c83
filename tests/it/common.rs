//! Shared test harness: the local stack's addresses, scratch namespaces, the real binary.
//!
//! The stack comes from `scripts/stack up`. Under `make test` (`PIPELINE_REQUIRE_STACK=1`)
//! a missing service fails the test; outside it, too, but with a message that says to run
//! `scripts/stack up`. Nothing here ever skips silently.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdrs_tokio::authenticators::NoneAuthenticatorProvider;
use cdrs_tokio::cluster::session::{Session, SessionBuilder, TcpSessionBuilder};
use cdrs_tokio::cluster::{NodeTcpConfigBuilder, TcpConnectionManager};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::transport::TransportTcp;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;

pub type Cql = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;

pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn cassandra_contact() -> String {
    std::env::var("CASSANDRA_CONTACT").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline".into())
}

/// Fails with the fix when a service does not accept connections.
pub fn require(service: &str, addr: &str) {
    let ok = addr
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
        .is_some();
    assert!(
        ok,
        "{service} is not reachable at {addr}: run `scripts/stack up` (or `make test`, which does)"
    );
}

pub fn require_stack() {
    require("Kafka", &kafka_bootstrap());
    require("Cassandra", &cassandra_contact());
    let url = reqwest::Url::parse(&database_url()).expect("DATABASE_URL is a URL");
    let pg = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    require("Postgres", &pg);
}

/// A name unique to this test run: lowercase, CQL- and Kafka-safe.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The services a scenario runs against: the single-node stack (`scripts/stack up`) or the
/// cluster (`scripts/stack up --cluster`: three brokers, three Cassandra nodes).
#[derive(Debug, Clone)]
pub struct Services {
    pub kafka: Vec<String>,
    pub cassandra: Vec<String>,
    /// With password (the admin URL scratch databases are made from).
    pub database_url: String,
}

impl Services {
    pub fn local() -> Self {
        Self {
            kafka: vec![kafka_bootstrap()],
            cassandra: vec![cassandra_contact()],
            database_url: database_url(),
        }
    }

    /// The cluster stack, from `scripts/stack env --cluster`; fails with the fix when it is not up.
    pub fn cluster() -> Self {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_else(|_| {
                    panic!("{name} is not set: run `eval \"$(scripts/stack env --cluster)\"` after `scripts/stack up --cluster` (or `make test-cluster`)")
                })
                .split(',')
                .map(str::to_string)
                .collect()
        };
        let services = Self {
            kafka: list("CLUSTER_KAFKA_BOOTSTRAP"),
            cassandra: list("CLUSTER_CASSANDRA_CONTACT"),
            database_url: list("CLUSTER_DATABASE_URL").join(","),
        };
        for addr in services.kafka.iter().chain(&services.cassandra) {
            require("the cluster stack", addr);
        }
        require(
            "the cluster's Postgres",
            &postgres_addr(&services.database_url),
        );
        services
    }

    /// `["a", "b"]`: a list in the daemon's environment syntax.
    pub fn env_list(items: &[String]) -> String {
        let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        format!("[{}]", quoted.join(","))
    }
}

pub async fn kafka() -> Client {
    kafka_on(&Services::local()).await
}

pub async fn kafka_on(services: &Services) -> Client {
    ClientBuilder::new(services.kafka.clone())
        .build()
        .await
        .expect("connect to Kafka (run `scripts/stack up`)")
}

/// Every record of every partition of `topic`.
pub async fn read_topic(client: &Client, topic: &str) -> Vec<(i32, RecordAndOffset)> {
    let topics = client.list_topics().await.expect("list topics");
    let Some(t) = topics.iter().find(|t| t.name == topic) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &p in &t.partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let end = pc.get_offset(OffsetAt::Latest).await.expect("latest");
        let mut next = pc.get_offset(OffsetAt::Earliest).await.expect("earliest");
        while next < end {
            let (records, _hw) = pc
                .fetch_records(next, 1..50_000_000, 1_000)
                .await
                .expect("fetch");
            for r in records {
                if r.offset >= next {
                    next = r.offset + 1;
                    out.push((p, r));
                }
            }
        }
    }
    out
}

pub async fn cassandra() -> Cql {
    cassandra_on(&Services::local()).await
}

pub async fn cassandra_on(services: &Services) -> Cql {
    let config = NodeTcpConfigBuilder::new()
        .with_contact_points(
            services
                .cassandra
                .iter()
                .map(|c| c.as_str().into())
                .collect(),
        )
        .with_authenticator_provider(Arc::new(NoneAuthenticatorProvider))
        .build()
        .await
        .expect("connect to Cassandra (run `scripts/stack up`)");
    TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
        .build()
        .await
        .expect("Cassandra session")
}

/// A scratch Postgres database; returns its URL without password.
pub async fn scratch_database(name: &str) -> String {
    scratch_database_on(&Services::local(), name).await
}

/// A scratch database on `services`' Postgres; returns its URL (with the password).
pub async fn scratch_database_on(services: &Services, name: &str) -> String {
    let database_url = &services.database_url;
    let admin = sqlx::PgPool::connect(database_url)
        .await
        .expect("connect to Postgres (run `scripts/stack up`)");
    // `name` comes from `unique()`: [a-z0-9_] only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create scratch database");
    admin.close().await;
    let mut url = reqwest::Url::parse(database_url).expect("url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

pub fn password_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default()
}

pub fn without_password(url: &str) -> String {
    let mut u = reqwest::Url::parse(url).expect("url");
    let _ = u.set_password(None);
    u.to_string()
}

/// A test scenario's namespaces and its environment for the daemon.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub topic: String,
    pub dlq: String,
    pub keyspace: String,
    pub db_url: String,
    pub http_port: u16,
    pub env: BTreeMap<String, String>,
    pub services: Services,
}

impl Scenario {
    /// Fresh topic, DLQ topic, keyspace and database; source pointed at `api_url`.
    pub async fn new(name: &str, api_url: &str) -> Self {
        require_stack();
        Self::new_on(name, api_url, Services::local()).await
    }

    /// As [`Scenario::new`], on `services`.
    pub async fn new_on(name: &str, api_url: &str, services: Services) -> Self {
        let id = unique(name);
        let topic = format!("{id}_users");
        let dlq = format!("{id}_users.dlq");
        let keyspace = format!("ks_{id}");
        let db_url = scratch_database_on(&services, &format!("db_{id}")).await;
        let http_port = free_port();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        set("PIPELINE_SOURCE__URL", api_url.to_string());
        set("PIPELINE_SOURCE__SEED", id.clone());
        set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "200".into());
        set("PIPELINE_SOURCE__CONCURRENCY", "2".into());
        set("PIPELINE_POSTGRES__URL", without_password(&db_url));
        set("PIPELINE_POSTGRES__PASSWORD", password_of(&db_url));
        set(
            "PIPELINE_KAFKA__BOOTSTRAP",
            Services::env_list(&services.kafka),
        );
        set("PIPELINE_KAFKA__TOPIC", topic.clone());
        set("PIPELINE_CONSUMER__GROUP", id.clone());
        set("PIPELINE_DLQ__TOPIC", dlq.clone());
        set(
            "PIPELINE_CASSANDRA__CONTACT_POINTS",
            Services::env_list(&services.cassandra),
        );
        set("PIPELINE_CASSANDRA__KEYSPACE", keyspace.clone());
        set("PIPELINE_CASSANDRA__CONSISTENCY", "one".into());
        set("PIPELINE_HTTP__LISTEN", format!("127.0.0.1:{http_port}"));
        set("PIPELINE_RUNTIME__BACKOFF__INITIAL", "50ms".into());
        set("PIPELINE_RUNTIME__BACKOFF__MAX", "2s".into());
        set("PIPELINE_LOG__LEVEL", "info".into());
        Self {
            topic,
            dlq,
            keyspace,
            db_url,
            http_port,
            env,
            services,
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// Runs `pipeline run --drain-and-exit --metrics-out F` to completion: asserts exit 0
    /// within `timeout` and no panic in the log; returns the final metrics text.
    pub fn run_drained(&self, name: &str, timeout: Duration) -> String {
        let metrics_out = std::env::temp_dir().join(format!("{}.prom", self.keyspace));
        let path = metrics_out.to_str().expect("utf8 temp path");
        let mut daemon = self.spawn(
            &["run", "--drain-and-exit", "--metrics-out", path],
            &log_path(name),
        );
        let code = daemon.wait(timeout);
        assert_eq!(code, 0, "daemon failed; log:\n{}", daemon.log_tail(60));
        assert_no_panic(&daemon.log);
        std::fs::read_to_string(&metrics_out).expect("metrics file")
    }

    /// Starts `pipeline <args>` with this scenario's environment; output goes to `log`.
    pub fn spawn(&self, args: &[&str], log: &PathBuf) -> Daemon {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        // Only this scenario's settings: inherited PIPELINE_* variables would change the run.
        for (name, _) in std::env::vars() {
            if name.starts_with("PIPELINE_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("--config")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml"))
            .args(args)
            .envs(&self.env)
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the pipeline binary");
        Daemon {
            child: Some(child),
            log: log.clone(),
            http_port: self.http_port,
        }
    }
}

/// The real binary; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    pub http_port: u16,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for exit; panics with the log tail after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!(
                    "daemon did not exit within {timeout:?}; log tail:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let resp = reqwest::get(&url).await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// Polls `path` until `pred(status, body)`; panics with the log tail after `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(u16, &str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((status, body)) = self.get(path).await
                && pred(status, &body)
            {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never satisfied the condition within {timeout:?}; log tail:\n{}",
                self.log_tail(60)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Value of a metric line `name{labels} value` in Prometheus text (sum over matches).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts that every source request outcome in `outcomes` was counted at least once, and
/// that exactly `pages` requests succeeded (each page fetched once, faults retried).
pub fn assert_source_outcomes(prom: &str, outcomes: &[&str], pages: u32) {
    for outcome in outcomes {
        let n = metric(
            prom,
            &format!("pipeline_source_requests_total{{outcome=\"{outcome}\"}}"),
        );
        assert!(n >= 1.0, "no {outcome} counted:\n{prom}");
    }
    let ok = metric(prom, "pipeline_source_requests_total{outcome=\"ok\"}");
    assert_eq!(ok as u32, pages, "one successful request per page");
}

/// Fails when the daemon's log shows a panic.
pub fn assert_no_panic(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "the daemon panicked ({}):\n{text}",
        log.display()
    );
}

/// The emulator's default malformed-record kinds (`--bad-kinds` default).
pub fn default_kinds() -> Vec<pipeline::emulator::ContentFault> {
    pipeline::emulator::DEFAULT_BAD_KINDS
        .split(',')
        .map(|k| k.parse().expect("default kind"))
        .collect()
}

/// The users a bounded seeded run is served (fault-free pages), exactly `records` of them.
pub fn served_users(seed: &str, results: u32, records: u32) -> Vec<serde_json::Value> {
    use pipeline::emulator::{ContentFaults, PageParams, generate_page};
    let mut users = Vec::new();
    for page in 1..=records.div_ceil(results) {
        let generated = generate_page(
            &PageParams::new(seed, page, results),
            &ContentFaults::none(),
        );
        let body: serde_json::Value = serde_json::from_str(&generated.body).expect("json");
        let keep = (records - (page - 1) * results).min(results) as usize;
        let Some(page_users) = body["results"].as_array() else {
            panic!("emulator page without results");
        };
        users.extend(page_users.iter().take(keep).cloned());
    }
    users
}

/// Credential values (password, salt, hashes) of `users`, those long enough to search for.
pub fn credential_values(users: &[serde_json::Value]) -> Vec<String> {
    users
        .iter()
        .flat_map(|u| ["password", "salt", "md5", "sha1", "sha256"].map(|f| u["login"][f].clone()))
        .filter_map(|v| v.as_str().filter(|v| v.len() >= 8).map(str::to_string))
        .collect()
}

/// A JSON string's text or a number's text (as a text column holds it); `None` otherwise.
pub fn json_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Every row of `<keyspace>.created_users`: id → the text `columns` (null as `None`).
pub async fn created_users(
    keyspace: &str,
    columns: &[&'static str],
) -> BTreeMap<String, BTreeMap<&'static str, Option<String>>> {
    use cdrs_tokio::types::IntoRustByName;
    let session = cassandra().await;
    let params = cdrs_tokio::statement::StatementParamsBuilder::new()
        .with_page_size(1_000_000)
        .build();
    let rows = session
        .query_with_params(
            format!(
                "SELECT id, {} FROM {keyspace}.created_users",
                columns.join(", ")
            ),
            params,
        )
        .await
        .expect("select users")
        .response_body()
        .expect("body")
        .into_rows()
        .unwrap_or_default();
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.get_r_by_name("id").expect("id");
            let cols = columns
                .iter()
                .map(|c| {
                    let v = IntoRustByName::<String>::get_by_name(row, c).expect("text column");
                    (*c, v)
                })
                .collect();
            (id.to_string(), cols)
        })
        .collect()
}

/// Stored consumer offsets of `topic` in `<keyspace>.pipeline_offsets`: partition → next.
pub async fn stored_offsets(keyspace: &str, topic: &str) -> BTreeMap<i32, i64> {
    use cdrs_tokio::types::IntoRustByName;
    let session = cassandra().await;
    let rows = session
        .query_with_values(
            format!(
                "SELECT partition, next_offset FROM {keyspace}.pipeline_offsets WHERE topic = ?"
            ),
            cdrs_tokio::query_values!(topic.to_string()),
        )
        .await
        .expect("select offsets")
        .response_body()
        .expect("body")
        .into_rows()
        .unwrap_or_default();
    rows.iter()
        .map(|row| {
            let p: i32 = row.get_r_by_name("partition").expect("partition");
            let o: i64 = row.get_r_by_name("next_offset").expect("next_offset");
            (p, o)
        })
        .collect()
}

/// Creates `topic` with `partitions` partitions (replication 1).
pub async fn create_topic(client: &Client, topic: &str, partitions: i32) {
    client
        .controller_client()
        .expect("controller")
        .create_topic(topic, partitions, 1, 10_000)
        .await
        .expect("create topic");
}

pub fn log_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("{name}.log"))
}

/// Starts the emulator in-process on a free port; returns its base API URL.
pub async fn start_emulator(
    config: pipeline::emulator::EmulatorConfig,
) -> (String, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let _ = pipeline::emulator::serve(listener, config, stop).await;
    });
    (format!("http://{addr}/api/1.4/"), token)
}

/// A TCP proxy that can cut every connection and refuse new ones, to kill a stage's service
/// without touching the shared stack, or freeze them (a network cut: nothing passes, nothing
/// is closed).
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    freeze: Arc<tokio::sync::Notify>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let freeze = Arc::new(tokio::sync::Notify::new());
        let (u, c) = (Arc::clone(&up), Arc::clone(&cut));
        let (f, fz) = (Arc::clone(&frozen), Arc::clone(&freeze));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let upstream = upstream.clone();
                let c = Arc::clone(&c);
                let (f, fz) = (Arc::clone(&f), Arc::clone(&fz));
                tokio::spawn(async move {
                    if f.load(std::sync::atomic::Ordering::SeqCst) {
                        // Accepted, never answered: a connect that hangs.
                        c.notified().await;
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let froze = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        () = c.notified() => false,
                        () = fz.notified() => true,
                    };
                    if froze {
                        // Both sockets stay open and silent until the cut ends.
                        c.notified().await;
                    }
                    drop((inbound, outbound));
                });
            }
        });
        Self {
            port,
            up,
            cut,
            frozen,
            freeze,
        }
    }

    /// A network cut: every connection stays open but nothing passes either way, and new
    /// connections hang; no side sees a close (only timeouts can tell).
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
        self.freeze.notify_waiters();
    }

    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
        if self.frozen.swap(false, std::sync::atomic::Ordering::SeqCst) {
            // The frozen connections end (their peers gave up on them long ago).
            self.cut.notify_waiters();
        }
    }
}

/// A TCP proxy that takes a service down the way a stopped server is down: the listening
/// socket closes (new connections are refused), every open connection is cut; `reopen`
/// listens on the same port again. Unlike [`Proxy::down`], which accepts and drops, a
/// reachability probe sees the difference.
pub struct Outage {
    pub port: u16,
    upstream: String,
    serving: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    cut: Arc<tokio::sync::Notify>,
}

impl Outage {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(tokio::sync::Notify::new());
        let serving = Self::serve(listener, upstream.clone(), Arc::clone(&cut));
        Self {
            port,
            upstream,
            serving: std::sync::Mutex::new(Some(serving)),
            cut,
        }
    }

    fn serve(
        listener: tokio::net::TcpListener,
        upstream: String,
        cut: Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let cut = Arc::clone(&cut);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        })
    }

    /// Stops listening and cuts every connection.
    pub fn down(&self) {
        if let Some(serving) = self.serving.lock().expect("lock").take() {
            serving.abort();
        }
        self.cut.notify_waiters();
    }

    /// Listens on the same port again (retried briefly while the aborted listener closes).
    pub async fn reopen(&self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        let serving = Self::serve(listener, self.upstream.clone(), Arc::clone(&self.cut));
        *self.serving.lock().expect("lock") = Some(serving);
    }
}

/// Held for their whole run by the tests that pause a shared service (`scripts/stack
/// stop-signal postgres STOP`) and by those that time a recovery against a bound: tests run two
/// at a time, and a paused Postgres under a timed recovery would fail it for the wrong reason.
pub static SHARED_SERVICES: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

/// A scenario database's Postgres as `host:port` (the upstream of a proxy).
pub fn postgres_addr(db_url: &str) -> String {
    let url = reqwest::Url::parse(db_url).expect("database url");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

/// `db_url` pointed at a proxy on `port`, without its password (the scenario passes the
/// password separately).
pub fn postgres_url_via(db_url: &str, port: u16) -> String {
    let mut url = reqwest::Url::parse(db_url).expect("database url");
    let _ = url.set_port(Some(port));
    let _ = url.set_password(None);
    url.to_string()
}

/// A message of our own format with a deterministic id (`i` picks it), for topics a test
/// fills itself.
pub fn own_message(i: u64) -> (String, Vec<u8>) {
    let id = uuid::Builder::from_random_bytes(
        u128::from(i)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            .to_le_bytes(),
    )
    .into_uuid()
    .to_string();
    let value = serde_json::json!({
        "id": id, "first_name": format!("f{i}"), "last_name": "l", "gender": "female",
        "address": "1 Main St, Leeds, West Yorkshire, United Kingdom", "post_code": i,
        "email": format!("u{i}@example.com"), "username": format!("u{i}"),
        "dob": "1993-07-20T09:44:18.674Z", "registered_date": "2015-01-02T03:04:05.006Z",
        "phone": "0161 123", "picture": "https://m"
    });
    (id, serde_json::to_vec(&value).expect("encode"))
}
