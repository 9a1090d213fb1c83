//! Request parameters and the API's rules for reading them from a query string.

use std::fmt;
use std::str::FromStr;

use crate::{Field, MAX_PAGE, MAX_RESULTS, NATIONALITIES};

/// A nationality the emulator has word lists for.
///
/// The real API knows 21; the emulator carries six with distinct quirks (GB and CA postcodes
/// are strings, the others numbers; NZ has `id.value: null`; DE has non-ASCII names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nat {
    /// Australia: numeric 4-digit postcode, `TFN` id.
    AU,
    /// Canada: `"A1B 2C3"` string postcode, `SIN` id.
    CA,
    /// Germany: numeric postcode, `SVNR` id, umlauts in names.
    DE,
    /// United Kingdom: `"LS12 4PT"` string postcode, `NINO` id.
    GB,
    /// New Zealand: numeric postcode, `id.value` is `null`.
    NZ,
    /// United States: numeric postcode, `SSN` id.
    US,
}

impl Nat {
    /// Every emulated nationality, in code order.
    pub const ALL: [Nat; 6] = [Nat::AU, Nat::CA, Nat::DE, Nat::GB, Nat::NZ, Nat::US];

    /// The two-letter code as the API writes it in `nat`.
    pub fn code(self) -> &'static str {
        match self {
            Nat::AU => "AU",
            Nat::CA => "CA",
            Nat::DE => "DE",
            Nat::GB => "GB",
            Nat::NZ => "NZ",
            Nat::US => "US",
        }
    }

    /// The `location.country` value.
    pub fn country(self) -> &'static str {
        match self {
            Nat::AU => "Australia",
            Nat::CA => "Canada",
            Nat::DE => "Germany",
            Nat::GB => "United Kingdom",
            Nat::NZ => "New Zealand",
            Nat::US => "United States",
        }
    }

    /// Whether `location.postcode` is a JSON string (else a number).
    pub fn postcode_is_string(self) -> bool {
        matches!(self, Nat::CA | Nat::GB)
    }

    fn api_index(self) -> usize {
        NATIONALITIES
            .iter()
            .position(|c| *c == self.code())
            .unwrap_or_default()
    }

    fn from_api_index(index: usize) -> Option<Nat> {
        NATIONALITIES.get(index).and_then(|code| code.parse().ok())
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A nationality code the emulator does not carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or unsupported nationality {0:?} (supported: AU CA DE GB NZ US)")]
pub struct UnknownNat(pub String);

impl FromStr for Nat {
    type Err = UnknownNat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nat::ALL
            .into_iter()
            .find(|n| n.code().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownNat(s.to_owned()))
    }
}

/// `gender` request parameter and record field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    /// `"male"`
    Male,
    /// `"female"`
    Female,
}

impl Gender {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

/// The set of fields a response includes, after `inc` and `exc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    /// Every field.
    pub const ALL: FieldSet = FieldSet((1 << 12) - 1);

    /// Whether `field` is in the set.
    pub fn contains(self, field: Field) -> bool {
        self.0 & bit(field) != 0
    }

    /// The API's rule: start from `inc` (all fields when absent), drop what `exc` names;
    /// unknown names are ignored.
    pub fn from_lists(inc: Option<&[String]>, exc: Option<&[String]>) -> FieldSet {
        let mut set = match inc {
            None => FieldSet::ALL,
            Some(list) => FieldSet(
                list.iter()
                    .filter_map(|n| Field::from_name(n))
                    .fold(0, |acc, f| acc | bit(f)),
            ),
        };
        for f in exc
            .unwrap_or_default()
            .iter()
            .filter_map(|n| Field::from_name(n))
        {
            set.0 &= !bit(f);
        }
        set
    }
}

/// `field`'s bit in a [`FieldSet`].
fn bit(field: Field) -> u16 {
    1 << (field as u16)
}

/// What one API request asks for: everything that determines the generated page.
///
/// Built by hand (see [`PageParams::new`]) or from a query string with the API's rules
/// ([`PageParams::from_query`]). [`generate_page`](super::generate_page) uses the values as
/// given, so a hand-built value may ask for more than [`MAX_RESULTS`] users (the bench does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParams {
    /// The seed as the client sent it (or the one drawn for it). An 18-character seed whose
    /// last two characters are hex is the real API's "seed + nationality index" form: only the
    /// first 16 seed the generator.
    pub seed: String,
    /// 1-based page; with `seed` it selects a distinct, reproducible set of users.
    pub page: u32,
    /// Users in the page.
    pub results: u32,
    /// Nationalities to draw from; empty means all emulated ones.
    pub nat: Vec<Nat>,
    /// Forced gender; the API honours it only for unseeded requests.
    pub gender: Option<Gender>,
    /// Lowercased `inc` names; `None` when absent or empty (all fields).
    pub inc: Option<Vec<String>>,
    /// Lowercased `exc` names.
    pub exc: Option<Vec<String>>,
    /// Drop the `info` block.
    pub noinfo: bool,
}

/// A request the emulator refuses (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// `format`/`fmt` other than json; the emulator only speaks JSON.
    #[error("format {0:?} is not supported by the emulator (only json)")]
    UnsupportedFormat(String),
}

impl PageParams {
    /// All fields, all nationalities, info block on.
    pub fn new(seed: impl Into<String>, page: u32, results: u32) -> PageParams {
        PageParams {
            seed: seed.into(),
            page,
            results,
            nat: Vec::new(),
            gender: None,
            inc: None,
            exc: None,
            noinfo: false,
        }
    }

