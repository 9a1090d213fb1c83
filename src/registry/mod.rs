//! The topic's value schema in a Confluent-compatible schema registry, and Confluent's wire
//! framing of JSON Schema values.
//!
//! ```text
//!  start-up (relay, json_sr):  GET  subjects/<s>/versions      new subject?
//!                              PUT  config/<s> BACKWARD        only when it is new
//!                              POST subjects/<s>/versions      register (or find) the schema
//!                              POST subjects/<s>               its version and id
//!  relay:     value = 0x00 · id (u32, big-endian) · the JSON bytes, unchanged
//!  consumer:  value[0] == 0x00 ──► GET schemas/ids/<id> (cached) ──► check ──► validate
//!             (JSON never starts with a NUL byte: plain and framed values tell themselves apart)
//! ```
//!
//! Errors: an unreachable registry (connect, timeout, 5xx, 429) is retriable, so the stage
//! that needed it restarts with the shared backoff and nothing is dead-lettered meanwhile; a
//! schema the registry refuses (409: incompatible with the subject's latest version), refused
//! credentials and other 4xx are fatal. On the consumer, an id the registry does not know
//! (404) dead-letters the record as `unknown_schema`; a framed value that violates its schema
//! as `schema_violation` ([`JsonSchema::check`]).
//!
//! Validation against a fetched schema: [`JsonSchema`] checks the keywords this pipeline's
//! schema uses and the common structural ones (`type`, `required`, `properties`,
//! `additionalProperties`, `items`, `enum`, `const`, `minLength`, `maxLength`); any other
//! keyword is ignored (accepted), rather than adding a full JSON Schema implementation to the
//! consumer's hot path.

pub mod config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::IntCounterVec;
use serde_json::{Value, json};

use crate::config::Config;
use crate::model;
pub use config::{SchemaRegistryConfig, ValueFormat};

/// First byte of a Confluent-framed value.
pub const MAGIC: u8 = 0;

/// Length of the Confluent frame header: magic byte and 4-byte schema id.
pub const FRAME_HEADER: usize = 5;

/// Content type of the Confluent API's requests.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No answer: connection refused, timeout, broken body.
    #[error("schema registry {url}: {op}: {source}")]
    Unreachable {
        op: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP error status other than the ones handled below.
    #[error("schema registry: {op}: HTTP {status}: {message}")]
    Status {
        op: &'static str,
        status: u16,
        message: String,
    },
    /// The registry refused our schema under the subject's compatibility rule.
    #[error(
        "schema registry refused the message schema for subject `{subject}` (incompatible with its latest version {latest}): {message}"
    )]
    Incompatible {
        subject: String,
        latest: String,
        message: String,
    },
    /// A 2xx answer that is not what the API documents.
    #[error("schema registry: {op}: unexpected answer: {detail}")]
    BadAnswer { op: &'static str, detail: String },
}

impl RegistryError {
    /// Transient conditions (unreachable, 5xx, 429) are worth retrying; a refusal is not.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Incompatible { .. } | Self::BadAnswer { .. } => false,
        }
    }
}

/// The schema registered for the produced values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub version: i64,
    pub id: u32,
}

/// A Confluent-compatible registry client: registration, lookup by id (cached).
#[derive(Debug)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    base: reqwest::Url,
    username: String,
    password: Option<crate::config::Secret>,
    /// `pipeline_schema_registry_errors_total{op}`.
    errors: IntCounterVec,
    /// Schemas by id: ids are immutable in a registry, so an entry never goes stale.
    cache: Mutex<HashMap<u32, Arc<JsonSchema>>>,
}

/// Most schemas kept by id; beyond it the cache is cleared (a topic has a handful).
const CACHE_MAX: usize = 1024;

/// A lookup by id.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A JSON Schema.
    Json(Arc<JsonSchema>),
    /// The registry does not know the id (404).
    Unknown,
    /// The id names a schema of another type (AVRO, PROTOBUF).
    OtherType(String),
}

