//! Metrics, the HTTP endpoints that expose them (and the status page built from them), logging,
//! and systemd notification.

pub(crate) mod config;
pub mod heartbeat;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod status;

pub use metrics::Metrics;
