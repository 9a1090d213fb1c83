//! Replay and backfill commands (issue 17) against the real stack, through the real binary:
//! `replay --from landing` (and its resumption after kill -9), `replay --from kafka`,
//! `dlq redrive`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pipeline::emulator::{ContentFaults, EmulatorConfig, PageParams, generate_page};

/// Every row of the table: id → (the text columns, the write time of `email`).
type Table = BTreeMap<String, (BTreeMap<&'static str, Option<String>>, i64)>;

const COLUMNS: [&str; 11] = [
    "first_name",
    "last_name",
    "gender",
    "address",
    "post_code",
    "email",
    "username",
    "dob",
    "registered_date",
    "phone",
    "picture",
];

/// Values and write times of every row of `<keyspace>.created_users`.
async fn table(keyspace: &str) -> Table {
    use cdrs_tokio::types::IntoRustByName;
    let values = common::created_users(keyspace, &COLUMNS).await;
    let session = common::cassandra().await;
    let params = cdrs_tokio::statement::StatementParamsBuilder::new()
        .with_page_size(1_000_000)
        .build();
    let rows = session
        .query_with_params(
            format!("SELECT id, writetime(email) AS wt FROM {keyspace}.created_users"),
            params,
        )
        .await
        .expect("select write times")
        .response_body()
        .expect("body")
        .into_rows()
        .unwrap_or_default();
    let times: BTreeMap<String, i64> = rows
        .iter()
        .map(|row| {
            let id: uuid::Uuid = row.get_r_by_name("id").expect("id");
            let wt: i64 = row.get_r_by_name("wt").expect("writetime");
            (id.to_string(), wt)
        })
        .collect();
    values
        .into_iter()
        .map(|(id, cols)| {
            let wt = times.get(&id).copied().unwrap_or_default();
            (id, (cols, wt))
        })
        .collect()
}

async fn truncate(keyspace: &str) {
    common::cassandra()
        .await
        .query(format!("TRUNCATE {keyspace}.created_users"))
        .await
        .expect("truncate");
}

/// Waits until the daemon's sink has written at least `n` records (its own counter).
async fn wait_sink(daemon: &common::Daemon, n: usize, timeout: Duration) {
    daemon
        .wait_for("/metrics", timeout, |_, body| {
            common::metric(body, "pipeline_stage_records_total{stage=\"sink\"}") >= n as f64
        })
        .await;
}

/// Runs `pipeline <args>` to completion within `timeout`; returns (exit code, log text).
fn run_command(
    s: &common::Scenario,
    name: &str,
    args: &[&str],
    timeout: Duration,
) -> (i32, String) {
    let log = common::log_path(name);
    let mut command = s.spawn(args, &log);
    let code = command.wait(timeout);
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The emulator's fault-free users of a seeded run: id → (raw user, Kafka message).
fn served(seed: &str, results: u32, records: u32) -> BTreeMap<String, pipeline::model::RawUser> {
    let mut out = BTreeMap::new();
    for page in 1..=records.div_ceil(results) {
        let generated = generate_page(
            &PageParams::new(seed, page, results),
            &ContentFaults::none(),
        );
        let users = pipeline::model::split_page(generated.body.as_bytes()).expect("body");
        let keep = (records - (page - 1) * results).min(results) as usize;
        for user in users.into_iter().take(keep) {
            out.insert(user.id.clone(), user);
        }
    }
    out
}

async fn pg(s: &common::Scenario) -> sqlx::PgPool {
    sqlx::PgPool::connect(&s.db_url).await.expect("pg")
}

/// A daemon that ingests `records` users and keeps running (its relay drains replays).
async fn ingested_daemon(
    name: &str,
    records: u32,
) -> (
    common::Scenario,
    common::Daemon,
    tokio_util::sync::CancellationToken,
) {
    let (api, stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new(name, &api).await;
    s.set("PIPELINE_SOURCE__RESULTS", "500")
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string());
    let daemon = s.spawn(&["run"], &common::log_path(&format!("{name}_daemon")));
    wait_sink(&daemon, records as usize, Duration::from_secs(240)).await;
    (s, daemon, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_replay_rebuilds_a_truncated_table_and_a_second_changes_nothing() {
    let records = 3_000;
    let (s, daemon, _stop) = ingested_daemon("replay_land", records).await;
    let before = table(&s.keyspace).await;
    assert_eq!(before.len(), records as usize);
    // The table holds what the API served, value for value (spot check of the key columns).
    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    for (id, user) in served(&seed, 500, records) {
        let json = user.json().expect("json");
        let (cols, _) = &before[&id];
        assert_eq!(cols["email"], common::json_text(json.get("email")), "{id}");
    }

    truncate(&s.keyspace).await;
    assert!(table(&s.keyspace).await.is_empty());
    let (code, log) = run_command(
        &s,
        "replay_land_1",
        &["replay", "--from", "landing"],
        Duration::from_secs(180),
    );
    assert_eq!(code, 0, "replay failed:\n{log}");
    assert!(
        log.contains(&format!("{records} of {records} matching users queued")),
        "{log}"
    );
    wait_sink(&daemon, 2 * records as usize, Duration::from_secs(180)).await;
    let after = table(&s.keyspace).await;
    assert_eq!(after.len(), before.len());
    assert!(
        after == before,
        "the rebuilt table differs (values or write times)"
    );

    // A second replay rewrites the same cells with the same write times: nothing changes.
    let (code, log) = run_command(
        &s,
        "replay_land_2",
        &["replay", "--from", "landing"],
        Duration::from_secs(180),
    );
    assert_eq!(code, 0, "second replay failed:\n{log}");
    wait_sink(&daemon, 3 * records as usize, Duration::from_secs(180)).await;
    assert!(
        table(&s.keyspace).await == before,
        "a second replay changed the table"
    );

    // A dry run counts and writes nothing.
    let (code, log) = run_command(
        &s,
        "replay_land_dry",
        &["replay", "--from", "landing", "--dry-run"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("dry run: {records} landed users match")),
        "{log}"
    );
    let pool = pg(&s).await;
    let jobs: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT state, queued, total FROM replay_jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("jobs");
    let r = i64::from(records);
    assert_eq!(jobs, vec![("done".into(), r, r), ("done".into(), r, r)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_replay_without_a_relay_exits_69_and_says_so() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let s = common::Scenario::new("replay_norelay", &api).await;
    let (code, log) = run_command(
        &s,
        "replay_norelay",
        &["replay", "--from", "landing"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 69, "{log}");
    assert!(log.contains("no relay holds the outbox lock"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_landing_replay_resumes_and_the_table_is_exact() {
    let records = 6_000;
    let (s, daemon, _stop) = ingested_daemon("replay_kill", records).await;
    let before = table(&s.keyspace).await;
    assert_eq!(before.len(), records as usize);
    truncate(&s.keyspace).await;

    let pool = pg(&s).await;
    let args = [
        "replay",
        "--from",
        "landing",
        "--chunk-rows",
        "100",
        "--max-outbox-rows",
        "100",
    ];
    let mut first = s.spawn(&args, &common::log_path("replay_kill_1"));
    // kill -9 mid-replay: some chunks committed, not all.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let queued: Option<i64> = sqlx::query_scalar("SELECT max(queued) FROM replay_jobs")
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        if queued.is_some_and(|q| q >= 1_000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay never progressed:\n{}",
            first.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill9();
    let (state, queued): (String, i64) = sqlx::query_as("SELECT state, queued FROM replay_jobs")
        .fetch_one(&pool)
        .await
        .expect("job");
    assert_eq!(state, "running");
    assert!(
        queued < i64::from(records),
        "killed after the end ({queued})"
    );
    println!("killed at {queued} of {records} queued");

    let (code, log) = run_command(&s, "replay_kill_2", &args, Duration::from_secs(300));
    assert_eq!(code, 0, "resumed replay failed:\n{log}");
    assert!(log.contains("resumed"), "{log}");
    let jobs: Vec<(String, i64)> = sqlx::query_as("SELECT state, queued FROM replay_jobs")
        .fetch_all(&pool)
        .await
        .expect("jobs");
    assert_eq!(
        jobs,
        vec![("done".into(), i64::from(records))],
        "one job, each user queued once"
    );
    wait_sink(&daemon, 2 * records as usize, Duration::from_secs(180)).await;
    let after = table(&s.keyspace).await;
    assert_eq!(after.len(), before.len());
    assert!(
        after == before,
        "the rebuilt table differs (values or write times)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_replay_to_a_time_rereads_only_the_records_after_it() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("replay_kafka", &api).await;
    s.set("PIPELINE_SOURCE__RESULTS", "500")
        .set("PIPELINE_SOURCE__MAX_RECORDS", "1000");
    let prom = s.run_drained("replay_kafka_1", Duration::from_secs(240));
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"consumer\"}"),
        1000.0
    );

    // T, then 300 more records (valid users of another seed) produced straight to the topic.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let t = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let client = common::kafka().await;
    let partitions = client
        .list_topics()
        .await
        .expect("topics")
        .into_iter()
        .find(|x| x.name == s.topic)
        .expect("topic")
        .partitions
        .len() as i32;
    let extra = served(&format!("{}_extra", s.keyspace), 100, 300);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut by_partition: BTreeMap<i32, Vec<rskafka::record::Record>> = BTreeMap::new();
    for (id, user) in &extra {
        let p = pipeline::model::partition_for_key(id.as_bytes(), partitions);
        by_partition
            .entry(p)
            .or_default()
            .push(rskafka::record::Record {
                key: Some(id.clone().into_bytes()),
                value: Some(user.message.clone()),
                headers: pipeline::model::message_headers(now_ms),
                timestamp: chrono::Utc::now(),
            });
    }
    for (p, records) in by_partition {
        let pc = client
            .partition_client(
                s.topic.as_str(),
                p,
                rskafka::client::partition::UnknownTopicHandling::Retry,
            )
            .await
            .expect("partition client");
        pc.produce(
            records,
            rskafka::client::partition::Compression::NoCompression,
        )
        .await
        .expect("produce");
    }
    let prom = s.run_drained("replay_kafka_2", Duration::from_secs(240));
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"consumer\"}"),
        300.0
    );
    let stored = common::stored_offsets(&s.keyspace, &s.topic).await;

    // Refused while a daemon is connected (here: a session named like one), unless --force.
    let to_time = t.to_rfc3339();
    let args = ["replay", "--from", "kafka", "--to-time", to_time.as_str()];
    {
        let options: sqlx::postgres::PgConnectOptions = s.db_url.parse().expect("url");
        let daemon_like = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.application_name("pipeline"))
            .await
            .expect("pg");
        sqlx::query("SELECT 1")
            .execute(&daemon_like)
            .await
            .expect("session");
        let (code, log) = run_command(&s, "replay_kafka_refused", &args, Duration::from_secs(60));
        assert_eq!(code, 1, "{log}");
        assert!(
            log.contains("would overwrite the moved offsets") && log.contains("--force"),
            "{log}"
        );
        daemon_like.close().await;
    }
    assert_eq!(common::stored_offsets(&s.keyspace, &s.topic).await, stored);

    // A dry run prints the moves and changes nothing.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, log) = run_command(&s, "replay_kafka_dry", &dry, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("dry run: would move"), "{log}");
    assert_eq!(common::stored_offsets(&s.keyspace, &s.topic).await, stored);

    let (code, log) = run_command(&s, "replay_kafka_move", &args, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    let moved = common::stored_offsets(&s.keyspace, &s.topic).await;
    let rewound: i64 = stored.iter().map(|(p, o)| o - moved[p]).sum();
    assert_eq!(
        rewound, 300,
        "moved back by exactly the records after T:\n{log}"
    );
    for p in stored.keys() {
        assert!(
            log.contains(&format!("partition {p}: {} -> {}", stored[p], moved[p])),
            "{log}"
        );
    }

    // The consumers re-read exactly those records.
    let prom = s.run_drained("replay_kafka_3", Duration::from_secs(240));
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"consumer\"}"),
        300.0
    );
    assert_eq!(common::stored_offsets(&s.keyspace, &s.topic).await, stored);
    assert_eq!(
        common::created_users(&s.keyspace, &["email"]).await.len(),
        1_300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_redrive_lands_what_a_bad_rule_rejected_and_keeps_the_malformed() {
    let faults = ContentFaults::new(0.05, common::default_kinds());
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("replay_dlq", &api).await;
    let (results, records): (u32, u32) = (500, 2_000);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string());
    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();

    // What the API serves: valid users (with their email) and malformed ids.
    let mut valid: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut malformed = BTreeSet::new();
    for page in 1..=records.div_ceil(results) {
        let generated = generate_page(&PageParams::new(&seed, page, results), &faults);
        let users = pipeline::model::split_page(generated.body.as_bytes()).expect("body");
        for (user, meta) in users.into_iter().zip(generated.users) {
            if meta.is_valid() {
                let json = user.json().expect("json");
                valid.insert(user.id, common::json_text(json.get("email")));
            } else {
                malformed.insert(user.id);
            }
        }
    }
    // A "bad rule": reject valid users whose email ends with a common letter + domain.
    let suffix = ["e@example.com", "a@example.com", "n@example.com"]
        .into_iter()
        .max_by_key(|suffix| {
            valid
                .values()
                .filter(|e| e.as_deref().is_some_and(|e| e.ends_with(suffix)))
                .count()
        })
        .expect("a suffix");
    let rejected: BTreeSet<&String> = valid
        .iter()
        .filter(|(_, e)| e.as_deref().is_some_and(|e| e.ends_with(suffix)))
        .map(|(id, _)| id)
        .collect();
    assert!(!rejected.is_empty() && rejected.len() < valid.len());
    assert!(!malformed.is_empty());

    let mut bad = s.clone();
    bad.set("PIPELINE_DLQ__TEST_REJECT_EMAIL_SUFFIX", suffix);
    bad.run_drained("replay_dlq_run", Duration::from_secs(240));
    let ids = |t: &BTreeMap<String, _>| t.keys().cloned().collect::<BTreeSet<String>>();
    let landed = ids(&common::created_users(&s.keyspace, &["email"]).await);
    let want_before: BTreeSet<String> = valid
        .keys()
        .filter(|id| !rejected.contains(id))
        .cloned()
        .collect();
    assert_eq!(landed, want_before, "the bad rule kept its users out");

    // Dry run: counts, writes nothing.
    let (code, log) = run_command(
        &s,
        "replay_dlq_dry",
        &["dlq", "redrive", "--dry-run"],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("dry run"), "{log}");
    assert_eq!(
        ids(&common::created_users(&s.keyspace, &["email"]).await),
        want_before
    );

    let line = |log: &str, reason: &str| -> (u64, u64) {
        log.lines()
            .find(|l| l.split_whitespace().next() == Some(reason))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
            })
            .unwrap_or_else(|| panic!("no `{reason}` line:\n{log}"))
    };
    // A filtered run only looks at its reason (nothing of it passes).
    let (code, log) = run_command(
        &s,
        "replay_dlq_filtered",
        &["dlq", "redrive", "--reason", "invalid_date"],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{log}");
    assert!(!log.lines().any(|l| l.starts_with("test_rule")), "{log}");
    let (redriven, dates) = line(&log, "total");
    assert_eq!(redriven, 0, "{log}");
    assert!(dates > 0, "{log}");
    assert!(
        log.contains(&format!(
            "{} letters left out",
            rejected.len() + malformed.len() - dates as usize
        )),
        "{log}"
    );
    assert_eq!(
        ids(&common::created_users(&s.keyspace, &["email"]).await),
        want_before
    );

    // Redrive with the normal rules: the rejected users land, the malformed stay out.
    let (code, log) = run_command(
        &s,
        "replay_dlq_1",
        &["dlq", "redrive"],
        Duration::from_secs(180),
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(line(&log, "test_rule"), (rejected.len() as u64, 0), "{log}");
    let (redriven, still_invalid) = line(&log, "total");
    assert_eq!(redriven, rejected.len() as u64, "{log}");
    assert_eq!(
        still_invalid,
        malformed.len() as u64,
        "one letter per malformed record:\n{log}"
    );
    let table = common::created_users(&s.keyspace, &["email"]).await;
    assert_eq!(
        ids(&table),
        valid.keys().cloned().collect::<BTreeSet<_>>(),
        "every valid user, no malformed one"
    );
    for (id, email) in &valid {
        assert_eq!(&table[id]["email"], email, "{id}");
    }

    // A second run has nothing left to do.
    let (code, log) = run_command(
        &s,
        "replay_dlq_2",
        &["dlq", "redrive"],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(line(&log, "total"), (0, 0), "{log}");
}

/// The replay rate: 200,000 landed users through the outbox and the relay to Kafka.
/// `cargo test --release --test it replay::landing_replay_rate -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: 200,000 users; run by hand for the figure"]
async fn landing_replay_rate() {
    let users = 200_000_u32;
    let (s, _daemon, _stop) = ingested_daemon("replay_rate", 500).await;
    // Land 200,000 users (emulator pages) straight into the landing table.
    let pool = pg(&s).await;
    let per_page = 5_000;
    for page in 1..=users / per_page {
        let generated = generate_page(
            &PageParams::new("replay_rate", page, per_page),
            &ContentFaults::none(),
        );
        let split = pipeline::model::split_page(generated.body.as_bytes()).expect("body");
        let ids: Vec<String> = split.iter().map(|u| u.id.clone()).collect();
        let raws: Vec<String> = split.iter().map(|u| u.raw.clone()).collect();
        sqlx::query(
            "WITH b AS (INSERT INTO landing_batches (seed, page, fetched_at, users) \
                        VALUES ('replay_rate', $1, now(), $2) RETURNING batch_id, fetched_at) \
             INSERT INTO users_landed (id, fetched_at, batch_id, raw) \
             SELECT unnest($3::text[]), b.fetched_at, b.batch_id, unnest($4::text[]) FROM b \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(page as i32)
        .bind(per_page as i32)
        .bind(&ids)
        .bind(&raws)
        .execute(&pool)
        .await
        .expect("land");
    }
    let started = Instant::now();
    let (code, log) = run_command(
        &s,
        "replay_rate",
        &["replay", "--from", "landing", "--seed", "replay_rate"],
        Duration::from_secs(900),
    );
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("{users} of {users} matching users queued")),
        "{log}"
    );
    println!(
        "replayed {users} landed users to Kafka in {secs:.1}s: {:.0} users/s",
        f64::from(users) / secs
    );
}