impl SchemaRegistry {
    /// A client for `config` (which must have a URL; checked at load).
    ///
    /// # Errors
    /// A URL that does not parse or an HTTP client that cannot be built ([`RegistryError::BadAnswer`]
    /// with op "connect"; both are excluded by config validation).
    pub fn new(
        config: &SchemaRegistryConfig,
        errors: IntCounterVec,
    ) -> Result<Self, RegistryError> {
        let bad = |detail: String| RegistryError::BadAnswer {
            op: "connect",
            detail,
        };
        let mut base = reqwest::Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
        // Path segments are appended to the base; a trailing slash would leave an empty one.
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            http,
            base,
            username: config.username.clone(),
            password: config.password.clone(),
            errors,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// Sends a request; returns the status and the JSON body (`Value::Null` when empty or not
    /// JSON). Transport failures and answers that are not 2xx/404/409 count as errors of `op`.
    async fn call(
        &self,
        op: &'static str,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<(u16, Value), RegistryError> {
        let url = self.url(segments);
        let mut request = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if !self.username.is_empty() {
            request = request.basic_auth(
                &self.username,
                self.password.as_ref().map(crate::config::Secret::expose),
            );
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let unreachable = |source: reqwest::Error| RegistryError::Unreachable {
            op,
            url: self.base.to_string(),
            source: source.without_url(),
        };
        let result = async {
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await.map_err(unreachable)?;
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            match status {
                200..=299 | 404 | 409 => Ok((status, value)),
                _ => Err(RegistryError::Status {
                    op,
                    status,
                    message: message_of(&value, &bytes),
                }),
            }
        }
        .await;
        if result.is_err() {
            self.errors.with_label_values(&[op]).inc();
        }
        result
    }

    /// Registers `schema` (or finds it) under `subject`; a subject that did not exist gets
    /// compatibility BACKWARD first, so later versions must read what this one wrote.
    ///
    /// # Errors
    /// [`RegistryError::Incompatible`] when the registry refuses it (409), with the subject's
    /// latest version and the registry's message; transport and HTTP errors otherwise.
    pub async fn register(
        &self,
        subject: &str,
        schema: &Value,
    ) -> Result<Registered, RegistryError> {
        let body = json!({ "schemaType": "JSON", "schema": schema.to_string() });
        let (status, _) = self
            .call(
                "register",
                reqwest::Method::GET,
                &["subjects", subject, "versions"],
                None,
            )
            .await?;
        if status == 404 {
            let config = json!({ "compatibility": "BACKWARD" });
            let (status, answer) = self
                .call(
                    "register",
                    reqwest::Method::PUT,
                    &["config", subject],
                    Some(&config),
                )
                .await?;
            if status != 200 {
                return Err(self.unexpected("register", status, &answer));
            }
            tracing::info!(subject, "new schema subject: compatibility set to BACKWARD");
        }
        let (status, answer) = self
            .call(
                "register",
                reqwest::Method::POST,
                &["subjects", subject, "versions"],
                Some(&body),
            )
            .await?;
        if status == 409 {
            self.errors.with_label_values(&["register"]).inc();
            let latest = match self
                .call(
                    "register",
                    reqwest::Method::GET,
                    &["subjects", subject, "versions", "latest"],
                    None,
                )
                .await
            {
                Ok((200, v)) => v
                    .get("version")
                    .map_or_else(|| "?".into(), Value::to_string),
                _ => "?".into(),
            };
            return Err(RegistryError::Incompatible {
                subject: subject.into(),
                latest,
                message: message_of(&answer, b""),
            });
        }
        if status != 200 {
            return Err(self.unexpected("register", status, &answer));
        }
        let registered_id = answer.get("id").and_then(Value::as_u64);
        // The version: the registration answer holds only the id.
        match self.lookup(subject, schema).await? {
            Some(found) if registered_id.is_none_or(|r| r == u64::from(found.id)) => Ok(found),
            found => Err(RegistryError::BadAnswer {
                op: "register",
                detail: format!("registered id {registered_id:?}, lookup found {found:?}"),
            }),
        }
    }

    /// The version and id of `schema` under `subject`, if it is registered there (no
    /// change to the registry: what `pipeline check --connect` shows).
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &Value,
    ) -> Result<Option<Registered>, RegistryError> {
        let body = json!({ "schemaType": "JSON", "schema": schema.to_string() });
        let (status, found) = self
            .call(
                "lookup",
                reqwest::Method::POST,
                &["subjects", subject],
                Some(&body),
            )
            .await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(self.unexpected("lookup", status, &found));
        }
        let id = found
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok());
        match (id, found.get("version").and_then(Value::as_i64)) {
            (Some(id), Some(version)) => Ok(Some(Registered {
                subject: subject.into(),
                version,
                id,
            })),
            _ => {
                self.errors.with_label_values(&["lookup"]).inc();
                Err(RegistryError::BadAnswer {
                    op: "lookup",
                    detail: format!("subject lookup answered {found}"),
                })
            }
        }
    }

    fn unexpected(&self, op: &'static str, status: u16, answer: &Value) -> RegistryError {
        self.errors.with_label_values(&[op]).inc();
        RegistryError::Status {
            op,
            status,
            message: message_of(answer, b""),
        }
    }

    /// The schema with `id`, from the cache or the registry.
    ///
    /// # Errors
    /// Transport and HTTP errors (retriable ones when the registry is unreachable).
    pub async fn schema(&self, id: u32) -> Result<Lookup, RegistryError> {
        if let Some(found) = self.lock().get(&id) {
            return Ok(Lookup::Json(Arc::clone(found)));
        }
        let id_text = id.to_string();
        let (status, answer) = self
            .call(
                "lookup",
                reqwest::Method::GET,
                &["schemas", "ids", &id_text],
                None,
            )
            .await?;
        if status == 404 {
            return Ok(Lookup::Unknown);
        }
        if status != 200 {
            return Err(self.unexpected("lookup", status, &answer));
        }
        // Confluent's API leaves schemaType out for AVRO, its default.
        let kind = answer
            .get("schemaType")
            .and_then(Value::as_str)
            .unwrap_or("AVRO");
        if kind != "JSON" {
            return Ok(Lookup::OtherType(kind.to_string()));
        }
        let schema = answer
            .get("schema")
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .ok_or_else(|| {
                self.errors.with_label_values(&["lookup"]).inc();
                RegistryError::BadAnswer {
                    op: "lookup",
                    detail: format!("schema {id} is not JSON text"),
                }
            })?;
        let schema = Arc::new(JsonSchema(schema));
        let mut cache = self.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, Arc::clone(&schema));
        Ok(Lookup::Json(schema))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<JsonSchema>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registry's error message (`{"message": ...}`), else the body's start.
