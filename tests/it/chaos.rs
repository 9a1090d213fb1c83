//! Crash tests under load, and the exact comparison used by `scripts/chaos`.
//!
//! Under `make test` (shared stack, two tests at a time) only the daemon is killed and
//! Postgres is paused for a few seconds; Kafka and Cassandra are never touched here (that is
//! `scripts/chaos`, on demand). Every run ends with [`verify`]: the set of ids in Cassandra
//! equals the landed ids minus the dead-lettered ones, every row equals its landed record,
//! and the dead-lettered ids are exactly those the emulator made malformed.
//!
//! `scripts/chaos` calls the ignored test [`chaos_verify`] with the scenario in `CHAOS_*`
//! variables (see its doc).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cdrs_tokio::statement::StatementParamsBuilder;
use cdrs_tokio::types::IntoRustByName;
use pipeline::emulator::{ContentFault, ContentFaults, EmulatorConfig, PageParams, generate_page};

/// What the emulator serves for a seeded run: every id, and the malformed ones.
#[derive(Debug, Default)]
struct Truth {
    ids: BTreeSet<String>,
    malformed: BTreeSet<String>,
}

fn emulator_truth(seed: &str, results: u32, records: u32, faults: &ContentFaults) -> Truth {
    let mut truth = Truth::default();
    for page in 1..=records.div_ceil(results) {
        let generated = generate_page(&PageParams::new(seed, page, results), faults);
        let users = pipeline::model::split_page(generated.body.as_bytes()).expect("emulator body");
        let keep = (records - (page - 1) * results).min(results) as usize;
        for (user, meta) in users.into_iter().zip(generated.users).take(keep) {
            if !meta.is_valid() {
                truth.malformed.insert(user.id.clone());
            }
            truth.ids.insert(user.id);
        }
    }
    truth
}

/// The counts `scripts/chaos` prints, plus what they are checked against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    /// Landed, not dead-lettered, but absent from Cassandra.
    lost: usize,
    /// Ids landed more than once, plus rows whose write timestamp is not their fetch time.
    duplicated: usize,
    /// Column values (or `fetched_at`) that differ from the landed record.
    mismatched: usize,
    /// Distinct ids in the dead-letter topic.
    dead_lettered: usize,
    /// Ids the emulator made malformed.
    expected_dead: usize,
    /// Rows in Cassandra that are not landed-and-valid (dead-lettered ids written, or unknown).
    extra: usize,
    /// Dead-lettered ids that the emulator did not make malformed, and vice versa.
    dlq_diff: usize,
    /// Landed ids that the emulator never served, plus served ids never landed.
    landing_diff: usize,
    /// Dead letters without a reason header.
    unexplained: usize,
    landed: usize,
    rows: usize,
    dlq_records: usize,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "lost={}, duplicated={}, mismatched={}, dead_lettered={}",
            self.lost, self.duplicated, self.mismatched, self.dead_lettered
        )
    }

    fn detail(&self) -> String {
        format!(
            "landed={}, rows={}, expected_dead_lettered={}, dlq_records={}, extra={}, dlq_diff={}, landing_diff={}, unexplained={}",
            self.landed,
            self.rows,
            self.expected_dead,
            self.dlq_records,
            self.extra,
            self.dlq_diff,
            self.landing_diff,
            self.unexplained
        )
    }

    fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.mismatched == 0
            && self.extra == 0
            && self.dlq_diff == 0
            && self.landing_diff == 0
            && self.unexplained == 0
            && self.dead_lettered == self.expected_dead
    }
}

