//! `pipeline dlq redrive`: re-validate dead letters with the current rules and write the ones
//! that pass.
//!
//! ```text
//!  dead-letter partition (from the stored next offset up to the end seen at start)
//!    ──► filter (--reason, --since) ──► validate (model rules + dlq.test_reject_email_suffix)
//!          ├─ passes ──► CassandraSink upsert (same row, USING TIMESTAMP of fetched_at)
//!          └─ fails  ──► counted "still invalid" (it stays in the dead-letter topic)
//!    ──► dlq_redrive_progress (next offset) after the batch's rows are written
//! ```
//!
//! The row is the one the consumer would have written (key, original value and its
//! `fetched_at` header are kept in the dead letter), so a redriven record is byte-identical
//! to a record that never was dead-lettered, and redriving twice changes nothing. Progress
//! is kept per partition and per filter (`scope`): a second run with the same filter starts
//! where the first stopped.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::ReplayError;
use super::progress::Progress;
use crate::config::Config;
use crate::kafka;
use crate::landing::{self, pg_error};
use crate::model;
use crate::sink::{CassandraSink, RowSink};

/// Which dead letters to redrive.
#[derive(Debug, Clone, Default)]
pub struct RedriveOptions {
    /// Only letters with one of these reasons (the `<prefix>reason` header); empty: all.
    pub reasons: Vec<String>,
    /// Only letters dead-lettered at or after this time (the letter's timestamp).
    pub since: Option<DateTime<Utc>>,
    /// Validate and count; write nothing, remember nothing.
    pub dry_run: bool,
}

impl RedriveOptions {
    /// The progress scope of this filter ('' when there is none).
    fn scope(&self) -> String {
        let mut reasons = self.reasons.clone();
        reasons.sort_unstable();
        reasons.dedup();
        let mut scope = Vec::new();
        if !reasons.is_empty() {
            scope.push(format!("reason={}", reasons.join(",")));
        }
        if let Some(since) = self.since {
            scope.push(format!("since={}", since.to_rfc3339()));
        }
        scope.join(";")
    }
}

/// Counts of one original reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCounts {
    /// Letters that pass the current rules (written, or would be in a dry run).
    pub redriven: u64,
    /// Letters that still fail (they stay in the dead-letter topic).
    pub still_invalid: u64,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveSummary {
    /// Per original reason.
    pub by_reason: BTreeMap<String, ReasonCounts>,
    /// Letters read but left out by --reason / --since.
    pub filtered_out: u64,
    pub dry_run: bool,
}

impl RedriveSummary {
    pub fn redriven(&self) -> u64 {
        self.by_reason.values().map(|c| c.redriven).sum()
    }

    pub fn still_invalid(&self) -> u64 {
        self.by_reason.values().map(|c| c.still_invalid).sum()
    }
}

impl std::fmt::Display for RedriveSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would redrive"
        } else {
            "redriven"
        };
        writeln!(f, "{:<16} {:>12} {:>14}", "reason", verb, "still invalid")?;
        for (reason, c) in &self.by_reason {
            writeln!(f, "{reason:<16} {:>12} {:>14}", c.redriven, c.still_invalid)?;
        }
        write!(
            f,
            "{:<16} {:>12} {:>14}\n{} letters left out by --reason/--since",
            "total",
            self.redriven(),
            self.still_invalid(),
            self.filtered_out
        )?;
        if self.dry_run {
            write!(f, "\ndry run: nothing written, progress not stored")?;
        }
        Ok(())
    }
}

