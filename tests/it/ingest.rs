//! The ingest half through the real binary: API faults retried and counted, exact landing,
//! at-least-once relay, credentials nowhere, and kill -9 between landing and relay.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use pipeline::emulator::EmulatorConfig;

/// A front for the emulator's generator that times out every third request (sleeps past the
/// client's timeout) — the one transport fault the emulator does not inject per request.
async fn start_timeout_front(upstream: String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/api/1.4/",
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let h = Arc::clone(&h);
            let client = client.clone();
            let upstream = upstream.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) % 3 == 1 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let url = format!("{upstream}?{}", q.unwrap_or_default());
                match client.get(url).send().await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        let retry = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = r.bytes().await.unwrap_or_default();
                        let mut resp = (status, body).into_response();
                        if let Some(v) = retry.and_then(|v| v.parse().ok()) {
                            resp.headers_mut().insert("retry-after", v);
                        }
                        resp
                    }
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/api/1.4/"), hits)
}

fn all_ids_and_passwords(
    seed: &str,
    results: u32,
    records: u32,
) -> (BTreeSet<String>, Vec<String>) {
    let users = common::served_users(seed, results, records);
    let ids = users
        .iter()
        .map(|u| u["login"]["uuid"].as_str().expect("uuid").to_string())
        .collect();
    (ids, common::credential_values(&users))
}

