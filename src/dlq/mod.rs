//! Dead letters: records that cannot be delivered go to their own topic, with headers that
//! say why.

pub(crate) mod config;

use std::collections::BTreeMap;

use rskafka::record::Record;

use crate::config::DlqConfig;
use crate::model::{Rejection, UserRow};

/// The reason of [`DlqConfig::test_reject_email_suffix`]'s rejections.
pub const TEST_RULE_REASON: &str = "test_rule";

impl DlqConfig {
    /// The testing rule (`dlq.test_reject_email_suffix`) applied to a valid row: the detail
    /// of its rejection, or `None` when the row passes (always, when the key is unset).
    pub fn test_rule(&self, row: &UserRow) -> Option<String> {
        let suffix = self.test_reject_email_suffix.as_deref()?;
        row.email
            .ends_with(suffix)
            .then(|| format!("`email` ends with {suffix:?} (dlq.test_reject_email_suffix)"))
    }

    /// Validation as the consumers apply it: [`crate::model::validate`], then the testing
    /// rule. The error is the reason (`model::RejectReason` name or [`TEST_RULE_REASON`]) and
    /// the detail.
    ///
    /// # Errors
    /// The rejection's reason and detail.
    pub fn check_record(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        fetched_at_ms: i64,
    ) -> Result<UserRow, (&'static str, String)> {
        let row = crate::model::validate(key, value, fetched_at_ms)
            .map_err(|Rejection { reason, detail }| (reason.as_str(), detail))?;
        match self.test_rule(&row) {
            Some(detail) => Err((TEST_RULE_REASON, detail)),
            None => Ok(row),
        }
    }
}

/// Why and where a record is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Stage that rejected it: "relay" or "validate".
    pub stage: &'a str,
    /// Bounded reason (a [`model::RejectReason`] name).
    pub reason: &'a str,
    /// Human detail naming the field.
    pub detail: &'a str,
    /// Origin topic, partition, offset (none for records that never reached Kafka).
    pub origin: Option<(&'a str, i32, i64)>,
}

impl DeadLetter<'_> {
    /// Builds the dead-letter record for `value`: original bytes (truncated to fit
    /// `max_bytes`) and headers naming stage, reason, detail and origin.
    pub fn record(
        &self,
        dlq: &DlqConfig,
        key: Option<Vec<u8>>,
        value: &[u8],
        mut headers: BTreeMap<String, Vec<u8>>,
        max_bytes: usize,
    ) -> Record {
        let p = &dlq.header_prefix;
        let keep = value.len().min(max_bytes.saturating_sub(4096));
        if keep < value.len() {
            headers.insert(
                format!("{p}original_bytes"),
                value.len().to_string().into_bytes(),
            );
        }
        headers.insert(format!("{p}stage"), self.stage.as_bytes().to_vec());
        headers.insert(format!("{p}reason"), self.reason.as_bytes().to_vec());
        let detail = crate::model::truncate_utf8(self.detail, 1024);
        headers.insert(format!("{p}detail"), detail.as_bytes().to_vec());
        if let Some((topic, partition, offset)) = self.origin {
            headers.insert(format!("{p}topic"), topic.as_bytes().to_vec());
            headers.insert(format!("{p}partition"), partition.to_string().into_bytes());
            headers.insert(format!("{p}offset"), offset.to_string().into_bytes());
        }
        Record {
            key,
            value: Some(value[..keep].to_vec()),
            headers,
            timestamp: chrono::Utc::now(),
        }
    }
}