/// Redrives the dead-letter topic `dlq.topic`.
///
/// # Errors
/// Postgres (progress), Kafka and Cassandra failures; the progress stored before the failure
/// stays, so a rerun goes on from there.
pub async fn redrive(
    config: &Config,
    opts: &RedriveOptions,
) -> Result<RedriveSummary, ReplayError> {
    let k = &config.kafka;
    let topic = &config.dlq.topic;
    let scope = opts.scope();
    let pool = landing::connect_lazy_as(&config.postgres, super::landing::APPLICATION_NAME)?;
    if !opts.dry_run {
        landing::migrate(&pool).await?;
    }
    let client = kafka::connect(k).await?;
    let schemas = if config.schema_registry.enabled() {
        Some(crate::registry::SchemaRegistry::new(
            &config.schema_registry,
            crate::telemetry::Metrics::new().schema_registry_errors,
        )?)
    } else {
        None
    };
    let sink = if opts.dry_run {
        None
    } else {
        Some(CassandraSink::connect(&config.cassandra).await?)
    };

    // Ranges first (for the progress total): stored next offset (or earliest) .. end now.
    let mut ranges = Vec::new();
    for b in super::partition_bounds(Arc::new(client), k, topic, &[]).await? {
        let stored = stored_progress(&pool, topic, &scope, b.partition, opts.dry_run).await?;
        let start = stored.unwrap_or(b.earliest).max(b.earliest);
        ranges.push((b.partition, b.client, start, b.end));
    }
    let total: i64 = ranges.iter().map(|(_, _, s, e)| (e - s).max(0)).sum();
    let mut progress = Progress::new("dead letters examined", u64::try_from(total).ok());
    let mut summary = RedriveSummary {
        dry_run: opts.dry_run,
        ..RedriveSummary::default()
    };
    let reason_header = format!("{}reason", config.dlq.header_prefix);
    let max_wait_ms = i32::try_from(config.consumer.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
    let deadline = k.request_timeout + config.consumer.fetch_max_wait;
    for (p, pc, start, end) in ranges {
        let mut next = start;
        while next < end {
            let (records, _high) = kafka::deadline(
                "fetch dlq",
                deadline,
                pc.fetch_records(next, 1..config.consumer.fetch_max_bytes, max_wait_ms),
            )
            .await?;
            let mut rows = Vec::new();
            let mut examined = 0;
            let from = next;
            for r in records
                .into_iter()
                .filter(|r| r.offset >= from && r.offset < end)
            {
                next = r.offset + 1;
                examined += 1;
                let record = &r.record;
                let reason = record.headers.get(&reason_header).map_or_else(
                    || "unknown".to_string(),
                    |v| String::from_utf8_lossy(v).into_owned(),
                );
                let wanted = (opts.reasons.is_empty() || opts.reasons.contains(&reason))
                    && opts.since.is_none_or(|since| record.timestamp >= since);
                if !wanted {
                    summary.filtered_out += 1;
                    continue;
                }
                let fetched_at_ms = model::fetched_at_header(&record.headers)
                    .unwrap_or_else(|| record.timestamp.timestamp_millis());
                let counts = summary.by_reason.entry(reason).or_default();
                // A `json_sr` letter is checked as the consumer checks it: its schema, then
                // the rules.
                let checked = match crate::consume::unframe_and_check(
                    schemas.as_ref(),
                    record.value.as_deref(),
                )
                .await?
                {
                    Ok(payload) => {
                        config
                            .dlq
                            .check_record(record.key.as_deref(), payload, fetched_at_ms)
                    }
                    Err(rejection) => Err((rejection.reason.as_str(), rejection.detail)),
                };
                match checked {
                    Ok(row) => {
                        counts.redriven += 1;
                        rows.push(row);
                    }
                    Err(_) => counts.still_invalid += 1,
                }
            }
            if examined == 0 {
                // A fetch below `end` that returns nothing: the rest was removed (retention
                // or compaction) while we read; nothing more to see in this partition.
                break;
            }
            if let Some(sink) = &sink {
                sink.write_rows(rows).await?;
                store_progress(&pool, topic, &scope, p, next).await?;
            }
            progress.inc(examined);
        }
    }
    progress.finish();
    Ok(summary)
}

/// The stored next offset of a partition for this scope (`None` also in a dry run on a
/// database that has no progress table yet).
async fn stored_progress(
    pool: &PgPool,
    topic: &str,
    scope: &str,
    partition: i32,
    dry_run: bool,
) -> Result<Option<i64>, ReplayError> {
    if dry_run {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('dlq_redrive_progress')::text")
                .fetch_one(pool)
                .await
                .map_err(pg_error("read redrive progress"))?;
        if exists.is_none() {
            return Ok(None);
        }
    }
    Ok(sqlx::query_scalar(
        "SELECT next_offset FROM dlq_redrive_progress \
         WHERE topic = $1 AND scope = $2 AND partition = $3",
    )
    .bind(topic)
    .bind(scope)
    .bind(partition)
    .fetch_optional(pool)
    .await
    .map_err(pg_error("read redrive progress"))?)
}

async fn store_progress(
    pool: &PgPool,
    topic: &str,
    scope: &str,
    partition: i32,
    next: i64,
) -> Result<(), ReplayError> {
    sqlx::query(
        "INSERT INTO dlq_redrive_progress (topic, scope, partition, next_offset) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (topic, scope, partition) \
         DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind(topic)
    .bind(scope)
    .bind(partition)
    .bind(next)
    .execute(pool)
    .await
    .map_err(pg_error("store redrive progress"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_the_filter_in_a_stable_order() {
        assert_eq!(RedriveOptions::default().scope(), "");
        let a = RedriveOptions {
            reasons: vec![
                "test_rule".into(),
                "invalid_date".into(),
                "test_rule".into(),
            ],
            ..RedriveOptions::default()
        };
        assert_eq!(a.scope(), "reason=invalid_date,test_rule");
        let b = RedriveOptions {
            since: Some(super::super::parse_time("2026-12-06T18:00:00Z").expect("time")),
            ..RedriveOptions::default()
        };
        assert_eq!(b.scope(), "since=2026-12-06T18:00:00+00:00");
    }

    #[test]
    fn summary_counts_by_reason() {
        let mut s = RedriveSummary::default();
        s.by_reason.insert(
            "test_rule".into(),
            ReasonCounts {
                redriven: 5,
                still_invalid: 0,
            },
        );
        s.by_reason.insert(
            "invalid_date".into(),
            ReasonCounts {
                redriven: 0,
                still_invalid: 2,
            },
        );
        assert_eq!((s.redriven(), s.still_invalid()), (5, 2));
        let text = s.to_string();
        assert!(text.contains("test_rule"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("total") && l.ends_with(" 2")),
            "{text}"
        );
    }
}
