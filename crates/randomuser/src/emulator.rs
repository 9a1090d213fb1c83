//! A randomuser.me-compatible server for tests, benchmarks and chaos runs.
//!
//! `pipeline emulator` answers `GET /api/`, `/api` and `/api/1.4/` like the real API
//! (version 1.4, see `RANDOMUSER.md`): `results` (1..=5000, else 1), `seed`, `page`
//! (1..=10000, else 1), `nat`, `gender`, `inc`/`exc`, `noinfo`, `format=json`; errors as
//! `{"error": "..."}`. `GET /stats` returns [`EmulatorStats`] as JSON.
//!
//! ```text
//!  query ──► PageParams::from_query ──► generate_page(seed, page, index…) ──► body faults ──► client
//!             (the API's rules)          deterministic, content faults        (random draws)
//!                      │                                                          ▲
//!                      └──► per-IP rate limit, injected 429/5xx, latency ─────────┘
//! ```
//!
//! # What it emulates
//! The full 1.4 record: gender, name, location (numeric postcode, or a string for CA and GB),
//! email, login with credentials (`password`, `salt` and digest-shaped `md5`/`sha1`/`sha256`
//! hex; not real digests), dob and registered (ISO-8601 with millis and ages), phone, cell,
//! id (`value: null` for NZ), picture and nat; `info { seed, results, page, version }`.
//! Nationalities: AU CA DE GB NZ US, with per-nationality phone, postcode and id formats.
//! A single requested `nat` is appended to `info.seed` as two hex digits and an 18-character
//! seed selects the nationality, as the real API does. The per-IP limit answers 429 with
//! `Retry-After` once a client has fetched the limit within 5 minutes.
//!
//! # What it does not
//! Formats other than `json` (`pretty`, `csv`, `yaml`, `xml` get 400 with a JSON error),
//! `password=` (passwords always come from the built-in list), `lego`, `callback`, `dl`,
//! legacy versions (404), and the 15 nationalities it has no word lists for: a `nat` list
//! naming any of them is ignored as a whole, as the real API ignores unknown codes. Names
//! and places are drawn from small embedded lists, so they repeat far more than real data.
//!
//! # Determinism
//! For equal `(seed, page, results, nat, inc/exc, noinfo)` and content-fault settings the
//! body is byte-identical across requests, runs and platforms: every record has its own
//! RNG seeded by a stable hash of `(seed, page, index)`, and ages are computed against the
//! fixed [`REFERENCE_TIME_MS`], never the clock. `login.uuid` is distinct for every
//! `(page, index)` of a seed, so it works as the record id. A request without `seed` gets a
//! random 16-hex-digit seed, echoed in `info.seed`; `gender` only applies then.
//!
//! # Faults (all off by default)
//! - Transport, drawn per request from a counter-keyed RNG (not deterministic per page, so a
//!   retry of the same page gets the good body): `--latency`, `--fail-429` (with
//!   `Retry-After: --retry-after`), `--fail-5xx` (500/503), `--rate-limit` (per IP per
//!   5 minutes).
//! - Body: `--truncate` (cut in half), `--invalid-utf8` (bytes that are not UTF-8 inside a
//!   string), `--slow-body` (chunks with pauses).
//! - Content, deterministic per `(seed, page, index)`: `--bad-records FRACTION` with
//!   `--bad-kinds missing-field,wrong-type,invalid-uuid,bad-date,huge-string`; the body stays
//!   valid JSON and [`GeneratedUser::fault`] says which records are bad.

mod config;
mod data;
mod generate;
mod params;
mod server;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_BAD_KINDS, EmulatorArgs, EmulatorConfig};
pub use generate::{
    API_VERSION, ContentFault, ContentFaults, GeneratedPage, GeneratedUser, HUGE_STRING_BYTES,
    REFERENCE_TIME_MS, UnknownFaultKind, generate_page, user_uuid,
};
pub use params::{FieldSet, Gender, Nat, PageParams, ParamError, UnknownNat, random_seed};
pub use server::{BadRecordStats, EmulatorStats, RATE_LIMIT_WINDOW, SLOW_BODY_CHUNKS, serve};

// The API's facts, also here for the emulator's users (`emulator::MAX_RESULTS`, ...).
pub use crate::{Field, MAX_PAGE, MAX_RESULTS};

/// Why the emulator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A flag is out of range; fix the command line.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// The listen address is unavailable (in use, or not local).
    #[error("emulator cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `--listen`.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The accept loop failed.
    #[error("emulator on {addr} failed: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// What the server reported.
        source: std::io::Error,
    },
}

impl EmulatorError {
    /// Whether running again unchanged may succeed (a busy port may free up; a bad flag
    /// will not fix itself).
    pub fn is_retriable(&self) -> bool {
        !matches!(self, EmulatorError::Config(_))
    }
}

/// Validates `args`, binds `--listen` and serves until `shutdown` is cancelled.
///
/// # Errors
/// [`EmulatorError::Config`] for invalid flags, [`EmulatorError::Bind`] when the address
/// cannot be bound, [`EmulatorError::Serve`] if the server fails.
///
/// # Cancellation
/// Cancelling `shutdown` stops accepting, finishes in-flight responses and returns `Ok`.
pub async fn run(args: EmulatorArgs, shutdown: CancellationToken) -> Result<(), EmulatorError> {
    let requested = args.listen;
    let config = args.into_config().map_err(EmulatorError::Config)?;
    let listener = tokio::net::TcpListener::bind(requested)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: requested,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(requested);
    tracing::info!(
        %addr,
        latency_ms = config.latency.as_millis() as u64,
        fail_429 = config.fail_429,
        fail_5xx = config.fail_5xx,
        truncate = config.truncate,
        invalid_utf8 = config.invalid_utf8,
        bad_records = config.content.fraction,
        rate_limit = config.rate_limit_users_per_5min,
        "randomuser emulator listening on http://{addr}/api/"
    );
    serve(listener, config, shutdown)
        .await
        .map_err(|source| EmulatorError::Serve { addr, source })?;
    tracing::info!(%addr, "randomuser emulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
