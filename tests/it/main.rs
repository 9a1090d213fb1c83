//! Every integration test in one binary (one link of the library instead of one per file).
//! Tests that claim Kafka, Cassandra or Postgres behaviour run against the local stack from
//! `scripts/stack up` (see `common`); `cargo test --test it <module>::` runs one file's tests.

mod common;

mod chaos;
mod cluster;
mod daemon;
mod e2e;
mod emulator;
mod failover;
mod fleet;
mod groups;
mod hostile;
mod ingest;
mod notify;
mod registry;
mod replay;
mod secure;
mod services;
mod status;
mod switchover;
mod topology;
