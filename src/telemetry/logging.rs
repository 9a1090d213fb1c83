//! Structured logs via tracing-subscriber: pretty for people, JSON for collectors.
//!
//! Two rules make the pretty log readable in a file or the journal as well as on a terminal:
//! ANSI colour only when stderr is a terminal and `NO_COLOR` is unset (or empty), and the
//! client libraries' per-connection chatter at `warn` unless the filter names them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Crates whose info/debug lines describe their own connections, not the pipeline: kept at
/// `warn` unless the filter directive names them.
pub const QUIET_CRATES: &[&str] = &[
    "rskafka",
    "cdrs_tokio",
    "sqlx",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
    "tower",
];

/// `directive` plus `<crate>=warn` for every [`QUIET_CRATES`] entry it does not mention.
pub fn filter_directive(directive: &str) -> String {
    let mut out = String::new();
    for name in QUIET_CRATES {
        let mentioned = directive
            .split(',')
            .any(|d| d.trim().split(['=', '[', ':']).next() == Some(name));
        if !mentioned {
            out.push_str(name);
            out.push_str("=warn,");
        }
    }
    out.push_str(directive);
    out
}

/// Whether to colour output on stderr: a terminal, and no (non-empty) `NO_COLOR`.
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
/// Logs go to stderr; stdout stays free for command output (`check`, reports).
pub fn init(config: &LogConfig) {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| config.level.clone());
    let filter = EnvFilter::try_new(filter_directive(&directive))
        .unwrap_or_else(|_| EnvFilter::new(&directive));
    let no_color = std::env::var("NO_COLOR").ok();
    let ansi = use_colour(std::io::stderr().is_terminal(), no_color.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_quiet_unless_named() {
        let d = filter_directive("info");
        assert!(d.contains("rskafka=warn"), "{d}");
        assert!(d.contains("cdrs_tokio=warn"), "{d}");
        assert!(d.ends_with(",info"), "{d}");
        let d = filter_directive("info,rskafka=debug");
        assert!(!d.contains("rskafka=warn"), "{d}");
        assert!(d.contains("sqlx=warn"), "{d}");
        assert!(EnvFilter::try_new(filter_directive("pipeline=debug,info")).is_ok());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
    }
}
