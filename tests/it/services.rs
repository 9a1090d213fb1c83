//! Our crates against the real local services (from `scripts/stack up`).

use crate::common;

use std::collections::BTreeMap;

use cdrs_tokio::query_values;
use cdrs_tokio::types::IntoRustByName;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use sqlx::Row;

#[tokio::test]
async fn rskafka_creates_produces_and_fetches() {
    common::require("Kafka", &common::kafka_bootstrap());
    let client = common::kafka().await;
    let topic = common::unique("svc_kafka");
    client
        .controller_client()
        .expect("controller")
        .create_topic(&topic, 2, 1, 10_000)
        .await
        .expect("create topic");
    let topics = client.list_topics().await.expect("list");
    let t = topics
        .iter()
        .find(|t| t.name == topic)
        .expect("topic listed");
    assert_eq!(t.partitions.len(), 2);

    let pc = client
        .partition_client(&topic, 1, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let records: Vec<Record> = (0..100)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("{{\"n\":{i}}}").into_bytes()),
            headers: BTreeMap::from([("h".to_string(), vec![i as u8])]),
            timestamp: chrono::Utc::now(),
        })
        .collect();
    let offsets = pc
        .produce(records.clone(), Compression::Lz4)
        .await
        .expect("produce");
    assert_eq!(offsets.len(), 100);
    assert_eq!(
        pc.get_offset(OffsetAt::Latest).await.expect("latest"),
        offsets[99] + 1
    );

    let back = common::read_topic(&client, &topic).await;
    assert_eq!(back.len(), 100);
    for (i, (partition, r)) in back.iter().enumerate() {
        assert_eq!(*partition, 1);
        assert_eq!(r.record.key, records[i].key);
        assert_eq!(r.record.value, records[i].value);
        assert_eq!(r.record.headers.get("h"), Some(&vec![i as u8]));
    }
}

#[tokio::test]
async fn cdrs_creates_keyspace_writes_and_reads() {
    common::require("Cassandra", &common::cassandra_contact());
    let session = common::cassandra().await;
    let ks = common::unique("svc_cql");
    session
        .query(format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ))
        .await
        .expect("create keyspace");
    session
        .query(format!(
            "CREATE TABLE {ks}.t (id int PRIMARY KEY, name text)"
        ))
        .await
        .expect("create table");
    let insert = session
        .prepare(format!("INSERT INTO {ks}.t (id, name) VALUES (?, ?)"))
        .await
        .expect("prepare");
    for i in 0..50 {
        session
            .exec_with_values(&insert, query_values!(i, format!("name-{i}")))
            .await
            .expect("insert");
    }
    let rows = session
        .query(format!("SELECT id, name FROM {ks}.t"))
        .await
        .expect("select")
        .response_body()
        .expect("body")
        .into_rows()
        .expect("rows");
    assert_eq!(rows.len(), 50);
    for row in rows {
        let id: i32 = row.get_r_by_name("id").expect("id");
        let name: String = row.get_r_by_name("name").expect("name");
        assert_eq!(name, format!("name-{id}"));
    }
    session
        .query(format!("DROP KEYSPACE {ks}"))
        .await
        .expect("drop");
}

#[tokio::test]
async fn sqlx_runs_migrations_writes_and_reads() {
    common::require_stack();
    let db = common::unique("svc_pg");
    let url = common::scratch_database(&db).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    pipeline::landing::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    // Migrations are idempotent.
    pipeline::landing::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate again");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(applied as usize, pipeline::landing::MIGRATOR.iter().count());

    let batch: i64 = sqlx::query_scalar(
        "INSERT INTO landing_batches (seed, page, fetched_at, users) VALUES ('s', 1, now(), 1) RETURNING batch_id",
    )
    .fetch_one(&pool)
    .await
    .expect("insert batch");
    sqlx::query("INSERT INTO users_landed (id, fetched_at, batch_id, raw) VALUES ($1, now(), $2, $3::jsonb)")
        .bind("abc")
        .bind(batch)
        .bind(r#"{"name": {"first": "Ada"}}"#)
        .execute(&pool)
        .await
        .expect("insert user");
    let row = sqlx::query("SELECT raw->'name'->>'first' FROM users_landed_json WHERE id = 'abc'")
        .fetch_one(&pool)
        .await
        .expect("select");
    assert_eq!(row.get::<String, _>(0), "Ada");
    // (seed, page) is unique: a page lands once.
    let dup = sqlx::query(
        "INSERT INTO landing_batches (seed, page, fetched_at, users) VALUES ('s', 1, now(), 1)",
    )
    .execute(&pool)
    .await;
    assert!(dup.is_err(), "duplicate (seed, page) must be refused");
}

/// A bootstrap broker that accepts TCP but never answers (a SIGSTOPped broker, a network
/// cut): rskafka 0.6.0 waited for its ApiVersions answer forever whenever its shuffle picked
/// it first; with the per-broker timeout (`kafka::broker_timeout`) it moves on to the next.
#[tokio::test]
async fn kafka_connect_moves_past_a_silent_bootstrap_broker() {
    common::require("Kafka", &common::kafka_bootstrap());
    let silent = common::Proxy::start(common::kafka_bootstrap()).await;
    silent.freeze();
    let config = pipeline::config::KafkaConfig {
        bootstrap: vec![
            format!("127.0.0.1:{}", silent.port),
            common::kafka_bootstrap(),
        ],
        request_timeout: std::time::Duration::from_secs(6),
        ..Default::default()
    };
    let per_broker = std::time::Duration::from_secs(2);
    // rskafka shuffles the bootstrap list: 8 connects put the silent one first about 4 times
    // (all 8 miss it with p = 1/256).
    for attempt in 0..8 {
        let started = std::time::Instant::now();
        let client = pipeline::kafka::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect {attempt}: {e}"));
        let took = started.elapsed();
        eprintln!("kafka connect {attempt}: {took:?}");
        assert!(
            took < per_broker + std::time::Duration::from_secs(2),
            "connect {attempt} took {took:?}"
        );
        client
            .list_topics()
            .await
            .expect("list topics after connect");
    }
    silent.restore();
}

/// A first contact point that accepts TCP but never answers: the sink probed only that one
/// and its session's control connection waited on it; now the probe asks every contact point,
/// the session starts at the one that answered, and a request stuck on the silent node is
/// sent to the next one after the speculative delay.
#[tokio::test]
async fn cassandra_sink_works_past_a_silent_first_contact_point() {
    use pipeline::sink::{CassandraSink, RowSink};
    common::require("Cassandra", &common::cassandra_contact());
    let silent = common::Proxy::start(common::cassandra_contact()).await;
    silent.freeze();
    let config = pipeline::config::CassandraConfig {
        contact_points: vec![
            format!("127.0.0.1:{}", silent.port),
            common::cassandra_contact(),
        ],
        keyspace: common::unique("svc_silent"),
        request_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let sink = CassandraSink::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    eprintln!("sink connected in {:?}", started.elapsed());
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..20 {
        let started = std::time::Instant::now();
        sink.store_offset("t", i, i64::from(i) * 10)
            .await
            .unwrap_or_else(|e| panic!("store {i}: {e}"));
        let loaded = sink
            .load_offset("t", i)
            .await
            .unwrap_or_else(|e| panic!("load {i}: {e}"));
        assert_eq!(loaded, Some(i64::from(i) * 10));
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < std::time::Duration::from_secs(3),
        "slowest store+load {slowest:?}"
    );
    silent.restore();
}
