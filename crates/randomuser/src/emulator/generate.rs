//! Deterministic generation of response pages, with optional per-record content faults.
//!
//! Every record draws from its own small RNG seeded from `(seed, page, index)`, so a record
//! does not depend on `results`, `inc`/`exc` or on the records before it: the first 10 users
//! of a 5000-user page equal a 10-user page, and excluding fields never changes the values of
//! the remaining ones. The RNG and hashes are written here (not taken from a crate) so the
//! output stays byte-identical across dependency upgrades.

use std::fmt;
use std::str::FromStr;

use super::data::{self, NatData};
use super::params::{FieldSet, Gender, Nat, PageParams};
use crate::{Field, MAX_RESULTS};

/// The instant ages are computed against: 2025-01-01T00:00:00Z (unix ms). Fixed rather than
/// the wall clock so a page is reproducible forever; `dob.age` and `registered.age` are full
/// years between the date and this instant.
pub const REFERENCE_TIME_MS: i64 = 1_735_689_600_000;
/// Size of the `name.last` written by [`ContentFault::HugeString`].
pub const HUGE_STRING_BYTES: usize = 2 * 1024 * 1024;
/// The `info.version` served.
pub const API_VERSION: &str = "1.4";

const DAY_MS: i64 = 86_400_000;
/// Earliest birth date, as in the reference implementation (1944-08-28).
const DOB_MIN_MS: i64 = -800_000_000_000;
/// Everyone is at least 21 at the reference date.
const DOB_MAX_MS: i64 = REFERENCE_TIME_MS - 21 * 365 * DAY_MS;
/// Earliest registration date, as in the reference implementation (2002-03-21).
const REGISTERED_MIN_MS: i64 = 1_016_688_461_000;
const REGISTERED_MAX_MS: i64 = REFERENCE_TIME_MS - DAY_MS;

const RNG_SALT: u64 = 0x005e_ed0f_0a11_5eed;
const UUID_SALT: u64 = 0x0bad_cafe_d00d_f00d;
const FAULT_SALT: u64 = 0xfa17_fa17_fa17_fa17;

/// A per-record content fault: the body stays valid UTF-8 JSON, the record does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentFault {
    /// A required field is absent: `login.uuid` or `email` (whichever the seed picks and the
    /// request includes).
    MissingField,
    /// A field has the wrong JSON type: `dob.date` as a number (unix ms; the consumer reads a
    /// number as its text, as the old stack did, so it is dead-lettered as `invalid_date`) or
    /// `name.first` as an array of one string (`wrong_type`).
    WrongType,
    /// `login.uuid` is `"not-a-uuid-<16 hex>"`.
    InvalidUuid,
    /// `dob.date` (or `registered.date` when `dob` is excluded) is `"yesterday"`.
    BadDate,
    /// `name.last` is [`HUGE_STRING_BYTES`] of `x`: a well-formed record too big to accept.
    HugeString,
}

impl ContentFault {
    /// Every kind, in flag order.
    pub const ALL: [ContentFault; 5] = [
        ContentFault::MissingField,
        ContentFault::WrongType,
        ContentFault::InvalidUuid,
        ContentFault::BadDate,
        ContentFault::HugeString,
    ];

    /// The flag spelling (`missing-field`, `wrong-type`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ContentFault::MissingField => "missing-field",
            ContentFault::WrongType => "wrong-type",
            ContentFault::InvalidUuid => "invalid-uuid",
            ContentFault::BadDate => "bad-date",
            ContentFault::HugeString => "huge-string",
        }
    }
}

