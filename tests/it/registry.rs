//! The schema registry (issue 19), through the real binary, a real registry (Apicurio from
//! `scripts/stack`) and real Kafka: `json_sr` values read back by a client no one here wrote
//! (Python's confluent-kafka with its schema registry deserializer), schema evolution under
//! BACKWARD, and the consumer's dead letters for unknown ids and schema violations.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use pipeline::emulator::EmulatorConfig;
use pipeline::registry::{self, SchemaRegistry, SchemaRegistryConfig};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};

const STACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack");

fn reachable(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port_or_known_default().unwrap_or(80)
    );
    addr.parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
        .is_some()
}

/// The registry's Confluent API: `SCHEMA_REGISTRY_URL` (from `scripts/stack env`) when it
/// answers, else the registry `scripts/stack up registry` starts (idempotent) in this
/// checkout's stack. A registry that cannot be started fails the test.
fn registry_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL")
            && reachable(&url)
        {
            return url;
        }
        let status = Command::new(STACK)
            .args(["up", "registry"])
            .status()
            .expect("run scripts/stack up registry");
        assert!(status.success(), "scripts/stack up registry failed");
        let env = Command::new(STACK)
            .arg("env")
            .output()
            .expect("run scripts/stack env");
        let text = String::from_utf8_lossy(&env.stdout).to_string();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("export SCHEMA_REGISTRY_URL="))
            .unwrap_or_else(|| panic!("no SCHEMA_REGISTRY_URL in scripts/stack env:\n{text}"))
            .trim_matches('\'')
            .to_string();
        assert!(reachable(&url), "the registry at {url} does not answer");
        url
    })
    .clone()
}

/// Python with confluent-kafka: `scripts/registry-client setup` (run by `make test`).
fn registry_client() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/registry-client");
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.stack/registry-venv/bin/python"
    );
    assert!(
        std::path::Path::new(python).exists(),
        "the registry tests need {python}: run `scripts/registry-client setup` (make test does)"
    );
    script.to_string()
}

