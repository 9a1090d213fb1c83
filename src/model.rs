//! The user record, the Kafka message format, validation and PII rules. Pure code, no I/O.
//!
//! ```text
//!  API page ──► split_page ──► RawUser (id, landed JSON, message bytes) ──► landing + outbox
//!                                                                       │
//!  CassandraRow ◄── validate ◄── Kafka value (compat JSON) ◄── encode_message
//!        │             └──► Rejection { reason, detail } ──► dead-letter topic
//! ```
//!
//! Two deliberate asymmetries:
//! - The ingest side is *lenient*: a record is stored and relayed whatever its content, so
//!   that a bad record reaches the dead-letter topic with a reason instead of failing a whole
//!   page (and being retried forever). Only the id and credential stripping happen there.
//! - The consume side is *strict*: [`validate`] decides, once, what is a valid row.
//!
//! Typed structs for the 1.4 schema ([`api`]) document the API's quirks and are what the
//! emulator is tested against; the data path keeps `serde_json::Value` so unknown fields and
//! malformed records survive to the point where they can be judged.

use std::collections::BTreeMap;

use serde_json::Value;

/// Fields of `login` that must never be stored anywhere.
pub const CREDENTIAL_FIELDS: &[&str] = &["password", "salt", "md5", "sha1", "sha256"];

/// Longest `login.uuid` accepted as a record id; longer ones get a derived id (and are
/// dead-lettered later as `invalid_id`).
pub const MAX_ID_LEN: usize = 64;

/// Largest accepted length of any single text field of a row, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;

/// Schema name carried in the `schema` header of every produced record.
pub const SCHEMA_NAME: &str = "pipeline.users_created.compat.v1";

/// Typed form of the randomuser.me 1.4 response, quirks included.
pub use randomuser::api;

/// Why an API answer could not be split into users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("response is not JSON: {0}")]
    NotJson(String),
    #[error("API answered with an error: {0}")]
    ApiError(String),
    #[error("response has no `results` array")]
    NoResults,
    #[error("cannot encode a user: {0}")]
    Encode(String),
}

/// One user as landed, in bytes: id, credential-free JSON, and the Kafka message built from
/// it. Built once at the source ([`split_page`]); from there the record travels as bytes
/// (landing stores `raw` and `message`, the relay produces `message` as it is).
#[derive(Debug, Clone, PartialEq)]
pub struct RawUser {
    /// `login.uuid` when it is a short string, else an id derived from the content.
    pub id: String,
    /// The user object without credential fields, as JSON text.
    pub raw: String,
    /// The Kafka value ([`encode_message`] of the user).
    pub message: Vec<u8>,
}

impl RawUser {
    /// The landed user as a JSON tree (tools and tests; the data path never needs it).
    ///
    /// # Errors
    /// When `raw` is not JSON (it always is when built by [`split_page`]).
    pub fn json(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.raw)
    }

    /// Bytes held by this user (id, raw JSON, message): what a page in flight costs.
    pub fn size_bytes(&self) -> usize {
        self.id.len() + self.raw.len() + self.message.len() + std::mem::size_of::<Self>()
    }
}

/// Splits an API response body into users, stripping credentials and choosing ids.
///
/// # Errors
/// [`PageError`] when the body is not JSON, carries an `error`, or lacks `results`. Individual
/// malformed users are *not* errors here (see the module doc).
pub fn split_page(body: &[u8]) -> Result<Vec<RawUser>, PageError> {
    // One pass over the page that only finds where each user starts and ends (borrowed raw
    // slices); then each user is parsed, stripped and encoded on its own, so the page never
    // exists as one tree (a 5,000-user page's tree is ~35 MB, its body ~6 MB).
    let page: RawPage<'_> =
        serde_json::from_slice(body).map_err(|e| PageError::NotJson(e.to_string()))?;
    if let Some(err) = page.error {
        return Err(PageError::ApiError(truncate_for_log(err.get())));
    }
    let Some(results) = page.results else {
        return Err(PageError::NoResults);
    };
    if !results.get().starts_with('[') {
        return Err(PageError::NoResults);
    }
    let results: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(results.get()).map_err(|e| PageError::NotJson(e.to_string()))?;
    results
        .into_iter()
        .map(|raw_user| split_user(raw_user.get()))
        .collect()
}

/// One user: the borrowed fast path for ordinary users, the tree path for the rare rest.
fn split_user(text: &str) -> Result<RawUser, PageError> {
    // Postgres text and jsonb cannot hold U+0000: one such character would make the page
    // unstorable and block landing forever. Such users (rare) take the tree path, which
    // replaces it.
    if !text.contains("\\u0000")
        && let Some(user) = split_user_borrowed(text)
    {
        return user;
    }
    let mut json: Value =
        serde_json::from_str(text).map_err(|e| PageError::NotJson(e.to_string()))?;
    replace_nul(&mut json);
    strip_credentials(&mut json);
    let id = record_id(&json);
    let message =
        encode_message(&id, &json).map_err(|e| PageError::Encode(format!("user {id}: {e}")))?;
    let raw =
        serde_json::to_string(&json).map_err(|e| PageError::Encode(format!("user {id}: {e}")))?;
    Ok(RawUser { id, raw, message })
}

/// The fast path of [`split_user`], without building a tree: the user's fields are borrowed
/// slices of the body; the landed JSON is the user with the credential entries of `login`
/// left out (every other byte copied), and the message is written straight from the slices,
/// byte for byte what [`encode_message`] writes. `None` (take the tree path) when the user is
/// not an object or has no usable `login.uuid` (its id is then derived from the tree).
fn split_user_borrowed(text: &str) -> Option<Result<RawUser, PageError>> {
    let top = Entries::parse(text)?;
    let login = top.object("login");
    let id = match login.as_ref().and_then(|l| l.get("uuid")).map(string_token) {
        Some(Some(uuid)) if !uuid.is_empty() && uuid.len() <= MAX_ID_LEN => uuid.into_owned(),
        _ => return None,
    };
    let raw = landed_json(&top, text.len()).and_then(|raw| {
        borrowed_message(&top, login.as_ref(), &id).map(|message| RawUser { id, raw, message })
    });
    Some(raw.map_err(|e| PageError::Encode(e.to_string())))
}

