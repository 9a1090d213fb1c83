//! Watching a service come back: a cheap TCP probe that ends a backoff sleep early.
//!
//! The supervisor's backoff grows while a service is down (up to `runtime.backoff.max`), so
//! after a long outage the next attempt could come up to that long after the service
//! returned. While a stage sleeps after a failure that names a service, [`Probes::sleep`]
//! opens a TCP connection to that service every `runtime.backoff.probe_interval`; once it has
//! seen the service unreachable, the first probe that connects again ends the sleep, and the
//! stage reconnects within one probe interval of the service answering, whatever the outage
//! length. A service that stays reachable while the stage fails (refused queries, a broker
//! that is not ready yet) never shortens the sleep: the backoff still protects it.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::{Instant, timeout};

use crate::config::Config;

/// A service a stage talks to, for the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The randomuser API (or the emulator).
    Api,
    /// Postgres: landing and the outbox.
    Postgres,
    /// Kafka: the bootstrap brokers.
    Kafka,
    /// Cassandra: the contact points.
    Cassandra,
}

/// What the probe saw of a service over a failure episode (from a stage's failure until it
/// runs again).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// A probe found the service unreachable since the episode began.
    pub seen_down: bool,
}

/// How a [`Probes::sleep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The whole delay passed.
    Slept,
    /// The service, seen unreachable, answered again: retry now.
    ServiceBack,
}

/// The addresses to probe, per service, and how often.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    targets: HashMap<Service, Vec<String>>,
    interval: Duration,
}

impl Probes {
    /// Probes every `interval` (zero: never probe, sleeps always last their delay).
    pub fn new(interval: Duration) -> Self {
        Self {
            targets: HashMap::new(),
            interval,
        }
    }

    /// The services of `config`: Postgres's host and port (not for a Unix socket), the Kafka
    /// bootstrap brokers, the Cassandra contact points and the API's host and port.
    pub fn from_config(config: &Config) -> Self {
        let mut probes = Self::new(config.runtime.backoff.probe_interval);
        if let Ok(options) = sqlx::postgres::PgConnectOptions::from_str(&config.postgres.url) {
            let host = options.get_host();
            if options.get_socket().is_none() && !host.starts_with('/') {
                probes = probes.with(
                    Service::Postgres,
                    vec![join_host_port(host, options.get_port())],
                );
            }
        }
        probes = probes
            .with(Service::Kafka, config.kafka.bootstrap.clone())
            .with(Service::Cassandra, config.cassandra.contact_points.clone());
        probes.with_api(&config.source.url)
    }

    /// Probes of the API at `url` alone, every `interval`.
    pub fn api(interval: Duration, url: &str) -> Self {
        Self::new(interval).with_api(url)
    }

    fn with_api(self, url: &str) -> Self {
        match reqwest::Url::parse(url) {
            Ok(url) => match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => {
                    self.with(Service::Api, vec![join_host_port(host, port)])
                }
                _ => self,
            },
            Err(_) => self,
        }
    }

    /// Sets the addresses ("host:port") of `service`.
    #[must_use]
    pub fn with(mut self, service: Service, addresses: Vec<String>) -> Self {
        self.targets.insert(service, addresses);
        self
    }

    /// Whether any address of `service` accepts a TCP connection within the probe interval
    /// (`None` when the service has no addresses to probe).
    pub async fn reachable(&self, service: Service) -> Option<bool> {
        let addresses = self.targets.get(&service).filter(|a| !a.is_empty())?;
        let limit = self.interval.max(Duration::from_millis(50));
        for address in addresses {
            if let Ok(Ok(_)) = timeout(limit, tokio::net::TcpStream::connect(address)).await {
                return Some(true);
            }
        }
        Some(false)
    }

    /// Sleeps `delay`, or less when `service` is known: returns [`Wake::ServiceBack`] as soon
    /// as a probe connects after this episode saw the service unreachable. A probe that finds
    /// it unreachable marks the episode.
    pub async fn sleep(
        &self,
        service: Option<Service>,
        delay: Duration,
        episode: &mut Episode,
    ) -> Wake {
        let deadline = Instant::now() + delay;
        let Some(service) =
            service.filter(|s| !self.interval.is_zero() && self.targets.contains_key(s))
        else {
            tokio::time::sleep_until(deadline).await;
            return Wake::Slept;
        };
        loop {
            let probed = Instant::now();
            match tokio::time::timeout_at(deadline, self.reachable(service)).await {
                Err(_) => return Wake::Slept,
                Ok(Some(true)) if episode.seen_down => {
                    *episode = Episode::default();
                    tracing::info!(?service, "service answers again; retrying now");
                    return Wake::ServiceBack;
                }
                Ok(Some(true)) => {}
                Ok(Some(false)) => episode.seen_down = true,
                Ok(None) => {
                    tokio::time::sleep_until(deadline).await;
                    return Wake::Slept;
                }
            }
            let next = (probed + self.interval).min(deadline);
            tokio::time::sleep_until(next).await;
            if Instant::now() >= deadline {
                return Wake::Slept;
            }
        }
    }
}

