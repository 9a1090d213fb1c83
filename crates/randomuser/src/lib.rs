//! # randomuser
//!
//! What the pipeline knows about the randomuser.me API (version 1.4, see `RANDOMUSER.md`),
//! written once: its limits, the nationalities and fields a request may name, the typed
//! response, and (feature `emulator`) a server that emulates it for tests, benchmarks and
//! chaos runs.
//!
//! ```text
//!  facts (MAX_RESULTS, MAX_PAGE, NATIONALITIES, Field) ──► pipeline: config validation, source
//!        │
//!        └──► emulator: PageParams::from_query ──► generate_page ──► serve ──► body  ──► api::Response
//!                       (the API's query rules)    (deterministic)   (faults)          (typed check)
//! ```
//!
//! # Layout
//! - the crate root: the API's limits and its nationality list.
//! - [`Field`]: the top-level fields of a user record, as `inc` / `exc` name them.
//! - [`api`]: the typed 1.4 response, quirks included.
//! - `emulator` (feature `emulator`, off by default): the randomuser-compatible server with
//!   fault injection; the daemon's `pipeline emulator` command.
//!
//! Without the `emulator` feature the crate is types and constants only (serde is its one
//! dependency), so a production build of the daemon carries neither the server nor its word
//! lists.

pub mod api;
mod field;

#[cfg(feature = "emulator")]
pub mod emulator;

pub use field::Field;

/// Highest `results` the API serves in one response; larger values fall back to 1.
pub const MAX_RESULTS: u32 = 5000;

/// Highest `page` the API accepts; larger values fall back to 1. With a seed, a run can
/// fetch at most this many distinct pages.
pub const MAX_PAGE: u32 = 10_000;

/// The nationality codes the API knows (`nat`), in the API's order: an 18-character seed's
/// last two hex digits are an index into this list. The API ignores a `nat` list naming any
/// other code.
pub const NATIONALITIES: &[&str] = &[
    "AU", "BR", "CA", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IN", "IR", "MX", "NL", "NO",
    "NZ", "RS", "TR", "UA", "US",
];
