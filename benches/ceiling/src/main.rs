//! `ceiling`: raw throughput of the services the pipeline sits on, measured on the pipeline's
//! own rows (emulator pages → `model::split_page` → `encode_message` → `validate`).
//!
//! - Cassandra: our cdrs-tokio sink (`pipeline::sink::CassandraSink`, concurrent prepared
//!   INSERTs and unlogged batches) side by side with the `scylla` crate (same prepared INSERT,
//!   same consistency), over a concurrency sweep.
//! - Kafka: rskafka produce (batches of `--kafka-batch` records, lz4, all partitions in
//!   parallel) and fetch back.
//! - Postgres: `Landing::land` (the UNNEST insert of users + outbox, one transaction per page),
//!   and the minimal-work reference: `COPY ... (FORMAT binary)` of the same bytes (id text, raw
//!   user JSON, message bytea) into an unindexed table, one COPY per page (raw as `text`, and
//!   as `jsonb` to show the cost of the JSON parse).
//!
//! Every run uses fresh names (keyspace, topic, database) and drops them afterwards.
//! Prints one JSON object on stdout; progress goes to stderr.
//!
//! ```text
//! ceiling [--records N] [--page 5000] [--concurrency 64,256,1024] [--batch-rows 20] [--only cassandra,kafka,postgres]
//! ceiling --drop-keyspaces KS,... --drop-topics T,...     # clean-up of a bench run
//! ```
//! Endpoints come from KAFKA_BOOTSTRAP, CASSANDRA_CONTACT, DATABASE_URL (`scripts/stack env`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline::config::{CassandraConfig, WriteMode};
use pipeline::emulator::{self, ContentFaults, PageParams};
use pipeline::landing::{Landing, MIGRATOR};
use pipeline::model::{self, RawUser, UserRow};
use pipeline::sink::{CassandraSink, RowSink};
use pipeline::source::FetchedPage;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    records: usize,
    /// Users per page (the landing unit: one statement per page).
    page: u32,
    concurrency: Vec<usize>,
    batch_rows: usize,
    kafka_batch: usize,
    partitions: i32,
    only: Vec<String>,
    /// `--drop KEYSPACE,TOPIC...`: only drop these (bench clean-up), measure nothing.
    drop_keyspaces: Vec<String>,
    drop_topics: Vec<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        records: 100_000,
        page: 5000,
        concurrency: vec![64, 256, 1024],
        batch_rows: 20,
        kafka_batch: 1000,
        partitions: 3,
        only: vec!["cassandra".into(), "kafka".into(), "postgres".into()],
        drop_keyspaces: Vec::new(),
        drop_topics: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value()?.parse()?,
            "--page" => args.page = value()?.parse::<u32>()?.clamp(1, 5000),
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--batch-rows" => args.batch_rows = value()?.parse()?,
            "--kafka-batch" => args.kafka_batch = value()?.parse()?,
            "--partitions" => args.partitions = value()?.parse()?,
            "--drop-keyspaces" => {
                args.drop_keyspaces = value()?.split(',').map(str::to_owned).collect();
            }
            "--drop-topics" => args.drop_topics = value()?.split(',').map(str::to_owned).collect(),
            "--only" => args.only = value()?.split(',').map(str::to_owned).collect(),
            "-h" | "--help" => {
                eprintln!(
                    "ceiling [--records N] [--page 5000] [--concurrency 64,256,1024] [--batch-rows 20] \
                     [--kafka-batch 1000] [--partitions 3] [--only cassandra,kafka,postgres]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The pages of a fresh seed, split as the source does.
fn pages(seed: &str, records: usize, page_size: u32) -> Vec<FetchedPage> {
    let mut out = Vec::new();
    let mut left = records;
    let mut page = 1;
    while left > 0 {
        let n = left.min(page_size as usize) as u32;
        let body =
            emulator::generate_page(&PageParams::new(seed, page, n), &ContentFaults::none()).body;
        let users = model::split_page(body.as_bytes()).unwrap_or_default();
        out.push(FetchedPage {
            seed: seed.to_string(),
            page: Some(page),
            fetched_at_ms: chrono::Utc::now().timestamp_millis(),
            users,
            budget: None,
        });
        left -= n as usize;
        page += 1;
    }
    out
}

/// Kafka key and value of each user, as the relay encodes them.
fn messages(users: &[RawUser]) -> Vec<(Vec<u8>, Vec<u8>)> {
    users
        .iter()
        .map(|u| (u.id.clone().into_bytes(), u.message.clone()))
        .collect()
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    (n as f64 / elapsed.as_secs_f64()).round()
}

fn stamp() -> String {
    format!(
        "{}_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    )
}

// ---------------------------------------------------------------------------------------
// Cassandra

fn insert_cql(ks: &str, table: &str) -> String {
    format!(
        "INSERT INTO {ks}.{table} (id, first_name, last_name, gender, address, post_code, email, \
         username, dob, registered_date, phone, picture, fetched_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    )
}

type ScyllaValues<'a> = (
    uuid::Uuid,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    scylla::value::CqlTimestamp,
    i64,
);

fn scylla_values(r: &UserRow) -> ScyllaValues<'_> {
    (
        r.id,
        &r.first_name,
        &r.last_name,
        r.gender.as_deref(),
        r.address.as_deref(),
        r.post_code.as_deref(),
        &r.email,
        &r.username,
        r.dob.as_deref(),
        r.registered_date.as_deref(),
        r.phone.as_deref(),
        r.picture.as_deref(),
        scylla::value::CqlTimestamp(r.fetched_at_ms),
        r.fetched_at_ms.saturating_mul(1000),
    )
}

async fn cassandra(args: &Args, rows: &[UserRow]) -> Result<Value, Error> {
    use scylla::client::session::Session;
    use scylla::client::session_builder::SessionBuilder;
    use scylla::statement::Consistency;
    use scylla::statement::batch::{Batch, BatchType};

    let contact = env("CASSANDRA_CONTACT", "127.0.0.1:9042");
    let ks = format!("ceiling_{}", stamp());
    let mut config = CassandraConfig {
        contact_points: vec![contact.clone()],
        keyspace: ks.clone(),
        table: "created_users".into(),
        ..CassandraConfig::default()
    };
    let mut results = BTreeMap::<String, Value>::new();
    let mut best = (String::new(), 0.0_f64);
    let note =
        |name: String, r: f64, results: &mut BTreeMap<String, Value>, best: &mut (String, f64)| {
            eprintln!("ceiling: cassandra {name}: {r:.0} rows/s");
            if r > best.1 {
                *best = (name.clone(), r);
            }
            results.insert(name, json!(r));
        };

    // Our sink: cdrs-tokio, exactly the code path of the consumer (one write_rows call).
    // The default write_concurrency is per partition; here one call carries them all.
    // Warm-up (JIT, memtables, connections), not timed.
    let sink = CassandraSink::connect(&config).await?;
    sink.write_rows(rows[..rows.len().min(20_000)].to_vec())
        .await?;
    drop(sink);
    for &c in &args.concurrency {
        config.write_mode = WriteMode::Concurrent;
        config.write_concurrency = c;
        let sink = CassandraSink::connect(&config).await?;
        let owned = rows.to_vec();
        let t = Instant::now();
        sink.write_rows(owned).await?;
        note(
            format!("cdrs_concurrent_{c}"),
            rate(rows.len(), t.elapsed()),
            &mut results,
            &mut best,
        );
    }
    for &c in &args.concurrency {
        let c = (c / args.batch_rows).max(4);
        config.write_mode = WriteMode::UnloggedBatch;
        config.batch_rows = args.batch_rows;
        config.write_concurrency = c;
        let sink = CassandraSink::connect(&config).await?;
        let owned = rows.to_vec();
        let t = Instant::now();
        sink.write_rows(owned).await?;
        note(
            format!("cdrs_unlogged_batch{}_x{c}", args.batch_rows),
            rate(rows.len(), t.elapsed()),
            &mut results,
            &mut best,
        );
    }
    let cdrs_best = best.1;

    // The scylla crate, same statement and consistency.
    let session: Session = SessionBuilder::new().known_node(&contact).build().await?;
    let session = Arc::new(session);
    let mut prepared = session.prepare(insert_cql(&ks, "created_users")).await?;
    prepared.set_consistency(Consistency::LocalQuorum);
    for &c in &args.concurrency {
        let t = Instant::now();
        let mut writes = futures::stream::iter(rows)
            .map(|r| {
                let session = &session;
                let prepared = &prepared;
                async move { session.execute_unpaged(prepared, scylla_values(r)).await }
            })
            .buffer_unordered(c);
        while let Some(r) = writes.next().await {
            r?;
        }
        note(
            format!("scylla_concurrent_{c}"),
            rate(rows.len(), t.elapsed()),
            &mut results,
            &mut best,
        );
    }
    for &c in &args.concurrency {
        let c = (c / args.batch_rows).max(4);
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in 0..args.batch_rows {
            batch.append_statement(prepared.clone());
        }
        batch.set_consistency(Consistency::LocalQuorum);
        let t = Instant::now();
        let chunks: Vec<&[UserRow]> = rows.chunks(args.batch_rows).collect();
        let mut writes = futures::stream::iter(chunks)
            .map(|chunk| {
                let session = &session;
                let full = &batch;
                let prepared = &prepared;
                async move {
                    let values: Vec<ScyllaValues<'_>> = chunk.iter().map(scylla_values).collect();
                    if chunk.len() == args.batch_rows {
                        session.batch(full, values).await
                    } else {
                        let mut last = Batch::new(BatchType::Unlogged);
                        for _ in 0..chunk.len() {
                            last.append_statement(prepared.clone());
                        }
                        last.set_consistency(Consistency::LocalQuorum);
                        session.batch(&last, values).await
                    }
                }
            })
            .buffer_unordered(c);
        while let Some(r) = writes.next().await {
            r?;
        }
        note(
            format!("scylla_unlogged_batch{}_x{c}", args.batch_rows),
            rate(rows.len(), t.elapsed()),
            &mut results,
            &mut best,
        );
    }
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
        .await?;
    Ok(json!({
        "rows": rows.len(),
        "consistency": "local_quorum",
        "results_rows_per_s": results,
        "cdrs_best_records_per_s": cdrs_best,
        "best": best.0,
        "ceiling_records_per_s": best.1,
    }))
}

// ---------------------------------------------------------------------------------------
// Kafka

async fn kafka(args: &Args, messages: &[(Vec<u8>, Vec<u8>)]) -> Result<Value, Error> {
    let bootstrap = env("KAFKA_BOOTSTRAP", "127.0.0.1:9092");
    let client = Arc::new(
        ClientBuilder::new(vec![bootstrap])
            .max_message_size(16 * 1024 * 1024)
            .build()
            .await?,
    );
    let topic = format!("ceiling_{}", stamp());
    client
        .controller_client()?
        .create_topic(&topic, args.partitions, 1, 30_000)
        .await?;
    let now = chrono::Utc::now();
    let mut per_partition: Vec<Vec<Record>> = vec![Vec::new(); args.partitions as usize];
    for (key, value) in messages {
        let p = model::partition_for_key(key, args.partitions);
        per_partition[p as usize].push(Record {
            key: Some(key.clone()),
            value: Some(value.clone()),
            headers: model::message_headers(now.timestamp_millis()),
            timestamp: now,
        });
    }
    let mut pcs = Vec::new();
    for p in 0..args.partitions {
        pcs.push(Arc::new(
            client
                .partition_client(&topic, p, UnknownTopicHandling::Retry)
                .await?,
        ));
    }
    let t = Instant::now();
    let produces = per_partition.into_iter().enumerate().map(|(p, records)| {
        let pc = Arc::clone(&pcs[p]);
        let batch = args.kafka_batch;
        async move {
            let mut it = records.into_iter().peekable();
            while it.peek().is_some() {
                let chunk: Vec<Record> = it.by_ref().take(batch).collect();
                pc.produce(chunk, Compression::Lz4).await?;
            }
            Ok::<(), rskafka::client::error::Error>(())
        }
    });
    futures::future::try_join_all(produces).await?;
    let produce = t.elapsed();
    eprintln!(
        "ceiling: kafka produce: {:.0} records/s",
        rate(messages.len(), produce)
    );

    let t = Instant::now();
    let fetches = pcs.iter().map(|pc| async move {
        let mut next = 0_i64;
        let mut count = 0_usize;
        loop {
            let (records, high) = pc.fetch_records(next, 1..4 * 1024 * 1024, 100).await?;
            let from = next;
            for r in records.iter().filter(|r| r.offset >= from) {
                count += 1;
                next = r.offset + 1;
            }
            if next >= high {
                break;
            }
        }
        Ok::<usize, rskafka::client::error::Error>(count)
    });
    let fetched: usize = futures::future::try_join_all(fetches).await?.iter().sum();
    let fetch = t.elapsed();
    eprintln!(
        "ceiling: kafka fetch: {:.0} records/s",
        rate(fetched, fetch)
    );
    if fetched != messages.len() {
        return Err(format!("kafka fetched {fetched} of {} records", messages.len()).into());
    }
    client
        .controller_client()?
        .delete_topic(&topic, 30_000)
        .await?;
    Ok(json!({
        "records": messages.len(),
        "partitions": args.partitions,
        "batch_records": args.kafka_batch,
        "compression": "lz4",
        "produce_records_per_s": rate(messages.len(), produce),
        "fetch_records_per_s": rate(fetched, fetch),
        // Each record must go in and come out again: the serial rate of both.
        "ceiling_records_per_s": rate(messages.len(), produce + fetch),
    }))
}

// ---------------------------------------------------------------------------------------
// Postgres

/// Appends one page as `COPY (FORMAT binary)` data: the header, per tuple the field count and
/// (length, bytes) per field, and the trailer. `jsonb` prefixes the raw JSON with the jsonb
/// binary format's version byte (1).
fn copy_binary(page: &FetchedPage, jsonb: bool) -> Vec<u8> {
    let bytes: usize = page
        .users
        .iter()
        .map(|u| 2 + 12 + u.id.len() + u.raw.len() + 1 + u.message.len())
        .sum();
    let mut buf = Vec::with_capacity(19 + bytes + 2);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0_i32.to_be_bytes()); // flags: no OIDs
    buf.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
    let field = |buf: &mut Vec<u8>, prefix: &[u8], bytes: &[u8]| {
        let len = i32::try_from(prefix.len() + bytes.len()).expect("field under 2 GiB");
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(bytes);
    };
    for u in &page.users {
        buf.extend_from_slice(&3_i16.to_be_bytes());
        field(&mut buf, b"", u.id.as_bytes());
        field(&mut buf, if jsonb { &[1] } else { b"" }, u.raw.as_bytes());
        field(&mut buf, b"", &u.message);
    }
    buf.extend_from_slice(&(-1_i16).to_be_bytes());
    buf
}

/// `COPY table FROM STDIN (FORMAT binary)` of every page, one COPY per page, `connections`
/// pages in flight. Returns records/s (the encoding is included: it is the client's work).
async fn copy_pages(
    pool: &sqlx::PgPool,
    table: &str,
    pages: &[FetchedPage],
    jsonb: bool,
    connections: usize,
) -> Result<f64, Error> {
    let records: usize = pages.iter().map(|p| p.users.len()).sum();
    let statement = format!("COPY {table} (id, raw, message) FROM STDIN (FORMAT binary)");
    let t = Instant::now();
    let mut copies = futures::stream::iter(pages)
        .map(|page| {
            let statement = statement.as_str();
            async move {
                let data = copy_binary(page, jsonb);
                let mut conn = pool.acquire().await?;
                let mut copy = conn.copy_in_raw(statement).await?;
                copy.send(data).await?;
                let rows = copy.finish().await?;
                Ok::<u64, Error>(rows)
            }
        })
        .buffer_unordered(connections);
    let mut copied = 0_u64;
    while let Some(r) = copies.next().await {
        copied += r?;
    }
    let elapsed = t.elapsed();
    if copied != records as u64 {
        return Err(format!("COPY into {table}: {copied} of {records} rows").into());
    }
    Ok(rate(records, elapsed))
}

async fn postgres(pages: &[FetchedPage], page_records: u32) -> Result<Value, Error> {
    let url = env(
        "DATABASE_URL",
        "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline",
    );
    let admin = PgConnectOptions::from_str(&url)?;
    let db = format!("ceiling_{}", stamp());
    let mut conn = admin.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await?;
    let result = async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(admin.clone().database(&db))
            .await?;
        MIGRATOR.run(&pool).await?;
        let landing = Landing::new(pool.clone());
        let records: usize = pages.iter().map(|p| p.users.len()).sum();
        // Sequential, one transaction per page: what the landing stage does.
        let half = pages.len().div_ceil(2);
        let t = Instant::now();
        for page in &pages[..half] {
            landing.land(page).await?;
        }
        let seq_records: usize = pages[..half].iter().map(|p| p.users.len()).sum();
        let sequential = rate(seq_records, t.elapsed());
        eprintln!("ceiling: postgres land (1 connection): {sequential:.0} records/s");
        // Two pages in flight (for reference: the landing stage is sequential).
        let t = Instant::now();
        let rest = &pages[half..];
        let mut lands = futures::stream::iter(rest)
            .map(|p| landing.land(p))
            .buffer_unordered(2);
        while let Some(r) = lands.next().await {
            r?;
        }
        let rest_records = records - seq_records;
        let parallel = if rest_records > 0 {
            rate(rest_records, t.elapsed())
        } else {
            0.0
        };
        eprintln!("ceiling: postgres land (2 connections): {parallel:.0} records/s");

        // Minimal work: the same bytes, COPY binary into tables without any index or key.
        for (table, kind) in [("copy_text", "text"), ("copy_jsonb", "jsonb")] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (id text NOT NULL, raw {kind} NOT NULL, message bytea NOT NULL)"
            )))
            .execute(&pool)
            .await?;
        }
        // Warm-up (connections, the tables' first extents), not timed.
        copy_pages(&pool, "copy_text", &pages[..1], false, 1).await?;
        copy_pages(&pool, "copy_jsonb", &pages[..1], true, 1).await?;
        let copy_text = copy_pages(&pool, "copy_text", pages, false, 1).await?;
        eprintln!("ceiling: postgres COPY binary, raw text (1 connection): {copy_text:.0} records/s");
        let copy_text_2 = copy_pages(&pool, "copy_text", pages, false, 2).await?;
        eprintln!(
            "ceiling: postgres COPY binary, raw text (2 connections): {copy_text_2:.0} records/s"
        );
        let copy_jsonb = copy_pages(&pool, "copy_jsonb", pages, true, 1).await?;
        eprintln!(
            "ceiling: postgres COPY binary, raw jsonb (1 connection): {copy_jsonb:.0} records/s"
        );
        pool.close().await;
        let land_best = sequential.max(parallel);
        let copy_best = copy_text.max(copy_text_2).max(copy_jsonb);
        Ok::<Value, Error>(json!({
            "records": records,
            "page_records": page_records,
            "land_records_per_s": sequential,
            "land_2_connections_records_per_s": parallel,
            "copy_binary_text_records_per_s": copy_text,
            "copy_binary_text_2_connections_records_per_s": copy_text_2,
            "copy_binary_jsonb_records_per_s": copy_jsonb,
            // What `Landing::land` reaches (the pipeline's statement).
            "land_ceiling_records_per_s": land_best,
            // The same bytes with the least work Postgres can do for them.
            "copy_ceiling_records_per_s": copy_best,
            // `Landing::land`, as before (the key scripts/bench reports as the Postgres ceiling).
            "ceiling_records_per_s": land_best,
            // The best minimal-work Postgres ceiling (used in the composed ceiling).
            "minimal_work_ceiling_records_per_s": land_best.max(copy_best),
        }))
    }
    .await;
    // WITH (FORCE) cannot end an autovacuum worker without pg_signal_backend: retry plainly.
    let mut dropped = false;
    for _ in 0..20 {
        let drop = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .execute(&mut conn)
            .await;
        if drop.is_ok() {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !dropped {
        eprintln!("ceiling: could not drop database {db}; drop it by hand");
    }
    result
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("ceiling: {e}");
        std::process::exit(1);
    }
}