async fn http(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("registry request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Registers `schema` under `subject` with compatibility BACKWARD; returns its id.
async fn preregister(subject: &str, schema: &Value) -> u64 {
    let base = registry_url();
    let (status, _) = http(
        reqwest::Method::PUT,
        &format!("{base}/config/{subject}"),
        Some(json!({"compatibility": "BACKWARD"})),
    )
    .await;
    assert_eq!(status, 200, "set compatibility of {subject}");
    let (status, answer) = http(
        reqwest::Method::POST,
        &format!("{base}/subjects/{subject}/versions"),
        Some(json!({"schemaType": "JSON", "schema": schema.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "register under {subject}: {answer}");
    answer["id"].as_u64().expect("id")
}

fn registry_config() -> SchemaRegistryConfig {
    SchemaRegistryConfig {
        url: registry_url(),
        ..SchemaRegistryConfig::default()
    }
}

fn with_registry(s: &mut common::Scenario) {
    s.set("PIPELINE_SCHEMA_REGISTRY__URL", registry_url())
        .set("PIPELINE_KAFKA__VALUE_FORMAT", "json_sr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_sr_records_are_read_by_confluent_kafka_and_land() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("registry_sr", &api).await;
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 3).await;
    let (results, records) = (250, 1_000);
    with_registry(&mut s);
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string());
    let prom = s.run_drained("registry_sr", Duration::from_secs(180));
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"sink\"}") as u32,
        records
    );
    assert_eq!(common::metric(&prom, "pipeline_dead_letters_total{"), 0.0);

    // The subject is new: version 1, compatibility BACKWARD, the metrics name it.
    let subject = format!("{}-value", s.topic);
    let base = registry_url();
    let (_, latest) = http(
        reqwest::Method::GET,
        &format!("{base}/subjects/{subject}/versions/latest"),
        None,
    )
    .await;
    let id = latest["id"].as_u64().expect("registered id");
    assert_eq!(latest["version"], json!(1), "{latest}");
    let (_, config) = http(
        reqwest::Method::GET,
        &format!("{base}/config/{subject}"),
        None,
    )
    .await;
    assert_eq!(config["compatibilityLevel"], json!("BACKWARD"), "{config}");
    assert_eq!(
        common::metric(
            &prom,
            &format!("pipeline_schema_info{{id=\"{id}\",subject=\"{subject}\",version=\"1\"}}")
        ),
        1.0,
        "{prom}"
    );

    // Every value: byte 0, the id big-endian, then our JSON.
    let ours: BTreeMap<String, Vec<u8>> = common::read_topic(&client, &s.topic)
        .await
        .into_iter()
        .map(|(_, r)| {
            let key = String::from_utf8(r.record.key.expect("key")).expect("utf8 key");
            (key, r.record.value.expect("value"))
        })
        .collect();
    assert_eq!(ours.len(), records as usize);
    let id_bytes = u32::try_from(id).expect("u32 id").to_be_bytes();
    for value in ours.values() {
        assert_eq!(value[0], 0);
        assert_eq!(&value[1..5], &id_bytes);
        assert_eq!(value[5], b'{');
    }
    let framed: usize = ours.values().map(Vec::len).sum();
    println!(
        "bytes per record: json_sr {:.1}, json {:.1}",
        framed as f64 / ours.len() as f64,
        (framed - 5 * ours.len()) as f64 / ours.len() as f64
    );

    // A standard client reads them through the registry, validating each against the schema.
    let out = Command::new(registry_client())
        .args(["read", &common::kafka_bootstrap(), &base, &s.topic])
        .args([records.to_string(), "120".into()])
        .output()
        .expect("run scripts/registry-client read");
    assert!(
        out.status.success(),
        "confluent-kafka could not read the topic: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: BTreeMap<String, Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).expect("a JSON line");
            (
                line["key"].as_str().expect("key").to_string(),
                line["value"].clone(),
            )
        })
        .collect();
    assert_eq!(theirs.len(), ours.len());
    for (key, value) in &ours {
        let mine: Value = serde_json::from_slice(&value[5..]).expect("our JSON");
        assert_eq!(theirs.get(key), Some(&mine), "record {key}");
    }

    // `check --connect` names subject, version and id.
    let log = common::log_path("registry_check");
    let mut check = s.spawn(&["check", "--connect"], &log);
    assert_eq!(
        check.wait(Duration::from_secs(60)),
        0,
        "{}",
        check.log_tail(30)
    );
    let text = std::fs::read_to_string(&log).expect("check output");
    assert!(
        text.contains(&format!("subject {subject} version 1 id {id}")),
        "{text}"
    );
}

/// The message schema without `field` (as if it were added later).
fn schema_without(field: &str) -> Value {
    let mut schema = registry::message_schema();
    schema["properties"]
        .as_object_mut()
        .expect("properties")
        .remove(field);
    if let Some(required) = schema["required"].as_array_mut() {
        required.retain(|f| f != field);
    }
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_stops_the_daemon_and_a_compatible_one_is_version_2() {
    let base = registry_url();
    // Our schema adds a required field to the subject's version 1: BACKWARD refuses it.
    let mut s = common::Scenario::new("registry_incompat", "http://127.0.0.1:9/api/").await;
    with_registry(&mut s);
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let subject = format!("{}-value", s.topic);
    preregister(&subject, &schema_without("username")).await;
    let mut daemon = s.spawn(&["run"], &common::log_path("registry_incompat"));
    let code = daemon.wait(Duration::from_secs(90));
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!("subject `{subject}`")) && log.contains("latest version 1"),
        "the refusal names the subject and version:\n{log}"
    );
    assert!(
        log.contains("required property"),
        "the registry's reason:\n{log}"
    );
    common::assert_no_panic(&daemon.log);
    let (_, versions) = http(
        reqwest::Method::GET,
        &format!("{base}/subjects/{subject}/versions"),
        None,
    )
    .await;
    assert_eq!(versions, json!([1]), "nothing was registered");

    // Our schema adds an optional field to version 1: it registers as version 2.
    let mut s = common::Scenario::new("registry_compat", "http://127.0.0.1:9/api/").await;
    with_registry(&mut s);
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let subject = format!("{}-value", s.topic);
    preregister(&subject, &schema_without("picture")).await;
    // (Not --drain-and-exit: with source and consumer off it may end before the relay starts.)
    let mut daemon = s.spawn(&["run"], &common::log_path("registry_compat"));
    let prom = daemon
        .wait_for("/metrics", Duration::from_secs(60), |status, body| {
            status == 200 && body.contains("pipeline_schema_info{")
        })
        .await;
    daemon.signal("TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(30)),
        0,
        "{}",
        daemon.log_tail(30)
    );
    let (_, versions) = http(
        reqwest::Method::GET,
        &format!("{base}/subjects/{subject}/versions"),
        None,
    )
    .await;
    assert_eq!(versions, json!([1, 2]));
    let (_, latest) = http(
        reqwest::Method::GET,
        &format!("{base}/subjects/{subject}/versions/latest"),
        None,
    )
    .await;
    let id = latest["id"].as_u64().expect("id");
    assert_eq!(
        common::metric(
            &prom,
            &format!("pipeline_schema_info{{id=\"{id}\",subject=\"{subject}\",version=\"2\"}}")
        ),
        1.0,
        "{prom}"
    );
}

