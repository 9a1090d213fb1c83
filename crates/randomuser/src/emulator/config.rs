//! Emulator configuration: the command-line flags and the validated config they build.

use std::net::SocketAddr;
use std::time::Duration;

use super::generate::{ContentFault, ContentFaults};

/// What the server injects. Everything defaults to off: a default config is a faithful,
/// fault-free emulator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmulatorConfig {
    /// Delay before every API answer (models a distant server). Default 0.
    pub latency: Duration,
    /// Fraction of API requests answered 429 with `Retry-After` (models throttling).
    /// Default 0.
    pub fail_429: f64,
    /// `Retry-After` of injected 429s, sent in whole seconds (rounded up). Default 1 s.
    pub retry_after: Duration,
    /// Fraction of API requests answered 500 or 503 (alternating). Drawn from the same roll
    /// as `fail_429`, so `fail_429 + fail_5xx` must not exceed 1. Default 0.
    pub fail_5xx: f64,
    /// Fraction of 200 bodies cut in half: invalid JSON. Default 0.
    pub truncate: f64,
    /// Fraction of 200 bodies with invalid UTF-8 inside a string. Shares a roll with
    /// `truncate`; their sum must not exceed 1. Default 0.
    pub invalid_utf8: f64,
    /// Stream each body in chunks with pauses summing to this (models a slow link).
    /// Default none.
    pub slow_body: Option<Duration>,
    /// Malformed records inside otherwise good bodies; deterministic per record.
    pub content: ContentFaults,
    /// Users one client IP may fetch per 5-minute window before getting 429 (the real API
    /// allows 20,000). Default none.
    pub rate_limit_users_per_5min: Option<u64>,
    /// Seeds the transport-fault draws (which requests get 429/5xx/truncation): with one
    /// sequential client the same seed gives the same fault sequence. Default random.
    pub fault_seed: Option<u64>,
}

impl EmulatorConfig {
    /// # Errors
    /// A message naming the offending setting: fractions outside [0, 1] (or sums of those
    /// sharing a roll above 1), a zero rate limit, fault fraction without kinds.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("fail-429", self.fail_429),
            ("fail-5xx", self.fail_5xx),
            ("truncate", self.truncate),
            ("invalid-utf8", self.invalid_utf8),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} fraction {value} is outside [0, 1]"));
            }
        }
        if self.fail_429 + self.fail_5xx > 1.0 {
            return Err(format!(
                "fail-429 + fail-5xx = {} exceeds 1",
                self.fail_429 + self.fail_5xx
            ));
        }
        if self.truncate + self.invalid_utf8 > 1.0 {
            return Err(format!(
                "truncate + invalid-utf8 = {} exceeds 1",
                self.truncate + self.invalid_utf8
            ));
        }
        if self.rate_limit_users_per_5min == Some(0) {
            return Err("rate-limit must be at least 1 user per 5 minutes".to_owned());
        }
        self.content.validate()
    }
}

/// Default `--bad-kinds`: every kind but `huge-string`, whose 2 MiB records would dwarf
/// everything else at realistic fractions.
pub const DEFAULT_BAD_KINDS: &str = "missing-field,wrong-type,invalid-uuid,bad-date";

/// `pipeline emulator` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback unless you mean it).
    #[arg(
        long,
        env = "PIPELINE_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Delay added to every API answer, e.g. "150ms".
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Fraction of requests answered 429 with Retry-After.
    #[arg(long = "fail-429", default_value_t = 0.0)]
    pub fail_429: f64,
    /// Fraction of requests answered 500/503.
    #[arg(long = "fail-5xx", default_value_t = 0.0)]
    pub fail_5xx: f64,
    /// Fraction of 200 bodies cut in half.
    #[arg(long, default_value_t = 0.0)]
    pub truncate: f64,
    /// Fraction of 200 bodies with invalid UTF-8 injected.
    #[arg(long = "invalid-utf8", default_value_t = 0.0)]
    pub invalid_utf8: f64,
    /// Stream bodies in chunks whose pauses add up to this, e.g. "2s".
    #[arg(long = "slow-body", value_parser = humantime::parse_duration)]
    pub slow_body: Option<Duration>,
    /// Fraction of records made malformed (deterministic per seed, page and index).
    #[arg(long = "bad-records", default_value_t = 0.0)]
    pub bad_records: f64,
    /// Kinds of malformed records, comma-separated: missing-field, wrong-type,
    /// invalid-uuid, bad-date, huge-string.
    #[arg(long = "bad-kinds", value_delimiter = ',', default_value = DEFAULT_BAD_KINDS)]
    pub bad_kinds: Vec<ContentFault>,
    /// Seconds announced in Retry-After of injected 429s.
    #[arg(long = "retry-after", default_value_t = 1)]
    pub retry_after: u64,
    /// Users per client IP per 5 minutes before 429 (the real API: 20000).
    #[arg(long = "rate-limit")]
    pub rate_limit: Option<u64>,
    /// Seed for which requests get transport faults (default random).
    #[arg(long = "fault-seed")]
    pub fault_seed: Option<u64>,
}