    /// Reads a raw query string (without `?`) with the real API's rules:
    /// repeated keys keep the last value; `results` outside 1..=5000 or not an integer → 1;
    /// `page` outside 1..=10000 or not an integer → 1; an empty or missing `seed` → a random
    /// 16-hex-digit seed; `gender` only without a seed; `nat` (alias `nationality`) with any
    /// code the emulator lacks is ignored as a whole; `noinfo` counts when present at all.
    ///
    /// # Errors
    /// [`ParamError::UnsupportedFormat`] for `format`/`fmt` other than `json`.
    pub fn from_query(raw: Option<&str>) -> Result<PageParams, ParamError> {
        Self::from_query_with(raw, random_seed)
    }

    /// [`from_query`](Self::from_query) with the seed drawn by `draw_seed` when missing.
    ///
    /// # Errors
    /// As [`from_query`](Self::from_query).
    pub fn from_query_with(
        raw: Option<&str>,
        draw_seed: impl FnOnce() -> String,
    ) -> Result<PageParams, ParamError> {
        let mut q = RawParams::default();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match percent_decode(k).as_str() {
                "results" => q.results = Some(v),
                "page" => q.page = Some(v),
                "seed" => q.seed = Some(v),
                "gender" => q.gender = Some(v),
                "nat" | "nationality" => q.nat = Some(v),
                "inc" => q.inc = Some(v),
                "exc" => q.exc = Some(v),
                "noinfo" => q.noinfo = true,
                "format" | "fmt" => q.format = Some(v),
                _ => {}
            }
        }
        if let Some(format) = q.format
            && !format.eq_ignore_ascii_case("json")
        {
            return Err(ParamError::UnsupportedFormat(format));
        }

        let results = parse_in_range(q.results.as_deref(), MAX_RESULTS);
        let page = parse_in_range(q.page.as_deref(), MAX_PAGE);
        let seeded = q.seed.as_deref().is_some_and(|s| !s.is_empty());
        let gender = match q.gender.as_deref() {
            Some("male") if !seeded => Some(Gender::Male),
            Some("female") if !seeded => Some(Gender::Female),
            _ => None,
        };
        let mut nat = q
            .nat
            .as_deref()
            .map(|list| {
                list.split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(str::parse)
                    .collect::<Result<Vec<Nat>, _>>()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let seed = match q.seed {
            Some(s) if !s.is_empty() => s,
            _ => draw_seed(),
        };
        if let Some(index) = seed_nat_index(&seed) {
            nat = Nat::from_api_index(index).into_iter().collect();
        }
        Ok(PageParams {
            seed,
            page,
            results,
            nat,
            gender,
            inc: q.inc.as_deref().and_then(field_list),
            exc: q.exc.as_deref().and_then(field_list),
            noinfo: q.noinfo,
        })
    }

    /// The fields each record carries.
    pub fn fields(&self) -> FieldSet {
        FieldSet::from_lists(self.inc.as_deref(), self.exc.as_deref())
    }

    /// The part of the seed that seeds the generator.
    pub(super) fn rng_seed(&self) -> &str {
        match seed_nat_index(&self.seed) {
            Some(_) => &self.seed[..16],
            None => &self.seed,
        }
    }

    /// `info.seed`: like the real API, a single requested nationality is appended as two hex
    /// digits (its index in the API's list), so a 16-character seed echoes as the 18-character
    /// form that reproduces the page. A seed already in that form is echoed unchanged (the real
    /// API appends a second suffix, which then no longer reproduces the page).
    pub fn info_seed(&self) -> String {
        match self.nat.as_slice() {
            [single] if seed_nat_index(&self.seed).is_none() => {
                format!("{}{:02x}", self.seed, single.api_index())
            }
            _ => self.seed.clone(),
        }
    }
}

#[derive(Default)]
struct RawParams {
    results: Option<String>,
    page: Option<String>,
    seed: Option<String>,
    gender: Option<String>,
    nat: Option<String>,
    inc: Option<String>,
    exc: Option<String>,
    noinfo: bool,
    format: Option<String>,
}

/// The nationality index encoded by an 18-character seed, if it has that form.
fn seed_nat_index(seed: &str) -> Option<usize> {
    if seed.len() != 18 || !seed.is_char_boundary(16) {
        return None;
    }
    let suffix = &seed[16..];
    if !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(suffix, 16).ok()
}

fn parse_in_range(value: Option<&str>, max: u32) -> u32 {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| (1..=max).contains(n))
        .unwrap_or(1)
}

/// `None` for an absent or empty list (the API treats `inc=` like no `inc`).
fn field_list(raw: &str) -> Option<Vec<String>> {
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(',')
            .map(|w| w.trim().to_ascii_lowercase())
            .filter(|w| !w.is_empty())
            .collect(),
    )
}

/// A seed like the real API draws: 16 characters from `abcdef1234567890`.
pub fn random_seed() -> String {
    const CHARS: &[u8] = b"abcdef1234567890";
    let mut rng = fastrand::Rng::new();
    (0..16)
        .map(|_| char::from(CHARS[rng.usize(..CHARS.len())]))
        .collect()
}

/// `application/x-www-form-urlencoded` decoding; malformed escapes stay literal and invalid
/// UTF-8 becomes U+FFFD, so any query string yields some parameters.
fn percent_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