/// A message of our format for user `i`.
fn message(i: u32) -> (String, Value) {
    let id = uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | u128::from(i))
        .to_string();
    let value = json!({
        "id": id, "first_name": format!("f{i}"), "last_name": "l", "gender": "female",
        "address": "1 Main St, Leeds, West Yorkshire, United Kingdom", "post_code": "LS1",
        "email": format!("u{i}@example.com"), "username": format!("u{i}"),
        "dob": "1993-07-20T09:44:18.674Z", "registered_date": "2015-01-02T03:04:05.006Z",
        "phone": "0161 123", "picture": "https://m"
    });
    (id, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_schema_violations_are_dead_lettered() {
    let mut s = common::Scenario::new("registry_dlq", "http://127.0.0.1:9/api/").await;
    s.set("PIPELINE_SCHEMA_REGISTRY__URL", registry_url())
        .set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest");
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 1).await;
    let errors = pipeline::telemetry::Metrics::new().schema_registry_errors;
    let sr = SchemaRegistry::new(&registry_config(), errors).expect("client");
    let subject = format!("{}-value", s.topic);
    let id = sr
        .register(&subject, &registry::message_schema())
        .await
        .expect("register")
        .id;

    let mut records = Vec::new();
    let mut good = BTreeSet::new();
    let mut expected_dead: BTreeMap<String, (&str, Vec<u8>)> = BTreeMap::new();
    let mut push = |key: &str, value: Vec<u8>| {
        records.push(Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        });
    };
    for i in 0..20 {
        // Framed and valid.
        let (key, value) = message(i);
        push(&key, registry::frame(id, value.to_string().as_bytes()));
        good.insert(key);
    }
    for i in 20..25 {
        // Plain JSON, as ever.
        let (key, value) = message(i);
        push(&key, value.to_string().into_bytes());
        good.insert(key);
    }
    for i in 25..28 {
        // An id the registry never gave out.
        let (key, value) = message(i);
        let bytes = registry::frame(0x7fff_0000 + i, value.to_string().as_bytes());
        push(&key, bytes.clone());
        expected_dead.insert(key, ("unknown_schema", bytes));
    }
    for (i, field, bad) in [
        (28, "nat", json!("FR")), // not in the schema (additionalProperties: false)
        (29, "email", json!(12)), // a number: plain validation would take it as text
        (30, "first_name", json!("")), // minLength 1
        (31, "gender", json!({"x": 1})), // an object
    ] {
        let (key, mut value) = message(i);
        value[field] = bad;
        let bytes = registry::frame(id, value.to_string().as_bytes());
        push(&key, bytes.clone());
        expected_dead.insert(key, ("schema_violation", bytes));
    }
    let pc = client
        .partition_client(&s.topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    pc.produce(records, Compression::NoCompression)
        .await
        .expect("produce");

    let prom = s.run_drained("registry_dlq", Duration::from_secs(120));
    let rows = common::created_users(&s.keyspace, &["email"]).await;
    let landed: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(landed, good, "the table holds exactly the good records");

    let dead = common::read_topic(&client, &s.dlq).await;
    let got: BTreeMap<String, (String, Vec<u8>)> = dead
        .into_iter()
        .map(|(_, r)| {
            let reason = r
                .record
                .headers
                .get("pipeline.error.reason")
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default();
            let key = String::from_utf8(r.record.key.expect("key")).expect("utf8");
            (key, (reason, r.record.value.expect("value")))
        })
        .collect();
    assert_eq!(got.len(), expected_dead.len(), "{got:?}");
    for (key, (reason, bytes)) in &expected_dead {
        let (got_reason, got_bytes) = &got[key];
        assert_eq!(got_reason, reason, "record {key}");
        assert_eq!(got_bytes, bytes, "record {key}: the original bytes");
    }
    for (reason, n) in [("unknown_schema", 3.0), ("schema_violation", 4.0)] {
        assert_eq!(
            common::metric(
                &prom,
                &format!("pipeline_dead_letters_total{{reason=\"{reason}\"}}")
            ),
            n
        );
    }
    assert_eq!(
        common::metric(&prom, "pipeline_stage_records_total{stage=\"sink\"}"),
        25.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_waited_for_not_dead_lettered() {
    let url = reqwest::Url::parse(&registry_url()).expect("registry URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let proxy = common::Proxy::start(upstream).await;
    let mut through_proxy = url.clone();
    through_proxy
        .set_port(Some(proxy.port))
        .expect("a URL with a port");
    let mut s = common::Scenario::new("registry_down", "http://127.0.0.1:9/api/").await;
    s.set("PIPELINE_SCHEMA_REGISTRY__URL", through_proxy.to_string())
        .set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest");
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 1).await;
    let errors = pipeline::telemetry::Metrics::new().schema_registry_errors;
    let sr = SchemaRegistry::new(&registry_config(), errors).expect("client");
    let id = sr
        .register(&format!("{}-value", s.topic), &registry::message_schema())
        .await
        .expect("register")
        .id;
    let mut keys = BTreeSet::new();
    let records: Vec<Record> = (100..110)
        .map(|i| {
            let (key, value) = message(i);
            keys.insert(key.clone());
            Record {
                key: Some(key.into_bytes()),
                value: Some(registry::frame(id, value.to_string().as_bytes())),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }
        })
        .collect();
    client
        .partition_client(&s.topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client")
        .produce(records, Compression::NoCompression)
        .await
        .expect("produce");

    proxy.down();
    let metrics_out = std::env::temp_dir().join(format!("{}.prom", s.keyspace));
    let mut daemon = s.spawn(
        &[
            "run",
            "--drain-and-exit",
            "--metrics-out",
            metrics_out.to_str().expect("utf8 path"),
        ],
        &common::log_path("registry_down"),
    );
    // The consumer fails on the lookup and retries with the backoff: nothing written, nothing
    // dead-lettered.
    let during = daemon
        .wait_for("/metrics", Duration::from_secs(60), |status, body| {
            status == 200
                && common::metric(body, "pipeline_schema_registry_errors_total{op=\"lookup\"}")
                    >= 3.0
        })
        .await;
    assert_eq!(common::metric(&during, "pipeline_dead_letters_total{"), 0.0);
    assert_eq!(
        common::metric(&during, "pipeline_stage_records_total{stage=\"sink\"}"),
        0.0
    );
    assert!(
        common::metric(&during, "pipeline_task_restarts_total{task=\"consumer\"}") >= 1.0,
        "{during}"
    );
    // /api/status lists the registry with its failed requests.
    let (_, status) = daemon.get("/api/status").await.expect("/api/status");
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    let line = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "schema_registry")
        .unwrap_or_else(|| panic!("no schema_registry service: {status}"));
    let detail = line["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&format!("127.0.0.1:{}", proxy.port)) && !detail.contains(" 0 failed"),
        "{detail}"
    );
    proxy.restore();
    let code = daemon.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{}", daemon.log_tail(40));
    let prom = std::fs::read_to_string(&metrics_out).expect("metrics file");
    assert_eq!(common::metric(&prom, "pipeline_dead_letters_total{"), 0.0);
    let rows = common::created_users(&s.keyspace, &["email"]).await;
    assert_eq!(rows.keys().cloned().collect::<BTreeSet<_>>(), keys);
    assert!(common::read_topic(&client, &s.dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_json_format_is_unchanged() {
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let mut s = common::Scenario::new("registry_plain", &api).await;
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 3).await;
    let (results, records) = (250, 500);
    // A registry configured, json format: nothing is framed, nothing registered.
    s.set("PIPELINE_SCHEMA_REGISTRY__URL", registry_url())
        .set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_CONSUMER__ENABLED", "false");
    let prom = s.run_drained("registry_plain", Duration::from_secs(180));
    assert_eq!(common::metric(&prom, "pipeline_schema_info{"), 0.0);
    let seed = s.env["PIPELINE_SOURCE__SEED"].clone();
    let want: BTreeMap<String, Vec<u8>> = common::served_users(&seed, results, records)
        .iter()
        .map(|user| {
            let id = pipeline::model::record_id(user);
            let message = pipeline::model::encode_message(&id, user).expect("encode");
            (id, message)
        })
        .collect();
    let got: BTreeMap<String, Vec<u8>> = common::read_topic(&client, &s.topic)
        .await
        .into_iter()
        .map(|(_, r)| {
            let key = String::from_utf8(r.record.key.expect("key")).expect("utf8 key");
            (key, r.record.value.expect("value"))
        })
        .collect();
    assert_eq!(got.len(), records as usize);
    assert!(
        got == want,
        "the values are model::encode_message's bytes, unframed"
    );
    let (status, _) = http(
        reqwest::Method::GET,
        &format!("{}/subjects/{}-value/versions", registry_url(), s.topic),
        None,
    )
    .await;
    assert_eq!(status, 404, "json registers no schema");

    // A standard client (librdkafka) reads the same text.
    let out = Command::new(registry_client())
        .args(["read", &common::kafka_bootstrap(), "-", &s.topic])
        .args([records.to_string(), "120".into()])
        .output()
        .expect("run scripts/registry-client read");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: BTreeMap<String, Vec<u8>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).expect("a JSON line");
            (
                line["key"].as_str().expect("key").to_string(),
                line["value"].as_str().expect("text").as_bytes().to_vec(),
            )
        })
        .collect();
    assert!(theirs == want, "confluent-kafka reads the same bytes");
}

/// `pipeline dlq redrive` reads `json_sr` letters as the consumer does: the framed letters a
/// bad rule rejected land once the rule is gone, a letter whose schema id is unknown stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_redrive_checks_framed_letters_against_their_schema() {
    let mut s = common::Scenario::new("registry_redrive", "http://127.0.0.1:9/api/").await;
    s.set("PIPELINE_SCHEMA_REGISTRY__URL", registry_url())
        .set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest")
        .set("PIPELINE_DLQ__TEST_REJECT_EMAIL_SUFFIX", "@reject.example");
    let client = common::kafka().await;
    common::create_topic(&client, &s.topic, 1).await;
    let errors = pipeline::telemetry::Metrics::new().schema_registry_errors;
    let sr = SchemaRegistry::new(&registry_config(), errors).expect("client");
    let subject = format!("{}-value", s.topic);
    let id = sr
        .register(&subject, &registry::message_schema())
        .await
        .expect("register")
        .id;

    let (mut records, mut landing, mut rejected) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
    for i in 0..18 {
        let (key, mut value) = message(i);
        let schema_id = match i {
            0..5 => id,
            5..15 => {
                // Good records the bad rule sends to the DLQ.
                value["email"] = json!(format!("u{i}@reject.example"));
                rejected.insert(key.clone());
                id
            }
            _ => 0x7ffe_0000 + i, // an id the registry never gave out
        };
        if i < 5 {
            landing.insert(key.clone());
        }
        records.push(Record {
            key: Some(key.into_bytes()),
            value: Some(registry::frame(schema_id, value.to_string().as_bytes())),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        });
    }
    let pc = client
        .partition_client(&s.topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    pc.produce(records, Compression::NoCompression)
        .await
        .expect("produce");
    s.run_drained("registry_redrive", Duration::from_secs(120));
    let landed: BTreeSet<String> = common::created_users(&s.keyspace, &["email"])
        .await
        .keys()
        .cloned()
        .collect();
    assert_eq!(landed, landing, "only the records the bad rule let through");

    // The rule is gone: redrive.
    s.env.remove("PIPELINE_DLQ__TEST_REJECT_EMAIL_SUFFIX");
    let log = common::log_path("registry_redrive_cmd");
    let mut redrive = s.spawn(&["dlq", "redrive"], &log);
    let code = redrive.wait(Duration::from_secs(120));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, 0, "{out}");
    let counts = |reason: &str| -> (u64, u64) {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(reason))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
            })
            .unwrap_or_else(|| panic!("no `{reason}` line:\n{out}"))
    };
    assert_eq!(counts("test_rule"), (10, 0), "{out}");
    assert_eq!(counts("unknown_schema"), (0, 3), "{out}");
    let landed: BTreeSet<String> = common::created_users(&s.keyspace, &["email"])
        .await
        .keys()
        .cloned()
        .collect();
    let want: BTreeSet<String> = landing.union(&rejected).cloned().collect();
    assert_eq!(
        landed, want,
        "the rejected good records landed, the unknown ids did not"
    );
}
