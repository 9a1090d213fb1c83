//! The emulator over real loopback HTTP: status codes, headers, faults, stats, determinism.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pipeline::emulator::{
    self, ContentFault, ContentFaults, EmulatorArgs, EmulatorConfig, EmulatorError, EmulatorStats,
    PageParams,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Running {
    async fn start(config: EmulatorConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(emulator::serve(listener, config, shutdown.clone()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Running {
            addr,
            shutdown,
            task,
            client,
        }
    }

    async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}{path_and_query}", self.addr))
            .send()
            .await
            .expect("request")
    }

    async fn body(&self, path_and_query: &str) -> (reqwest::StatusCode, Vec<u8>) {
        let response = self.get(path_and_query).await;
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }

    async fn stats(&self) -> EmulatorStats {
        self.get("/stats").await.json().await.expect("stats JSON")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops after cancel")
            .expect("server task not panicked");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn expected_body(query: &str, faults: &ContentFaults) -> String {
    let params = PageParams::from_query(Some(query)).expect("query accepted");
    emulator::generate_page(&params, faults).body
}

fn error_message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("error body is JSON");
    assert!(v.get("results").is_none());
    v["error"].as_str().expect("error string").to_owned()
}

#[tokio::test]
async fn pages_are_deterministic_on_every_route() {
    let server = Running::start(EmulatorConfig::default()).await;
    let query = "results=50&seed=abc&page=2&nat=gb,us";
    let first = server.get(&format!("/api/?{query}")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json; charset=utf-8"[..])
    );
    let first = first.bytes().await.expect("body");
    for route in ["/api/", "/api", "/api/1.4/", "/api/1.4"] {
        let (status, body) = server.body(&format!("{route}?{query}")).await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(body, first, "{route}");
    }
    assert_eq!(
        first,
        expected_body(query, &ContentFaults::none()).as_bytes()
    );
    let v: Value = serde_json::from_slice(&first).expect("JSON");
    assert_eq!(v["info"]["page"], 2);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(50));

    // Without a seed each request draws its own, echoed so the page can be replayed.
    let (_, a) = server.body("/api/?results=3").await;
    let (_, b) = server.body("/api/?results=3").await;
    assert_ne!(a, b);
    let seed = serde_json::from_slice::<Value>(&a).expect("JSON")["info"]["seed"]
        .as_str()
        .expect("seed")
        .to_owned();
    let (_, replay) = server.body(&format!("/api/?results=3&seed={seed}")).await;
    assert_eq!(replay, a);

    let stats = server.stats().await;
    assert_eq!(stats.requests, 8);
    assert_eq!(stats.responses_ok, 8);
    assert_eq!(stats.users_served, 5 * 50 + 3 * 3);
    server.stop().await;
}

#[tokio::test]
async fn bad_format_and_unknown_paths_are_json_errors() {
    let server = Running::start(EmulatorConfig::default()).await;
    let (status, body) = server.body("/api/?format=csv&results=5").await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("csv"));
    let (status, body) = server.body("/api/1.3/?results=5").await;
    assert_eq!(status, 404);
    error_message(&body);
    let stats = server.stats().await;
    assert_eq!(stats.bad_requests, 1);
    assert_eq!(stats.users_served, 0);
    server.stop().await;
}

#[tokio::test]
async fn injected_429_carries_retry_after() {
    let config = EmulatorConfig {
        fail_429: 1.0,
        retry_after: Duration::from_secs(3),
        ..EmulatorConfig::default()
    };
    let server = Running::start(config).await;
    for _ in 0..3 {
        let response = server.get("/api/?results=5&seed=x").await;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        error_message(&response.bytes().await.expect("body"));
    }
    let stats = server.stats().await;
    assert_eq!((stats.injected_429, stats.responses_ok), (3, 0));
    server.stop().await;
}

#[tokio::test]
async fn injected_5xx_alternate_500_and_503() {
    let config = EmulatorConfig {
        fail_5xx: 1.0,
        ..EmulatorConfig::default()
    };
    let server = Running::start(config).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = server.body("/api/?results=5&seed=x").await;
        error_message(&body);
        statuses.push(status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [500, 500, 503, 503]);
    assert_eq!(server.stats().await.injected_5xx, 4);
    server.stop().await;
}

#[tokio::test]
async fn body_faults_break_json_or_utf8() {
    let query = "results=20&seed=body&page=3";
    let good = expected_body(query, &ContentFaults::none());

    let truncating = Running::start(EmulatorConfig {
        truncate: 1.0,
        ..EmulatorConfig::default()
    })
    .await;
    let (status, body) = truncating.body(&format!("/api/?{query}")).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), good.len() / 2);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    let stats = truncating.stats().await;
    assert_eq!(
        (
            stats.truncated_bodies,
            stats.responses_ok,
            stats.users_served
        ),
        (1, 0, 0)
    );
    truncating.stop().await;

    let corrupting = Running::start(EmulatorConfig {
        invalid_utf8: 1.0,
        ..EmulatorConfig::default()
    })
    .await;
    let (status, body) = corrupting.body(&format!("/api/?{query}")).await;
    assert_eq!(status, 200);
    assert!(body.len() > good.len());
    assert!(std::str::from_utf8(&body).is_err());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert_eq!(corrupting.stats().await.invalid_utf8_bodies, 1);
    corrupting.stop().await;
}

