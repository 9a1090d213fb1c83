//! `[relay]`: the outbox relay's rounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check_range};

/// `[relay]`: how the relay reads the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Outbox rows the relay reads and produces per round, 1..=100000. Formerly
    /// `postgres.relay_batch_rows`, which is still read, with a warning. Default 2000.
    pub batch_rows: u32,
    /// Safety poll of an idle relay (landing and `NOTIFY pipeline_outbox` wake it; this only
    /// bounds the delay of a lost notification), 1ms..=60s: "0s" would spin. Formerly
    /// `postgres.relay_idle_poll`, which is still read, with a warning. Default "1s".
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_rows: 2000,
            idle_poll: Duration::from_secs(1),
        }
    }
}

impl RelayConfig {
    /// Checks `[relay]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "relay.idle_poll",
            self.idle_poll,
            Duration::from_millis(1)..=Duration::from_secs(60),
        )?;
        check_range("relay.batch_rows", self.batch_rows, 1..=100_000)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[relay]\nbatch_rows = 700\nidle_poll = \"50ms\"\n").expect("valid");
        assert_eq!(config.relay.batch_rows, 700);
        assert_eq!(config.relay.idle_poll, Duration::from_millis(50));
        assert!(config.deprecations.is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[relay]\nidle_poll = \"0s\"\n", "relay.idle_poll"),
            ("[relay]\nidle_poll = \"61s\"\n", "relay.idle_poll"),
            ("[relay]\nbatch_rows = 0\n", "relay.batch_rows"),
            ("[relay]\nbatch_rows = 100001\n", "relay.batch_rows"),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
