//! `[source]`: the user API client, its rate, retries and schedule.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BUFFER_BYTES, ConfigError, check_at_least, check_non_zero, check_range};

/// How the source schedules its requests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Fetch without pause (within the rate budget) until `max_records`/`max_duration`.
    Continuous,
    /// Fetch one bounded run (`max_records`) every `interval`, like the old `@daily` DAG.
    Interval,
}

/// `[source]`: the randomuser.me API client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Whether the daemon fetches at all (false: only relay and consume). Default true.
    pub enabled: bool,
    /// API endpoint (http or https); pin a version with `/api/1.4/`. Default
    /// `"https://randomuser.me/api/1.4/"`.
    pub url: String,
    /// Users per request, 1..=5000 (the API silently turns larger values into 1). Default 100.
    pub results: u32,
    /// Seed for reproducible pages; pages 1, 2, ... are fetched in order and resumed after a
    /// restart. Empty: random users, no paging. Default "".
    pub seed: String,
    /// First page to fetch when seeded, 1..=10000. Default 1.
    pub start_page: u32,
    /// Nationalities (`nat`), e.g. ["us", "gb"]. Empty: all. Default [].
    pub nat: Vec<String>,
    /// Fields to include (`inc`). Empty: all. `login` is always needed (record id). Default [].
    pub inc: Vec<String>,
    /// Fields to exclude (`exc`). Default [].
    pub exc: Vec<String>,
    /// Requests per second across all workers (token bucket), > 0; for randomuser.me also
    /// within its 20,000 users per 5 minutes. Default 0.5.
    pub requests_per_second: f64,
    /// Concurrent requests in flight, 1..=256. Default 1.
    pub concurrency: u32,
    /// Per-request timeout (connect + body), > 0. Default "10s".
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per request before the stage fails and is restarted by the supervisor, >= 1.
    /// Default 8.
    pub max_attempts: u32,
    /// Schedule: "continuous" or "interval". Default "continuous".
    pub mode: ScheduleMode,
    /// Period of interval mode (> 0 there), e.g. "1d". Default "1d".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stop after this many users (per run in interval mode). 0: no limit. Default 0.
    pub max_records: u64,
    /// Stop after this long (per run). "0s": no limit. Default "0s".
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Byte budget of the source's pages, from the request until landing commits them: a
    /// request reserves its page's estimated size (body plus split output, at the last page's
    /// measured bytes per user) before it is sent, and the page keeps its split size (landed
    /// JSON and messages) until committed. The source waits when a page does not fit; a page
    /// larger than the whole budget takes all of it. Bytes, 65536..=17179869184. Default
    /// 25165824 (24 MiB).
    pub buffer_bytes: u64,
    /// One fetcher per database, API url and seed: the source runs only while this daemon
    /// holds the source lease (`[lease]`); other daemons' sources stand by. `false` lets
    /// every daemon fetch (several seeds' worth of rate budget: mind the API's limit).
    /// Default true.
    pub exclusive: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "https://randomuser.me/api/1.4/".into(),
            results: 100,
            seed: String::new(),
            start_page: 1,
            nat: Vec::new(),
            inc: Vec::new(),
            exc: Vec::new(),
            requests_per_second: 0.5,
            concurrency: 1,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            mode: ScheduleMode::Continuous,
            interval: Duration::from_secs(86_400),
            max_records: 0,
            max_duration: Duration::ZERO,
            buffer_bytes: 24 * 1024 * 1024,
            exclusive: true,
        }
    }
}