/// The user as landed: every entry copied as it came, except the credential entries of
/// `login` (when it is an object).
fn landed_json(top: &Entries<'_>, capacity: usize) -> serde_json::Result<String> {
    let mut raw = String::with_capacity(capacity);
    raw.push('{');
    for (i, (key, value)) in top.0.iter().enumerate() {
        if i > 0 {
            raw.push(',');
        }
        push_json_string(&mut raw, key)?;
        raw.push(':');
        match (key.as_ref(), Entries::parse(value.get())) {
            ("login", Some(login)) => {
                raw.push('{');
                let kept = login
                    .0
                    .iter()
                    .filter(|(k, _)| !CREDENTIAL_FIELDS.contains(&k.as_ref()));
                for (j, (k, v)) in kept.enumerate() {
                    if j > 0 {
                        raw.push(',');
                    }
                    push_json_string(&mut raw, k)?;
                    raw.push(':');
                    raw.push_str(v.get());
                }
                raw.push('}');
            }
            _ => raw.push_str(value.get()),
        }
    }
    raw.push('}');
    Ok(raw)
}

/// The entries of a JSON object in document order, keys decoded, values as raw slices.
struct Entries<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'a> Entries<'a> {
    /// `None` when `text` is not an object.
    fn parse(text: &'a str) -> Option<Self> {
        if !text.starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// The last value of `key` (a repeated key counts once, last wins, as in a JSON tree).
    fn get(&self, key: &str) -> Option<&'a serde_json::value::RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn object(&self, key: &str) -> Option<Entries<'a>> {
        self.get(key).and_then(|v| Entries::parse(v.get()))
    }
}

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(CowStr(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// The decoded text of a JSON string token; `None` for any other token.
fn string_token(raw: &serde_json::value::RawValue) -> Option<std::borrow::Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    serde_json::from_str::<CowStr<'_>>(text).ok().map(|s| s.0)
}

fn push_json_string(out: &mut String, s: &str) -> serde_json::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Escaping needed: let serde_json write it.
        out.push_str(&serde_json::to_string(s)?);
    }
    Ok(())
}

/// Writes `raw` as serde_json would write the value it denotes: string tokens without
/// escapes, booleans and null are already in that form and are copied; anything else goes
/// through a tree (numbers, escaped strings, and the rare nested value).
fn write_normalized(
    out: &mut Vec<u8>,
    raw: &serde_json::value::RawValue,
) -> serde_json::Result<()> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => out.extend_from_slice(text.as_bytes()),
        Some(b't' | b'f' | b'n') => out.extend_from_slice(text.as_bytes()),
        _ => serde_json::to_writer(&mut *out, &serde_json::from_str::<Value>(text)?)?,
    }
    Ok(())
}

/// `key` of an object that may be absent.
fn inner<'a>(obj: Option<&Entries<'a>>, key: &str) -> Option<&'a serde_json::value::RawValue> {
    obj.and_then(|o| o.get(key))
}

/// An address part: a string's text or a number's text; `None` for anything else.
fn address_part(raw: Option<&serde_json::value::RawValue>) -> Option<std::borrow::Cow<'_, str>> {
    let raw = raw?;
    let text = raw.get();
    if text.starts_with('"') {
        string_token(raw)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        let n: serde_json::Number = serde_json::from_str(text).ok()?;
        Some(std::borrow::Cow::Owned(n.to_string()))
    } else {
        None
    }
}

/// [`encode_message`] from borrowed entries: same fields, same order, same bytes.
fn borrowed_message(
    top: &Entries<'_>,
    login: Option<&Entries<'_>>,
    id: &str,
) -> serde_json::Result<Vec<u8>> {
    let name = top.object("name");
    let location_raw = top.get("location");
    let location = location_raw.and_then(|l| Entries::parse(l.get()));
    let dob = top.object("dob");
    let registered = top.object("registered");
    let picture = top.object("picture");
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    };
    if let Some(location_raw) = location_raw {
        field(&mut out, "address");
        match location.as_ref().and_then(borrowed_address) {
            Some(address) => serde_json::to_writer(&mut out, &address)?,
            None => write_normalized(&mut out, location_raw)?,
        }
    }
    let dob_date = inner(dob.as_ref(), "date");
    let scalars_before_id = [
        ("dob", dob_date),
        ("email", top.get("email")),
        ("first_name", inner(name.as_ref(), "first")),
        ("gender", top.get("gender")),
    ];
    for (key, value) in scalars_before_id {
        if let Some(value) = value {
            field(&mut out, key);
            write_normalized(&mut out, value)?;
        }
    }
    field(&mut out, "id");
    serde_json::to_writer(&mut out, id)?;
    for (key, value) in [
        ("last_name", inner(name.as_ref(), "last")),
        ("phone", top.get("phone")),
        ("picture", inner(picture.as_ref(), "medium")),
    ] {
        if let Some(value) = value {
            field(&mut out, key);
            write_normalized(&mut out, value)?;
        }
    }
    if let Some(postcode) = inner(location.as_ref(), "postcode") {
        field(&mut out, "post_code");
        if postcode
            .get()
            .starts_with(|c: char| c == '-' || c.is_ascii_digit())
        {
            let n: serde_json::Number = serde_json::from_str(postcode.get())?;
            serde_json::to_writer(&mut out, &n.to_string())?;
        } else {
            write_normalized(&mut out, postcode)?;
        }
    }
    for (key, value) in [
        ("registered_date", inner(registered.as_ref(), "date")),
        ("username", inner(login, "username")),
    ] {
        if let Some(value) = value {
            field(&mut out, key);
            write_normalized(&mut out, value)?;
        }
    }
    out.push(b'}');
    Ok(out)
}

/// "<number> <street>, <city>, <state>, <country>" from borrowed parts; `None` when a part
/// is missing or not a string or number (the message then carries the raw location).
fn borrowed_address(location: &Entries<'_>) -> Option<String> {
    let part = address_part;
    let street = location.object("street");
    let number = part(street.as_ref().and_then(|s| s.get("number")))?;
    let name = part(street.as_ref().and_then(|s| s.get("name")))?;
    let city = part(location.get("city"))?;
    let state = part(location.get("state"))?;
    let country = part(location.get("country"))?;
    Some(format!("{number} {name}, {city}, {state}, {country}"))
}

