//! `[postgres]` (the database landing and the relay share) and `[landing]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    CHANNEL_CAPACITY, ConfigError, Secret, check_file, check_non_zero, check_range,
};

/// `[postgres]`: the database of the landing tables and the outbox, and its connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL without password (postgres:// or postgresql://). Default
    /// "postgres://pipeline@127.0.0.1:5432/pipeline".
    pub url: String,
    /// Password (prefer env `PIPELINE_POSTGRES__PASSWORD` or `password_file`). Default none.
    pub password: Option<Secret>,
    /// File holding the password (first line), read at load. Default none.
    pub password_file: Option<PathBuf>,
    /// libpq-style sslmode: disable, allow, prefer, require, verify-ca, verify-full. Default
    /// "prefer".
    pub sslmode: String,
    /// PEM file of the CA for verify-ca / verify-full (unset: public roots). Default none.
    pub sslrootcert: Option<PathBuf>,
    /// Pool size, connections, 1..=256. Default 8.
    pub max_connections: u32,
    /// Connect/acquire timeout, > 0. Default "5s".
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Run migrations at start-up. Default true.
    pub migrate_on_start: bool,
    /// Deprecated spelling of `landing.channel_capacity` (moved at load, with a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_capacity: Option<usize>,
    /// Deprecated spelling of `relay.batch_rows` (moved at load, with a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_batch_rows: Option<u32>,
    /// Deprecated spelling of `relay.idle_poll` (moved at load, with a warning).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub relay_idle_poll: Option<Duration>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://pipeline@127.0.0.1:5432/pipeline".into(),
            password: None,
            password_file: None,
            sslmode: "prefer".into(),
            sslrootcert: None,
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            migrate_on_start: true,
            channel_capacity: None,
            relay_batch_rows: None,
            relay_idle_poll: None,
        }
    }
}

impl PostgresConfig {
    /// Checks `[postgres]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self;
        let pg_url = reqwest::Url::parse(&p.url)
            .map_err(|e| ConfigError::key("postgres.url", format!("not a URL: {e}")))?;
        if !matches!(pg_url.scheme(), "postgres" | "postgresql") {
            return Err(ConfigError::key(
                "postgres.url",
                "scheme must be postgres:// or postgresql://",
            ));
        }
        if pg_url.password().is_some() {
            return Err(ConfigError::key(
                "postgres.url",
                "must not contain a password; use postgres.password or postgres.password_file",
            ));
        }
        if !matches!(
            p.sslmode.as_str(),
            "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
        ) {
            return Err(ConfigError::key(
                "postgres.sslmode",
                "expected disable, allow, prefer, require, verify-ca or verify-full",
            ));
        }
        check_file("postgres.sslrootcert", p.sslrootcert.as_ref())?;
        check_range("postgres.max_connections", p.max_connections, 1..=256)?;
        check_non_zero("postgres.connect_timeout", p.connect_timeout)?;
        Ok(())
    }
}

/// `[landing]`: the stage that writes fetched pages to Postgres.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LandingConfig {
    /// Fetched pages buffered between source and landing (the backpressure bound), 1..=65536.
    /// Formerly `postgres.channel_capacity`, which is still read, with a warning. Default 4.
    pub channel_capacity: usize,
}

impl Default for LandingConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 4,
        }
    }
}

impl LandingConfig {
    /// Checks `[landing]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "landing.channel_capacity",
            self.channel_capacity,
            CHANNEL_CAPACITY,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[postgres]\nmax_connections = 2\n[landing]\nchannel_capacity = 9\n")
            .expect("valid");
        assert_eq!(config.postgres.max_connections, 2);
        assert_eq!(config.landing.channel_capacity, 9);
        assert!(config.deprecations.is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[postgres]\nmax_connections = 257\n",
                "postgres.max_connections",
            ),
            (
                "[postgres]\nconnect_timeout = \"0s\"\n",
                "postgres.connect_timeout",
            ),
            (
                "[landing]\nchannel_capacity = 0\n",
                "landing.channel_capacity",
            ),
            (
                "[landing]\nchannel_capacity = 65537\n",
                "landing.channel_capacity",
            ),
            ("[landing]\nbogus = 1\n", "landing.bogus"),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