impl SourceConfig {
    /// Checks ranges and combinations of `[source]`.
    ///
    /// # Errors
    /// The first invalid key found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = self;
        let url = reqwest::Url::parse(&s.url)
            .map_err(|e| ConfigError::key("source.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::key(
                "source.url",
                "scheme must be http or https",
            ));
        }
        if !(1..=randomuser::MAX_RESULTS).contains(&s.results) {
            return Err(ConfigError::key(
                "source.results",
                format!(
                    "{} is out of range 1..=5000 (the API silently answers 1 user above 5000)",
                    s.results
                ),
            ));
        }
        check_range("source.start_page", s.start_page, 1..=randomuser::MAX_PAGE)?;
        if !(s.requests_per_second.is_finite() && s.requests_per_second > 0.0) {
            return Err(ConfigError::key(
                "source.requests_per_second",
                "must be a positive number",
            ));
        }
        if url.host_str().is_some_and(|h| h.ends_with("randomuser.me")) {
            // The public API allows 20,000 users per IP per 5 minutes, then answers 429.
            let per_5min = s.requests_per_second * f64::from(s.results) * 300.0;
            if per_5min > 20_000.0 {
                return Err(ConfigError::key(
                    "source.requests_per_second",
                    format!(
                        "{} req/s x {} results = {per_5min:.0} users per 5 minutes, over \
                         randomuser.me's limit of 20000; lower requests_per_second or results",
                        s.requests_per_second, s.results
                    ),
                ));
            }
        }
        check_range("source.concurrency", s.concurrency, 1..=256)?;
        check_range("source.buffer_bytes", s.buffer_bytes, BUFFER_BYTES)?;
        check_non_zero("source.timeout", s.timeout)?;
        check_at_least("source.max_attempts", s.max_attempts, 1)?;
        if s.mode == ScheduleMode::Interval {
            if s.interval.is_zero() {
                return Err(ConfigError::key(
                    "source.interval",
                    "must be > 0 in interval mode",
                ));
            }
            if s.max_records == 0 && s.max_duration.is_zero() {
                return Err(ConfigError::key(
                    "source.max_records",
                    "interval mode needs a bounded run: set max_records or max_duration",
                ));
            }
        }
        const FIELDS: &[&str] = &randomuser::Field::NAMES;
        for (key, list) in [("source.inc", &s.inc), ("source.exc", &s.exc)] {
            if let Some(bad) = list.iter().find(|f| !FIELDS.contains(&f.as_str())) {
                return Err(ConfigError::key(
                    key,
                    format!(
                        "unknown field `{bad}`, expected one of {}",
                        FIELDS.join(", ")
                    ),
                ));
            }
        }
        if (!s.inc.is_empty() && !s.inc.iter().any(|f| f == "login"))
            || s.exc.iter().any(|f| f == "login")
        {
            return Err(ConfigError::key(
                "source.inc",
                "`login` must be fetched: login.uuid is the record id",
            ));
        }
        const NATS: &[&str] = randomuser::NATIONALITIES;
        if let Some(bad) = s
            .nat
            .iter()
            .find(|n| !NATS.contains(&n.to_ascii_uppercase().as_str()))
        {
            return Err(ConfigError::key(
                "source.nat",
                format!(
                    "unknown nationality `{bad}`, expected some of {}",
                    NATS.join(" ")
                ),
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
        let config = load("[source]\nresults = 50\nnat = [\"us\", \"GB\"]\nmode = \"interval\"\nmax_records = 1000\n")
            .expect("valid");
        assert_eq!(config.source.results, 50);
        assert_eq!(config.source.nat, ["us", "GB"]);
        assert!(config.source.exclusive, "one fetcher by default");
        let shared = load("[source]\nexclusive = false\n").expect("valid");
        assert!(!shared.source.exclusive);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[source]\nstart_page = 0\n", "source.start_page"),
            ("[source]\nconcurrency = 0\n", "source.concurrency"),
            ("[source]\nconcurrency = 257\n", "source.concurrency"),
            ("[source]\nbuffer_bytes = 1024\n", "source.buffer_bytes"),
            ("[source]\ntimeout = \"0s\"\n", "source.timeout"),
            ("[source]\nmax_attempts = 0\n", "source.max_attempts"),
            (
                "[source]\nmode = \"interval\"\ninterval = \"0s\"\nmax_records = 1\n",
                "source.interval",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml:?}");
        }
    }
}