/// The top level of an API answer, borrowed: only where `results` and `error` are.
#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    results: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    error: Option<&'a serde_json::value::RawValue>,
}

/// Replaces U+0000 with U+FFFD in every string and object key, recursively.
fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(k.replace('\0', "\u{FFFD}"), v);
                }
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

/// Removes `login.password`, `salt`, `md5`, `sha1`, `sha256` in place.
pub fn strip_credentials(user: &mut Value) {
    if let Some(Value::Object(login)) = user.get_mut("login") {
        for field in CREDENTIAL_FIELDS {
            login.remove(*field);
        }
    }
}

/// The record id: `login.uuid` if it is a non-empty string of at most [`MAX_ID_LEN`] bytes;
/// otherwise `derived-<hash>` of the record's canonical JSON, stable for the same content
/// (so retries of the same page land the same row).
pub fn record_id(user: &Value) -> String {
    match user.pointer("/login/uuid") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => s.clone(),
        _ => {
            // `Value`'s Display is its compact JSON (what `to_vec` writes) and cannot fail.
            let canonical = user.to_string().into_bytes();
            format!(
                "derived-{:016x}{:016x}",
                fnv1a(&canonical, 0),
                fnv1a(&canonical, 1)
            )
        }
    }
}

fn fnv1a(bytes: &[u8], salt: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn truncate_for_log(s: &str) -> String {
    truncate_utf8(s, 200).to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds the Kafka value: the old stack's flat JSON message, `id` = record id.
///
/// Lenient on purpose: a field absent in the user is absent in the message, a field of the
/// wrong type is copied as it is, so that [`validate`] can name it. One pass, borrowing from
/// `user`: the keys come out in the same (alphabetical) order as ever, so the bytes of a
/// user's message do not change across versions.
///
/// # Errors
/// Only if serialization fails (it does not for a tree that came from JSON).
pub fn encode_message(id: &str, user: &Value) -> serde_json::Result<Vec<u8>> {
    let location = user.get("location");
    let message = Message {
        address: location.map(compose_address),
        dob: user.pointer("/dob/date"),
        email: user.get("email"),
        first_name: user.pointer("/name/first"),
        gender: user.get("gender"),
        id,
        last_name: user.pointer("/name/last"),
        phone: user.get("phone"),
        picture: user.pointer("/picture/medium"),
        post_code: location.and_then(|l| l.get("postcode")).map(|pc| match pc {
            Value::Number(n) => Field::Text(n.to_string()),
            other => Field::Raw(other),
        }),
        registered_date: user.pointer("/registered/date"),
        username: user.pointer("/login/username"),
    };
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, &message)?;
    Ok(out)
}

/// The message's fields, alphabetical (the order a `serde_json::Map` always wrote them in).
#[derive(serde::Serialize)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dob: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gender: Option<&'a Value>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_code: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_date: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a Value>,
}

/// A message field: text the relay composed, or a value copied from the user as it is.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Field<'a> {
    Text(String),
    Raw(&'a Value),
}

/// "<number> <street>, <city>, <state>, <country>" as the old stack built it; the raw
/// location when a part is missing or not a scalar (so validation rejects it by name).
fn compose_address(location: &Value) -> Field<'_> {
    struct Part<'a>(&'a Value);
    impl std::fmt::Display for Part<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Value::String(s) => f.write_str(s),
                other => write!(f, "{other}"),
            }
        }
    }
    let part = |pointer: &str| match location.pointer(pointer) {
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(Part(v)),
        _ => None,
    };
    match (
        part("/street/number"),
        part("/street/name"),
        part("/city"),
        part("/state"),
        part("/country"),
    ) {
        (Some(number), Some(street), Some(city), Some(state), Some(country)) => {
            Field::Text(format!("{number} {street}, {city}, {state}, {country}"))
        }
        _ => Field::Raw(location),
    }
}

/// Why a message was dead-lettered: a small, fixed set (used as a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    NotJson,
    NotObject,
    MissingField,
    WrongType,
    InvalidId,
    InvalidDate,
    TooLarge,
    KeyMismatch,
    /// A framed value whose schema id the registry does not know (or is not JSON Schema).
    UnknownSchema,
    /// A framed value that violates the schema its id names.
    SchemaViolation,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        Self::NotJson,
        Self::NotObject,
        Self::MissingField,
        Self::WrongType,
        Self::InvalidId,
        Self::InvalidDate,
        Self::TooLarge,
        Self::KeyMismatch,
        Self::UnknownSchema,
        Self::SchemaViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidId => "invalid_id",
            Self::InvalidDate => "invalid_date",
            Self::TooLarge => "too_large",
            Self::KeyMismatch => "key_mismatch",
            Self::UnknownSchema => "unknown_schema",
            Self::SchemaViolation => "schema_violation",
        }
    }
}

/// A failed validation: the reason (bounded) and a human detail naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One row of `created_users`: the old stack's columns plus `dob` and `fetched_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: uuid::Uuid,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub address: Option<String>,
    pub post_code: Option<String>,
    pub email: String,
    pub username: String,
    pub dob: Option<String>,
    pub registered_date: Option<String>,
    pub phone: Option<String>,
    pub picture: Option<String>,
    /// Fetch time, unix milliseconds: the write timestamp and the latency origin.
    pub fetched_at_ms: i64,
}

/// Largest message accepted by [`validate`], in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The 12 fields of the message, in the order the old stack's `format_data` wrote them.
pub const MESSAGE_FIELDS: [&str; 12] = [
    "id",
    "first_name",
    "last_name",
    "gender",
    "address",
    "post_code",
    "email",
    "username",
    "dob",
    "registered_date",
    "phone",
    "picture",
];

/// Fields that must be present, non-null and non-empty; every other non-key column may be
/// absent or `null` (stored as null).
pub const REQUIRED_FIELDS: [&str; 5] = ["id", "first_name", "last_name", "email", "username"];

