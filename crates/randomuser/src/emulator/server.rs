//! The HTTP side: routes, transport and body faults, per-IP rate limit, `/stats`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::config::EmulatorConfig;
use super::generate::{ContentFault, generate_page};
use super::params::PageParams;

/// The real API's rate-limit window.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(300);
/// Chunks a slow body is cut into; the pauses between them add up to `slow_body`.
pub const SLOW_BODY_CHUNKS: usize = 16;
/// Bytes injected by the `invalid_utf8` body fault.
const INVALID_UTF8: &[u8] = b"\xff\xfe\xc3\x28";

/// Counters served at `GET /stats`, so tests and benchmarks can check what happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorStats {
    /// Requests to the API routes, whatever their outcome.
    pub requests: u64,
    /// 200 responses whose body is intact JSON (content faults may be inside).
    pub responses_ok: u64,
    /// Records in `responses_ok` bodies: what a client that retries faults will have seen.
    pub users_served: u64,
    /// 400 answers (unsupported `format`).
    pub bad_requests: u64,
    /// 429 answers of the per-IP rate limit.
    pub rate_limited: u64,
    /// 429 answers injected by `fail_429`.
    pub injected_429: u64,
    /// 500/503 answers injected by `fail_5xx`.
    pub injected_5xx: u64,
    /// 200 answers whose body was cut in half.
    pub truncated_bodies: u64,
    /// 200 answers whose body had invalid UTF-8 injected.
    pub invalid_utf8_bodies: u64,
    /// Bodies streamed slowly.
    pub slow_bodies: u64,
    /// Records with a content fault in `responses_ok` bodies, by kind.
    pub bad_records: BadRecordStats,
}

/// Malformed records served, by [`ContentFault`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecordStats {
    /// [`ContentFault::MissingField`]
    pub missing_field: u64,
    /// [`ContentFault::WrongType`]
    pub wrong_type: u64,
    /// [`ContentFault::InvalidUuid`]
    pub invalid_uuid: u64,
    /// [`ContentFault::BadDate`]
    pub bad_date: u64,
    /// [`ContentFault::HugeString`]
    pub huge_string: u64,
}

