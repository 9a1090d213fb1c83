//! Hostile input: every fault mode of the emulator through the real binary, hand-made poison
//! records, and property tests (many cases) of the decode → encode → validate path.
//!
//! Claims checked: no panic anywhere (the daemon's log never says "panicked"); transport
//! faults (429, 5xx, truncated or non-UTF-8 bodies, slow bodies) are retried and counted;
//! every malformed record is dead-lettered with a reason and nothing else is; the decode path
//! never panics and its output is bounded by its input.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use pipeline::emulator::{ContentFault, ContentFaults, EmulatorConfig, PageParams, generate_page};
use pipeline::model::{self, RejectReason};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Ids served for a seeded run, split into valid and malformed.
fn served(
    seed: &str,
    results: u32,
    records: u32,
    faults: &ContentFaults,
) -> (BTreeSet<String>, BTreeMap<String, ContentFault>) {
    let mut valid = BTreeSet::new();
    let mut malformed = BTreeMap::new();
    for page in 1..=records.div_ceil(results) {
        let generated = generate_page(&PageParams::new(seed, page, results), faults);
        let users = model::split_page(generated.body.as_bytes()).expect("emulator body");
        let keep = (records - (page - 1) * results).min(results) as usize;
        for (user, meta) in users.into_iter().zip(generated.users).take(keep) {
            match meta.fault {
                None => {
                    valid.insert(user.id);
                }
                Some(kind) => {
                    malformed.insert(user.id, kind);
                }
            }
        }
    }
    (valid, malformed)
}

async fn cassandra_ids(keyspace: &str) -> BTreeSet<String> {
    use cdrs_tokio::statement::StatementParamsBuilder;
    use cdrs_tokio::types::IntoRustByName;
    let session = common::cassandra().await;
    let params = StatementParamsBuilder::new()
        .with_page_size(1_000_000)
        .build();
    let rows = session
        .query_with_params(format!("SELECT id FROM {keyspace}.created_users"), params)
        .await
        .expect("select ids")
        .response_body()
        .expect("body")
        .into_rows()
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            let id: uuid::Uuid = r.get_r_by_name("id").expect("id");
            id.to_string()
        })
        .collect()
}

/// One dead letter: key, stage, reason, value size.
struct Letter {
    key: String,
    stage: String,
    reason: String,
    value_len: usize,
}

async fn dead_letters(topic: &str) -> Vec<Letter> {
    let client = common::kafka().await;
    let header = |r: &rskafka::record::Record, h: &str| {
        r.headers
            .get(&format!("pipeline.error.{h}"))
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    common::read_topic(&client, topic)
        .await
        .into_iter()
        .map(|(_, r)| Letter {
            key: String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()).to_string(),
            stage: header(&r.record, "stage"),
            reason: header(&r.record, "reason"),
            value_len: r.record.value.as_ref().map_or(0, Vec::len),
        })
        .collect()
}