fn message_of(value: &Value, bytes: &[u8]) -> String {
    match value.get("message").and_then(Value::as_str) {
        Some(m) => model::truncate_utf8(m, 1024).to_string(),
        None => {
            let text = String::from_utf8_lossy(bytes);
            model::truncate_utf8(text.trim(), 256).to_string()
        }
    }
}

/// Registers the message schema under the configured subject (`pipeline run` with
/// `json_sr`, and `pipeline check --connect`).
///
/// # Errors
/// See [`SchemaRegistry::register`].
pub async fn register_message_schema(
    config: &Config,
    errors: IntCounterVec,
) -> Result<Registered, RegistryError> {
    let registry = SchemaRegistry::new(&config.schema_registry, errors)?;
    let subject = config.schema_registry.subject_for(&config.kafka.topic);
    registry.register(&subject, &message_schema()).await
}

/// The JSON Schema (draft-07) of the message [`model::encode_message`] writes: an object of
/// the 12 [`model::MESSAGE_FIELDS`], every one text; the [`model::REQUIRED_FIELDS`] present
/// and non-empty, the others absent or null; nothing else.
pub fn message_schema() -> Value {
    let properties: serde_json::Map<String, Value> = model::MESSAGE_FIELDS
        .iter()
        .map(|field| {
            let spec = if model::REQUIRED_FIELDS.contains(field) {
                json!({ "type": "string", "minLength": 1 })
            } else {
                json!({ "type": ["string", "null"] })
            };
            ((*field).to_string(), spec)
        })
        .collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": model::SCHEMA_NAME,
        "description": "A user of the randomuser API as the pipeline relays it (credential-free).",
        "type": "object",
        "properties": properties,
        "required": model::REQUIRED_FIELDS,
        "additionalProperties": false,
    })
}