impl BadRecordStats {
    /// All malformed records.
    pub fn total(&self) -> u64 {
        self.missing_field + self.wrong_type + self.invalid_uuid + self.bad_date + self.huge_string
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    responses_ok: AtomicU64,
    users_served: AtomicU64,
    bad_requests: AtomicU64,
    rate_limited: AtomicU64,
    injected_429: AtomicU64,
    injected_5xx: AtomicU64,
    truncated_bodies: AtomicU64,
    invalid_utf8_bodies: AtomicU64,
    slow_bodies: AtomicU64,
    bad_records: [AtomicU64; 5],
}

impl Counters {
    fn snapshot(&self) -> EmulatorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmulatorStats {
            requests: get(&self.requests),
            responses_ok: get(&self.responses_ok),
            users_served: get(&self.users_served),
            bad_requests: get(&self.bad_requests),
            rate_limited: get(&self.rate_limited),
            injected_429: get(&self.injected_429),
            injected_5xx: get(&self.injected_5xx),
            truncated_bodies: get(&self.truncated_bodies),
            invalid_utf8_bodies: get(&self.invalid_utf8_bodies),
            slow_bodies: get(&self.slow_bodies),
            bad_records: BadRecordStats {
                missing_field: get(&self.bad_records[0]),
                wrong_type: get(&self.bad_records[1]),
                invalid_uuid: get(&self.bad_records[2]),
                bad_date: get(&self.bad_records[3]),
                huge_string: get(&self.bad_records[4]),
            },
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct AppState {
    config: EmulatorConfig,
    counters: Counters,
    /// Numbers requests for the transport-fault draws.
    request_seq: AtomicU64,
    /// Keys the transport-fault draws; from `config.fault_seed` or random.
    fault_seed: u64,
    /// Users served per client IP in the current window (only with a rate limit).
    windows: Mutex<HashMap<IpAddr, RateWindow>>,
}

struct RateWindow {
    started: Instant,
    users: u64,
}

/// Serves the emulator on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// `InvalidInput` for a configuration [`EmulatorConfig::validate`] rejects; otherwise what
/// the accept loop reports.
///
/// # Cancellation
/// On `shutdown` the server stops accepting, lets in-flight responses finish (a slow body
/// takes up to its `slow_body`), then returns `Ok(())`.
pub async fn serve(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let fault_seed = config.fault_seed.unwrap_or_else(|| fastrand::u64(..));
    let state = Arc::new(AppState {
        config,
        counters: Counters::default(),
        request_seq: AtomicU64::new(0),
        fault_seed,
        windows: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/api", get(api))
        .route("/api/", get(api))
        .route("/api/1.4", get(api))
        .route("/api/1.4/", get(api))
        .route("/stats", get(stats))
        .fallback(not_found)
        .with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_string(&state.counters.snapshot()).unwrap_or_default(),
    )
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found: the API lives at /api/")
}

async fn api(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let c = &state.counters;
    bump(&c.requests);
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    let params = match PageParams::from_query(query.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            bump(&c.bad_requests);
            return error_response(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    if let Some(retry_in) = state.admit(peer.ip(), params.results) {
        bump(&c.rate_limited);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "Whoa, ease up there cowboy. You've requested too many users in the last 5 \
             minutes. Help us keep this service free and spare some bandwidth for other \
             users please :)",
        );
        set_retry_after(&mut response, retry_in.max(Duration::from_secs(1)));
        return response;
    }

    let seq = state.request_seq.fetch_add(1, Ordering::Relaxed);
    let [status_roll, body_roll] = rolls(state.fault_seed, seq);
    let cfg = &state.config;
    if status_roll < cfg.fail_429 {
        bump(&c.injected_429);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "injected fault: too many requests, retry later",
        );
        set_retry_after(&mut response, cfg.retry_after);
        return response;
    }
    if status_roll < cfg.fail_429 + cfg.fail_5xx {
        bump(&c.injected_5xx);
        let status = if seq % 2 == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return error_response(status, "injected fault: the server had a problem");
    }

    let faults = cfg.content.clone();
    let page = match tokio::task::spawn_blocking(move || generate_page(&params, &faults)).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "emulator page generation failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "generation failed");
        }
    };
    let mut body = Bytes::from(page.body);
    if body_roll < cfg.truncate {
        bump(&c.truncated_bodies);
        body.truncate(body.len() / 2);
    } else if body_roll < cfg.truncate + cfg.invalid_utf8 {
        bump(&c.invalid_utf8_bodies);
        body = inject_invalid_utf8(&body);
    } else {
        bump(&c.responses_ok);
        c.users_served
            .fetch_add(page.users.len() as u64, Ordering::Relaxed);
        for fault in page.users.iter().filter_map(|u| u.fault) {
            let slot = ContentFault::ALL
                .iter()
                .position(|k| *k == fault)
                .unwrap_or_default();
            bump(&c.bad_records[slot]);
        }
    }

    let body = match cfg.slow_body {
        Some(total) if !body.is_empty() => {
            bump(&c.slow_bodies);
            slow_body(body, total)
        }
        _ => Body::from(body),
    };
    let mut response = Response::new(body);
    set_json_headers(&mut response);
    response
}

impl AppState {
    /// The per-IP limit, imitating the real API: a request is refused once the users
    /// already served in the window reach the limit (so the request that crosses it is still
    /// served). `Some(wait)` means refused.
    fn admit(&self, ip: IpAddr, results: u32) -> Option<Duration> {
        let limit = self.config.rate_limit_users_per_5min?;
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 4096 {
            windows.retain(|_, w| now.duration_since(w.started) < RATE_LIMIT_WINDOW);
        }
        let window = windows.entry(ip).or_insert(RateWindow {
            started: now,
            users: 0,
        });
        if now.duration_since(window.started) >= RATE_LIMIT_WINDOW {
            *window = RateWindow {
                started: now,
                users: 0,
            };
        }
        if window.users >= limit {
            return Some(RATE_LIMIT_WINDOW.saturating_sub(now.duration_since(window.started)));
        }
        window.users += u64::from(results);
        None
    }
}

/// Two uniform draws in [0, 1) for request `seq`: one for the status, one for the body.
fn rolls(fault_seed: u64, seq: u64) -> [f64; 2] {
    let mut rng = fastrand::Rng::with_seed(fault_seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    [rng.f64(), rng.f64()]
}

/// Puts invalid UTF-8 inside the first string value, so the body is JSON in shape but not
/// decodable (what a broken proxy or encoder produces).
fn inject_invalid_utf8(body: &Bytes) -> Bytes {
    let at = [&b"\"first\":\""[..], b"\"seed\":\"", b"\":\""]
        .iter()
        .find_map(|needle| find(body, needle).map(|i| i + needle.len()))
        .unwrap_or(body.len().min(1));
    let mut out = Vec::with_capacity(body.len() + INVALID_UTF8.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(INVALID_UTF8);
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Streams `body` in [`SLOW_BODY_CHUNKS`] pieces with pauses adding up to `total`.
fn slow_body(body: Bytes, total: Duration) -> Body {
    let chunk = body.len().div_ceil(SLOW_BODY_CHUNKS).max(1);
    let pause = total / SLOW_BODY_CHUNKS as u32;
    let stream = futures::stream::unfold((body, true), move |(mut rest, first)| async move {
        if rest.is_empty() {
            return None;
        }
        if !first {
            tokio::time::sleep(pause).await;
        }
        let piece = rest.split_to(chunk.min(rest.len()));
        Some((Ok::<_, std::convert::Infallible>(piece), (rest, false)))
    });
    Body::from_stream(stream)
}

fn set_json_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn set_retry_after(response: &mut Response, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    set_json_headers(&mut response);
    response
}

/// `{"error": "..."}`, the shape of every error the real API returns.
fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}
