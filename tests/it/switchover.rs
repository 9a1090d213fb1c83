//! Switching over from the old stack, through the real binary and the real services: a topic
//! written by the old stack's own producer code (kafka-python, `tests/old_stack/producer.py`)
//! followed by our relay's messages is consumed completely by one bounded run, and
//! `--drain-and-exit` drains every partition, including an empty one.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use pipeline::emulator::EmulatorConfig;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;

/// The 11 text columns of `created_users`: the message's fields after `id`.
const COLUMNS: &[&str] = pipeline::model::MESSAGE_FIELDS.split_at(1).1;

/// The old stack's interpreter: `scripts/old-stack setup` (run by `make test`) makes it.
fn old_stack_python() -> String {
    let path = std::env::var("OLD_STACK_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.stack/oldstack-venv/bin/python"
        )
        .to_string()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "the old stack's producer needs {path}: run `scripts/old-stack setup` (make test does)"
    );
    path
}

/// Runs the old producer: `count` users from `api`, published to `topic`; returns the
/// messages it sent, as text.
fn old_producer(api: &str, seed: &str, count: u32, topic: &str) -> Vec<String> {
    let out = std::env::temp_dir().join(format!("{topic}.old-messages.jsonl"));
    let status = Command::new(old_stack_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/old_stack/producer.py"
        ))
        .args(["--api", api, "--seed", seed, "--topic", topic])
        .args(["--count", &count.to_string()])
        .args(["--bootstrap", &common::kafka_bootstrap()])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("start the old producer");
    assert!(status.success(), "old producer failed: {status}");
    let text = std::fs::read_to_string(&out).expect("old producer output");
    text.lines().map(str::to_string).collect()
}

/// What the old Spark job stored for a message: each of the 11 columns as text (a number as
/// its JSON text), keyed by `id`.
fn spark_row(message: &Value) -> (String, BTreeMap<&'static str, Option<String>>) {
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let id = message["id"].as_str().expect("old message has an id");
    let cols = COLUMNS.iter().map(|c| (*c, text(&message[*c]))).collect();
    (id.to_string(), cols)
}

/// The old stack's column values for a user our relay published, from the API's JSON.
fn our_row(user: &Value) -> (String, BTreeMap<&'static str, Option<String>>) {
    let t = |p: &str| common::json_text(user.pointer(p));
    let address = format!(
        "{} {}, {}, {}, {}",
        t("/location/street/number").unwrap_or_default(),
        t("/location/street/name").unwrap_or_default(),
        t("/location/city").unwrap_or_default(),
        t("/location/state").unwrap_or_default(),
        t("/location/country").unwrap_or_default()
    );
    let cols = BTreeMap::from([
        ("first_name", t("/name/first")),
        ("last_name", t("/name/last")),
        ("gender", t("/gender")),
        ("address", Some(address)),
        ("post_code", t("/location/postcode")),
        ("email", t("/email")),
        ("username", t("/login/username")),
        ("dob", t("/dob/date")),
        ("registered_date", t("/registered/date")),
        ("phone", t("/phone")),
        ("picture", t("/picture/medium")),
    ]);
    (t("/login/uuid").expect("uuid"), cols)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_producer_messages_and_ours_are_all_written() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("switchover", &api).await;
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 3).await;

    // 1. The old stack's producer, exactly as its DAG wrote (no key, no headers).
    let old_count = 6_000;
    let old = old_producer(&api, "oldstack", old_count, &s.topic);
    assert_eq!(old.len(), old_count as usize);
    assert!(
        old[0].contains("\", \"") && old[0].contains("\": \""),
        "{}",
        old[0]
    );
    let old: Vec<Value> = old
        .iter()
        .map(|m| serde_json::from_str(m).expect("old message is JSON"))
        .collect();
    let numeric = old.iter().filter(|m| m["post_code"].is_number()).count();
    assert!(
        numeric > 0 && numeric < old.len(),
        "numeric and string postcodes: {numeric} of {}",
        old.len()
    );

    // 2. Then our relay's messages (consumer off), on the same topic.
    let (results, ours) = (500, 2_000);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", ours.to_string())
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let prom = s.run_drained("switchover_ingest", Duration::from_secs(180));
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"relay\"}") as u32,
        ours
    );

    // 3. One bounded run with the source off reads all of it.
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__ENABLED", "true")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest");
    let started = Instant::now();
    let prom = s.run_drained("switchover_consume", Duration::from_secs(240));
    println!(
        "consumed {} old + {ours} new in {:?}",
        old.len(),
        started.elapsed()
    );

    let mut want: BTreeMap<String, BTreeMap<&'static str, Option<String>>> =
        old.iter().map(spark_row).collect();
    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    want.extend(
        common::served_users(&seed, results, ours)
            .iter()
            .map(our_row),
    );
    assert_eq!(want.len(), (old_count + ours) as usize, "ids are distinct");
    let got = common::created_users(&s.keyspace, COLUMNS).await;
    let missing: BTreeSet<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    assert!(missing.is_empty(), "{} rows missing", missing.len());
    assert_eq!(extra, 0, "unexpected rows");
    let mut mismatched = 0;
    for (id, cols) in &want {
        if got[id] != *cols {
            mismatched += 1;
            if mismatched <= 5 {
                eprintln!("{id}: got {:?}\n   want {cols:?}", got[id]);
            }
        }
    }
    assert_eq!(mismatched, 0, "rows differ column by column");

    let dead = common::read_topic(&client, &s.dlq).await;
    assert!(dead.is_empty(), "{} dead letters", dead.len());
    assert_eq!(common::metric(&prom, "pipeline_dead_letters_total{"), 0.0);
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"sink\"}") as u32,
        old_count + ours
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_exit_drains_every_partition() {
    let mut s = common::Scenario::new("drain", "http://127.0.0.1:9/api/").await;
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 3).await;
    // 200,000 records on partitions 0 and 1; partition 2 stays empty.
    let total: u64 = 200_000;
    for p in [0, 1] {
        let pc = client
            .partition_client(&s.topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let mut i = u64::try_from(p).expect("partition") * total / 2;
        let end = i + total / 2;
        while i < end {
            let batch: Vec<Record> = (i..(i + 5_000).min(end))
                .map(|n| {
                    let (id, value) = common::own_message(n);
                    Record {
                        key: Some(id.into_bytes()),
                        value: Some(value),
                        headers: BTreeMap::new(),
                        timestamp: chrono::Utc::now(),
                    }
                })
                .collect();
            i += batch.len() as u64;
            pc.produce(batch, Compression::Lz4).await.expect("produce");
        }
    }
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest");
    let started = Instant::now();
    let prom = s.run_drained("drain", Duration::from_secs(600));
    println!("drained {total} in {:?}", started.elapsed());
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"sink\"}") as u64,
        total,
        "one run writes the whole backlog"
    );
    let offsets = common::stored_offsets(&s.keyspace, &s.topic).await;
    assert_eq!(
        offsets.get(&0).copied().unwrap_or_default() + offsets.get(&1).copied().unwrap_or_default(),
        i64::try_from(total).expect("total"),
        "stored offsets reach the high watermarks: {offsets:?}"
    );
    assert_eq!(offsets.get(&2).copied().unwrap_or_default(), 0);
}