impl fmt::Display for ContentFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault kind name that is not one of [`ContentFault::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown record fault kind {0:?} (expected missing-field, wrong-type, invalid-uuid, bad-date or huge-string)"
)]
pub struct UnknownFaultKind(pub String);

impl FromStr for ContentFault {
    type Err = UnknownFaultKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().replace('_', "-").to_ascii_lowercase();
        ContentFault::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| UnknownFaultKind(s.to_owned()))
    }
}

/// Which records of a page are malformed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentFaults {
    /// Fraction of records (0.0..=1.0) that get a fault; the choice is a hash of
    /// `(seed, page, index)`, so it is the same on every request of the page.
    pub fraction: f64,
    /// Kinds to draw from (uniformly per record; repeat a kind to weight it). A kind that does
    /// not apply to the request's fields (e.g. `bad-date` with `exc=dob,registered`) falls
    /// through to the next one; when none applies the record stays valid.
    pub kinds: Vec<ContentFault>,
}

impl ContentFaults {
    /// No faults.
    pub fn none() -> ContentFaults {
        ContentFaults {
            fraction: 0.0,
            kinds: Vec::new(),
        }
    }

    /// `fraction` of the records get one of `kinds`.
    pub fn new(fraction: f64, kinds: impl Into<Vec<ContentFault>>) -> ContentFaults {
        ContentFaults {
            fraction,
            kinds: kinds.into(),
        }
    }

    /// # Errors
    /// A message naming the problem: fraction outside [0, 1], or faults without kinds.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(format!(
                "bad-records fraction {} is outside [0, 1]",
                self.fraction
            ));
        }
        if self.fraction > 0.0 && self.kinds.is_empty() {
            return Err("bad-records is above 0 but no fault kinds are enabled".to_owned());
        }
        Ok(())
    }
}

impl Default for ContentFaults {
    fn default() -> Self {
        ContentFaults::none()
    }
}

/// One generated response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedPage {
    /// The full JSON response body (always valid UTF-8 JSON).
    pub body: String,
    /// One entry per record, in body order.
    pub users: Vec<GeneratedUser>,
}

/// What a test needs to know about one record without parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedUser {
    /// `login.uuid` when the record has it as a string (also when it is the invalid one of
    /// [`ContentFault::InvalidUuid`]); `None` when `login` is excluded or the uuid dropped.
    pub id: Option<String>,
    /// The fault applied to this record, if any.
    pub fault: Option<ContentFault>,
}

impl GeneratedUser {
    /// A record without content fault.
    pub fn is_valid(&self) -> bool {
        self.fault.is_none()
    }
}

/// Generates the response for `params`, marking records malformed per `faults`.
///
/// Deterministic: equal `(params, faults)` give a byte-identical body on every platform and
/// run. `login.uuid` depends only on the seed, `page` and the record's index and is distinct
/// for every `(page, index)` of a seed (see [`user_uuid`]).
pub fn generate_page(params: &PageParams, faults: &ContentFaults) -> GeneratedPage {
    let results = params.results as usize;
    let ctx = PageCtx {
        h_seed: hash_seed(params.rng_seed()),
        page: params.page,
        fields: params.fields(),
        nats: if params.nat.is_empty() {
            &Nat::ALL
        } else {
            &params.nat
        },
        gender: params.gender,
        faults,
    };
    // Capped so a hand-built huge `results` grows the buffer instead of reserving it all.
    let mut out = Vec::with_capacity(results.min(MAX_RESULTS as usize) * 1150 + 128);
    let mut users = Vec::with_capacity(results.min(MAX_RESULTS as usize));
    let mut scratch = Scratch::default();
    out.extend_from_slice(b"{\"results\":[");
    for index in 0..params.results {
        if index > 0 {
            out.push(b',');
        }
        users.push(ctx.write_user(&mut out, &mut scratch, index));
    }
    out.push(b']');
    if !params.noinfo {
        out.extend_from_slice(b",\"info\":{\"seed\":");
        push_json_str(&mut out, &params.info_seed());
        out.extend_from_slice(b",\"results\":");
        push_u64(&mut out, u64::from(params.results));
        out.extend_from_slice(b",\"page\":");
        push_u64(&mut out, u64::from(params.page));
        out.extend_from_slice(b",\"version\":\"");
        out.extend_from_slice(API_VERSION.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b'}');
    // Everything written is UTF-8 (static text, ASCII, or escaped input strings); the lossy
    // path only exists to avoid a panic should that invariant ever break.
    let body = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    GeneratedPage { body, users }
}

/// The `login.uuid` of record `index` (0-based) on `page` for `seed`: 16 hash bytes laid out
/// as a version-4 uuid. For a fixed seed the map `(page, index) → uuid` is injective.
pub fn user_uuid(seed: &str, page: u32, index: u32) -> String {
    let h_seed = hash_seed(PageParams::new(seed, page, 1).rng_seed());
    let key = record_key(h_seed, page, index);
    String::from_utf8_lossy(&format_uuid(key, h_seed)).into_owned()
}

struct PageCtx<'a> {
    h_seed: u64,
    page: u32,
    fields: FieldSet,
    nats: &'a [Nat],
    gender: Option<Gender>,
    faults: &'a ContentFaults,
}

/// Reused per-record buffers, so generating a record allocates nothing but its id.
#[derive(Default)]
struct Scratch {
    postcode: Vec<u8>,
    phone: Vec<u8>,
    cell: Vec<u8>,
    id_value: Vec<u8>,
}

/// How a [`ContentFault`] is applied to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    DropUuid,
    DropEmail,
    DobAsNumber,
    FirstAsArray,
    InvalidUuid,
    BadDob,
    BadRegistered,
    HugeLast,
}

impl PageCtx<'_> {
    fn plan_fault(&self, key: u64) -> Option<(ContentFault, Applied)> {
        let kinds = &self.faults.kinds;
        let roll = mix64(key ^ FAULT_SALT);
        if kinds.is_empty() || unit_f64(roll) >= self.faults.fraction {
            return None;
        }
        let pick = mix64(roll);
        let start = (pick % kinds.len() as u64) as usize;
        let swap = (pick >> 40) & 1 == 1;
        let has = |field: Field, applied: Applied| self.fields.contains(field).then_some(applied);
        (0..kinds.len()).find_map(|k| {
            let kind = kinds[(start + k) % kinds.len()];
            let applied = match kind {
                ContentFault::MissingField => {
                    let (a, b) = (
                        has(Field::Login, Applied::DropUuid),
                        has(Field::Email, Applied::DropEmail),
                    );
                    if swap { b.or(a) } else { a.or(b) }
                }
                ContentFault::WrongType => {
                    let (a, b) = (
                        has(Field::Dob, Applied::DobAsNumber),
                        has(Field::Name, Applied::FirstAsArray),
                    );
                    if swap { b.or(a) } else { a.or(b) }
                }
                ContentFault::InvalidUuid => has(Field::Login, Applied::InvalidUuid),
                ContentFault::BadDate => has(Field::Dob, Applied::BadDob)
                    .or(has(Field::Registered, Applied::BadRegistered)),
                ContentFault::HugeString => has(Field::Name, Applied::HugeLast),
            };
            applied.map(|a| (kind, a))
        })
    }

    /// Writes one record. Values are always drawn in the same order whatever the request
    /// includes; only the writing is conditional.
    fn write_user(&self, out: &mut Vec<u8>, s: &mut Scratch, index: u32) -> GeneratedUser {
        let key = record_key(self.h_seed, self.page, index);
        let mut rng = Rng(mix64(key ^ RNG_SALT));
        let fault = self.plan_fault(key);
        let applied = fault.map(|(_, a)| a);
        let f = self.fields;
        let mut first_key = true;
        out.push(b'{');

        let gender = self.gender.unwrap_or(if rng.below(2) == 0 {
            Gender::Male
        } else {
            Gender::Female
        });
        let nat = rng.pick(self.nats);
        let nd = nat_data(nat);
        if f.contains(Field::Gender) {
            key_of(out, &mut first_key, "gender");
            push_quoted_static(out, gender.as_str());
        }

        // name
        let first = rng.pick(match gender {
            Gender::Male => nd.male_first,
            Gender::Female => nd.female_first,
        });
        let last = rng.pick(nd.last);
        let title = match gender {
            Gender::Male => "Mr",
            Gender::Female => rng.pick(data::FEMALE_TITLES),
        };
        if f.contains(Field::Name) {
            key_of(out, &mut first_key, "name");
            out.extend_from_slice(b"{\"title\":");
            push_quoted_static(out, title);
            out.extend_from_slice(b",\"first\":");
            if applied == Some(Applied::FirstAsArray) {
                out.push(b'[');
                push_quoted_static(out, first);
                out.push(b']');
            } else {
                push_quoted_static(out, first);
            }
            out.extend_from_slice(b",\"last\":");
            if applied == Some(Applied::HugeLast) {
                out.push(b'"');
                out.resize(out.len() + HUGE_STRING_BYTES, b'x');
                out.push(b'"');
            } else {
                push_quoted_static(out, last);
            }
            out.push(b'}');
        }

        // location
        let street_number = rng.range(1, 9999);
        let street = rng.pick(nd.streets);
        let city = rng.pick(nd.cities);
        let state = rng.pick(nd.states);
        let postcode = draw_postcode(&mut rng, nat, &mut s.postcode);
        let latitude = rng.range(-900_000, 900_000);
        let longitude = rng.range(-1_800_000, 1_800_000);
        let (tz_offset, tz_description) = rng.pick(data::TIMEZONES);
        if f.contains(Field::Location) {
            key_of(out, &mut first_key, "location");
            out.extend_from_slice(b"{\"street\":{\"number\":");
            push_u64(out, street_number.unsigned_abs());
            out.extend_from_slice(b",\"name\":");
            push_quoted_static(out, street);
            out.extend_from_slice(b"},\"city\":");
            push_quoted_static(out, city);
            out.extend_from_slice(b",\"state\":");
            push_quoted_static(out, state);
            out.extend_from_slice(b",\"country\":");
            push_quoted_static(out, nat.country());
            out.extend_from_slice(b",\"postcode\":");
            match postcode {
                Some(n) => push_u64(out, n),
                None => {
                    out.push(b'"');
                    out.extend_from_slice(&s.postcode);
                    out.push(b'"');
                }
            }
            out.extend_from_slice(b",\"coordinates\":{\"latitude\":\"");
            push_fixed4(out, latitude);
            out.extend_from_slice(b"\",\"longitude\":\"");
            push_fixed4(out, longitude);
            out.extend_from_slice(b"\"},\"timezone\":{\"offset\":");
            push_quoted_static(out, tz_offset);
            out.extend_from_slice(b",\"description\":");
            push_quoted_static(out, tz_description);
            out.extend_from_slice(b"}}");
        }

        if f.contains(Field::Email) && applied != Some(Applied::DropEmail) {
            key_of(out, &mut first_key, "email");
            out.push(b'"');
            push_email_part(out, first);
            out.push(b'.');
            push_email_part(out, last);
            out.extend_from_slice(b"@example.com\"");
        }

        // login
        let uuid = format_uuid(key, self.h_seed);
        let user_adj = rng.pick(data::USER_ADJECTIVES);
        let user_animal = rng.pick(data::USER_ANIMALS);
        let user_no = rng.range(100, 999);
        let password = rng.pick(data::PASSWORDS);
        let mut salt = [0u8; 8];
        for b in &mut salt {
            *b = ALNUM[rng.below(ALNUM.len() as u32) as usize];
        }
        let mut digests = [0u64; 9];
        for d in &mut digests {
            *d = rng.next();
        }
        let id = if !f.contains(Field::Login) {
            None
        } else {
            key_of(out, &mut first_key, "login");
            out.push(b'{');
            let id = match applied {
                Some(Applied::DropUuid) => None,
                Some(Applied::InvalidUuid) => {
                    let bad = format!("not-a-uuid-{key:016x}");
                    out.extend_from_slice(b"\"uuid\":");
                    push_quoted_static(out, &bad);
                    out.push(b',');
                    Some(bad)
                }
                _ => {
                    out.extend_from_slice(b"\"uuid\":\"");
                    out.extend_from_slice(&uuid);
                    out.extend_from_slice(b"\",");
                    Some(String::from_utf8_lossy(&uuid).into_owned())
                }
            };
            out.extend_from_slice(b"\"username\":\"");
            out.extend_from_slice(user_adj.as_bytes());
            out.extend_from_slice(user_animal.as_bytes());
            push_u64(out, user_no.unsigned_abs());
            out.extend_from_slice(b"\",\"password\":");
            push_quoted_static(out, password);
            out.extend_from_slice(b",\"salt\":\"");
            out.extend_from_slice(&salt);
            // Hex of the record's hash stream with digest lengths: shaped like the real
            // md5/sha1/sha256 of password+salt, not computed from them (nothing may use them).
            out.extend_from_slice(b"\",\"md5\":\"");
            push_hex(out, &digests[..2], 32);
            out.extend_from_slice(b"\",\"sha1\":\"");
            push_hex(out, &digests[2..5], 40);
            out.extend_from_slice(b"\",\"sha256\":\"");
            push_hex(out, &digests[5..], 64);
            out.extend_from_slice(b"\"}");
            id
        };

        let dob = rng.range(DOB_MIN_MS, DOB_MAX_MS);
        if f.contains(Field::Dob) {
            key_of(out, &mut first_key, "dob");
            out.extend_from_slice(b"{\"date\":");
            match applied {
                Some(Applied::DobAsNumber) => push_i64(out, dob),
                Some(Applied::BadDob) => out.extend_from_slice(b"\"yesterday\""),
                _ => push_quoted_iso_date(out, dob),
            }
            out.extend_from_slice(b",\"age\":");
            push_u64(out, age_at_reference(dob));
            out.push(b'}');
        }

        let registered = rng.range(REGISTERED_MIN_MS, REGISTERED_MAX_MS);
        if f.contains(Field::Registered) {
            key_of(out, &mut first_key, "registered");
            out.extend_from_slice(b"{\"date\":");
            if applied == Some(Applied::BadRegistered) {
                out.extend_from_slice(b"\"yesterday\"");
            } else {
                push_quoted_iso_date(out, registered);
            }
            out.extend_from_slice(b",\"age\":");
            push_u64(out, age_at_reference(registered));
            out.push(b'}');
        }

        draw_phones(&mut rng, nat, &mut s.phone, &mut s.cell);
        for (field, value) in [(Field::Phone, &s.phone), (Field::Cell, &s.cell)] {
            if f.contains(field) {
                key_of(out, &mut first_key, field.name());
                out.push(b'"');
                out.extend_from_slice(value);
                out.push(b'"');
            }
        }

        let id_name = draw_id(&mut rng, nat, gender, dob, last, &mut s.id_value);
        if f.contains(Field::Id) {
            key_of(out, &mut first_key, "id");
            out.extend_from_slice(b"{\"name\":");
            push_quoted_static(out, id_name);
            out.extend_from_slice(b",\"value\":");
            if s.id_value.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                out.push(b'"');
                out.extend_from_slice(&s.id_value);
                out.push(b'"');
            }
            out.push(b'}');
        }

        let (portrait_kind, portrait_max) = match gender {
            Gender::Male => ("men", 99),
            Gender::Female => ("women", 96),
        };
        let portrait = rng.range(0, portrait_max).unsigned_abs();
        if f.contains(Field::Picture) {
            key_of(out, &mut first_key, "picture");
            for (i, size) in ["large\":\"", "medium\":\"", "thumbnail\":\""]
                .into_iter()
                .enumerate()
            {
                out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
                out.extend_from_slice(size.as_bytes());
                out.extend_from_slice(b"https://randomuser.me/api/portraits/");
                out.extend_from_slice(match i {
                    0 => b"",
                    1 => b"med/",
                    _ => b"thumb/",
                });
                out.extend_from_slice(portrait_kind.as_bytes());
                out.push(b'/');
                push_u64(out, portrait);
                out.extend_from_slice(b".jpg\"");
            }
            out.push(b'}');
        }

        if f.contains(Field::Nat) {
            key_of(out, &mut first_key, "nat");
            push_quoted_static(out, nat.code());
        }
        out.push(b'}');
        GeneratedUser {
            id,
            fault: fault.map(|(kind, _)| kind),
        }
    }
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn nat_data(nat: Nat) -> &'static NatData {
    match nat {
        Nat::AU => &data::AU,
        Nat::CA => &data::CA,
        Nat::DE => &data::DE,
        Nat::GB => &data::GB,
        Nat::NZ => &data::NZ,
        Nat::US => &data::US,
    }
}

/// A numeric postcode, or `None` with the string form written into `buf`.
fn draw_postcode(rng: &mut Rng, nat: Nat, buf: &mut Vec<u8>) -> Option<u64> {
    buf.clear();
    match nat {
        Nat::US | Nat::DE => Some(rng.range(10_000, 99_999).unsigned_abs()),
        Nat::AU | Nat::NZ => Some(rng.range(1_000, 9_999).unsigned_abs()),
        Nat::CA => {
            // "A1B 2C3"
            buf.push(rng.pick(UPPER));
            push_digits(rng, buf, 1);
            buf.push(rng.pick(UPPER));
            buf.push(b' ');
            push_digits(rng, buf, 1);
            buf.push(rng.pick(UPPER));
            push_digits(rng, buf, 1);
            None
        }
        Nat::GB => {
            // "LS12 4PT"
            buf.extend_from_slice(rng.pick(data::GB_POST_AREAS).as_bytes());
            push_u64(buf, rng.range(1, 29).unsigned_abs());
            buf.push(b' ');
            push_digits(rng, buf, 1);
            buf.push(rng.pick(data::GB_INWARD_LETTERS));
            buf.push(rng.pick(data::GB_INWARD_LETTERS));
            None
        }
    }
}

fn draw_phones(rng: &mut Rng, nat: Nat, phone: &mut Vec<u8>, cell: &mut Vec<u8>) {
    for (i, buf) in [phone, cell].into_iter().enumerate() {
        buf.clear();
        let is_cell = i == 1;
        match nat {
            Nat::US => {
                // "(555) 555-0123"
                buf.push(b'(');
                buf.push(b'2' + rng.below(8) as u8);
                push_digits(rng, buf, 2);
                buf.extend_from_slice(b") ");
                buf.push(b'2' + rng.below(8) as u8);
                push_digits(rng, buf, 2);
                buf.push(b'-');
                push_digits(rng, buf, 4);
            }
            Nat::CA => {
                // The reference implementation draws letters here: "K48 B67-2913".
                buf.push(rng.pick(UPPER));
                push_digits(rng, buf, 2);
                buf.push(b' ');
                buf.push(rng.pick(UPPER));
                push_digits(rng, buf, 2);
                buf.push(b'-');
                push_digits(rng, buf, 4);
            }
            Nat::GB if is_cell => {
                buf.extend_from_slice(b"07");
                push_digits(rng, buf, 3);
                buf.push(b' ');
                push_digits(rng, buf, 6);
            }
            Nat::GB => {
                buf.extend_from_slice(b"01");
                push_digits(rng, buf, 3);
                buf.push(b' ');
                push_digits(rng, buf, 6);
            }
            Nat::DE if is_cell => {
                buf.extend_from_slice(b"017");
                push_digits(rng, buf, 1);
                buf.push(b'-');
                push_digits(rng, buf, 7);
            }
            Nat::DE => {
                buf.push(b'0');
                push_digits(rng, buf, 3);
                buf.push(b'-');
                push_digits(rng, buf, 7);
            }
            Nat::AU if is_cell => {
                buf.extend_from_slice(b"04");
                push_digits(rng, buf, 2);
                buf.push(b'-');
                push_digits(rng, buf, 3);
                buf.push(b'-');
                push_digits(rng, buf, 3);
            }
            Nat::AU => {
                buf.push(b'0');
                push_digits(rng, buf, 1);
                buf.push(b'-');
                push_digits(rng, buf, 4);
                buf.push(b'-');
                push_digits(rng, buf, 4);
            }
            Nat::NZ => {
                buf.extend_from_slice(if is_cell { b"(02" } else { b"(0" });
                push_digits(rng, buf, if is_cell { 1 } else { 2 });
                buf.extend_from_slice(b")-");
                push_digits(rng, buf, 3);
                buf.push(b'-');
                push_digits(rng, buf, 4);
            }
        }
    }
}

/// Writes the id value into `buf` (left empty for `null`) and returns the id name.
fn draw_id(
    rng: &mut Rng,
    nat: Nat,
    gender: Gender,
    dob_ms: i64,
    last: &str,
    buf: &mut Vec<u8>,
) -> &'static str {
    buf.clear();
    match nat {
        Nat::US => {
            // A structurally valid SSN: area 001-899 except 666, group and serial non-zero.
            let mut area = rng.range(1, 899);
            if area == 666 {
                area = 667;
            }
            push_padded(buf, area.unsigned_abs(), 3);
            buf.push(b'-');
            push_padded(buf, rng.range(1, 99).unsigned_abs(), 2);
            buf.push(b'-');
            push_padded(buf, rng.range(1, 9999).unsigned_abs(), 4);
            "SSN"
        }
        Nat::GB => {
            const PREFIX: &[u8] = b"ABCEGHJKLMNPRSTWXYZ";
            buf.push(rng.pick(PREFIX));
            buf.push(rng.pick(PREFIX));
            for _ in 0..3 {
                buf.push(b' ');
                push_digits(rng, buf, 2);
            }
            buf.push(b' ');
            buf.push(rng.pick(b"ABCD"));
            "NINO"
        }
        Nat::CA => {
            // Nine digits passing the Luhn check, like a real SIN.
            let mut digits = [0u8; 9];
            digits[0] = 1 + rng.below(9) as u8;
            for d in &mut digits[1..8] {
                *d = rng.below(10) as u8;
            }
            let sum: u32 = digits[..8]
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    let v = u32::from(d) * if i % 2 == 1 { 2 } else { 1 };
                    if v > 9 { v - 9 } else { v }
                })
                .sum();
            digits[8] = ((10 - sum % 10) % 10) as u8;
            buf.extend(digits.iter().map(|d| b'0' + d));
            "SIN"
        }
        Nat::AU => {
            push_digits(rng, buf, 9);
            "TFN"
        }
        Nat::DE => {
            // "<area> <DDMM><year-1900> <initial> <serial>", year as JS getYear() gives it.
            let (year, month, day) = civil_from_days(dob_ms.div_euclid(DAY_MS));
            buf.extend_from_slice(rng.pick(data::DE_PENSION_AREAS).as_bytes());
            buf.push(b' ');
            push_padded(buf, u64::from(day), 2);
            push_padded(buf, u64::from(month), 2);
            push_i64(buf, year - 1900);
            buf.push(b' ');
            let initial = last.chars().next().unwrap_or('X');
            let mut utf8 = [0u8; 4];
            buf.extend_from_slice(initial.encode_utf8(&mut utf8).as_bytes());
            buf.push(b' ');
            let serial = match gender {
                Gender::Male => rng.range(0, 49),
                Gender::Female => rng.range(50, 99),
            };
            push_padded(buf, serial.unsigned_abs(), 2);
            push_digits(rng, buf, 1);
            "SVNR"
        }
        Nat::NZ => "",
    }
}

/// Writes `,"key":` (no comma before the first key of an object).
fn key_of(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Quotes a string known to need no escaping (the embedded lists; checked by a test).
fn push_quoted_static(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes `s` as a JSON string, escaping what JSON requires.
pub(super) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The email's local-part spelling of a name: lowercase ASCII, spaces dropped, German
/// letters transliterated (as the reference implementation's transliteration does).
fn push_email_part(out: &mut Vec<u8>, name: &str) {
    if name.is_ascii() {
        out.extend(
            name.bytes()
                .filter(|b| *b != b' ')
                .map(|b| b.to_ascii_lowercase()),
        );
        return;
    }
    for c in name.chars() {
        match c {
            ' ' => {}
            'ä' | 'Ä' => out.push(b'a'),
            'ö' | 'Ö' => out.push(b'o'),
            'ü' | 'Ü' => out.push(b'u'),
            'ß' => out.extend_from_slice(b"ss"),
            c if c.is_ascii() => out.push((c as u8).to_ascii_lowercase()),
            _ => {}
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first `len` hex digits of `words`.
fn push_hex(out: &mut Vec<u8>, words: &[u64], len: usize) {
    out.extend(
        words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            .take(len),
    );
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// `n` zero-padded to `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut rest = n;
    while rest > 0 {
        i -= 1;
        buf[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// A fixed-point value in 1/10000 units as a decimal with four places ("-37.0412").
fn push_fixed4(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    push_u64(out, a / 10_000);
    out.push(b'.');
    push_padded(out, a % 10_000, 4);
}

fn push_digits(rng: &mut Rng, out: &mut Vec<u8>, count: usize) {
    for _ in 0..count {
        out.push(b'0' + rng.below(10) as u8);
    }
}

fn push_quoted_iso_date(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    push_iso_date(out, ms);
    out.push(b'"');
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as JavaScript's `Date.toISOString()` writes it.
fn push_iso_date(out: &mut Vec<u8>, ms: i64) {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let tod = ms.rem_euclid(DAY_MS).unsigned_abs();
    push_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u64::from(month), 2);
    out.push(b'-');
    push_padded(out, u64::from(day), 2);
    out.push(b'T');
    push_padded(out, tod / 3_600_000, 2);
    out.push(b':');
    push_padded(out, tod / 60_000 % 60, 2);
    out.push(b':');
    push_padded(out, tod / 1000 % 60, 2);
    out.push(b'.');
    push_padded(out, tod % 1000, 3);
    out.push(b'Z');
}

/// Full years from `ms` to [`REFERENCE_TIME_MS`].
pub(super) fn age_at_reference(ms: i64) -> u64 {
    let (y1, m1, d1) = civil_from_days(ms.div_euclid(DAY_MS));
    let t1 = ms.rem_euclid(DAY_MS);
    let (y2, m2, d2) = civil_from_days(REFERENCE_TIME_MS.div_euclid(DAY_MS));
    let t2 = REFERENCE_TIME_MS.rem_euclid(DAY_MS);
    let before_birthday = (m2, d2, t2) < (m1, d1, t1);
    (y2 - y1 - i64::from(before_birthday)).max(0).unsigned_abs()
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// SplitMix64's finaliser: a bijection on u64 with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over the seed, finalised; stable forever (unlike `std`'s `DefaultHasher`).
fn hash_seed(seed: &str) -> u64 {
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix64(h ^ seed.len() as u64)
}

/// Injective in `(page, index)` for a fixed seed: the bijection `mix64` of a value that
/// packs both.
fn record_key(h_seed: u64, page: u32, index: u32) -> u64 {
    mix64(((u64::from(page) << 32) | u64::from(index)) ^ h_seed)
}

/// Lays 128 bits out as a version-4 uuid. All 64 bits of `key` land in bits the version and
/// variant leave alone (byte 7 and bytes 9..16), so distinct keys give distinct uuids.
fn format_uuid(key: u64, h_seed: u64) -> [u8; 36] {
    let hi = mix64(key ^ h_seed.rotate_left(17) ^ UUID_SALT);
    let k = key.to_be_bytes();
    let h = hi.to_be_bytes();
    let bytes = [
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        0x40 | (h[6] & 0x0f),
        k[0],
        0x80 | (h[7] & 0x3f),
        k[1],
        k[2],
        k[3],
        k[4],
        k[5],
        k[6],
        k[7],
    ];
    let mut out = [0u8; 36];
    let mut pos = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[pos] = b'-';
            pos += 1;
        }
        out[pos] = HEX[usize::from(b >> 4)];
        out[pos + 1] = HEX[usize::from(b & 0xf)];
        pos += 2;
    }
    out
}

/// Uniform in [0, 1) from the top 53 bits.
fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// wyrand: tiny, fast, and ours (so its stream never changes under us).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform-enough in `0..n` (multiply-shift; bias below 2^-32).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Inclusive range.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo).unsigned_abs() + 1;
        lo + ((u128::from(self.next()) * u128::from(span)) >> 64) as i64
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_089), (2025, 1, 1));
        let mut out = Vec::new();
        push_iso_date(&mut out, DOB_MIN_MS);
        assert_eq!(out, b"1944-08-25T17:46:40.000Z");
        out.clear();
        push_iso_date(&mut out, 742_988_658_674);
        assert_eq!(out, b"1993-07-18T09:44:18.674Z");
    }

    #[test]
    fn ages_count_full_years_to_the_reference() {
        // Born 2000-01-01T00:00:00Z: exactly 25 at the reference instant.
        assert_eq!(age_at_reference(946_684_800_000), 25);
        // One millisecond later: still 24.
        assert_eq!(age_at_reference(946_684_800_001), 24);
        assert_eq!(age_at_reference(REFERENCE_TIME_MS - DAY_MS), 0);
    }

    #[test]
    fn fixed_point_and_padding() {
        let mut out = Vec::new();
        push_fixed4(&mut out, -370_412);
        out.push(b' ');
        push_fixed4(&mut out, 5);
        out.push(b' ');
        push_fixed4(&mut out, -5);
        out.push(b' ');
        push_padded(&mut out, 7, 3);
        out.push(b' ');
        push_padded(&mut out, 0, 2);
        assert_eq!(out, b"-37.0412 0.0005 -0.0005 007 00");
    }

    #[test]
    fn json_escaping_round_trips() {
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é🦀";
        let mut out = Vec::new();
        push_json_str(&mut out, nasty);
        let text = String::from_utf8(out).expect("utf8");
        let back: String = serde_json::from_str(&text).expect("valid JSON string");
        assert_eq!(back, nasty);
    }

    #[test]
    fn uuids_are_injective_over_pages_and_indexes() {
        let h = hash_seed("abc");
        let mut seen = std::collections::HashSet::new();
        for page in [1, 2, 3, 9_999, 10_000] {
            for index in 0..2_000 {
                assert!(seen.insert(format_uuid(record_key(h, page, index), h)));
            }
        }
    }

    #[test]
    fn canadian_sins_pass_luhn() {
        let mut rng = Rng(42);
        let mut buf = Vec::new();
        for _ in 0..200 {
            draw_id(&mut rng, Nat::CA, Gender::Male, 0, "X", &mut buf);
            let sum: u32 = buf
                .iter()
                .rev()
                .enumerate()
                .map(|(i, b)| {
                    let v = u32::from(b - b'0') * if i % 2 == 1 { 2 } else { 1 };
                    if v > 9 { v - 9 } else { v }
                })
                .sum();
            assert_eq!(buf.len(), 9);
            assert_eq!(sum % 10, 0, "{}", String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn email_parts_are_ascii() {
        let mut out = Vec::new();
        push_email_part(&mut out, "Jürgen Groß");
        assert_eq!(out, b"jurgengross");
    }
}