impl EmulatorArgs {
    /// The listen address and the validated config.
    ///
    /// # Errors
    /// What [`EmulatorConfig::validate`] reports, phrased with the flag names.
    pub fn into_config(self) -> Result<EmulatorConfig, String> {
        let config = EmulatorConfig {
            latency: self.latency,
            fail_429: self.fail_429,
            retry_after: Duration::from_secs(self.retry_after),
            fail_5xx: self.fail_5xx,
            truncate: self.truncate,
            invalid_utf8: self.invalid_utf8,
            slow_body: self.slow_body,
            content: ContentFaults::new(self.bad_records, self.bad_kinds),
            rate_limit_users_per_5min: self.rate_limit,
            fault_seed: self.fault_seed,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(flags: &[&str]) -> Result<EmulatorConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("emulator").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.into_config()
    }

    #[test]
    fn defaults_are_fault_free() {
        let cli = Cli::try_parse_from(["emulator"]).expect("defaults parse");
        assert_eq!(cli.args.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let config = cli.args.into_config().expect("valid");
        assert_eq!(config.latency, Duration::ZERO);
        assert_eq!(config.fail_429 + config.fail_5xx, 0.0);
        assert_eq!(config.truncate + config.invalid_utf8, 0.0);
        assert_eq!(config.content.fraction, 0.0);
        assert_eq!(config.content.kinds.len(), 4);
        assert!(!config.content.kinds.contains(&ContentFault::HugeString));
        assert_eq!(config.retry_after, Duration::from_secs(1));
        assert_eq!(config.rate_limit_users_per_5min, None);
    }

    #[test]
    fn flags_build_the_config() {
        let config = parse(&[
            "--latency",
            "250ms",
            "--fail-429",
            "0.1",
            "--fail-5xx",
            "0.2",
            "--slow-body",
            "2s",
            "--bad-records",
            "0.05",
            "--bad-kinds",
            "huge-string,bad-date",
            "--retry-after",
            "7",
            "--rate-limit",
            "20000",
        ])
        .expect("valid flags");
        assert_eq!(config.latency, Duration::from_millis(250));
        assert_eq!(config.slow_body, Some(Duration::from_secs(2)));
        assert_eq!(
            config.content,
            ContentFaults::new(0.05, [ContentFault::HugeString, ContentFault::BadDate])
        );
        assert_eq!(config.retry_after, Duration::from_secs(7));
        assert_eq!(config.rate_limit_users_per_5min, Some(20_000));
    }

    #[test]
    fn invalid_flags_are_named() {
        let err = parse(&["--truncate", "1.5"]).expect_err("out of range");
        assert!(err.contains("truncate"), "{err}");
        let err = parse(&["--fail-429", "0.6", "--fail-5xx", "0.6"]).expect_err("sum");
        assert!(err.contains("exceeds 1"), "{err}");
        let err = parse(&["--bad-records=-0.1"]).expect_err("negative");
        assert!(err.contains("bad-records"), "{err}");
        let err = parse(&["--bad-kinds", "missing-field,nonsense"]).expect_err("kind");
        assert!(err.contains("nonsense"), "{err}");
        let err = parse(&["--rate-limit", "0"]).expect_err("zero limit");
        assert!(err.contains("rate-limit"), "{err}");
        let err = parse(&["--fail-5xx", "NaN"]).expect_err("NaN");
        assert!(err.contains("fail-5xx"), "{err}");
    }
}