/// A randomuser-like API serving `body(page)`; returns its URL.
async fn start_api(body: impl Fn(u32) -> String + Send + Sync + 'static) -> String {
    let body = std::sync::Arc::new(body);
    let app = axum::Router::new().route(
        "/api/1.4/",
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let body = std::sync::Arc::clone(&body);
            async move {
                let page = q
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("page=")?.parse::<u32>().ok())
                    .unwrap_or(1);
                ([("content-type", "application/json")], body(page))
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
    format!("http://{addr}/api/1.4/")
}

/// A seeded emulator page, with `edit` applied to its users (by index).
fn edited_page(seed: &str, page: u32, results: u32, edit: impl Fn(usize, &mut Value)) -> String {
    let generated = generate_page(
        &PageParams::new(seed, page, results),
        &ContentFaults::none(),
    );
    let mut body: Value = serde_json::from_str(&generated.body).expect("json");
    if let Some(users) = body["results"].as_array_mut() {
        for (i, u) in users.iter_mut().enumerate() {
            edit(i, u);
        }
    }
    body.to_string()
}

// ---------------------------------------------------------------------------------------
// The emulator's fault modes through the real binary
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_mode_is_retried_or_dead_lettered_with_a_reason() {
    let faults = ContentFaults::new(0.03, ContentFault::ALL);
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        fail_429: 0.1,
        fail_5xx: 0.1,
        truncate: 0.1,
        invalid_utf8: 0.1,
        slow_body: Some(Duration::from_millis(300)),
        retry_after: Duration::from_secs(1),
        content: faults.clone(),
        // Fixed: the transport faults are drawn per request number from this seed, so every
        // run serves the same mix. With a random one, no 429 among ~30 requests at 10 % came
        // up about once in 25 runs, and the "rate_limited counted" check failed a CI run.
        fault_seed: Some(7),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("hostile_modes", &api).await;
    let (results, records) = (100_u32, 3_000_u32);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__MAX_ATTEMPTS", "40")
        .set("PIPELINE_SOURCE__TIMEOUT", "5s");
    let prom = s.run_drained("hostile_modes", Duration::from_secs(300));

    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let (valid, malformed) = served(&seed, results, records, &faults);
    let kinds: BTreeSet<ContentFault> = malformed.values().copied().collect();
    assert_eq!(
        kinds.len(),
        ContentFault::ALL.len(),
        "every kind served: {kinds:?}"
    );

    // Content faults: dead-lettered, each with a stage and a reason; nothing else is.
    let letters = dead_letters(&s.dlq).await;
    let keys: BTreeSet<String> = letters.iter().map(|l| l.key.clone()).collect();
    let want: BTreeSet<String> = malformed.keys().cloned().collect();
    assert_eq!(keys, want, "the DLQ holds exactly the malformed records");
    for l in &letters {
        assert!(
            !l.reason.is_empty() && !l.stage.is_empty(),
            "{} has no reason",
            l.key
        );
        if malformed.get(&l.key) == Some(&ContentFault::HugeString) {
            assert_eq!(
                (l.stage.as_str(), l.reason.as_str()),
                ("relay", RejectReason::TooLarge.as_str()),
                "a 2 MiB record is refused by the relay"
            );
            assert!(l.value_len < 1_048_576, "its dead letter is truncated");
        }
    }
    let reasons: BTreeSet<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    println!("dead letters: {} ({reasons:?})", letters.len());
    assert_eq!(
        cassandra_ids(&s.keyspace).await,
        valid,
        "the table holds exactly the valid records"
    );

    // Transport faults: retried and counted, one success per page.
    common::assert_source_outcomes(
        &prom,
        &["rate_limited", "server_error", "malformed_body"],
        records / results,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_waited_out() {
    let (api, _stop) = common::start_emulator(EmulatorConfig {
        fail_429: 0.75,
        retry_after: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new("hostile_429", &api).await;
    let (results, records) = (100_u32, 600_u32);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__MAX_ATTEMPTS", "60")
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let started = Instant::now();
    let prom = s.run_drained("hostile_429", Duration::from_secs(240));
    let limited = common::metric(
        &prom,
        "pipeline_source_requests_total{outcome=\"rate_limited\"}",
    );
    assert!(limited >= 5.0, "a storm: {limited} 429s");
    // Retry-After honoured: at least one second per 429 on each of the two workers.
    assert!(
        started.elapsed() >= Duration::from_secs_f64(limited / 2.0 * 0.9),
        "{limited} 429s waited out in only {:?}",
        started.elapsed()
    );
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM users_landed")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(landed, i64::from(records));
    println!("{limited} 429s in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Hand-made poison records (not produced by the emulator)
// ---------------------------------------------------------------------------------------

/// A NUL character (`\u0000`) in any string of one user. Valid JSON, but Postgres `jsonb`
/// and `text` refuse it, so the page's landing transaction fails and is retried forever: one
/// record blocks the whole seeded run. Expected: the record is dead-lettered (or landed with
/// the character replaced), the rest of the page flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_does_not_block_the_pipeline() {
    let seed = common::unique("nul");
    let (results, records) = (50_u32, 100_u32);
    let s2 = seed.clone();
    let api = start_api(move |page| {
        edited_page(&s2, page, results, |i, u| {
            if page == 1 && i == 7 {
                u["name"]["first"] = json!("Ada\u{0}Lovelace");
            }
        })
    })
    .await;
    let mut s = common::Scenario::new("hostile_nul", &api).await;
    s.set("PIPELINE_SOURCE__SEED", seed.clone())
        .set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string());
    let mut daemon = s.spawn(
        &["run", "--drain-and-exit"],
        &common::log_path("hostile_nul"),
    );
    let code = daemon.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "log:\n{}", daemon.log_tail(30));
    common::assert_no_panic(&daemon.log);
    let ids = cassandra_ids(&s.keyspace).await;
    assert!(ids.len() >= (records - 1) as usize, "{} rows", ids.len());
}

/// Several ~400 KB records (each below `kafka.max_message_bytes`, above the consumer's 64 KiB
/// message limit) for one partition. The relay produces a partition's rows of a round in one
/// request, and the consumer dead-letters a fetched batch's rejects in one request: both
/// exceed the broker's 1 MiB batch limit, are refused, and are retried forever.
/// Expected: the records are dead-lettered (too_large) and the rest flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_records_sharing_a_partition_do_not_block_the_pipeline() {
    let seed = common::unique("big");
    let (results, records) = (20_u32, 20_u32);
    // Incompressible text: lz4 cannot shrink it below the broker's limit.
    let filler = |n: usize, salt: u64| {
        let mut rng = fastrand::Rng::with_seed(salt);
        (0..n)
            .map(|_| char::from(b'a' + rng.u8(0..26)))
            .collect::<String>()
    };
    let s2 = seed.clone();
    let api = start_api(move |page| {
        edited_page(&s2, page, results, |i, u| {
            if i < 6 {
                u["name"]["last"] = json!(filler(400 * 1024, i as u64));
            }
        })
    })
    .await;
    let mut s = common::Scenario::new("hostile_big", &api).await;
    s.set("PIPELINE_SOURCE__SEED", seed.clone())
        .set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_KAFKA__REQUEST_TIMEOUT", "5s");
    let mut daemon = s.spawn(
        &["run", "--drain-and-exit"],
        &common::log_path("hostile_big"),
    );
    let code = daemon.wait(Duration::from_secs(90));
    assert_eq!(code, 0, "log:\n{}", daemon.log_tail(30));
    common::assert_no_panic(&daemon.log);
    let letters = dead_letters(&s.dlq).await;
    let keys: BTreeSet<String> = letters.iter().map(|l| l.key.clone()).collect();
    assert_eq!(keys.len(), 6, "the six big records are dead-lettered");
    assert!(letters.iter().all(|l| l.reason == "too_large"));
    assert_eq!(cassandra_ids(&s.keyspace).await.len(), 14);
}

// ---------------------------------------------------------------------------------------
// Property tests of the decode → encode → validate path
// ---------------------------------------------------------------------------------------

/// Arbitrary JSON: scalars (including huge and odd numbers, control characters, non-BMP
/// text), arrays and objects up to a few levels deep, keys that collide with real fields.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("name".to_string()),
        Just("first".to_string()),
        Just("last".to_string()),
        Just("login".to_string()),
        Just("uuid".to_string()),
        Just("location".to_string()),
        Just("street".to_string()),
        Just("postcode".to_string()),
        Just("dob".to_string()),
        Just("date".to_string()),
        Just("email".to_string()),
        Just("password".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\]{0,8}".prop_map(Value::String),
        Just(Value::String("8c0e7a4e-3f2b-4c1a-9d7e-1a2b3c4d5e6f".into())),
        Just(Value::String("1993-07-20T09:44:18.674Z".into())),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A realistic user with arbitrary values grafted at real field paths.
fn arb_user() -> impl Strategy<Value = Value> {
    let paths = prop::sample::select(vec![
        "/name",
        "/name/first",
        "/name/last",
        "/location",
        "/location/street",
        "/location/street/number",
        "/location/city",
        "/location/postcode",
        "/email",
        "/login",
        "/login/uuid",
        "/login/username",
        "/dob",
        "/dob/date",
        "/registered/date",
        "/picture",
        "/picture/medium",
        "/phone",
        "/gender",
    ]);
    (
        any::<u32>(),
        prop::collection::vec((paths, arb_json()), 0..4),
    )
        .prop_map(|(index, grafts)| {
            let page = generate_page(
                &PageParams::new("prop", 1 + index % 50, 1),
                &ContentFaults::none(),
            );
            let mut body: Value = serde_json::from_str(&page.body).expect("json");
            let mut user = body["results"][0].take();
            for (path, value) in grafts {
                if let Some(slot) = user.pointer_mut(path) {
                    *slot = value;
                }
            }
            user
        })
}

/// Every user of a page through the whole pure path: no panic, bounded output, and the
/// verdict is consistent (an accepted row respects every rule).
fn judge_page(body: &[u8]) {
    let Ok(users) = model::split_page(body) else {
        return;
    };
    for user in users {
        let json = user.json().expect("landed JSON");
        for field in model::CREDENTIAL_FIELDS {
            assert!(
                json.pointer(&format!("/login/{field}")).is_none(),
                "{field} survived"
            );
        }
        let value = user.message.clone();
        assert_eq!(
            value,
            model::encode_message(&user.id, &json).expect("encode")
        );
        // The message copies each field at most twice (location: address + postcode).
        let input = user.raw.len();
        assert!(
            value.len() <= 2 * input + user.id.len() + 512,
            "message {} bytes from a {input}-byte user",
            value.len()
        );
        match model::validate(Some(user.id.as_bytes()), Some(&value), 1_700_000_000_000) {
            Ok(row) => {
                assert_eq!(row.id.to_string(), user.id.to_ascii_lowercase());
                for s in [&row.first_name, &row.last_name, &row.email, &row.username] {
                    assert!(!s.is_empty() && s.len() <= model::MAX_FIELD_BYTES);
                }
                for s in [&row.address, &row.post_code, &row.dob, &row.picture]
                    .into_iter()
                    .flatten()
                {
                    assert!(s.len() <= model::MAX_FIELD_BYTES);
                }
            }
            Err(rejection) => {
                assert!(RejectReason::ALL.contains(&rejection.reason));
                assert!(rejection.detail.len() <= 1024, "{}", rejection.detail);
            }
        }
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(20_000), ..ProptestConfig::default() })]

    /// 20,000 pages of arbitrary JSON values as users.
    #[test]
    fn arbitrary_json_users_never_panic(users in prop::collection::vec(arb_json(), 0..4)) {
        let body = serde_json::to_vec(&json!({ "results": users })).expect("encode");
        judge_page(&body);
    }

    /// 20,000 realistic users with arbitrary values grafted onto real fields.
    #[test]
    fn grafted_users_never_panic(users in prop::collection::vec(arb_user(), 1..3)) {
        let body = serde_json::to_vec(&json!({ "results": users })).expect("encode");
        judge_page(&body);
    }

    /// 20,000 byte-level mutations of a real page (flips, cuts, insertions).
    #[test]
    fn mutated_bodies_never_panic(
        page in 1_u32..1000,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0_u8..3), 1..8),
    ) {
        let mut body = generate_page(&PageParams::new("mutate", page, 2), &ContentFaults::none()).body.into_bytes();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => body.insert(i, byte),
                _ => { body.truncate(i); }
            }
        }
        judge_page(&body);
        let _ = model::validate(None, Some(&body), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(5_000), ..ProptestConfig::default() })]

    /// Well-formed users are accepted and their values survive unchanged.
    #[test]
    fn valid_users_round_trip(first in "\\PC{1,30}", last in "\\PC{1,30}", city in "\\PC{1,20}", index in 0_u32..1000) {
        let page = generate_page(&PageParams::new("roundtrip", 1 + index, 1), &ContentFaults::none());
        let mut body: Value = serde_json::from_str(&page.body).expect("json");
        body["results"][0]["name"]["first"] = json!(first);
        body["results"][0]["name"]["last"] = json!(last);
        body["results"][0]["location"]["city"] = json!(city);
        let users = model::split_page(body.to_string().as_bytes()).expect("split");
        let value = users[0].message.clone();
        let row = model::validate(Some(users[0].id.as_bytes()), Some(&value), 7).expect("valid");
        prop_assert_eq!(&row.first_name, &first);
        prop_assert_eq!(&row.last_name, &last);
        let needle = format!(", {city}, ");
        let address = row.address.unwrap_or_default();
        prop_assert!(address.contains(&needle), "{} lacks {}", address, needle);
    }
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let deep = format!(
        "{{\"results\":[{}1{}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(model::split_page(deep.as_bytes()).is_err());
    let deep_obj = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(model::validate(None, Some(deep_obj.as_bytes()), 0).is_err());
    // Just under serde_json's limit: accepted by the decoder, rejected by validation.
    let mut location = json!(1);
    for _ in 0..120 {
        location = json!({ "street": location });
    }
    let body = json!({ "results": [{ "login": { "uuid": "8c0e7a4e-3f2b-4c1a-9d7e-1a2b3c4d5e6f" }, "location": location }] });
    judge_page(body.to_string().as_bytes());
}

#[test]
fn huge_string_page_is_judged_quickly() {
    let faults = ContentFaults::new(1.0, [ContentFault::HugeString]);
    let page = generate_page(&PageParams::new("huge", 1, 3), &faults);
    let started = Instant::now();
    let users = model::split_page(page.body.as_bytes()).expect("split");
    for u in &users {
        let value = u.message.clone();
        assert!(value.len() > 2 * 1024 * 1024);
        let r = model::validate(Some(u.id.as_bytes()), Some(&value), 0).expect_err("too large");
        assert_eq!(r.reason, RejectReason::TooLarge);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