/// Drops what a bench run of the daemon created (keyspaces, topics).
async fn drop_names(args: &Args) -> Result<(), Error> {
    if !args.drop_keyspaces.is_empty() {
        let contact = env("CASSANDRA_CONTACT", "127.0.0.1:9042");
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(&contact)
            .build()
            .await?;
        for ks in &args.drop_keyspaces {
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
                .await?;
        }
    }
    if !args.drop_topics.is_empty() {
        let client = ClientBuilder::new(vec![env("KAFKA_BOOTSTRAP", "127.0.0.1:9092")])
            .build()
            .await?;
        let controller = client.controller_client()?;
        for topic in &args.drop_topics {
            if let Err(e) = controller.delete_topic(topic.as_str(), 30_000).await {
                eprintln!("ceiling: delete topic {topic}: {e}");
            }
        }
    }
    Ok(())
}

async fn run() -> Result<(), Error> {
    let args = parse_args()?;
    if !args.drop_keyspaces.is_empty() || !args.drop_topics.is_empty() {
        return drop_names(&args).await;
    }
    let seed = format!("ceiling-{}", stamp());
    let t = Instant::now();
    let pages = pages(&seed, args.records, args.page);
    let users: Vec<RawUser> = pages.iter().flat_map(|p| p.users.iter().cloned()).collect();
    let messages = messages(&users);
    drop(users);
    let now = chrono::Utc::now().timestamp_millis();
    let rows: Vec<UserRow> = messages
        .iter()
        .filter_map(|(k, v)| model::validate(Some(k), Some(v), now).ok())
        .collect();
    eprintln!(
        "ceiling: {} rows generated in {:.1} s",
        rows.len(),
        t.elapsed().as_secs_f64()
    );
    let mut out = serde_json::Map::new();
    out.insert("records".into(), json!(args.records));
    for what in &args.only {
        let v = match what.as_str() {
            "cassandra" => cassandra(&args, &rows).await?,
            "kafka" => kafka(&args, &messages).await?,
            "postgres" => {
                // A fresh seed, so the pages are new users for the landing tables.
                postgres(&pages, args.page).await?
            }
            other => return Err(format!("--only: unknown service {other}").into()),
        };
        out.insert(what.clone(), v);
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    Ok(())
}