/// "host:port", with brackets around an IPv6 host.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that refuses connections: bound, then closed.
    async fn closed_port() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr").to_string();
        drop(listener);
        address
    }

    #[tokio::test]
    async fn a_service_that_stays_up_never_shortens_the_sleep() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr").to_string();
        let probes = Probes::new(Duration::from_millis(20)).with(Service::Kafka, vec![address]);
        let mut episode = Episode::default();
        let started = Instant::now();
        let wake = probes
            .sleep(
                Some(Service::Kafka),
                Duration::from_millis(300),
                &mut episode,
            )
            .await;
        assert_eq!(wake, Wake::Slept);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!episode.seen_down);
    }

    #[tokio::test]
    async fn a_service_that_returns_ends_the_sleep_within_a_probe_interval() {
        let address = closed_port().await;
        let probes =
            Probes::new(Duration::from_millis(50)).with(Service::Postgres, vec![address.clone()]);
        let started = Instant::now();
        let reopen = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .expect("rebind");
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(listener);
        });
        let mut episode = Episode::default();
        let wake = probes
            .sleep(
                Some(Service::Postgres),
                Duration::from_secs(20),
                &mut episode,
            )
            .await;
        let elapsed = started.elapsed();
        reopen.abort();
        assert_eq!(wake, Wake::ServiceBack);
        assert!(
            !episode.seen_down,
            "a new episode starts once the service is back"
        );
        // Reopened at 400 ms: woken after it, within a probe interval plus scheduling slack,
        // not after the 20 s delay.
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn down_seen_in_an_earlier_sleep_wakes_at_the_first_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr").to_string();
        let probes = Probes::new(Duration::from_millis(20)).with(Service::Cassandra, vec![address]);
        let mut episode = Episode { seen_down: true };
        let started = Instant::now();
        let wake = probes
            .sleep(
                Some(Service::Cassandra),
                Duration::from_secs(20),
                &mut episode,
            )
            .await;
        assert_eq!(wake, Wake::ServiceBack);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn unknown_service_or_zero_interval_sleeps_the_whole_delay() {
        let address = closed_port().await;
        let mut episode = Episode { seen_down: true };
        let probes = Probes::new(Duration::ZERO).with(Service::Kafka, vec![address]);
        let started = Instant::now();
        let wake = probes
            .sleep(
                Some(Service::Kafka),
                Duration::from_millis(100),
                &mut episode,
            )
            .await;
        assert_eq!(wake, Wake::Slept);
        assert!(started.elapsed() >= Duration::from_millis(100));
        let probes = Probes::new(Duration::from_millis(10));
        let wake = probes
            .sleep(Some(Service::Api), Duration::from_millis(50), &mut episode)
            .await;
        assert_eq!(wake, Wake::Slept);
        let wake = probes
            .sleep(None, Duration::from_millis(50), &mut episode)
            .await;
        assert_eq!(wake, Wake::Slept);
    }

    #[test]
    fn probe_targets_come_from_the_config() {
        let mut config = Config::default();
        config.postgres.url = "postgres://u@db.example:6543/x".into();
        config.source.url = "https://randomuser.me/api/1.4/".into();
        let probes = Probes::from_config(&config);
        assert_eq!(
            probes.targets.get(&Service::Postgres),
            Some(&vec!["db.example:6543".to_string()])
        );
        assert_eq!(
            probes.targets.get(&Service::Api),
            Some(&vec!["randomuser.me:443".to_string()])
        );
        assert_eq!(
            probes.targets.get(&Service::Kafka),
            Some(&config.kafka.bootstrap)
        );
        config.postgres.url = "postgres://u@localhost/x?host=/var/run/postgresql".into();
        assert!(
            !Probes::from_config(&config)
                .targets
                .contains_key(&Service::Postgres),
            "a Unix socket is not probed over TCP"
        );
        assert_eq!(join_host_port("::1", 5432), "[::1]:5432");
    }
}
