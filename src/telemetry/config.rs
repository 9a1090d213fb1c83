//! `[http]` (metrics, probes, the status page) and `[log]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret};

/// `[http]`: metrics, health, the status page and `/api/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of /, /api/status, /metrics, /healthz, /readyz. Default
    /// "127.0.0.1:9898" (loopback).
    pub listen: SocketAddr,
    /// File holding the bearer token (first line, at least 16 characters) that `/` and
    /// `/api/status` require. Required when `listen` is not a loopback address, because the
    /// page shows dead-letter previews and the effective config. Default none.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file` at load; never serialized or printed.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
            token_file: None,
            token: None,
        }
    }
}

/// Shortest bearer token `http.token_file` may hold.
pub const MIN_TOKEN_LEN: usize = 16;

impl HttpConfig {
    /// Checks `[http]` (after `token_file` was read into `token`).
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.token
            && token.expose().chars().count() < MIN_TOKEN_LEN
        {
            return Err(ConfigError::key(
                "http.token_file",
                format!("the token must be at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(ConfigError::key(
                "http.token_file",
                format!(
                    "required when http.listen ({}) is not a loopback address: the status page \
                     and /api/status show dead letters and the config (e.g. `openssl rand -hex 24 \
                     > /etc/pipeline/http.token`)",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "pretty" or "json". Default "pretty".
    pub format: LogFormat,
    /// Filter directive, e.g. "info" or "pipeline=debug,info"; `RUST_LOG` wins when set.
    /// The client libraries (rskafka, cdrs_tokio, sqlx, hyper, ...) log at `warn` unless the
    /// directive names them (`info,rskafka=info`). Default "info".
    pub level: String,
    /// Interval of the one-line progress summary logged at info while running (rates,
    /// backlog, lag); "0s" turns it off, else at least "1s". Default "30s".
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
            progress_interval: Duration::from_secs(30),
        }
    }
}

impl LogConfig {
    /// Checks `[log]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.progress_interval.is_zero() && self.progress_interval < Duration::from_secs(1) {
            return Err(ConfigError::key(
                "log.progress_interval",
                "must be 0s (off) or at least 1s",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(ConfigError::key(
                "log.level",
                format!("`{}` is not a level or filter directive", self.level),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[log]\nformat = \"json\"\nprogress_interval = \"0s\"\n[http]\nlisten = \"127.0.0.1:0\"\n")
            .expect("valid");
        assert_eq!(config.log.format, super::LogFormat::Json);
        assert_eq!(config.http.listen.port(), 0);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[log]\nprogress_interval = \"999ms\"\n",
                "log.progress_interval",
            ),
            ("[http]\ntoken = \"x\"\n", "http.token"),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
