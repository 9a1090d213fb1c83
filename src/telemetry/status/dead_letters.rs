//! The last dead letters, for the status page: a bounded ring of small entries whose value
//! preview never shows a credential field.
//!
//! The messages on the topic are credential-free by construction (the source strips
//! `login.password`, `salt`, `md5`, `sha1`, `sha256` before anything is stored), but a topic
//! written by another producer may carry them, and a malformed record is exactly the one
//! that bypassed the usual path. So the preview is scrubbed again: a JSON value loses those
//! keys at any depth; a value that is not JSON has the value after each such key replaced by
//! `***`. The scrubbed text is then cut to [`PREVIEW_CHARS`].

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ring::Ring;
use crate::dlq::DeadLetter;
use crate::model::CREDENTIAL_FIELDS;

/// Dead letters kept for the page.
pub const RECENT_DEAD_LETTERS: usize = 50;
/// Characters of a value preview.
pub const PREVIEW_CHARS: usize = 240;
/// Characters of a key or detail shown.
const FIELD_CHARS: usize = 200;

/// One dead letter as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    /// Unix ms when it was dead-lettered.
    pub at_ms: i64,
    /// Stage that rejected it: `validate` (consumer) or `relay`.
    pub stage: String,
    /// Bounded reason (`invalid_id`, `not_json`, ...).
    pub reason: String,
    /// Human detail naming the field.
    pub detail: String,
    /// The Kafka key (the record id), if any, lossily decoded and truncated.
    pub key: Option<String>,
    /// Origin topic/partition/offset (none for records that never reached Kafka).
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// Size of the original value in bytes.
    pub value_bytes: usize,
    /// Scrubbed, truncated value (see the module doc).
    pub preview: String,
}

/// The newest [`RECENT_DEAD_LETTERS`] dead letters.
#[derive(Debug)]
pub struct RecentDeadLetters {
    ring: Mutex<Ring<DeadLetterEntry>>,
}

impl Default for RecentDeadLetters {
    fn default() -> Self {
        Self {
            ring: Mutex::new(Ring::new(RECENT_DEAD_LETTERS)),
        }
    }
}

impl RecentDeadLetters {
    /// Records a dead letter. Cheap (one small parse of the value, bounded by the message
    /// size limit); called per dead letter, which are rare by nature.
    pub fn push(&self, letter: &DeadLetter<'_>, key: Option<&[u8]>, value: &[u8]) {
        self.push_entry(DeadLetterEntry {
            at_ms: chrono::Utc::now().timestamp_millis(),
            stage: letter.stage.to_string(),
            reason: letter.reason.to_string(),
            detail: truncate(letter.detail, FIELD_CHARS),
            key: key.map(|k| truncate(&String::from_utf8_lossy(k), FIELD_CHARS)),
            topic: letter.origin.map(|(t, _, _)| t.to_string()),
            partition: letter.origin.map(|(_, p, _)| p),
            offset: letter.origin.map(|(_, _, o)| o),
            value_bytes: value.len(),
            preview: preview(value, PREVIEW_CHARS),
        });
    }

    /// Records a dead-letter record as built by [`DeadLetter::record`], reading stage,
    /// reason, detail and origin back from its headers (`header_prefix` = `dlq.header_prefix`).
    pub fn push_record(&self, record: &rskafka::record::Record, header_prefix: &str) {
        let header = |name: &str| {
            record
                .headers
                .get(&format!("{header_prefix}{name}"))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let value = record.value.as_deref().unwrap_or_default();
        self.push_entry(DeadLetterEntry {
            at_ms: chrono::Utc::now().timestamp_millis(),
            stage: header("stage").unwrap_or_default(),
            reason: header("reason").unwrap_or_default(),
            detail: truncate(&header("detail").unwrap_or_default(), FIELD_CHARS),
            key: record
                .key
                .as_deref()
                .map(|k| truncate(&String::from_utf8_lossy(k), FIELD_CHARS)),
            topic: header("topic"),
            partition: header("partition").and_then(|p| p.parse().ok()),
            offset: header("offset").and_then(|o| o.parse().ok()),
            value_bytes: header("original_bytes")
                .and_then(|b| b.parse().ok())
                .unwrap_or(value.len()),
            preview: preview(value, PREVIEW_CHARS),
        });
    }

    fn push_entry(&self, entry: DeadLetterEntry) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.push(entry);
    }

