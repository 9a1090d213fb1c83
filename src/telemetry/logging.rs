//! Structured logs via tracing-subscriber: pretty for people, JSON for collectors.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
/// Logs go to stderr; stdout stays free for command output (`check`, reports).
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
