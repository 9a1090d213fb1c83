//! `[consumer]`: partition assignment, fetching and the consumers' buffers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BUFFER_BYTES, CHANNEL_CAPACITY, ConfigError, check_at_least, check_range};

/// Where a partition starts when no offset is stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// `[consumer]`: partition assignment and fetching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Whether this daemon consumes at all. Default true.
    pub enabled: bool,
    /// This daemon's index in a static split, 0..instances. Default 0.
    pub instance: u32,
    /// Number of daemons sharing the partitions (partition p goes to p % instances), >= 1.
    /// Default 1.
    pub instances: u32,
    /// Start offset when none is stored: "earliest" or "latest". Default "earliest".
    pub start_from: StartFrom,
    /// Upper bound of bytes per fetch (on the wire), >= 1024. Default 1048576.
    pub fetch_max_bytes: i32,
    /// Broker wait when no data is available, 1ms..=30s ("0s" would poll an idle partition
    /// without pause). Default "100ms".
    #[serde(with = "humantime_serde")]
    pub fetch_max_wait: Duration,
    /// Fetched batches buffered between fetcher and writer of one partition, 1..=65536.
    /// Default 2.
    pub channel_capacity: usize,
    /// Byte budget of fetched-but-unwritten records, all partitions together (their heap
    /// size: keys, values, headers and their allocations). A fetcher reserves its fetch's
    /// estimated size (the last batch, at least `fetch_max_bytes`) before sending it and
    /// waits when that does not fit; a batch keeps its share until its rows are written.
    /// Bytes, 65536..=17179869184. Default 16777216 (16 MiB).
    pub buffer_bytes: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            instance: 0,
            instances: 1,
            start_from: StartFrom::Earliest,
            fetch_max_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(100),
            channel_capacity: 2,
            buffer_bytes: 16 * 1024 * 1024,
        }
    }
}

impl ConsumerConfig {
    /// Checks `[consumer]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        check_at_least("consumer.instances", c.instances, 1)?;
        if c.instance >= c.instances {
            return Err(ConfigError::key(
                "consumer.instance",
                format!(
                    "{} must be < consumer.instances ({})",
                    c.instance, c.instances
                ),
            ));
        }
        check_at_least("consumer.fetch_max_bytes", c.fetch_max_bytes, 1024)?;
        check_range(
            "consumer.fetch_max_wait",
            c.fetch_max_wait,
            Duration::from_millis(1)..=Duration::from_secs(30),
        )?;
        check_range(
            "consumer.channel_capacity",
            c.channel_capacity,
            CHANNEL_CAPACITY,
        )?;
        check_range("consumer.buffer_bytes", c.buffer_bytes, BUFFER_BYTES)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{key_of, load};

    #[test]
    fn parse_config() {
        let config = load("[consumer]\ninstance = 1\ninstances = 2\nstart_from = \"latest\"\n")
            .expect("valid");
        assert_eq!(config.consumer.instance, 1);
        assert_eq!(config.consumer.start_from, super::StartFrom::Latest);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[consumer]\nfetch_max_bytes = 1023\n",
                "consumer.fetch_max_bytes",
            ),
            (
                "[consumer]\nfetch_max_wait = \"0s\"\n",
                "consumer.fetch_max_wait",
            ),
            (
                "[consumer]\nfetch_max_wait = \"31s\"\n",
                "consumer.fetch_max_wait",
            ),
            (
                "[consumer]\nchannel_capacity = 0\n",
                "consumer.channel_capacity",
            ),
            (
                "[consumer]\nchannel_capacity = 65537\n",
                "consumer.channel_capacity",
            ),
            ("[consumer]\nbuffer_bytes = 100\n", "consumer.buffer_bytes"),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