/// Confluent framing: magic byte, schema id, then `json` unchanged (not reparsed).
pub fn frame(id: u32, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + json.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// A framed value's schema id and payload; `None` for a value that is not framed.
///
/// # Errors
/// A value that starts with the magic byte but is shorter than the frame header.
pub fn unframe(value: &[u8]) -> Result<Option<(u32, &[u8])>, model::Rejection> {
    match value {
        [MAGIC, a, b, c, d, rest @ ..] => Ok(Some((u32::from_be_bytes([*a, *b, *c, *d]), rest))),
        [MAGIC, ..] => Err(model::Rejection {
            reason: model::RejectReason::UnknownSchema,
            detail: format!(
                "value starts with the framing byte 0 but is only {} bytes",
                value.len()
            ),
        }),
        _ => Ok(None),
    }
}

/// A JSON Schema fetched from the registry, checked for the keywords listed in the module
/// documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchema(pub Value);

impl JsonSchema {
    /// Checks `instance`; the error names the first failing location and rule.
    ///
    /// # Errors
    /// The first violation found, e.g. "/email: expected string, found number".
    pub fn check(&self, instance: &Value) -> Result<(), String> {
        check(&self.0, instance, &mut String::new())
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let actual = type_name(v);
    expected == actual || (expected == "number" && actual == "integer")
}

fn here(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

fn check(schema: &Value, instance: &Value, path: &mut String) -> Result<(), String> {
    let Value::Object(rules) = schema else {
        // `true` accepts everything, `false` nothing.
        return if schema == &Value::Bool(false) {
            Err(format!("{}: no value is allowed here", here(path)))
        } else {
            Ok(())
        };
    };
    if let Some(expected) = rules.get("type") {
        let ok = match expected {
            Value::String(t) => type_matches(t, instance),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, instance)),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "{}: expected {}, found {}",
                here(path),
                expected,
                type_name(instance)
            ));
        }
    }
    if let Some(Value::Array(allowed)) = rules.get("enum")
        && !allowed.contains(instance)
    {
        return Err(format!("{}: not one of the enum values", here(path)));
    }
    if let Some(constant) = rules.get("const")
        && constant != instance
    {
        return Err(format!("{}: must equal {constant}", here(path)));
    }
    if let Value::String(s) = instance {
        let chars = s.chars().count() as u64;
        if let Some(min) = rules.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            return Err(format!("{}: shorter than {min} characters", here(path)));
        }
        if let Some(max) = rules.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            return Err(format!("{}: longer than {max} characters", here(path)));
        }
    }
    if let Value::Object(fields) = instance {
        if let Some(Value::Array(required)) = rules.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return Err(format!(
                        "{}: required property `{name}` is missing",
                        here(path)
                    ));
                }
            }
        }
        let properties = rules.get("properties").and_then(Value::as_object);
        let additional = rules.get("additionalProperties");
        for (name, value) in fields {
            let len = path.len();
            path.push('/');
            path.push_str(name);
            let result = match properties.and_then(|p| p.get(name)) {
                Some(sub) => check(sub, value, path),
                None => match additional {
                    Some(Value::Bool(false)) => Err(format!(
                        "{}: property `{name}` is not allowed (additionalProperties: false)",
                        here(&path[..len])
                    )),
                    Some(sub @ Value::Object(_)) => check(sub, value, path),
                    _ => Ok(()),
                },
            };
            path.truncate(len);
            result?;
        }
    }
    if let (Value::Array(items), Some(sub)) = (instance, rules.get("items"))
        && sub.is_object()
    {
        for (i, item) in items.iter().enumerate() {
            let len = path.len();
            path.push_str(&format!("/{i}"));
            let result = check(sub, item, path);
            path.truncate(len);
            result?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(overrides: &[(&str, Value)], drop: &[&str]) -> Value {
        let mut v = json!({
            "id": "0b7a3a3e-2b8f-4a57-9a43-7d4b9e1f0c11",
            "first_name": "Ada", "last_name": "Lovelace", "gender": "female",
            "address": "1 Main St, Springfield, IL, United States", "post_code": "12345",
            "email": "ada@example.com", "username": "ada", "dob": "1990-01-01T00:00:00.000Z",
            "registered_date": "2010-01-01T00:00:00.000Z", "phone": "555", "picture": "http://p",
        });
        let Value::Object(map) = &mut v else {
            unreachable!()
        };
        for (k, val) in overrides {
            map.insert((*k).to_string(), val.clone());
        }
        for k in drop {
            map.remove(*k);
        }
        v
    }

    #[test]
    fn framing_prepends_five_bytes_and_round_trips() {
        let json = br#"{"id":"x"}"#;
        let framed = frame(0x0102_0304, json);
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&framed[5..], json);
        assert_eq!(unframe(&framed), Ok(Some((0x0102_0304, &json[..]))));
        assert_eq!(unframe(json), Ok(None));
        let short = unframe(&[0, 1, 2]).expect_err("short frame");
        assert_eq!(short.reason, model::RejectReason::UnknownSchema);
    }

    #[test]
    fn message_schema_describes_every_field() {
        let schema = message_schema();
        let props = schema["properties"].as_object().expect("properties");
        assert_eq!(props.len(), model::MESSAGE_FIELDS.len());
        for f in model::MESSAGE_FIELDS {
            assert!(props.contains_key(f), "{f}");
        }
        assert_eq!(schema["required"], json!(model::REQUIRED_FIELDS));
        assert_eq!(schema["additionalProperties"], json!(false));
    }

    #[test]
    fn encoded_messages_satisfy_the_schema() {
        let schema = JsonSchema(message_schema());
        for nat in crate::emulator::Nat::ALL {
            let mut params = crate::emulator::PageParams::new("schema", 1, 20);
            params.nat = vec![nat];
            let page =
                crate::emulator::generate_page(&params, &crate::emulator::ContentFaults::none());
            let body: Value = serde_json::from_str(&page.body).expect("json");
            for user in body["results"].as_array().expect("results") {
                let id = model::record_id(user);
                let bytes = model::encode_message(&id, user).expect("encode");
                let value: Value = serde_json::from_slice(&bytes).expect("json");
                schema
                    .check(&value)
                    .unwrap_or_else(|e| panic!("{value}: {e}"));
            }
        }
    }

    #[test]
    fn violations_name_the_location() {
        let schema = JsonSchema(message_schema());
        assert_eq!(schema.check(&message(&[], &[])), Ok(()));
        assert_eq!(
            schema.check(&message(&[("gender", Value::Null)], &[])),
            Ok(())
        );
        assert_eq!(schema.check(&message(&[], &["gender", "phone"])), Ok(()));
        for (overrides, drop, expected) in [
            (
                vec![("email", json!(12))],
                vec![],
                "/email: expected \"string\", found integer",
            ),
            (
                vec![],
                vec!["username"],
                "/: required property `username` is missing",
            ),
            (
                vec![("first_name", json!(""))],
                vec![],
                "/first_name: shorter than 1 characters",
            ),
            (
                vec![("nat", json!("FR"))],
                vec![],
                "/: property `nat` is not allowed (additionalProperties: false)",
            ),
            (
                vec![("post_code", json!({"a": 1}))],
                vec![],
                "/post_code: expected [\"string\",\"null\"], found object",
            ),
        ] {
            let got = schema
                .check(&message(&overrides, &drop))
                .expect_err("violation");
            assert_eq!(got, expected);
        }
        let got = JsonSchema(message_schema())
            .check(&json!([1]))
            .expect_err("not an object");
        assert_eq!(got, "/: expected \"object\", found array");
    }

    #[test]
    fn nested_rules_and_booleans() {
        let schema = JsonSchema(json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 2}},
                "kind": {"enum": ["a", "b"]},
                "v": {"const": 1},
                "never": false
            },
            "additionalProperties": {"type": "number"}
        }));
        assert_eq!(
            schema.check(&json!({"tags": ["ab"], "kind": "a", "v": 1, "x": 1.5})),
            Ok(())
        );
        assert_eq!(
            schema.check(&json!({"tags": ["abc"]})),
            Err("/tags/0: longer than 2 characters".into())
        );
        assert!(schema.check(&json!({"kind": "c"})).is_err());
        assert!(schema.check(&json!({"v": 2})).is_err());
        assert!(schema.check(&json!({"never": 1})).is_err());
        assert!(schema.check(&json!({"x": "text"})).is_err());
    }

    #[test]
    fn retriable_errors_are_the_transient_ones() {
        let status = |status| RegistryError::Status {
            op: "lookup",
            status,
            message: String::new(),
        };
        assert!(status(503).is_retriable());
        assert!(status(429).is_retriable());
        assert!(!status(401).is_retriable());
        assert!(!status(422).is_retriable());
        assert!(
            !RegistryError::Incompatible {
                subject: "s".into(),
                latest: "1".into(),
                message: String::new()
            }
            .is_retriable()
        );
    }
}
