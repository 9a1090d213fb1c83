//! Typed form of the randomuser.me 1.4 response, quirks included.
//!
//! These structs document the schema (see `RANDOMUSER.md`) and are what the emulator's
//! output is checked against; a data path that must keep unknown fields and malformed records
//! reads `serde_json::Value` instead.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub results: Vec<User>,
    pub info: Option<Info>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Info {
    pub seed: String,
    pub results: u32,
    pub page: u32,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub gender: Option<String>,
    pub name: Option<Name>,
    pub location: Option<Location>,
    pub email: Option<String>,
    pub login: Option<Login>,
    pub dob: Option<DateAge>,
    pub registered: Option<DateAge>,
    pub phone: Option<String>,
    pub cell: Option<String>,
    pub id: Option<IdDoc>,
    pub picture: Option<Picture>,
    pub nat: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Name {
    pub title: String,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Location {
    pub street: Street,
    pub city: String,
    pub state: String,
    pub country: String,
    /// A number for most nationalities, a string for CA, GB, IE, NL...
    pub postcode: Postcode,
    pub coordinates: Coordinates,
    pub timezone: Timezone,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Street {
    pub number: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Postcode {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for Postcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

/// Coordinates come as strings, not numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coordinates {
    pub latitude: String,
    pub longitude: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timezone {
    pub offset: String,
    pub description: String,
}

/// Credentials are read only to be dropped (the daemon strips them before storing a user).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Login {
    pub uuid: String,
    pub username: String,
    pub password: Option<String>,
    pub salt: Option<String>,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DateAge {
    pub date: String,
    pub age: u32,
}

/// `value` is null for some nationalities.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdDoc {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Picture {
    pub large: String,
    pub medium: String,
    pub thumbnail: String,
}
