//! End to end through the real binary: emulator → Postgres → Kafka → Cassandra (+ DLQ).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pipeline::emulator::{ContentFaults, EmulatorConfig, PageParams, generate_page};

/// What the emulator will serve for a seeded run: ids split into valid and malformed, and
/// the expected column values of the valid ones.
struct Expected {
    valid: BTreeMap<String, serde_json::Value>,
    malformed: BTreeSet<String>,
}

fn expected(seed: &str, results: u32, records: u32, faults: &ContentFaults) -> Expected {
    let mut valid = BTreeMap::new();
    let mut malformed = BTreeSet::new();
    let pages = records.div_ceil(results);
    for page in 1..=pages {
        let generated = generate_page(&PageParams::new(seed, page, results), faults);
        let users = pipeline::model::split_page(generated.body.as_bytes()).expect("emulator body");
        let keep = (records - (page - 1) * results).min(results) as usize;
        for (user, meta) in users.into_iter().zip(generated.users).take(keep) {
            if meta.is_valid() {
                let json = user.json().expect("landed JSON");
                valid.insert(user.id, json);
            } else {
                malformed.insert(user.id);
            }
        }
    }
    Expected { valid, malformed }
}

async fn cassandra_rows(
    keyspace: &str,
) -> BTreeMap<String, BTreeMap<&'static str, Option<String>>> {
    common::created_users(
        keyspace,
        &[
            "first_name",
            "last_name",
            "email",
            "username",
            "post_code",
            "picture",
            "dob",
            "address",
        ],
    )
    .await
}

/// Asserts the table holds exactly the valid ids with values from the API's JSON.
async fn assert_table_exact(keyspace: &str, exp: &Expected) {
    let rows = cassandra_rows(keyspace).await;
    let got: BTreeSet<&String> = rows.keys().collect();
    let want: BTreeSet<&String> = exp.valid.keys().collect();
    let lost = want.difference(&got).count();
    let extra = got.difference(&want).count();
    let mut mismatched = 0;
    for (id, user) in &exp.valid {
        let Some(cols) = rows.get(id) else { continue };
        let expect = [
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
        ];
        for (col, value) in expect {
            if cols.get(col).cloned().flatten() != value {
                mismatched += 1;
                eprintln!("mismatch {id}.{col}: {:?} != {value:?}", cols.get(col));
            }
        }
        let address = cols.get("address").cloned().flatten().unwrap_or_default();
        let city = common::json_text(user.pointer("/location/city")).unwrap_or_default();
        if !address.contains(&city) {
            mismatched += 1;
        }
    }
    println!(
        "lost={lost}, extra={extra}, mismatched={mismatched}, valid={}",
        exp.valid.len()
    );
    assert_eq!((lost, extra, mismatched), (0, 0, 0));
}

/// The API's credential values (password, salt, hashes) of every served user appear in no
/// column of any row of the table.
async fn assert_no_credentials_in_cassandra(
    keyspace: &str,
    seed: &str,
    results: u32,
    records: u32,
) {
    let secrets = common::credential_values(&common::served_users(seed, results, records));
    assert!(!secrets.is_empty());
    let rows = cassandra_rows(keyspace).await;
    let dump: String = rows
        .values()
        .flat_map(|cols| cols.values().flatten().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "credential value {secret} found in Cassandra"
        );
    }
}

/// Distinct DLQ keys, and the reasons seen.
async fn dead_letters(topic: &str) -> (BTreeSet<String>, usize, BTreeSet<String>) {
    let client = common::kafka().await;
    let records = common::read_topic(&client, topic).await;
    let mut keys = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for (_, r) in &records {
        let reason = r
            .record
            .headers
            .get("pipeline.error.reason")
            .map(|v| String::from_utf8_lossy(v).to_string())
            .expect("every dead letter names its reason");
        assert!(
            r.record.headers.contains_key("pipeline.error.offset"),
            "origin offset header"
        );
        assert!(
            r.record.headers.contains_key("pipeline.error.detail"),
            "detail header"
        );
        reasons.insert(reason);
        keys.insert(
            String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()).to_string(),
        );
    }
    (keys, records.len(), reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_and_the_table_is_exact() {
    let faults = ContentFaults::new(0.08, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("e2e_dlq", &api).await;
    let (results, records) = (500, 3_000);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string());
    let report = std::env::temp_dir().join(format!("{}.json", s.keyspace));
    let metrics_out = std::env::temp_dir().join(format!("{}.prom", s.keyspace));
    let mut daemon = s.spawn(
        &[
            "run",
            "--drain-and-exit",
            "--report-json",
            report.to_str().expect("path"),
            "--metrics-out",
            metrics_out.to_str().expect("path"),
        ],
        &common::log_path("e2e_dlq"),
    );
    let code = daemon.wait(Duration::from_secs(240));
    assert_eq!(code, 0, "daemon failed; log:\n{}", daemon.log_tail(80));

    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let exp = expected(&seed, results, records, &faults);
    assert!(
        !exp.malformed.is_empty() && exp.malformed.len() < 600,
        "{}",
        exp.malformed.len()
    );
    assert_table_exact(&s.keyspace, &exp).await;
    assert_no_credentials_in_cassandra(&s.keyspace, &seed, results, records).await;

    let (keys, count, reasons) = dead_letters(&s.dlq).await;
    assert_eq!(keys, exp.malformed, "DLQ holds exactly the malformed ids");
    assert_eq!(
        count,
        exp.malformed.len(),
        "no duplicate dead letters in a clean run"
    );
    assert!(reasons.len() >= 3, "several reasons: {reasons:?}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(report["written"], exp.valid.len() as u64);
    assert_eq!(report["dead_lettered"], exp.malformed.len() as u64);
    assert_eq!(report["landed"], u64::from(records));
    let prom = std::fs::read_to_string(&metrics_out).expect("metrics");
    let dead_total = common::metric(&prom, "pipeline_dead_letters_total{");
    assert_eq!(dead_total as usize, exp.malformed.len());
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"sink\"}") as usize,
        exp.valid.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_daemon_resumes_and_the_table_is_exact() {
    let faults = ContentFaults::new(0.02, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        latency: Duration::from_millis(20),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("e2e_kill", &api).await;
    let (results, records) = (500, 10_000);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "4");
    let log = common::log_path("e2e_kill_1");
    let mut first = s.spawn(&["run"], &log);
    // Kill -9 once rows are flowing into Cassandra, mid-stream.
    first
        .wait_for("/metrics", Duration::from_secs(120), |_, body| {
            common::metric(body, "pipeline_stage_records_total{stage=\"sink\"}") >= 1_000.0
        })
        .await;
    first.kill9();

    let mut second = s.spawn(
        &["run", "--drain-and-exit"],
        &common::log_path("e2e_kill_2"),
    );
    let code = second.wait(Duration::from_secs(300));
    assert_eq!(
        code,
        0,
        "restarted daemon failed; log:\n{}",
        second.log_tail(80)
    );

    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let exp = expected(&seed, results, records, &faults);
    assert_table_exact(&s.keyspace, &exp).await;
    let (keys, _count, _) = dead_letters(&s.dlq).await;
    assert_eq!(
        keys, exp.malformed,
        "every malformed id dead-lettered (replays may repeat one)"
    );

    // Postgres landed every user exactly once.
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM users_landed")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(landed, i64::from(records));
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(backlog, 0);
}
