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
