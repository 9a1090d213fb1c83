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

/// How partitions are shared between daemons.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Kafka's consumer-group coordinator assigns and rebalances (`consumer.group`).
    Group,
    /// A fixed split: partition p belongs to instance `p % instances`.
    Static,
}

/// `[consumer]`: partition assignment and fetching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Whether this daemon consumes at all. Default true.
    pub enabled: bool,
    /// "group" (Kafka's consumer-group coordinator shares the partitions among every daemon
    /// with the same `group`, and holds the committed offsets) or "static" (`instance` of
    /// `instances`, offsets in Cassandra only). Default "group".
    pub assignment: Assignment,
    /// The consumer group's id (assignment = "group"). Default "pipeline".
    pub group: String,
    /// A member that sends no heartbeat for this long is removed and its partitions move:
    /// the fail-over time. Within the broker's group.min/max.session.timeout.ms
    /// (6s..=300s by default); 1s..=30min here. Default "10s".
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Heartbeat period, < session_timeout (a third of it or less is usual). Default "1s".
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long the coordinator waits for every member to rejoin in a rebalance (a member
    /// first stops its partitions, letting in-flight batches commit), >= session_timeout's
    /// floor of 1s, <= 30min. Default "30s".
    #[serde(with = "humantime_serde")]
    pub rebalance_timeout: Duration,
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
            assignment: Assignment::Group,
            group: "pipeline".to_string(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(30),
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
        if c.assignment == Assignment::Group {
            if c.instances > 1 {
                return Err(ConfigError::key(
                    "consumer.instances",
                    format!(
                        "{} needs consumer.assignment = \"static\" (the group shares the \
                         partitions itself)",
                        c.instances
                    ),
                ));
            }
            if c.group.trim().is_empty() || c.group.len() > 249 {
                return Err(ConfigError::key(
                    "consumer.group",
                    "must be 1..=249 characters, not blank",
                ));
            }
            let minutes = Duration::from_secs(30 * 60);
            check_range(
                "consumer.session_timeout",
                c.session_timeout,
                Duration::from_secs(1)..=minutes,
            )?;
            check_range(
                "consumer.heartbeat_interval",
                c.heartbeat_interval,
                Duration::from_millis(100)..=minutes,
            )?;
            if c.heartbeat_interval >= c.session_timeout {
                return Err(ConfigError::key(
                    "consumer.heartbeat_interval",
                    format!(
                        "{:?} must be < consumer.session_timeout ({:?})",
                        c.heartbeat_interval, c.session_timeout
                    ),
                ));
            }
            check_range(
                "consumer.rebalance_timeout",
                c.rebalance_timeout,
                Duration::from_secs(1)..=minutes,
            )?;
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
        let config = load(
            "[consumer]\nassignment = \"static\"\ninstance = 1\ninstances = 2\n\
             start_from = \"latest\"\n",
        )
        .expect("valid");
        assert_eq!(config.consumer.instance, 1);
        assert_eq!(config.consumer.start_from, super::StartFrom::Latest);
        let config = load("[consumer]\ngroup = \"g1\"\nsession_timeout = \"6s\"\n").expect("valid");
        assert_eq!(config.consumer.assignment, super::Assignment::Group);
        assert_eq!(config.consumer.group, "g1");
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
            ("[consumer]\ninstances = 2\n", "consumer.instances"),
            ("[consumer]\ngroup = \" \"\n", "consumer.group"),
            (
                "[consumer]\nheartbeat_interval = \"10s\"\n",
                "consumer.heartbeat_interval",
            ),
            (
                "[consumer]\nsession_timeout = \"500ms\"\n",
                "consumer.session_timeout",
            ),
            (
                "[consumer]\nrebalance_timeout = \"2h\"\n",
                "consumer.rebalance_timeout",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
