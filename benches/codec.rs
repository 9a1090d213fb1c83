//! Codec throughput of the data path, one core: what each record costs the daemon's CPU
//! outside of I/O.
//!
//! - `split_page`: decode an API page of 5,000 users (credentials stripped, ids chosen) and
//!   build each user's landed JSON and Kafka message: the daemon's only JSON work on ingest;
//! - `encode_message`: the message alone (part of `split_page`);
//! - `kafka_record`: the relay's record from the outbox bytes: headers + key partitioning;
//! - `validate`: decode + validate the Kafka value into a Cassandra row (consumer side);
//! - `full_path`: all of the above for one page;
//! - `kafka_record_json_sr`, `validate_json_sr`: the same two with `kafka.value_format =
//!   "json_sr"`: the 5-byte frame prepended (a copy of the message), and on the consumer the
//!   frame read, the payload parsed once more and checked against the (cached) schema.
//!
//! `cargo bench --bench codec`; criterion reports elements/s = records/s per core.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use pipeline::emulator::{self, ContentFaults, PageParams};
use pipeline::model;
use rskafka::record::Record;

const PAGE: u32 = 5000;
const PARTITIONS: i32 = 3;

fn page_body() -> String {
    emulator::generate_page(
        &PageParams::new("codec-bench", 1, PAGE),
        &ContentFaults::none(),
    )
    .body
}

/// The relay's record: the message bytes as landed, key, headers, partition; framed with
/// schema id `frame` (json_sr) when given.
fn relay_record(id: &str, message: &[u8], fetched_at_ms: i64) -> (i32, Record) {
    relay_record_framed(id, message, fetched_at_ms, None)
}

fn relay_record_framed(
    id: &str,
    message: &[u8],
    fetched_at_ms: i64,
    frame: Option<u32>,
) -> (i32, Record) {
    let key = id.as_bytes().to_vec();
    let partition = model::partition_for_key(&key, PARTITIONS);
    // The relay owns the landed bytes: plain JSON is moved, a framed value is a new buffer.
    let value = message.to_vec();
    let value = match frame {
        Some(id) => pipeline::registry::frame(id, &value),
        None => value,
    };
    let record = Record {
        key: Some(key),
        value: Some(value),
        headers: model::message_headers(fetched_at_ms),
        timestamp: chrono::Utc::now(),
    };
    (partition, record)
}

fn bench_codec(c: &mut Criterion) {
    let body = page_body();
    let users = model::split_page(body.as_bytes()).expect("page splits");
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Record> = users
        .iter()
        .map(|u| relay_record(&u.id, &u.message, now).1)
        .collect();
    let trees: Vec<serde_json::Value> = users
        .iter()
        .map(|u| u.json().expect("landed JSON"))
        .collect();

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(u64::from(PAGE)));
    group.bench_function("split_page_5000", |b| {
        b.iter(|| black_box(model::split_page(black_box(body.as_bytes())).expect("splits")))
    });
    group.bench_function("encode_message", |b| {
        b.iter(|| {
            for (u, tree) in users.iter().zip(&trees) {
                black_box(model::encode_message(&u.id, tree).expect("encode"));
            }
        })
    });
    group.bench_function("kafka_record", |b| {
        b.iter(|| {
            for u in &users {
                black_box(relay_record(&u.id, &u.message, now));
            }
        })
    });
    group.bench_function("validate", |b| {
        b.iter(|| {
            for r in &records {
                let ms = model::fetched_at_header(&r.headers).unwrap_or(now);
                black_box(
                    model::validate(r.key.as_deref(), r.value.as_deref(), ms).expect("valid"),
                );
            }
        })
    });
    group.bench_function("kafka_record_json_sr", |b| {
        b.iter(|| {
            for u in &users {
                black_box(relay_record_framed(&u.id, &u.message, now, Some(7)));
            }
        })
    });
    let schema = pipeline::registry::JsonSchema(pipeline::registry::message_schema());
    let framed: Vec<Record> = users
        .iter()
        .map(|u| relay_record_framed(&u.id, &u.message, now, Some(7)).1)
        .collect();
    group.bench_function("validate_json_sr", |b| {
        b.iter(|| {
            for r in &framed {
                let ms = model::fetched_at_header(&r.headers).unwrap_or(now);
                let value = r.value.as_deref().expect("value");
                let (_, payload) = pipeline::registry::unframe(value)
                    .expect("frame")
                    .expect("framed");
                let json: serde_json::Value = serde_json::from_slice(payload).expect("json");
                schema.check(&json).expect("fits");
                black_box(model::validate(r.key.as_deref(), Some(payload), ms).expect("valid"));
            }
        })
    });
    group.bench_function("full_path", |b| {
        b.iter(|| {
            let users = model::split_page(body.as_bytes()).expect("splits");
            for u in &users {
                let (_, r) = relay_record(&u.id, &u.message, now);
                let ms = model::fetched_at_header(&r.headers).unwrap_or(now);
                black_box(
                    model::validate(r.key.as_deref(), r.value.as_deref(), ms).expect("valid"),
                );
            }
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    bench_codec(&mut c);
    c.final_summary();
}