#[tokio::test]
async fn retries_reach_the_deterministic_page() {
    let config = EmulatorConfig {
        fail_429: 0.3,
        fail_5xx: 0.2,
        truncate: 0.15,
        invalid_utf8: 0.1,
        retry_after: Duration::ZERO,
        fault_seed: Some(7),
        ..EmulatorConfig::default()
    };
    let server = Running::start(config).await;
    let mut attempts = 0;
    for page in 1..=10 {
        let query = format!("results=30&seed=retry&page={page}");
        let want = expected_body(&query, &ContentFaults::none());
        let got = loop {
            attempts += 1;
            assert!(attempts < 500, "faults never let a page through");
            let (status, body) = server.body(&format!("/api/?{query}")).await;
            if status == 200 && serde_json::from_slice::<Value>(&body).is_ok() {
                break body;
            }
        };
        assert_eq!(got, want.as_bytes(), "page {page}");
    }
    let stats = server.stats().await;
    assert!(
        attempts > 10,
        "no fault was injected in {attempts} attempts"
    );
    assert_eq!(stats.responses_ok, 10);
    assert_eq!(stats.users_served, 300);
    assert_eq!(
        stats.injected_429
            + stats.injected_5xx
            + stats.truncated_bodies
            + stats.invalid_utf8_bodies,
        attempts - 10
    );
    server.stop().await;
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429() {
    let server = Running::start(EmulatorConfig {
        rate_limit_users_per_5min: Some(100),
        ..EmulatorConfig::default()
    })
    .await;
    // Like the real API, the request that crosses the limit is still served.
    for _ in 0..2 {
        assert_eq!(server.body("/api/?results=60").await.0, 200);
    }
    let response = server.get("/api/?results=1").await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("numeric Retry-After");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    error_message(&response.bytes().await.expect("body"));
    let stats = server.stats().await;
    assert_eq!((stats.rate_limited, stats.users_served), (1, 120));
    server.stop().await;
}

#[tokio::test]
async fn stats_count_bad_records_exactly() {
    let content = ContentFaults::new(
        0.1,
        [
            ContentFault::MissingField,
            ContentFault::WrongType,
            ContentFault::InvalidUuid,
            ContentFault::BadDate,
        ],
    );
    let server = Running::start(EmulatorConfig {
        content: content.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut expected_bad = 0;
    for page in 1..=3 {
        let query = format!("results=500&seed=stats&page={page}");
        let (status, body) = server.body(&format!("/api/?{query}")).await;
        assert_eq!(status, 200);
        let params = PageParams::from_query(Some(&query)).expect("query");
        let local = emulator::generate_page(&params, &content);
        assert_eq!(body, local.body.as_bytes());
        expected_bad += local.users.iter().filter(|u| !u.is_valid()).count() as u64;
    }
    let stats = server.stats().await;
    assert_eq!(stats.users_served, 1500);
    assert_eq!(stats.bad_records.total(), expected_bad);
    assert!((100..=200).contains(&expected_bad), "{expected_bad}");
    assert_eq!(stats.bad_records.huge_string, 0);
    server.stop().await;
}

#[tokio::test]
async fn latency_and_slow_bodies_delay_but_keep_the_body() {
    let server = Running::start(EmulatorConfig {
        latency: Duration::from_millis(200),
        slow_body: Some(Duration::from_millis(400)),
        ..EmulatorConfig::default()
    })
    .await;
    let query = "results=200&seed=slow";
    let started = Instant::now();
    let (status, body) = server.body(&format!("/api/?{query}")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        expected_body(query, &ContentFaults::none()).as_bytes()
    );
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    let stats = server.stats().await;
    assert_eq!((stats.slow_bodies, stats.responses_ok), (1, 1));
    server.stop().await;
}

#[tokio::test]
async fn invalid_config_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = EmulatorConfig {
        truncate: 2.0,
        ..EmulatorConfig::default()
    };
    let err = emulator::serve(listener, config, CancellationToken::new())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

fn args(listen: SocketAddr) -> EmulatorArgs {
    EmulatorArgs {
        listen,
        latency: Duration::ZERO,
        fail_429: 0.0,
        fail_5xx: 0.0,
        truncate: 0.0,
        invalid_utf8: 0.0,
        slow_body: None,
        bad_records: 0.0,
        bad_kinds: vec![ContentFault::MissingField],
        retry_after: 1,
        rate_limit: None,
        fault_seed: None,
    }
}

#[tokio::test]
async fn run_reports_config_and_bind_errors_and_stops_on_cancel() {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let bad = EmulatorArgs {
        bad_records: 1.5,
        ..args(loopback)
    };
    let err = emulator::run(bad, CancellationToken::new())
        .await
        .expect_err("bad fraction");
    assert!(matches!(err, EmulatorError::Config(_)), "{err}");
    assert!(!err.is_retriable());

    let taken = tokio::net::TcpListener::bind(loopback).await.expect("bind");
    let busy = taken.local_addr().expect("addr");
    let err = emulator::run(args(busy), CancellationToken::new())
        .await
        .expect_err("port in use");
    assert!(
        matches!(err, EmulatorError::Bind { addr, .. } if addr == busy),
        "{err}"
    );

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(emulator::run(args(loopback), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after cancel")
        .expect("not panicked");
    assert!(result.is_ok(), "{result:?}");
}