/// Decodes and validates a Kafka value into a row, reading what the old stack's Spark job
/// read (`from_json` with string columns).
///
/// Rules:
/// - the value is a JSON object of at most [`MAX_MESSAGE_BYTES`]; unknown fields are
///   ignored; when a key repeats, its last value counts (as in Spark's parser);
/// - a JSON number or boolean where text is expected is stored as its JSON text
///   (`8394` → `"8394"`, `12.5` → `"12.5"`, `true` → `"true"`); an object or array is
///   `wrong_type`;
/// - [`REQUIRED_FIELDS`] are present, non-null, non-empty; the others absent/null → null;
/// - `id` is a UUID and equals the record key when there is a key (no key is fine);
/// - `dob`/`registered_date`, when present, are RFC 3339; every text at most
///   [`MAX_FIELD_BYTES`].
///
/// # Errors
/// The first [`Rejection`] found.
pub fn validate(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    fetched_at_ms: i64,
) -> Result<UserRow, Rejection> {
    let value =
        value.ok_or_else(|| Rejection::new(RejectReason::NotJson, "record has no value"))?;
    if value.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "message is {} bytes, limit {MAX_MESSAGE_BYTES}",
                value.len()
            ),
        ));
    }
    let fields = MessageFields::parse(value)?;
    let id_text = fields.required(0)?;
    let id = uuid::Uuid::parse_str(&id_text).map_err(|_| {
        Rejection::new(
            RejectReason::InvalidId,
            format!("`id` {:?} is not a UUID", truncate_for_log(&id_text)),
        )
    })?;
    if let Some(key) = key
        && key != id_text.as_bytes()
    {
        return Err(Rejection::new(
            RejectReason::KeyMismatch,
            "record key differs from `id`",
        ));
    }
    let row = UserRow {
        id,
        first_name: fields.required(1)?,
        last_name: fields.required(2)?,
        gender: fields.optional(3)?,
        address: fields.optional(4)?,
        post_code: fields.optional(5)?,
        email: fields.required(6)?,
        username: fields.required(7)?,
        dob: fields.optional(8)?,
        registered_date: fields.optional(9)?,
        phone: fields.optional(10)?,
        picture: fields.optional(11)?,
        fetched_at_ms,
    };
    for (field, date) in [("dob", &row.dob), ("registered_date", &row.registered_date)] {
        if let Some(date) = date
            && chrono::DateTime::parse_from_rfc3339(date).is_err()
        {
            return Err(Rejection::new(
                RejectReason::InvalidDate,
                format!(
                    "`{field}` {:?} is not an RFC 3339 date",
                    truncate_for_log(date)
                ),
            ));
        }
    }
    Ok(row)
}

/// The raw JSON text of each of the [`MESSAGE_FIELDS`] in one message, borrowed from it.
struct MessageFields<'a> {
    values: [Option<&'a serde_json::value::RawValue>; 12],
}