/// The expected column values of a landed (valid) user, as the old stack built them.
fn expected_columns(user: &serde_json::Value) -> Vec<(&'static str, Option<String>)> {
    let address = (|| {
        Some(format!(
            "{} {}, {}, {}, {}",
            common::json_text(user.pointer("/location/street/number"))?,
            common::json_text(user.pointer("/location/street/name"))?,
            common::json_text(user.pointer("/location/city"))?,
            common::json_text(user.pointer("/location/state"))?,
            common::json_text(user.pointer("/location/country"))?
        ))
    })();
    vec![
        ("first_name", common::json_text(user.pointer("/name/first"))),
        ("last_name", common::json_text(user.pointer("/name/last"))),
        ("email", common::json_text(user.get("email"))),
        (
            "username",
            common::json_text(user.pointer("/login/username")),
        ),
        (
            "post_code",
            common::json_text(user.pointer("/location/postcode")),
        ),
        (
            "picture",
            common::json_text(user.pointer("/picture/medium")),
        ),
        ("dob", common::json_text(user.pointer("/dob/date"))),
        ("address", address),
    ]
}

const TEXT_COLUMNS: [&str; 8] = [
    "first_name",
    "last_name",
    "email",
    "username",
    "post_code",
    "picture",
    "dob",
    "address",
];

struct CassRow {
    cols: BTreeMap<&'static str, Option<String>>,
    fetched_at_ms: Option<i64>,
    writetimes: Vec<Option<i64>>,
}

/// Every row of `keyspace.created_users`, read in token ranges (no single huge page).
async fn cassandra_rows(services: &common::Services, keyspace: &str) -> BTreeMap<String, CassRow> {
    let session = common::cassandra_on(services).await;
    let mut out = BTreeMap::new();
    const RANGES: i128 = 64;
    let (min, max) = (i128::from(i64::MIN), i128::from(i64::MAX));
    let step = (max - min + 1) / RANGES;
    for i in 0..RANGES {
        let lo = min + i * step;
        let hi = if i == RANGES - 1 { max } else { lo + step - 1 };
        let cql = format!(
            "SELECT id, {}, fetched_at, writetime(first_name) AS wt_first, \
             writetime(email) AS wt_email FROM {keyspace}.created_users \
             WHERE token(id) >= {lo} AND token(id) <= {hi}",
            TEXT_COLUMNS.join(", ")
        );
        let mut attempt = 0;
        let rows = loop {
            // QUORUM: on a cluster a node that was down may not have every row yet (its
            // hints arrive later); a quorum read always meets a quorum write.
            let params = StatementParamsBuilder::new()
                .with_page_size(1_000_000)
                .with_consistency(cdrs_tokio::consistency::Consistency::Quorum)
                .build();
            match session.query_with_params(cql.clone(), params).await {
                Ok(envelope) => {
                    break envelope
                        .response_body()
                        .expect("body")
                        .into_rows()
                        .unwrap_or_default();
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    eprintln!("cassandra read retry {attempt}: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => panic!("read {keyspace}.created_users: {e}"),
            }
        };
        for row in &rows {
            let id: uuid::Uuid = row.get_r_by_name("id").expect("id");
            let mut cols = BTreeMap::new();
            for c in TEXT_COLUMNS {
                cols.insert(
                    c,
                    IntoRustByName::<String>::get_by_name(row, c).expect("text column"),
                );
            }
            let fetched_at_ms =
                IntoRustByName::<i64>::get_by_name(row, "fetched_at").expect("fetched_at column");
            let writetimes = ["wt_first", "wt_email"]
                .iter()
                .map(|c| IntoRustByName::<i64>::get_by_name(row, c).expect("writetime"))
                .collect();
            out.insert(
                id.to_string(),
                CassRow {
                    cols,
                    fetched_at_ms,
                    writetimes,
                },
            );
        }
    }
    out
}

/// Landed users: id → (fetched_at ms, raw JSON), and the count of duplicate ids.
async fn landed(db_url: &str) -> (BTreeMap<String, (i64, serde_json::Value)>, usize) {
    let pool = sqlx::PgPool::connect(db_url)
        .await
        .expect("connect to Postgres");
    let dups: i64 = sqlx::query_scalar("SELECT count(*) - count(DISTINCT id) FROM users_landed")
        .fetch_one(&pool)
        .await
        .expect("count duplicates");
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT id, (extract(epoch FROM fetched_at) * 1000)::bigint, raw::text FROM users_landed",
    )
    .fetch_all(&pool)
    .await
    .expect("read users_landed");
    pool.close().await;
    let map = rows
        .into_iter()
        .map(|(id, ms, raw)| {
            let json = serde_json::from_str(&raw).expect("landed raw is JSON");
            (id, (ms, json))
        })
        .collect();
    (map, dups.max(0) as usize)
}

/// Dead-letter topic: distinct keys, record count, records without a reason header.
async fn dead_letters(
    services: &common::Services,
    topic: &str,
) -> (BTreeSet<String>, usize, usize) {
    let client = common::kafka_on(services).await;
    let records = common::read_topic(&client, topic).await;
    let mut keys = BTreeSet::new();
    let mut unexplained = 0;
    for (_, r) in &records {
        let reason = r.record.headers.get("pipeline.error.reason");
        if reason.is_none_or(|v| v.is_empty()) {
            unexplained += 1;
        }
        keys.insert(
            String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()).to_string(),
        );
    }
    (keys, records.len(), unexplained)
}