async fn kafka_values(topic: &str) -> Vec<(String, String)> {
    let client = common::kafka().await;
    common::read_topic(&client, topic)
        .await
        .into_iter()
        .map(|(_, r)| {
            (
                String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_are_retried_and_counted_and_landing_is_exact() {
    let (emulator, _stop) = common::start_emulator(EmulatorConfig {
        // High enough that every kind shows up in ~60 requests (P(miss) < 1e-4 each).
        fail_429: 0.2,
        fail_5xx: 0.2,
        truncate: 0.25,
        retry_after: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let (api, front_hits) = start_timeout_front(emulator).await;
    let mut s = common::Scenario::new("ingest_faults", &api).await;
    let (results, records) = (100, 2_000);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__TIMEOUT", "1s")
        .set("PIPELINE_SOURCE__MAX_ATTEMPTS", "40")
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let prom = s.run_drained("ingest_faults", Duration::from_secs(240));
    assert!(front_hits.load(Ordering::SeqCst) > 10);

    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let (ids, passwords) = all_ids_and_passwords(&seed, results, records);
    assert_eq!(ids.len(), records as usize);

    // Exactly N landed rows, the right ids, no credentials.
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let landed: Vec<String> = sqlx::query_scalar("SELECT id FROM users_landed")
        .fetch_all(&pool)
        .await
        .expect("ids");
    assert_eq!(landed.len(), records as usize);
    assert_eq!(landed.into_iter().collect::<BTreeSet<_>>(), ids);
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users_landed_json WHERE raw->'login' ?| array['password','salt','md5','sha1','sha256']",
    )
    .fetch_one(&pool)
    .await
    .expect("search");
    assert_eq!(leaked, 0, "credential fields stored in Postgres");
    let dump: String = sqlx::query_scalar("SELECT string_agg(raw::text, '\n') FROM users_landed")
        .fetch_one(&pool)
        .await
        .expect("dump");
    for p in passwords.iter().filter(|p| p.len() >= 8) {
        assert!(
            !dump.contains(p.as_str()),
            "credential value {p} found in Postgres"
        );
    }

    // At least N Kafka records covering all ids, no credentials in any value.
    let values = kafka_values(&s.topic).await;
    assert!(values.len() >= records as usize);
    let keys: BTreeSet<String> = values.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, ids);
    for (_, v) in &values {
        for field in [
            "\"password\"",
            "\"salt\"",
            "\"md5\"",
            "\"sha1\"",
            "\"sha256\"",
        ] {
            assert!(!v.contains(field), "{field} in a Kafka value");
        }
    }
    let all_values: String = values.iter().map(|(_, v)| v.as_str()).collect();
    for p in passwords.iter().filter(|p| p.len() >= 8) {
        assert!(
            !all_values.contains(p.as_str()),
            "credential value {p} found in Kafka"
        );
    }

    // Each kind of fault was retried and counted.
    common::assert_source_outcomes(
        &prom,
        &["rate_limited", "server_error", "malformed_body", "timeout"],
        records / results,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_landing_and_relay_loses_nothing() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("ingest_kill", &api).await;
    let (results, records) = (500, 3_000);
    // First life: Kafka unreachable, so rows land but cannot be relayed.
    let dead_kafka = format!("[\"127.0.0.1:{}\"]", common::free_port());
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_CONSUMER__ENABLED", "false")
        .set("PIPELINE_KAFKA__REQUEST_TIMEOUT", "1s");
    let good_kafka = s.env["PIPELINE_KAFKA__BOOTSTRAP"].clone();
    s.set("PIPELINE_KAFKA__BOOTSTRAP", dead_kafka);
    let mut first = s.spawn(&["run"], &common::log_path("ingest_kill_1"));
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM users_landed")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        if landed == i64::from(records) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "landing stalled at {landed}; log:\n{}",
            first.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        backlog,
        i64::from(records),
        "nothing can have been relayed yet"
    );
    first.kill9();

    // Second life: Kafka is back; everything is relayed.
    s.set("PIPELINE_KAFKA__BOOTSTRAP", good_kafka);
    let mut second = s.spawn(
        &["run", "--drain-and-exit"],
        &common::log_path("ingest_kill_2"),
    );
    assert_eq!(
        second.wait(Duration::from_secs(180)),
        0,
        "log:\n{}",
        second.log_tail(60)
    );
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(backlog, 0);
    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let (ids, _) = all_ids_and_passwords(&seed, results, records);
    let keys: BTreeSet<String> = kafka_values(&s.topic)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ids);
}

/// The relay overlaps rounds and skips the seq range of the round it is producing; a row whose
/// transaction commits late, with a seq below rows already relayed, must still be relayed (the
/// outbox has no gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_below_relayed_rows_is_relayed() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("ingest_late", &api).await;
    let records = 1_000;
    // First life: Kafka unreachable, so the schema exists and rows wait in the outbox.
    let dead_kafka = format!("[\"127.0.0.1:{}\"]", common::free_port());
    s.set("PIPELINE_SOURCE__RESULTS", "500")
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_CONSUMER__ENABLED", "false")
        .set("PIPELINE_KAFKA__REQUEST_TIMEOUT", "1s");
    let good_kafka = s.env["PIPELINE_KAFKA__BOOTSTRAP"].clone();
    s.set("PIPELINE_KAFKA__BOOTSTRAP", dead_kafka);
    let mut first = s.spawn(&["run"], &common::log_path("ingest_late_1"));
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap_or(0)
        < i64::from(records)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "landing stalled; log:\n{}",
            first.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.kill9();

    // A transaction takes a seq and stays open while 30,000 rows with higher seqs commit.
    let mut late = pool.begin().await.expect("begin");
    let late_seq: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (user_id, fetched_at_ms, message) \
         VALUES ('late-straggler', 0, '{\"id\":\"late-straggler\"}'::bytea) RETURNING seq",
    )
    .fetch_one(&mut *late)
    .await
    .expect("late insert");
    sqlx::query(
        "INSERT INTO outbox (user_id, fetched_at_ms, message) \
         SELECT o.user_id, o.fetched_at_ms, o.message FROM outbox o, generate_series(1, 30) \
         ORDER BY o.seq",
    )
    .execute(&pool)
    .await
    .expect("rows above the late one");

    // Second life: once rows above the late seq have been relayed, the late row commits.
    s.set("PIPELINE_KAFKA__BOOTSTRAP", good_kafka)
        .set("PIPELINE_RELAY__BATCH_ROWS", "700");
    let mut second = s.spawn(
        &["run", "--drain-and-exit"],
        &common::log_path("ingest_late_2"),
    );
    let above = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE seq > $1")
            .bind(late_seq)
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    let initial_above = above(pool.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while above(pool.clone()).await == initial_above {
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not start; log:\n{}",
            second.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let remaining = above(pool.clone()).await;
    late.commit().await.expect("late commit");
    assert!(
        remaining > 0,
        "the relay finished before the late commit; the test needs more rows above it"
    );

    assert_eq!(
        second.wait(Duration::from_secs(180)),
        0,
        "log:\n{}",
        second.log_tail(60)
    );
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(backlog, 0, "the late row is still in the outbox");
    let keys: BTreeSet<String> = kafka_values(&s.topic)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        keys.contains("late-straggler"),
        "the late row never reached Kafka"
    );
    assert_eq!(keys.len(), records as usize + 1);
}

/// A row landed by an older version (no stored message) whose JSON does not encode is an
/// error naming the row, not an empty or made-up message: the relay stops (fatal, exit 1)
/// and the row stays in the outbox (issue 13: no silent defaults on the data path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_legacy_row_stops_the_relay_naming_it() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("ingest_corrupt", &api).await;
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let mut migrate = s.spawn(&["migrate"], &common::log_path("ingest_corrupt_migrate"));
    assert_eq!(
        migrate.wait(Duration::from_secs(60)),
        0,
        "migrate failed:\n{}",
        migrate.log_tail(20)
    );
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    sqlx::query(
        "INSERT INTO users_landed (id, fetched_at, batch_id, raw) \
         VALUES ('corrupt-user', now(), 0, '{\"name\": ')",
    )
    .execute(&pool)
    .await
    .expect("insert landed user");
    let seq: i64 =
        sqlx::query_scalar("INSERT INTO outbox (user_id) VALUES ('corrupt-user') RETURNING seq")
            .fetch_one(&pool)
            .await
            .expect("insert legacy outbox row");

    let mut daemon = s.spawn(&["run"], &common::log_path("ingest_corrupt_run"));
    let code = daemon.wait(Duration::from_secs(90));
    let log = daemon.log_tail(60);
    assert_eq!(
        code, 1,
        "a corrupted row must stop the relay (exit 1):\n{log}"
    );
    assert!(
        log.contains(&format!("outbox row seq {seq} (user corrupt-user)"))
            && log.contains("does not encode"),
        "the error must name the row:\n{log}"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE seq = $1")
        .bind(seq)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 1, "the row must stay in the outbox");
}
