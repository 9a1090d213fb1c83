//! `[runtime]` and `[runtime.backoff]`: supervision, shutdown and the process's memory
//! settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check_at_least, check_non_zero, check_range};

/// `[runtime.backoff]`: the one backoff every stage and the supervisor use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay, > 0. Default "200ms".
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay, >= `initial`. Default "30s".
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor per attempt, >= 1.0. Default 2.0.
    pub multiplier: f64,
    /// Random spread, 0.0..=1.0: a delay d becomes d * (1 - jitter * U[0,1)). Default 0.5.
    pub jitter: f64,
    /// While a stage waits after a failure naming a service (Postgres, Kafka, Cassandra, the
    /// API), a TCP connect to that service every `probe_interval`; once the service was seen
    /// unreachable, the first probe that connects ends the wait, so a stage reconnects within
    /// this interval of the service's return however long the outage was. 0..=10s; "0s"
    /// turns probing off. Default "250ms".
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            probe_interval: Duration::from_millis(250),
        }
    }
}

impl BackoffConfig {
    /// Checks `[runtime.backoff]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = self;
        check_non_zero("runtime.backoff.initial", b.initial)?;
        if b.max < b.initial {
            return Err(ConfigError::key(
                "runtime.backoff.max",
                "must be >= runtime.backoff.initial",
            ));
        }
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(ConfigError::key(
                "runtime.backoff.multiplier",
                "must be >= 1.0",
            ));
        }
        check_range("runtime.backoff.jitter", b.jitter, 0.0..=1.0)?;
        check_range(
            "runtime.backoff.probe_interval",
            b.probe_interval,
            Duration::ZERO..=Duration::from_secs(10),
        )?;
        Ok(())
    }
}

/// `[runtime]`: supervision and shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Time a graceful shutdown may take before the process exits anyway, > 0. Default "30s".
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Restart backoff (and retry backoff inside stages).
    pub backoff: BackoffConfig,
    /// A stage that ran this long without failing gets its backoff reset, > 0 ("0s" would
    /// reset it after every failure: restarts at the initial delay forever). Default "30s".
    #[serde(with = "humantime_serde")]
    pub healthy_after: Duration,
    /// A connected stage whose loop has neither made progress nor reported idle (or a known
    /// wait) for this long is stalled: the systemd watchdog ping is withheld (so systemd
    /// restarts the daemon) and the status page says so. Longer than any request timeout;
    /// at least "1s". Default "60s".
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// Let the kernel back the heap with 2 MiB transparent huge pages. Default false: a huge
    /// page stays resident while any 4 KiB of it is in use, which held 43–98 MB of the
    /// daemon's RSS at peak (docs/performance.md).
    pub transparent_huge_pages: bool,
    /// How long mimalloc keeps freed memory before returning it to the kernel
    /// (`MIMALLOC_PURGE_DELAY` in the environment wins), at most "60s". mimalloc's own
    /// default is 1 s. Default "0ms".
    #[serde(with = "humantime_serde")]
    pub allocator_purge_delay: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shutdown_deadline: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            healthy_after: Duration::from_secs(30),
            stall_after: Duration::from_secs(60),
            transparent_huge_pages: false,
            allocator_purge_delay: Duration::from_millis(0),
        }
    }
}

impl RuntimeConfig {
    /// Checks `[runtime]` and `[runtime.backoff]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backoff.validate()?;
        check_at_least(
            "runtime.stall_after",
            self.stall_after,
            Duration::from_secs(1),
        )?;
        if self.allocator_purge_delay > Duration::from_secs(60) {
            return Err(ConfigError::key(
                "runtime.allocator_purge_delay",
                "must be <= 60s (memory freed is kept this long before it is returned)",
            ));
        }
        check_non_zero("runtime.shutdown_deadline", self.shutdown_deadline)?;
        check_non_zero("runtime.healthy_after", self.healthy_after)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config =
            load("[runtime]\nhealthy_after = \"5s\"\n[runtime.backoff]\ninitial = \"1s\"\n")
                .expect("valid");
        assert_eq!(config.runtime.healthy_after, Duration::from_secs(5));
        assert_eq!(config.runtime.backoff.initial, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[runtime]\nhealthy_after = \"0s\"\n",
                "runtime.healthy_after",
            ),
            (
                "[runtime.backoff]\ninitial = \"0s\"\n",
                "runtime.backoff.initial",
            ),
            (
                "[runtime.backoff]\njitter = -0.1\n",
                "runtime.backoff.jitter",
            ),
            (
                "[runtime.backoff]\nmultiplier = 0.9\n",
                "runtime.backoff.multiplier",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
