//! `[lease]`: how the relay and source leases are checked and how fast a dead holder is seen.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check_range};

/// `[lease]`: the Postgres session leases that elect one relay per database and one source
/// per database, API and seed (src/lease).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// How often a standby tries to take the lease; the holder checks its lease session twice
    /// as often (a `pg_sleep` of half this held open on the session, so a terminated session
    /// is seen at once), 100ms..=10s. Default "1s".
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long past the end of its check's sleep the holder waits for the answer before it
    /// steps down (stops the stage's work), 100ms..=10s. Default "1s".
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Server-side detection of a holder that went silent (network cut, frozen process): the
    /// lease session's `idle_session_timeout`, `tcp_user_timeout` and keepalives, after which
    /// Postgres ends the session and frees the lease. Must exceed `check_interval + timeout`,
    /// so the old holder has stepped down before anyone else can take over, 1s..=60s.
    /// Default "2500ms" (a takeover within 4 s of a network cut with the other defaults).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            session_timeout: Duration::from_millis(2_500),
        }
    }
}

impl LeaseConfig {
    /// Checks `[lease]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = Duration::from_millis(100)..=Duration::from_secs(10);
        check_range("lease.check_interval", self.check_interval, range.clone())?;
        check_range("lease.timeout", self.timeout, range)?;
        check_range(
            "lease.session_timeout",
            self.session_timeout,
            Duration::from_secs(1)..=Duration::from_secs(60),
        )?;
        if self.session_timeout <= self.check_interval + self.timeout {
            return Err(ConfigError::key(
                "lease.session_timeout",
                format!(
                    "{:?} must exceed lease.check_interval + lease.timeout ({:?}): a silent \
                     holder must step down before Postgres frees its lease",
                    self.session_timeout,
                    self.check_interval + self.timeout
                ),
            ));
        }
        Ok(())
    }

    /// The longest a standby can take to take over from a holder that went silent: the
    /// holder's check sleeps `check_interval / 2`, Postgres ends the session after
    /// `session_timeout` of silence, the standby tries every `check_interval`.
    pub fn takeover_bound(&self) -> Duration {
        self.check_interval / 2 + self.session_timeout + self.check_interval
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load(
            "[lease]\ncheck_interval = \"500ms\"\ntimeout = \"700ms\"\nsession_timeout = \"2s\"\n",
        )
        .expect("valid");
        assert_eq!(config.lease.check_interval, Duration::from_millis(500));
        assert_eq!(config.lease.timeout, Duration::from_millis(700));
        assert_eq!(config.lease.session_timeout, Duration::from_secs(2));
        let defaults = load("").expect("defaults");
        assert_eq!(defaults.lease.check_interval, Duration::from_secs(1));
        assert_eq!(defaults.lease.session_timeout, Duration::from_millis(2_500));
        // Issue 16: every stage fails over within 5 s.
        assert_eq!(defaults.lease.takeover_bound(), Duration::from_secs(4));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[lease]\ncheck_interval = \"0s\"\n", "lease.check_interval"),
            (
                "[lease]\ncheck_interval = \"11s\"\n",
                "lease.check_interval",
            ),
            ("[lease]\ntimeout = \"10ms\"\n", "lease.timeout"),
            (
                "[lease]\nsession_timeout = \"61s\"\n",
                "lease.session_timeout",
            ),
            // The holder could still be relaying when Postgres frees its lease.
            (
                "[lease]\nsession_timeout = \"2s\"\n",
                "lease.session_timeout",
            ),
            (
                "[lease]\ncheck_interval = \"2s\"\ntimeout = \"2s\"\nsession_timeout = \"4s\"\n",
                "lease.session_timeout",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
