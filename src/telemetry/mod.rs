//! Metrics, the HTTP endpoints that expose them, logging, and systemd notification.

pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;

pub use metrics::Metrics;