/// The exact comparison: Postgres landing, the dead-letter topic, Cassandra, the emulator.
#[expect(
    clippy::too_many_arguments,
    reason = "the scenario's names and sizes, as scripts/chaos passes them one by one"
)]
async fn verify(
    services: &common::Services,
    db_url: &str,
    keyspace: &str,
    dlq: &str,
    seed: &str,
    results: u32,
    records: u32,
    faults: &ContentFaults,
) -> Counts {
    let truth = emulator_truth(seed, results, records, faults);
    let (landed, pg_dups) = landed(db_url).await;
    let (dead, dlq_records, unexplained) = dead_letters(services, dlq).await;
    let rows = cassandra_rows(services, keyspace).await;
    let mut c = Counts {
        landed: landed.len(),
        rows: rows.len(),
        dlq_records,
        unexplained,
        dead_lettered: dead.len(),
        expected_dead: truth.malformed.len(),
        duplicated: pg_dups,
        ..Counts::default()
    };
    let landed_ids: BTreeSet<String> = landed.keys().cloned().collect();
    c.landing_diff = landed_ids.symmetric_difference(&truth.ids).count();
    c.dlq_diff = dead.symmetric_difference(&truth.malformed).count();
    for (id, (fetched_at_ms, user)) in &landed {
        if dead.contains(id) {
            continue;
        }
        let Some(row) = rows.get(id) else {
            c.lost += 1;
            if c.lost <= 5 {
                eprintln!("lost: {id}");
            }
            continue;
        };
        let mut bad = false;
        for (col, want) in expected_columns(user) {
            let got = row.cols.get(col).cloned().flatten();
            if got != want {
                bad = true;
                if c.mismatched < 5 {
                    eprintln!("mismatch {id}.{col}: {got:?} != {want:?}");
                }
            }
        }
        if row.fetched_at_ms != Some(*fetched_at_ms) {
            bad = true;
            eprintln!(
                "mismatch {id}.fetched_at: {:?} != {fetched_at_ms}",
                row.fetched_at_ms
            );
        }
        c.mismatched += usize::from(bad);
        if row
            .writetimes
            .iter()
            .any(|w| *w != Some(fetched_at_ms.saturating_mul(1000)))
        {
            c.duplicated += 1;
            eprintln!(
                "write timestamp of {id} {:?} != fetched_at {fetched_at_ms} ms",
                row.writetimes
            );
        }
    }
    c.extra = rows
        .keys()
        .filter(|id| !landed.contains_key(*id) || dead.contains(*id))
        .count();
    c
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The comparison step of `scripts/chaos`. Scenario from the environment:
/// `CHAOS_DB_URL` (with password), `CHAOS_KEYSPACE`, `CHAOS_DLQ`, `CHAOS_SEED`,
/// `CHAOS_RESULTS`, `CHAOS_RECORDS`, `CHAOS_BAD_RECORDS` (fraction), `CHAOS_BAD_KINDS`
/// (default: the emulator's default kinds); services from `scripts/stack env`.
/// Prints `lost=…, duplicated=…, mismatched=…, dead_lettered=…` and fails on anything but
/// 0/0/0/expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/chaos with CHAOS_* variables"]
async fn chaos_verify() {
    let need = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set"));
    let kinds: Vec<ContentFault> = env_or("CHAOS_BAD_KINDS", pipeline::emulator::DEFAULT_BAD_KINDS)
        .split(',')
        .map(|k| k.parse().expect("CHAOS_BAD_KINDS"))
        .collect();
    let faults = ContentFaults::new(
        env_or("CHAOS_BAD_RECORDS", "0").parse().expect("fraction"),
        kinds,
    );
    let started = Instant::now();
    // `scripts/chaos --cluster` (CHAOS_CLUSTER=1) checks against the cluster stack.
    let services = if env_or("CHAOS_CLUSTER", "0") == "1" {
        common::Services::cluster()
    } else {
        common::Services::local()
    };
    let counts = verify(
        &services,
        &need("CHAOS_DB_URL"),
        &need("CHAOS_KEYSPACE"),
        &need("CHAOS_DLQ"),
        &need("CHAOS_SEED"),
        need("CHAOS_RESULTS").parse().expect("results"),
        need("CHAOS_RECORDS").parse().expect("records"),
        &faults,
    )
    .await;
    println!("{}", counts.line());
    println!("{}", counts.detail());
    println!("verify took {:.1} s", started.elapsed().as_secs_f64());
    assert!(counts.ok(), "{}\n{}", counts.line(), counts.detail());
}

// ---------------------------------------------------------------------------------------
// Crash tests under `make test`
// ---------------------------------------------------------------------------------------

async fn landed_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users_landed")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Waits until at least `n` users are landed; panics with the daemon's log after `timeout`.
pub(crate) async fn wait_landed(
    pool: &sqlx::PgPool,
    n: i64,
    daemon: &common::Daemon,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        // Before migrations ran the table does not exist: count 0.
        if landed_count(pool).await >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "landing never reached {n}; log:\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGCONT on drop, so a failing test never leaves Postgres stopped for everyone else.
struct PausedPostgres;

impl PausedPostgres {
    fn stop() -> Self {
        stack_signal("STOP");
        PausedPostgres
    }
}

impl Drop for PausedPostgres {
    fn drop(&mut self) {
        stack_signal("CONT");
    }
}

fn stack_signal(sig: &str) {
    let status = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack"))
        .args(["stop-signal", "postgres", sig])
        .status()
        .expect("scripts/stack stop-signal");
    assert!(status.success(), "scripts/stack stop-signal postgres {sig}");
}

pub(crate) async fn assert_exact(
    s: &common::Scenario,
    results: u32,
    records: u32,
    faults: &ContentFaults,
) {
    let counts = verify(
        &s.services,
        &s.db_url,
        &s.keyspace,
        &s.dlq,
        &s.env["PIPELINE_SOURCE__SEED"],
        results,
        records,
        faults,
    )
    .await;
    println!("{}\n{}", counts.line(), counts.detail());
    assert!(counts.ok(), "{}\n{}", counts.line(), counts.detail());
    assert!(counts.expected_dead > 0, "the run had malformed records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_three_times_and_a_postgres_pause_lose_nothing() {
    let _exclusive = common::SHARED_SERVICES.lock().await;
    let faults = ContentFaults::new(0.01, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("chaos_kill", &api).await;
    let (results, records) = (500_u32, 20_000_u32);
    // 1,000 users/s: the ingest lasts ~20 s, long enough to kill it three times mid-stream.
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "2");
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let started = Instant::now();
    let mut logs = Vec::new();
    for (life, kill_at) in [4_000_i64, 9_000, 14_000].into_iter().enumerate() {
        let log = common::log_path(&format!("chaos_kill_{life}"));
        let mut daemon = s.spawn(&["run"], &log);
        wait_landed(&pool, kill_at, &daemon, Duration::from_secs(120)).await;
        if life == 1 {
            // Postgres stops answering (new connections hang) for 5 s under load.
            let paused = PausedPostgres::stop();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(paused);
            wait_landed(&pool, kill_at + 1_000, &daemon, Duration::from_secs(120)).await;
        }
        // A random moment within the next half second.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
        daemon.kill9();
        logs.push(log);
    }
    let log = common::log_path("chaos_kill_final");
    let mut last = s.spawn(&["run", "--drain-and-exit"], &log);
    let code = last.wait(Duration::from_secs(240));
    assert_eq!(code, 0, "final daemon failed; log:\n{}", last.log_tail(60));
    logs.push(log);
    println!(
        "3 kills + 5 s Postgres pause, {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for log in &logs {
        common::assert_no_panic(log);
    }
    assert_exact(&s, results, records, &faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_within_the_deadline_and_restart_loses_nothing() {
    let faults = ContentFaults::new(0.01, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("chaos_term", &api).await;
    let (results, records) = (500_u32, 10_000_u32);
    let deadline = Duration::from_secs(15);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "2")
        .set(
            "PIPELINE_RUNTIME__SHUTDOWN_DEADLINE",
            format!("{}s", deadline.as_secs()),
        );
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let log = common::log_path("chaos_term_1");
    let mut daemon = s.spawn(&["run"], &log);
    wait_landed(&pool, 3_000, &daemon, Duration::from_secs(120)).await;
    // Under load: pages in flight, the relay producing, the consumers writing.
    daemon
        .wait_for("/metrics", Duration::from_secs(60), |_, body| {
            common::metric(body, "pipeline_stage_records_total{stage=\"sink\"}") >= 500.0
        })
        .await;
    let t0 = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait(deadline + Duration::from_secs(5));
    let took = t0.elapsed();
    assert_eq!(code, 0, "SIGTERM exit code; log:\n{}", daemon.log_tail(40));
    assert!(
        took < deadline,
        "SIGTERM took {took:?} (deadline {deadline:?})"
    );
    println!("SIGTERM under load: exit 0 in {took:?}");
    assert!(
        landed_count(&pool).await < i64::from(records),
        "the ingest was still running when the signal came"
    );
    common::assert_no_panic(&log);

    let log2 = common::log_path("chaos_term_2");
    let mut second = s.spawn(&["run", "--drain-and-exit"], &log2);
    assert_eq!(
        second.wait(Duration::from_secs(180)),
        0,
        "restart failed; log:\n{}",
        second.log_tail(60)
    );
    common::assert_no_panic(&log2);
    assert_exact(&s, results, records, &faults).await;
}

/// `consumer.rebalance_timeout`'s default: how long a consumer holds its group membership
/// while it cannot run (src/consume/membership.rs).
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Waits (polling every 50 ms) until `/readyz` answers `want`; returns how long it took.
async fn until_readyz(daemon: &common::Daemon, want: u16, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if daemon.get("/readyz").await.map(|r| r.0) == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "/readyz never answered {want} within {timeout:?}; log:\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 18, item 5: after a long outage of Cassandra, then of Postgres (each refused at the
/// TCP level, as a stopped server is, through a proxy in front of the shared service), the
/// daemon is ready again within 2 s of the service's return, although its backoff had grown
/// towards `runtime.backoff.max` (30 s) during the outage; nothing is lost.
/// `PIPELINE_TEST_OUTAGE_SECS` sets the outage (default 20; the issue asks for 60).
/// In group mode the consumer keeps its group member across the Cassandra outage (within the
/// hold limit, `HOLD_LIMIT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_within_2s_of_a_service_returning_after_a_long_outage() {
    let _exclusive = common::SHARED_SERVICES.lock().await;
    let outage = Duration::from_secs(
        env_or("PIPELINE_TEST_OUTAGE_SECS", "20")
            .parse()
            .expect("PIPELINE_TEST_OUTAGE_SECS: seconds"),
    );
    let faults = ContentFaults::new(0.01, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("outage", &api).await;
    let postgres = common::Outage::start(common::postgres_addr(&s.db_url)).await;
    let cassandra = common::Outage::start(common::cassandra_contact()).await;
    let via_proxy = common::postgres_url_via(&s.db_url, postgres.port);
    // 1,000 users/s: the ingest outlasts the first outage and runs into the second (more
    // records for a longer outage, else the daemon drains and exits before the second).
    let records = u32::try_from((outage.as_secs() * 2 + 10) * 1000)
        .unwrap_or(u32::MAX)
        .max(50_000);
    let results = 100_u32;
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "10")
        .set("PIPELINE_POSTGRES__URL", via_proxy.clone())
        .set("PIPELINE_POSTGRES__CONNECT_TIMEOUT", "1s")
        .set(
            "PIPELINE_CASSANDRA__CONTACT_POINTS",
            format!("[\"127.0.0.1:{}\"]", cassandra.port),
        )
        // Group mode (the default): a sink failure must not cost a rejoin (the member is
        // held across the consumer's restart, src/consume/membership.rs).
        .set("PIPELINE_CONSUMER__ASSIGNMENT", "group")
        // The defaults: the backoff grows to 30 s during a long outage.
        .set("PIPELINE_RUNTIME__BACKOFF__INITIAL", "100ms")
        .set("PIPELINE_RUNTIME__BACKOFF__MAX", "30s");
    // `PIPELINE_TEST_PROBE_INTERVAL=0s` measures the daemon without probes (this test then fails).
    if let Ok(interval) = std::env::var("PIPELINE_TEST_PROBE_INTERVAL") {
        s.set("PIPELINE_RUNTIME__BACKOFF__PROBE_INTERVAL", interval);
    }
    let log = common::log_path("outage");
    let mut daemon = s.spawn(&["run", "--drain-and-exit"], &log);
    until_readyz(&daemon, 200, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut figures = Vec::new();
    for (name, proxy) in [("cassandra", &cassandra), ("postgres", &postgres)] {
        let member_before = crate::groups::group_of(&daemon).await;
        assert!(
            member_before.is_some(),
            "no group member before the {name} outage"
        );
        proxy.down();
        let went_down = until_readyz(&daemon, 503, outage).await;
        tokio::time::sleep(outage.saturating_sub(went_down)).await;
        proxy.reopen().await;
        let back = until_readyz(&daemon, 200, Duration::from_secs(60)).await;
        println!(
            "{name}: {outage:?} outage (unready after {went_down:?}); /readyz 200 {:.2} s after it returned",
            back.as_secs_f64()
        );
        figures.push((name, back));
        // The same member in the same generation: no leave, no rejoin, as long as the outage
        // is within the hold limit (consumer.rebalance_timeout, 30 s by default; a longer one
        // leaves the group and rejoins on return).
        let member_after = crate::groups::group_of(&daemon).await;
        println!(
            "{name}: group member {} across the outage",
            if member_after == member_before {
                "kept"
            } else {
                "rejoined"
            }
        );
        if outage + Duration::from_secs(5) < HOLD_LIMIT {
            assert_eq!(
                member_after,
                member_before,
                "{name}: the consumer rejoined its group; log:\n{}",
                daemon.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let code = daemon.wait(Duration::from_secs(240));
    assert_eq!(code, 0, "daemon failed; log:\n{}", daemon.log_tail(60));
    common::assert_no_panic(&log);
    for (name, back) in figures {
        assert!(
            back < Duration::from_secs(2),
            "{name}: ready {back:?} after it returned (limit 2 s)"
        );
    }
    assert_exact(&s, results, records, &faults).await;
}