impl<'a> MessageFields<'a> {
    /// One pass over the message: the 12 fields as raw text, everything else skipped.
    fn parse(value: &'a [u8]) -> Result<Self, Rejection> {
        let first = value
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .copied();
        if first != Some(b'{') {
            // Say whether it is JSON at all, as the old stack's parser would have failed on it.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(value) {
                    Ok(_) => {
                        Rejection::new(RejectReason::NotObject, "message is not a JSON object")
                    }
                    Err(e) => Rejection::new(RejectReason::NotJson, format!("invalid JSON: {e}")),
                },
            );
        }
        serde_json::from_slice::<MessageFields<'a>>(value)
            .map_err(|e| Rejection::new(RejectReason::NotJson, format!("invalid JSON: {e}")))
    }

    /// The field's text: `None` when absent or `null`.
    fn text(&self, index: usize) -> Result<Option<std::borrow::Cow<'a, str>>, Rejection> {
        let field = MESSAGE_FIELDS[index];
        let Some(raw) = self.values[index] else {
            return Ok(None);
        };
        let text = raw.get();
        let decoded = match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<CowStr<'a>>(text)
                .map(|s| s.0)
                .map_err(|e| Rejection::new(RejectReason::NotJson, format!("`{field}`: {e}")))?,
            Some(b'n') => return Ok(None),
            // Numbers and booleans: their JSON text, as Spark's StringType conversion did.
            Some(b't' | b'f' | b'-' | b'0'..=b'9') => std::borrow::Cow::Borrowed(text),
            Some(b'[') => return Err(wrong_type(field, "an array")),
            _ => return Err(wrong_type(field, "an object")),
        };
        bounded(field, &decoded)?;
        Ok(Some(decoded))
    }

    fn optional(&self, index: usize) -> Result<Option<String>, Rejection> {
        Ok(self.text(index)?.map(std::borrow::Cow::into_owned))
    }

    fn required(&self, index: usize) -> Result<String, Rejection> {
        let field = MESSAGE_FIELDS[index];
        match self.text(index)? {
            None => Err(Rejection::new(
                RejectReason::MissingField,
                format!("`{field}` is missing"),
            )),
            Some(s) if s.is_empty() => Err(Rejection::new(
                RejectReason::MissingField,
                format!("`{field}` is empty"),
            )),
            Some(s) => Ok(s.into_owned()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MessageFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = MessageFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut values = [None; 12];
                while let Some(FieldKey(index)) = map.next_key()? {
                    match index {
                        Some(i) => values[i] = Some(map.next_value()?),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(MessageFields { values })
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A map key: the index in [`MESSAGE_FIELDS`], or `None` for a field we do not read.
struct FieldKey(Option<usize>);

impl<'de> serde::Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = FieldKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<FieldKey, E> {
                Ok(FieldKey(MESSAGE_FIELDS.iter().position(|f| *f == key)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct CowStr<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CowStr(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

fn bounded(field: &str, s: &str) -> Result<(), Rejection> {
    if s.len() > MAX_FIELD_BYTES {
        Err(Rejection::new(
            RejectReason::TooLarge,
            format!("`{field}` is {} bytes, limit {MAX_FIELD_BYTES}", s.len()),
        ))
    } else {
        Ok(())
    }
}

fn wrong_type(field: &str, kind: &str) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!("`{field}` must be text, a number or a boolean; found {kind}"),
    )
}

/// Headers of a produced record.
pub fn message_headers(fetched_at_ms: i64) -> BTreeMap<String, Vec<u8>> {
    let mut headers = BTreeMap::new();
    headers.insert("fetched_at".into(), fetched_at_ms.to_string().into_bytes());
    headers.insert("content-type".into(), b"application/json".to_vec());
    headers.insert("schema".into(), SCHEMA_NAME.as_bytes().to_vec());
    headers
}

/// Reads the `fetched_at` header (unix ms).
pub fn fetched_at_header(headers: &BTreeMap<String, Vec<u8>>) -> Option<i64> {
    std::str::from_utf8(headers.get("fetched_at")?)
        .ok()?
        .parse()
        .ok()
}

/// Kafka's default partitioner (murmur2 of the key, positive, modulo partitions), so that
/// records land where the Java producer of the old stack would have put them.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2(key) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("abc", 2), "ab");
        // "é" is two bytes: cutting inside it drops it whole.
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("aé", 3), "aé");
        assert_eq!(truncate_utf8("", 0), "");
    }
    use serde_json::{Map, json};

    pub(crate) fn sample_user() -> Value {
        json!({
            "gender": "female",
            "name": {"title": "Ms", "first": "Ada", "last": "Lovelace"},
            "location": {
                "street": {"number": 4021, "name": "Main St"},
                "city": "Leeds", "state": "West Yorkshire", "country": "United Kingdom",
                "postcode": "LS1 4AP",
                "coordinates": {"latitude": "-37.1", "longitude": "121.7"},
                "timezone": {"offset": "+5:30", "description": "x"}
            },
            "email": "ada@example.com",
            "login": {"uuid": "8c0e7a4e-3f2b-4c1a-9d7e-1a2b3c4d5e6f", "username": "ada1815",
                      "password": "hunter2", "salt": "s", "md5": "m", "sha1": "h", "sha256": "z"},
            "dob": {"date": "1993-07-20T09:44:18.674Z", "age": 31},
            "registered": {"date": "2015-01-02T03:04:05.006Z", "age": 9},
            "phone": "0161 123", "cell": "0777",
            "id": {"name": "NINO", "value": null},
            "picture": {"large": "https://l", "medium": "https://m", "thumbnail": "https://t"},
            "nat": "GB"
        })
    }

    fn page(users: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"results": users, "info": {"seed": "s", "results": 1, "page": 1, "version": "1.4"}}))
            .expect("encode")
    }

    #[test]
    fn typed_schema_accepts_quirks() {
        let mut numeric = sample_user();
        numeric["location"]["postcode"] = json!(91523);
        let body = page(vec![sample_user(), numeric]);
        let resp: api::Response = serde_json::from_slice(&body).expect("typed parse");
        assert_eq!(
            resp.results[0]
                .location
                .as_ref()
                .map(|l| l.postcode.to_string()),
            Some("LS1 4AP".into())
        );
        assert_eq!(
            resp.results[1]
                .location
                .as_ref()
                .map(|l| l.postcode.to_string()),
            Some("91523".into())
        );
        assert_eq!(
            resp.results[0].id.as_ref().and_then(|i| i.value.clone()),
            None
        );
    }

    #[test]
    fn split_strips_credentials_and_keeps_uuid() {
        let users = split_page(&page(vec![sample_user()])).expect("split");
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].id, "8c0e7a4e-3f2b-4c1a-9d7e-1a2b3c4d5e6f");
        let text = users[0].raw.clone();
        for secret in ["hunter2", "\"salt\"", "md5", "sha1", "sha256", "password"] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert_eq!(
            users[0].json().expect("json").pointer("/login/username"),
            Some(&json!("ada1815"))
        );
        assert_eq!(
            users[0].message,
            encode_message(&users[0].id, &users[0].json().expect("json")).expect("encode")
        );
    }

    #[test]
    fn split_rejects_error_bodies() {
        assert!(matches!(
            split_page(b"{\"error\":\"Uh oh\"}"),
            Err(PageError::ApiError(_))
        ));
        assert!(matches!(
            split_page(b"{\"results\":[1,"),
            Err(PageError::NotJson(_))
        ));
        assert!(matches!(
            split_page(b"{\"info\":{}}"),
            Err(PageError::NoResults)
        ));
        assert!(matches!(split_page(b"[]"), Err(PageError::NotJson(_))));
    }

    #[test]
    fn nul_characters_are_replaced_everywhere() {
        let body = br#"{"results":[{"name":{"first":"a\u0000b"},"k\u0000":["\u0000"],"login":{"uuid":"x\u0000"}}]}"#;
        let users = split_page(body).expect("split");
        let text = users[0].raw.clone();
        assert!(!text.contains('\0') && !text.contains("\\u0000"), "{text}");
        assert!(text.contains("a\u{FFFD}b"), "{text}");
        assert!(!users[0].id.contains('\0'));
    }

    #[test]
    fn missing_or_huge_uuid_gets_stable_derived_id() {
        let mut u = sample_user();
        u["login"].as_object_mut().expect("obj").remove("uuid");
        let a = record_id(&u);
        assert!(a.starts_with("derived-"));
        assert_eq!(a, record_id(&u.clone()));
        u["login"]["uuid"] = json!("x".repeat(MAX_ID_LEN + 1));
        assert!(record_id(&u).starts_with("derived-"));
        u["login"]["uuid"] = json!(42);
        assert!(record_id(&u).starts_with("derived-"));
    }

    #[test]
    fn message_round_trips_through_validation() {
        let users = split_page(&page(vec![sample_user()])).expect("split");
        let value = users[0].message.clone();
        let row = validate(
            Some(users[0].id.as_bytes()),
            Some(&value),
            1_700_000_000_000,
        )
        .expect("valid");
        assert_eq!(row.id.to_string(), users[0].id);
        assert_eq!(row.first_name, "Ada");
        assert_eq!(
            row.address.as_deref(),
            Some("4021 Main St, Leeds, West Yorkshire, United Kingdom")
        );
        assert_eq!(row.post_code.as_deref(), Some("LS1 4AP"));
        assert_eq!(row.username, "ada1815");
        assert_eq!(row.picture.as_deref(), Some("https://m"));
        assert_eq!(row.dob.as_deref(), Some("1993-07-20T09:44:18.674Z"));
        assert_eq!(row.fetched_at_ms, 1_700_000_000_000);
        let text = String::from_utf8(value).expect("utf8");
        assert!(!text.contains("hunter2"));
    }

    fn reason_for(mutate: impl FnOnce(&mut Value)) -> RejectReason {
        let mut u = sample_user();
        mutate(&mut u);
        strip_credentials(&mut u);
        let id = record_id(&u);
        let value = encode_message(&id, &u).expect("encode");
        match validate(Some(id.as_bytes()), Some(&value), 0) {
            Ok(row) => panic!("accepted {row:?}"),
            Err(r) => r.reason,
        }
    }

    #[test]
    fn each_fault_has_its_reason() {
        assert_eq!(
            reason_for(|u| {
                u.as_object_mut().map(|o| o.remove("email"));
            }),
            RejectReason::MissingField
        );
        assert_eq!(
            reason_for(|u| u["name"]["first"] = json!(["a"])),
            RejectReason::WrongType
        );
        // A number is read as its text (as the old stack did), which is not a date.
        assert_eq!(
            reason_for(|u| u["dob"]["date"] = json!(12345)),
            RejectReason::InvalidDate
        );
        assert_eq!(
            reason_for(|u| u["dob"]["date"] = json!("yesterday")),
            RejectReason::InvalidDate
        );
        assert_eq!(
            reason_for(|u| u["login"]["uuid"] = json!("not-a-uuid")),
            RejectReason::InvalidId
        );
        assert_eq!(
            reason_for(|u| {
                u["login"].as_object_mut().map(|o| o.remove("uuid"));
            }),
            RejectReason::InvalidId
        );
        assert_eq!(
            reason_for(|u| u["name"]["last"] = json!("x".repeat(MAX_FIELD_BYTES + 1))),
            RejectReason::TooLarge
        );
        assert_eq!(
            reason_for(|u| u["location"]["street"] = json!(null)),
            RejectReason::WrongType
        );
    }

    #[test]
    fn raw_bytes_rejections() {
        let r = validate(None, Some(b"{not json"), 0).expect_err("bad");
        assert_eq!(r.reason, RejectReason::NotJson);
        let r = validate(None, Some(b"[1]"), 0).expect_err("bad");
        assert_eq!(r.reason, RejectReason::NotObject);
        let r = validate(None, None, 0).expect_err("bad");
        assert_eq!(r.reason, RejectReason::NotJson);
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            validate(None, Some(&big), 0).expect_err("bad").reason,
            RejectReason::TooLarge
        );
        let users = split_page(&page(vec![sample_user()])).expect("split");
        let value = users[0].message.clone();
        let r = validate(Some(b"other"), Some(&value), 0).expect_err("bad");
        assert_eq!(r.reason, RejectReason::KeyMismatch);
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
        for p in 1..20 {
            let part = partition_for_key(b"some-key", p);
            assert!((0..p).contains(&part));
        }
    }

    #[test]
    fn headers_round_trip() {
        let h = message_headers(1234);
        assert_eq!(fetched_at_header(&h), Some(1234));
        assert_eq!(
            h.get("schema").map(Vec::as_slice),
            Some(SCHEMA_NAME.as_bytes())
        );
    }

    /// The message encoder as it was before it borrowed (a `Map` of cloned values): the new
    /// one must write the same bytes.
    fn reference_encode(id: &str, user: &Value) -> Vec<u8> {
        let mut msg = Map::with_capacity(12);
        msg.insert("id".into(), Value::String(id.to_string()));
        for (key, pointer) in [
            ("first_name", "/name/first"),
            ("last_name", "/name/last"),
            ("gender", "/gender"),
            ("email", "/email"),
            ("username", "/login/username"),
            ("dob", "/dob/date"),
            ("registered_date", "/registered/date"),
            ("phone", "/phone"),
            ("picture", "/picture/medium"),
        ] {
            if let Some(v) = user.pointer(pointer) {
                msg.insert(key.into(), v.clone());
            }
        }
        if let Some(location) = user.get("location") {
            let part = |p: &str| match location.pointer(p)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let address = match (
                part("/street/number"),
                part("/street/name"),
                part("/city"),
                part("/state"),
                part("/country"),
            ) {
                (Some(a), Some(b), Some(c), Some(d), Some(e)) => {
                    Value::String(format!("{a} {b}, {c}, {d}, {e}"))
                }
                _ => location.clone(),
            };
            msg.insert("address".into(), address);
            if let Some(pc) = location.get("postcode") {
                let pc = match pc {
                    Value::Number(n) => Value::String(n.to_string()),
                    other => other.clone(),
                };
                msg.insert("post_code".into(), pc);
            }
        }
        serde_json::to_vec(&Value::Object(msg)).expect("encode")
    }

    #[test]
    fn borrowed_encoder_writes_the_same_bytes() {
        let mut users = vec![sample_user()];
        let mut u = sample_user();
        u["location"]["postcode"] = json!(8394);
        u["location"]["street"] = json!(null);
        users.push(u);
        let mut u = sample_user();
        u.as_object_mut().map(|o| o.remove("location"));
        u["name"]["first"] = json!(["x"]);
        users.push(u);
        for nat in crate::emulator::Nat::ALL {
            let mut params = crate::emulator::PageParams::new("enc", 1, 20);
            params.nat = vec![nat];
            let page =
                crate::emulator::generate_page(&params, &crate::emulator::ContentFaults::none());
            let body: Value = serde_json::from_str(&page.body).expect("json");
            users.extend(body["results"].as_array().expect("results").iter().cloned());
        }
        for u in &users {
            let id = record_id(u);
            assert_eq!(
                encode_message(&id, u).expect("encode"),
                reference_encode(&id, u),
                "{u}"
            );
        }
    }

    /// What the tree path gives for a user: id, stripped tree, message.
    fn tree_split(text: &str) -> (String, Value, Vec<u8>) {
        let mut json: Value = serde_json::from_str(text).expect("json");
        replace_nul(&mut json);
        strip_credentials(&mut json);
        let id = record_id(&json);
        let message = encode_message(&id, &json).expect("encode");
        (id, json, message)
    }

    /// The borrowed path agrees with the tree path: same id, same message bytes, and landed
    /// JSON that reads back as the same (credential-free) tree.
    fn assert_paths_agree(text: &str) {
        let fast = split_user(text).expect("split");
        let (id, tree, message) = tree_split(text);
        assert_eq!(fast.id, id, "{text}");
        assert_eq!(
            String::from_utf8_lossy(&fast.message),
            String::from_utf8_lossy(&message),
            "{text}"
        );
        assert_eq!(fast.json().expect("landed json"), tree, "{text}");
        for secret in CREDENTIAL_FIELDS {
            assert!(
                fast.json()
                    .expect("json")
                    .pointer(&format!("/login/{secret}"))
                    .is_none(),
                "{secret} in {}",
                fast.raw
            );
        }
    }

    #[test]
    fn borrowed_split_matches_the_tree_path() {
        let mut users: Vec<String> = Vec::new();
        for nat in crate::emulator::Nat::ALL {
            let mut params = crate::emulator::PageParams::new("paths", 3, 25);
            params.nat = vec![nat];
            let page =
                crate::emulator::generate_page(&params, &crate::emulator::ContentFaults::none());
            let body: Value = serde_json::from_str(&page.body).expect("json");
            users.extend(
                body["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(Value::to_string),
            );
        }
        let faults = crate::emulator::ContentFaults::new(1.0, crate::emulator::ContentFault::ALL);
        let page = crate::emulator::generate_page(
            &crate::emulator::PageParams::new("paths", 1, 60),
            &faults,
        );
        let body: Value = serde_json::from_str(&page.body).expect("json");
        users.extend(
            body["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(Value::to_string),
        );
        let uuid = r#""login": {"uuid": "8c0e7a4e-3f2b-4c1a-9d7e-1a2b3c4d5e6f", "username": "u", "password": "p""#;
        users.extend([
            // Escapes in values and keys, spacing, a credential key spelled with an escape.
            format!(r#"{{ "name" : {{"first": "Zo\u00eb \"Z\"", "last": "L\/x"}}, {uuid}, "pass\u0077ord": "x", "s\u0061lt": "y"}}, "email": "e"}}"#),
            // Repeated keys: the last counts, as in a tree.
            format!(r#"{{"email": "a", "email": "b", {uuid}}}, "name": {{"first": "x", "first": "y"}}}}"#),
            // Numbers in unusual forms, a float postcode, a malformed street.
            format!(r#"{{"location": {{"street": {{"number": 1.0, "name": "S"}}, "city": 12, "state": "s", "country": "c", "postcode": 1e3}}, {uuid}}}}}"#),
            format!(r#"{{"location": {{"street": null, "postcode": "AB1"}}, {uuid}}}, "gender": true}}"#),
            format!(r#"{{"location": [1], {uuid}}}, "phone": {{"a": [1, 2]}}, "dob": {{"date": 5}}}}"#),
            // Not a usable uuid, login not an object, not an object at all: the tree path.
            r#"{"login": {"uuid": 42, "password": "p"}, "email": "e"}"#.to_string(),
            r#"{"login": "nope"}"#.to_string(),
            r#"[1, 2]"#.to_string(),
            r#""text""#.to_string(),
            // NUL characters: the tree path replaces them.
            format!(r#"{{"name": {{"first": "a\u0000b"}}, {uuid}}}}}"#),
        ]);
        for text in &users {
            assert_paths_agree(text);
        }
        // The fault-free emulator users all take the borrowed path.
        assert!(
            users[..150]
                .iter()
                .all(|u| split_user_borrowed(u).is_some())
        );
    }

    /// `json.dumps` as the old producer called it: `", "` and `": "` separators,
    /// `ensure_ascii=True` (non-ASCII as `\uXXXX`, surrogate pairs above the BMP).
    pub(crate) fn python_json_dumps(value: &Value) -> Vec<u8> {
        struct Py;
        impl serde_json::ser::Formatter for Py {
            fn begin_array_value<W: ?Sized + std::io::Write>(
                &mut self,
                w: &mut W,
                first: bool,
            ) -> std::io::Result<()> {
                if first { Ok(()) } else { w.write_all(b", ") }
            }
            fn begin_object_key<W: ?Sized + std::io::Write>(
                &mut self,
                w: &mut W,
                first: bool,
            ) -> std::io::Result<()> {
                if first { Ok(()) } else { w.write_all(b", ") }
            }
            fn begin_object_value<W: ?Sized + std::io::Write>(
                &mut self,
                w: &mut W,
            ) -> std::io::Result<()> {
                w.write_all(b": ")
            }
            fn write_string_fragment<W: ?Sized + std::io::Write>(
                &mut self,
                w: &mut W,
                fragment: &str,
            ) -> std::io::Result<()> {
                for c in fragment.chars() {
                    if c.is_ascii() {
                        w.write_all(&[c as u8])?;
                    } else {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            write!(w, "\\u{unit:04x}")?;
                        }
                    }
                }
                Ok(())
            }
        }
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Py);
        serde::Serialize::serialize(value, &mut ser).expect("encode");
        out
    }

    /// The old DAG's `format_data(res)`, with `id = str(uuid4())`.
    fn format_data(user: &Value, id: &str) -> Value {
        let l = &user["location"];
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        json!({
            "id": id,
            "first_name": user["name"]["first"],
            "last_name": user["name"]["last"],
            "gender": user["gender"],
            "address": format!("{} {}, {}, {}, {}", text(&l["street"]["number"]),
                text(&l["street"]["name"]), text(&l["city"]), text(&l["state"]), text(&l["country"])),
            "post_code": l["postcode"],
            "email": user["email"],
            "username": user["login"]["username"],
            "dob": user["dob"]["date"],
            "registered_date": user["registered"]["date"],
            "phone": user["phone"],
            "picture": user["picture"]["medium"],
        })
    }

    #[test]
    fn old_producer_message_with_numeric_postcode_lands() {
        let mut u = sample_user();
        u["location"]["postcode"] = json!(8394);
        u["name"]["first"] = json!("Zoë");
        let id = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
        let value = python_json_dumps(&format_data(&u, id));
        let text = String::from_utf8(value.clone()).expect("utf8");
        assert!(text.contains("\"post_code\": 8394, "), "{text}");
        assert!(text.contains("Zo\\u00eb"), "{text}");
        let row = validate(None, Some(&value), 5).expect("old message lands");
        assert_eq!(row.id.to_string(), id);
        assert_eq!(row.post_code.as_deref(), Some("8394"));
        assert_eq!(row.first_name, "Zoë");
        assert_eq!(
            row.address.as_deref(),
            Some("4021 Main St, Leeds, West Yorkshire, United Kingdom")
        );
        assert_eq!(row.fetched_at_ms, 5);
    }

    #[test]
    fn scalars_are_stored_as_their_json_text() {
        let base = |extra: &str| {
            format!(
                r#"{{"id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "first_name": "a", "last_name": "b",
                   "email": "e", "username": "u"{extra}}}"#
            )
        };
        let row = |extra: &str| validate(None, Some(base(extra).as_bytes()), 0);
        let r = row(r#", "post_code": 12.5, "gender": true, "phone": -7, "picture": false"#)
            .expect("scalars");
        assert_eq!(r.post_code.as_deref(), Some("12.5"));
        assert_eq!(r.gender.as_deref(), Some("true"));
        assert_eq!(r.phone.as_deref(), Some("-7"));
        assert_eq!(r.picture.as_deref(), Some("false"));
        // Required fields take numbers too.
        let numeric_name = base("").replace(r#""first_name": "a""#, r#""first_name": 42"#);
        assert_eq!(
            validate(None, Some(numeric_name.as_bytes()), 0)
                .expect("number name")
                .first_name,
            "42"
        );
        // Unknown fields are ignored; the last of a repeated key counts.
        let r = row(r#", "nat": {"x": [1]}, "post_code": "A", "post_code": "B""#).expect("extra");
        assert_eq!(r.post_code.as_deref(), Some("B"));
        // null and absent optional fields are null.
        let r = row(r#", "post_code": null, "dob": null"#).expect("nulls");
        assert_eq!((r.post_code, r.dob, r.address), (None, None, None));
        // Objects and arrays are not text.
        for (extra, field) in [
            (r#", "post_code": {"n": 1}"#, "post_code"),
            (r#", "address": ["a"]"#, "address"),
        ] {
            let e = row(extra).expect_err("nested");
            assert_eq!(e.reason, RejectReason::WrongType, "{e:?}");
            assert!(e.detail.contains(field), "{e:?}");
        }
        // Escaped strings are decoded.
        let r = row(r#", "phone": "a\"b\u00e9""#).expect("escaped");
        assert_eq!(r.phone.as_deref(), Some("a\"bé"));
    }

    #[test]
    fn each_required_field_is_required() {
        let full = json!({
            "id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "first_name": "a", "last_name": "b",
            "email": "e", "username": "u"
        });
        for field in REQUIRED_FIELDS {
            for replacement in [None, Some(Value::Null), Some(json!(""))] {
                let mut msg = full.clone();
                match replacement.clone() {
                    None => {
                        msg.as_object_mut().map(|o| o.remove(field));
                    }
                    Some(v) => msg[field] = v,
                }
                let e = validate(None, Some(&python_json_dumps(&msg)), 0).expect_err(field);
                assert_eq!(
                    e.reason,
                    RejectReason::MissingField,
                    "{field} {replacement:?}"
                );
            }
        }
        let optional: Vec<&str> = MESSAGE_FIELDS
            .into_iter()
            .filter(|f| !REQUIRED_FIELDS.contains(f))
            .collect();
        assert_eq!(optional.len(), 7);
        let mut msg = full.clone();
        for field in &optional {
            msg[*field] = Value::Null;
        }
        assert!(validate(None, Some(&python_json_dumps(&msg)), 0).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn validate_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = validate(None, Some(&bytes), 0);
            let _ = split_page(&bytes);
        }

        #[test]
        fn any_json_user_is_encoded_and_judged(first in ".{0,40}", num in proptest::prelude::any::<i64>(), uuid_text in ".{0,80}") {
            let mut u = sample_user();
            u["name"]["first"] = json!(first);
            u["location"]["street"]["number"] = json!(num);
            u["login"]["uuid"] = json!(uuid_text);
            let id = record_id(&u);
            let value = encode_message(&id, &u).expect("encode");
            proptest::prop_assert_eq!(&value, &reference_encode(&id, &u));
            let _ = validate(Some(id.as_bytes()), Some(&value), 0);
        }
    }

    /// A postcode as randomuser sends it: a number for most nationalities, a string for
    /// CA, GB, IE, NL and others; any integer or any non-empty text.
    fn postcode() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            (0_i64..1_000_000).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[A-Z][0-9][A-Z] [0-9][A-Z][0-9]".prop_map(Value::from),
            "[A-Z]{1,2}[0-9]{1,2} [0-9][A-Z]{2}".prop_map(Value::from),
            "\\PC{0,30}".prop_map(Value::from),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Every message the old producer writes for a randomuser user lands, with the text
        /// the old Spark job stored.
        #[test]
        fn every_old_producer_message_lands(
            seed in "[a-f0-9]{4,16}",
            page in 1_u32..50,
            nat in proptest::sample::select(crate::emulator::Nat::ALL.to_vec()),
            postcode in postcode(),
            first in "\\PC{1,40}",
            id_bytes in proptest::prelude::any::<[u8; 16]>(),
        ) {
            let mut params = crate::emulator::PageParams::new(seed, page, 1);
            params.nat = vec![nat];
            let generated = crate::emulator::generate_page(
                &params,
                &crate::emulator::ContentFaults::none(),
            );
            let body: Value = serde_json::from_str(&generated.body).expect("json");
            let native = body["results"][0].clone();
            for mut user in [native.clone(), {
                let mut u = native.clone();
                u["location"]["postcode"] = postcode;
                u["name"]["first"] = json!(first);
                u
            }] {
                let id = uuid::Builder::from_random_bytes(id_bytes).into_uuid().to_string();
                strip_credentials(&mut user);
                let value = python_json_dumps(&format_data(&user, &id));
                let row = validate(None, Some(&value), 1);
                let row = row.map_err(|e| proptest::test_runner::TestCaseError::fail(
                    format!("{e:?} for {}", String::from_utf8_lossy(&value))))?;
                let expected_postcode = match &user["location"]["postcode"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                proptest::prop_assert_eq!(row.id.to_string(), id);
                proptest::prop_assert_eq!(row.post_code, Some(expected_postcode));
                proptest::prop_assert_eq!(Some(row.first_name.as_str()), user["name"]["first"].as_str());
                proptest::prop_assert_eq!(row.dob.as_deref(), user["dob"]["date"].as_str());
                proptest::prop_assert_eq!(row.picture.as_deref(), user["picture"]["medium"].as_str());
            }
        }
    }
}
