//! The daemon's HTTP endpoints:
//!
//! | path | what | access |
//! |---|---|---|
//! | `/` | the status page (one embedded HTML file, polls `/api/status` every second) | token |
//! | `/api/status` | the status as JSON (docs/status.md) | token |
//! | `/metrics` | Prometheus text | open |
//! | `/healthz` | process alive | open |
//! | `/readyz` | every stage up (503 with the reasons otherwise) | open |
//!
//! "token": when `http.token_file` is configured (required for a non-loopback `http.listen`),
//! these need `Authorization: Bearer <token>`; the page also accepts `?token=` so a browser
//! can open it, and passes the token on to `/api/status` in the header. Scrapers and probes
//! keep working without it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use super::status::StatusBoard;
use crate::config::Secret;
use crate::supervise::Health;

/// The status page, embedded in the binary: no external assets.
pub const PAGE: &str = include_str!("status/page.html");

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub board: Arc<StatusBoard>,
    /// The bearer token `/` and `/api/status` require, if configured.
    pub token: Option<Secret>,
}

/// Serves the endpoints on `listener` until `shutdown`.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The routes, for [`serve`] and tests.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(page_handler))
        .route("/api/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(state)
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(state: &HttpState, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let expected = token.expose().as_bytes();
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    from_header
        .or(query_token)
        .is_some_and(|t| same(t.as_bytes(), expected))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pipeline\""),
        )],
        "401 unauthorized: send Authorization: Bearer <the token of http.token_file>\n",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn page_handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !authorized(&state, &headers, q.token.as_deref()) {
        return unauthorized();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page loads nothing from elsewhere; say so to the browser as well.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

async fn status_handler(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers, None) {
        return unauthorized();
    }
    let status = state.board.status();
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(status)).into_response()
}

async fn metrics_handler(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ready_handler(State(state): State<HttpState>) -> impl IntoResponse {
    let not_ready = state.health.not_ready();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not_ready.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_small() {
        assert!(PAGE.len() <= 150 * 1024, "page is {} bytes", PAGE.len());
        for external in ["http://", "https://", "//cdn", "@import", "<link"] {
            assert!(!PAGE.contains(external), "page references {external}");
        }
        assert!(PAGE.contains("/api/status"));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