    /// Newest first.
    pub fn snapshot(&self) -> Vec<DeadLetterEntry> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

fn is_credential(key: &str) -> bool {
    CREDENTIAL_FIELDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(key.trim()))
}

fn strip_deep(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !is_credential(k));
            map.values_mut().for_each(strip_deep);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_deep),
        _ => {}
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Replaces the value after every `"<credential>"` key of a text that is not valid JSON
/// (truncated, bad UTF-8, ...) with `"***"`.
fn scrub_text(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let hit = CREDENTIAL_FIELDS.iter().find_map(|field| {
            let quoted = format!("\"{field}\"");
            lower[i..].starts_with(&quoted).then_some(quoted.len())
        });
        let Some(len) = hit else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8().max(1);
            continue;
        };
        out.push_str(&text[i..i + len]);
        i += len;
        // Whitespace, the colon, whitespace: then the value to hide.
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b':' {
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        out.push_str(": \"***\"");
        if j < bytes.len() && bytes[j] == b'"' {
            j += 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(bytes.len());
        } else {
            while j < bytes.len() && !matches!(bytes[j], b',' | b'}' | b']') {
                j += 1;
            }
        }
        // Resume at a character boundary.
        while j < bytes.len() && !text.is_char_boundary(j) {
            j += 1;
        }
        i = j;
    }
    out
}

/// The page's preview of a dead-lettered value: credential fields removed (see the module
/// doc), cut to `max` characters.
pub fn preview(value: &[u8], max: usize) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(mut json) => {
            strip_deep(&mut json);
            json.to_string()
        }
        Err(_) => scrub_text(&String::from_utf8_lossy(value)),
    };
    truncate(&text, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_previews_lose_credentials_at_any_depth() {
        let value = br#"{"id":"x","login":{"uuid":"u","Password":"hunter2-secret","salt":"s4lt-secret","sha256":"abc-secret"},"list":[{"md5":"m-secret"}],"email":"e@x"}"#;
        let p = preview(value, 1000);
        assert!(!p.contains("secret"), "{p}");
        assert!(p.contains("e@x") && p.contains("uuid"), "{p}");
    }

    #[test]
    fn broken_json_is_scrubbed_too() {
        let value = br#"{"id":"x","login":{"password" : "hunter2-secret","sha1":"a\"b-secret","md5":12345678,"name":"ok"},"trunc"#;
        let p = preview(value, 1000);
        assert!(!p.contains("secret") && !p.contains("12345678"), "{p}");
        assert!(p.contains("\"name\":\"ok\""), "{p}");
        let cut = br#"{"login":{"salt":"unterminated-secret"#;
        assert!(!preview(cut, 1000).contains("secret"));
        let bad_utf8 = b"{\"password\":\"\xff\xfe-secret\",\"x\":\"\xc3\xa9\"}";
        let p = preview(bad_utf8, 1000);
        assert!(!p.contains("secret"), "{p}");
    }

    #[test]
    fn previews_are_truncated_and_the_ring_is_bounded() {
        let long = format!("{{\"id\":\"{}\"}}", "é".repeat(1000));
        let p = preview(long.as_bytes(), PREVIEW_CHARS);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        let recent = RecentDeadLetters::default();
        let letter = DeadLetter {
            stage: "validate",
            reason: "not_json",
            detail: "not JSON",
            origin: Some(("t", 2, 7)),
        };
        for i in 0..500 {
            recent.push(&letter, Some(format!("k{i}").as_bytes()), b"{oops");
        }
        let dlq = crate::config::DlqConfig::default();
        let record = letter.record(
            &dlq,
            Some(b"id-1".to_vec()),
            br#"{"login":{"password":"pw-secret"}}"#,
            Default::default(),
            1 << 20,
        );
        recent.push_record(&record, &dlq.header_prefix);
        let snap = recent.snapshot();
        assert_eq!(snap[0].key.as_deref(), Some("id-1"));
        assert_eq!(snap[0].reason, "not_json");
        assert_eq!((snap[0].partition, snap[0].offset), (Some(2), Some(7)));
        assert!(!snap[0].preview.contains("secret"), "{}", snap[0].preview);
        recent.push(&letter, Some(b"k499"), b"{oops");
        let snap = recent.snapshot();
        assert_eq!(snap.len(), RECENT_DEAD_LETTERS);
        assert_eq!(snap[0].key.as_deref(), Some("k499"), "newest first");
        assert_eq!((snap[0].partition, snap[0].offset), (Some(2), Some(7)));
    }
}
