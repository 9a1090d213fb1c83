//! The user API client: rate budget, retries, schedule.
//!
//! Delivery: a fetched page is handed to landing over a bounded channel; nothing is
//! acknowledged to anyone, so a crash loses at most the pages in flight, which are fetched
//! again: with a `seed`, pages are deterministic and resumed from what landing committed
//! (`landing_batches`), so a restarted bounded run lands exactly the same users.
//!
//! One fetcher: with `source.exclusive` (the default) the source fetches only while this
//! daemon holds the source lease of its database, API url and seed (src/lease); the sources
//! of other daemons stand by and take over (resuming a seeded run from `landing_batches`).
//! A source that loses its lease drops its requests in flight at once. After a bounded run
//! completes, the lease is kept until the daemon stops, so a standby does not run it again.
//!
//! Retry policy, in one place ([`FetchError::is_retriable`]): timeouts, connection errors,
//! 429 (honouring `Retry-After`), 5xx and unparseable bodies are retried with the shared
//! backoff; other 4xx are the request's fault and stop the daemon (fatal).

pub(crate) mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Mutex, OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::config::{BackoffConfig, ScheduleMode, SourceConfig};
use crate::lease::{Elector, Lease};
use crate::model::{self, PageError, RawUser};
use crate::supervise::{Backoff, Probes, Service, Stage, StageContext, StageError, probe};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::observe_ms;

/// What a requested user is assumed to cost (body plus split output) before the first page
/// is measured: a typical API user is ~1.1 KB of JSON, landed ~1 KB, message ~0.6 KB.
const INITIAL_BYTES_PER_USER: u64 = 3 * 1024;

/// Longest `Retry-After` honoured; longer values are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Highest page the API serves for a seed.
pub use randomuser::MAX_PAGE;

/// One fetched page, ready to land.
#[derive(Debug, Clone)]
pub struct FetchedPage {
    /// The seed asked for (empty: random users).
    pub seed: String,
    /// The page asked for (seeded runs only).
    pub page: Option<u32>,
    /// When the page's request was sent, unix milliseconds: the end-to-end latency origin and
    /// the rows' write timestamp.
    pub fetched_at_ms: i64,
    pub users: Vec<RawUser>,
    /// This page's share of `source.buffer_bytes` (reserved before its request); released
    /// when the page is dropped (after it is committed).
    pub budget: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl FetchedPage {
    /// Bytes the page holds (its users' ids, landed JSON and messages).
    pub fn size_bytes(&self) -> usize {
        self.users.iter().map(RawUser::size_bytes).sum()
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("rate limited (429), retry after {0:?}")]
    RateLimited(Option<Duration>),
    #[error("server error {0}")]
    Server(u16),
    #[error("request refused with {status}: {body} (check source.url and the query keys)")]
    Client { status: u16, body: String },
    #[error("unusable body: {0}")]
    Body(#[from] PageError),
    #[error("transport error: {0}")]
    Transport(String),
}

impl FetchError {
    /// The one retry decision of the source.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, Self::Client { .. })
    }

    /// Metric label of the outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect_error",
            Self::RateLimited(_) => "rate_limited",
            Self::Server(_) => "server_error",
            Self::Client { .. } => "client_error",
            Self::Body(PageError::ApiError(_)) => "api_error",
            Self::Body(_) => "malformed_body",
            Self::Transport(_) => "transport_error",
        }
    }
}

/// Spaces requests `1/requests_per_second` apart across all workers.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(requests_per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / requests_per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// HTTP client for the randomuser API.
#[derive(Clone)]
pub struct UserApiClient {
    http: reqwest::Client,
    config: Arc<SourceConfig>,
    limiter: Arc<RateLimiter>,
    metrics: Metrics,
    backoff: BackoffConfig,
    /// `source.buffer_bytes`: pages being fetched (reserved by estimate before the request)
    /// and handed to landing, until committed.
    budget: ByteBudget,
    /// Bytes one requested user costs while its page is split (body plus split output), as
    /// measured on the last page: the estimate a request reserves before it is sent.
    bytes_per_user: Arc<AtomicU64>,
    /// Ends a retry's wait as soon as the API, seen down, answers again.
    probes: Arc<Probes>,
}

impl UserApiClient {
    /// # Errors
    /// When the HTTP client cannot be built (TLS backend).
    pub fn new(
        config: &SourceConfig,
        backoff: &BackoffConfig,
        metrics: Metrics,
    ) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("pipeline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            config: Arc::new(config.clone()),
            limiter: Arc::new(RateLimiter::new(config.requests_per_second)),
            metrics,
            backoff: backoff.clone(),
            budget: ByteBudget::new(config.buffer_bytes),
            bytes_per_user: Arc::new(AtomicU64::new(INITIAL_BYTES_PER_USER)),
            probes: Arc::new(Probes::api(backoff.probe_interval, &config.url)),
        })
    }

    fn query(&self, page: Option<u32>) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut q = vec![
            ("results", c.results.to_string()),
            ("format", "json".into()),
        ];
        if !c.seed.is_empty() {
            q.push(("seed", c.seed.clone()));
        }
        if let Some(page) = page {
            q.push(("page", page.to_string()));
        }
        if !c.nat.is_empty() {
            q.push(("nat", c.nat.join(",")));
        }
        if !c.inc.is_empty() {
            q.push(("inc", c.inc.join(",")));
        }
        if !c.exc.is_empty() {
            q.push(("exc", c.exc.join(",")));
        }
        q
    }

    /// One request, no retry.
    ///
    /// # Errors
    /// [`FetchError`] classifying the failure.
    pub async fn fetch_once(&self, page: Option<u32>) -> Result<FetchedPage, FetchError> {
        self.metrics.heartbeats.waiting_for(
            "source",
            self.limiter.interval * self.config.concurrency.max(1),
        );
        self.limiter.acquire().await;
        // The end-to-end clock starts when the request is sent (docs/metrics.md).
        let requested_at_ms = chrono::Utc::now().timestamp_millis();
        let response = self
            .http
            .get(&self.config.url)
            .query(&self.query(page))
            .send()
            .await
            .map_err(|e| classify(&e, self.config.timeout))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(FetchError::RateLimited(retry_after));
        }
        if status.is_server_error() {
            return Err(FetchError::Server(status.as_u16()));
        }
        if !status.is_success() {
            let body = response
                .text()
                .await
                .unwrap_or_else(|e| format!("(body unreadable: {e})"));
            return Err(FetchError::Client {
                status: status.as_u16(),
                body: model::truncate_utf8(&body, 300).to_string(),
            });
        }
        let body = read_body(response)
            .await
            .map_err(|e| classify(&e, self.config.timeout))?;
        let users = model::split_page(&body)?;
        if !users.is_empty() {
            let split: usize = users.iter().map(RawUser::size_bytes).sum();
            let per_user = (body.len() + split) / users.len();
            self.bytes_per_user.store(
                u64::try_from(per_user).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        drop(body);
        observe_ms(
            &self.metrics.stage("fetch"),
            requested_at_ms,
            chrono::Utc::now().timestamp_millis(),
        );
        Ok(FetchedPage {
            seed: self.config.seed.clone(),
            page,
            fetched_at_ms: requested_at_ms,
            users,
            budget: None,
        })
    }

    /// Reserves this request's share of `source.buffer_bytes` before it is sent: `results`
    /// users at the last page's measured cost (body and split output). The page resizes it
    /// to what it holds once split ([`send_page`]), so the body's share comes back then.
    async fn reserve(&self) -> Result<OwnedSemaphorePermit, StageError> {
        let estimate = u64::from(self.config.results)
            .saturating_mul(self.bytes_per_user.load(Ordering::Relaxed));
        self.budget
            .acquire(estimate)
            .await
            .map_err(|_| StageError::Disconnected("the source's byte budget"))
    }

    /// Fetches with retries: up to `source.max_attempts`, backoff with jitter, `Retry-After`.
    ///
    /// # Errors
    /// The last error when attempts run out, or at once for a non-retriable one.
    ///
    /// # Cancellation
    /// Cancel-safe: dropping the future abandons the request; nothing is half-written.
    pub async fn fetch(&self, page: Option<u32>) -> Result<FetchedPage, FetchError> {
        let mut backoff = Backoff::new(&self.backoff);
        let mut episode = probe::Episode::default();
        loop {
            let started = Instant::now();
            let result = self.fetch_once(page).await;
            self.metrics
                .batch_duration
                .with_label_values(&["source"])
                .observe(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(p) => {
                    self.metrics.heartbeats.beat("source");
                    self.metrics
                        .source_requests
                        .with_label_values(&["ok"])
                        .inc();
                    return Ok(p);
                }
                Err(e) => e,
            };
            self.metrics
                .source_requests
                .with_label_values(&[error.outcome()])
                .inc();
            if !error.is_retriable() || backoff.attempts() + 1 >= self.config.max_attempts {
                return Err(error);
            }
            let mut delay = backoff.next_delay();
            if let FetchError::RateLimited(Some(after)) = &error {
                delay = delay.max((*after).min(MAX_RETRY_AFTER));
            }
            tracing::debug!(error = %error, ?page, delay_ms = delay.as_millis() as u64, "fetch failed, retrying");
            self.metrics.heartbeats.waiting_for("source", delay);
            let service = matches!(error, FetchError::Connect(_) | FetchError::Timeout(_))
                .then_some(Service::Api);
            if self.probes.sleep(service, delay, &mut episode).await == probe::Wake::ServiceBack {
                backoff.reset();
            }
        }
    }
}

/// The whole body in one buffer sized by `Content-Length` (up to [`MAX_PRESIZE`]):
/// `Response::bytes` collects the chunks and then copies them into one, twice the page.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let hint = response.content_length().unwrap_or(0).min(MAX_PRESIZE);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A `Content-Length` is trusted for the initial allocation up to this many bytes.
const MAX_PRESIZE: u64 = 64 << 20;

fn classify(e: &reqwest::Error, timeout: Duration) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(timeout)
    } else if e.is_connect() {
        FetchError::Connect(e.to_string())
    } else {
        FetchError::Transport(e.to_string())
    }
}

/// What the source fetches in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPlan {
    /// Seeded: these pages, in order (those already landed are skipped by the caller).
    Pages(Vec<u32>),
    /// Unseeded: requests until the record/time budget is spent.
    Random,
}

/// Pages of a seeded run: `ceil(max_records / results)` pages from `first`, capped at
/// [`MAX_PAGE`]; all remaining pages when unbounded.
pub fn plan_pages(first: u32, results: u32, max_records: u64) -> Vec<u32> {
    let first = first.max(1);
    if first > MAX_PAGE {
        return Vec::new();
    }
    let count = if max_records == 0 {
        u64::from(MAX_PAGE - first + 1)
    } else {
        max_records.div_ceil(u64::from(results.max(1)))
    };
    let last = (u64::from(first) + count - 1).min(u64::from(MAX_PAGE)) as u32;
    (first..=last).collect()
}

/// How many users of page `page_index` (0-based within a run) to keep, so that a bounded run
/// yields exactly `max_records`.
pub fn keep_from_page(page_index: usize, results: u32, max_records: u64) -> usize {
    if max_records == 0 {
        return results as usize;
    }
    let before = page_index as u64 * u64::from(results);
    max_records.saturating_sub(before).min(u64::from(results)) as usize
}

/// Where seeded runs start: computed by landing from committed pages.
pub trait PageCursor: Send + Sync {
    /// Ready to answer (its tables exist): awaited before the source starts.
    fn ready(&self) -> impl std::future::Future<Output = Result<(), StageError>> + Send;
    /// Pages of `seed` already landed among `candidates`.
    fn landed_pages(
        &self,
        seed: &str,
        candidates: &[u32],
    ) -> impl std::future::Future<Output = Result<Vec<u32>, StageError>> + Send;
    /// Highest landed page of `seed`, if any.
    fn last_page(
        &self,
        seed: &str,
    ) -> impl std::future::Future<Output = Result<Option<u32>, StageError>> + Send;
}

/// The source under supervision.
pub struct SourceStage<C: PageCursor> {
    pub client: UserApiClient,
    /// Which pages of a seed are landed (landing's tables).
    pub cursor: Arc<C>,
    pub out: mpsc::Sender<FetchedPage>,
    /// Stages that should be up before the first fetch (relay, consumers): see
    /// [`wait_for_downstream`].
    pub downstream: Vec<CancellationToken>,
    /// The source lease (`source.exclusive`); `None`: fetch whatever other daemons do.
    pub lease: Option<Elector>,
    /// The lease of a completed run, kept until the daemon stops.
    pub kept: std::sync::Mutex<Option<Lease>>,
}

impl<C: PageCursor + 'static> Stage for SourceStage<C> {
    type Running = ();

    fn name(&self) -> &'static str {
        "source"
    }

    async fn start(&self, ctx: &StageContext) -> Result<(), StageError> {
        self.cursor.ready().await?;
        wait_for_downstream(&ctx.token, &self.downstream).await;
        Ok(())
    }

    async fn run(&self, (): (), ctx: &StageContext) -> Result<(), StageError> {
        if ctx.token.is_cancelled() {
            return Ok(());
        }
        let fetch = || {
            run_source(
                self.client.clone(),
                Arc::clone(&self.cursor),
                self.out.clone(),
                ctx.token.clone(),
                || ctx.set_ready(),
            )
        };
        let Some(lease) = &self.lease else {
            return fetch().await;
        };
        loop {
            let standby = || {
                ctx.set_standby();
                self.client
                    .metrics
                    .heartbeats
                    .waiting_for("source", lease.check_interval());
            };
            let Some(held) = lease.acquire(&ctx.token, standby).await? else {
                return Ok(());
            };
            tokio::select! {
                result = fetch() => {
                    if result.is_ok() && !ctx.token.is_cancelled() {
                        // A completed run keeps its lease: a standby must not run it again.
                        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
                    }
                    return result;
                }
                // Step down: requests in flight are dropped (a seeded run resumes from what
                // landing committed, wherever it is taken over).
                () = held.lost() => ctx.set_standby(),
            }
        }
    }
}

/// Longest the source waits at start-up for the relay and the consumers (`wait_for_downstream`).
const SOURCE_START_WAIT: Duration = Duration::from_secs(10);

/// Holds the source back at start-up until the relay and this daemon's consumers are up
/// (topics created, connections open, partitions assigned), so the first pages do not wait
/// in the outbox for them: without it, the records of the first ~0.3 s queued behind
/// start-up and were the p99 of a 20 s run at 2,000/s. At most [`SOURCE_START_WAIT`]: a
/// relay standing by for another daemon's lock, or Kafka down, must not keep the source from
/// landing (the outbox is durable). A restarted source does not wait again (the stages it
/// waits for stay marked up). False when the daemon stops first.
pub async fn wait_for_downstream(token: &CancellationToken, up: &[CancellationToken]) -> bool {
    let all_up = async {
        for stage in up {
            stage.cancelled().await;
        }
    };
    tokio::select! {
        () = all_up => true,
        () = tokio::time::sleep(SOURCE_START_WAIT) => {
            tracing::info!(
                waited = ?SOURCE_START_WAIT,
                "relay or consumers not up yet; the source starts anyway (the outbox keeps the records)"
            );
            true
        }
        () = token.cancelled() => false,
    }
}

/// The source stage: runs the schedule, sends pages to landing. Returns `Ok` when a bounded
/// schedule is complete.
///
/// # Errors
/// Retriable when a page could not be fetched within `max_attempts`; fatal on a 4xx.
pub async fn run_source<C: PageCursor>(
    client: UserApiClient,
    cursor: Arc<C>,
    out: mpsc::Sender<FetchedPage>,
    token: CancellationToken,
    mark_ready: impl Fn(),
) -> Result<(), StageError> {
    let config = Arc::clone(&client.config);
    mark_ready();
    loop {
        let run_started = Instant::now();
        let deadline = (!config.max_duration.is_zero()).then(|| run_started + config.max_duration);
        if config.seed.is_empty() {
            run_random(&client, &out, &token, deadline).await?;
        } else {
            let first = match config.mode {
                ScheduleMode::Continuous => config.start_page,
                ScheduleMode::Interval => cursor
                    .last_page(&config.seed)
                    .await?
                    .map_or(config.start_page, |p| p + 1),
            };
            let pages = plan_pages(first, config.results, config.max_records);
            let landed = cursor.landed_pages(&config.seed, &pages).await?;
            run_pages(&client, &pages, &landed, &out, &token, deadline).await?;
        }
        if token.is_cancelled() {
            return Ok(());
        }
        match config.mode {
            ScheduleMode::Continuous => {
                tracing::info!("source run complete");
                return Ok(());
            }
            ScheduleMode::Interval => {
                let next = run_started + config.interval;
                tracing::info!(
                    next_in_s = next.saturating_duration_since(Instant::now()).as_secs(),
                    "source run complete; waiting for the next interval"
                );
                let wait = next.saturating_duration_since(Instant::now());
                client.metrics.heartbeats.waiting_for("source", wait);
                tokio::select! {
                    () = tokio::time::sleep_until(next.into()) => {}
                    () = token.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// Hands a page to landing with its reservation resized to what the page holds now.
async fn send_page(
    client: &UserApiClient,
    out: &mpsc::Sender<FetchedPage>,
    mut page: FetchedPage,
    mut reserved: OwnedSemaphorePermit,
    token: &CancellationToken,
) -> Result<bool, StageError> {
    let bytes = u64::try_from(page.size_bytes()).unwrap_or(u64::MAX);
    client.budget.resize(&mut reserved, bytes);
    page.budget = Some(Arc::new(reserved));
    tokio::select! {
        sent = out.send(page) => sent.map(|()| true).map_err(|_| StageError::Disconnected("the landing stage")),
        () = token.cancelled() => Ok(false),
    }
}

async fn run_pages(
    client: &UserApiClient,
    pages: &[u32],
    landed: &[u32],
    out: &mpsc::Sender<FetchedPage>,
    token: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<(), StageError> {
    let config = &client.config;
    let todo: Vec<(usize, u32)> = pages
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, p)| !landed.contains(p))
        .collect();
    if todo.len() < pages.len() {
        tracing::info!(
            skipped = pages.len() - todo.len(),
            remaining = todo.len(),
            "resuming seeded run"
        );
    }
    let mut fetches = futures::stream::iter(todo.into_iter().map(|(index, page)| {
        let client = client.clone();
        async move {
            let reserved = client.reserve().await?;
            let page = client.fetch(Some(page)).await?;
            Ok::<_, StageError>((index, page, reserved))
        }
    }))
    .buffered(config.concurrency as usize);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        let next = tokio::select! {
            next = fetches.next() => next,
            () = token.cancelled() => return Ok(()),
        };
        let Some(result) = next else { return Ok(()) };
        let (index, mut page, reserved) = result?;
        page.users
            .truncate(keep_from_page(index, config.results, config.max_records));
        if !send_page(client, out, page, reserved, token).await? {
            return Ok(());
        }
    }
}

async fn run_random(
    client: &UserApiClient,
    out: &mpsc::Sender<FetchedPage>,
    token: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<(), StageError> {
    let config = &client.config;
    let mut sent: u64 = 0;
    let mut fetches = futures::stream::repeat(())
        .map(|()| {
            let client = client.clone();
            async move {
                let reserved = client.reserve().await?;
                let page = client.fetch(None).await?;
                Ok::<_, StageError>((page, reserved))
            }
        })
        .buffered(config.concurrency as usize);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || (config.max_records > 0 && sent >= config.max_records)
        {
            return Ok(());
        }
        let next = tokio::select! {
            next = fetches.next() => next,
            () = token.cancelled() => return Ok(()),
        };
        let Some(result) = next else { return Ok(()) };
        let (mut page, reserved) = result?;
        if config.max_records > 0 {
            let left = (config.max_records - sent) as usize;
            page.users.truncate(left);
        }
        sent += page.users.len() as u64;
        if !send_page(client, out, page, reserved, token).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_exact_page_ranges() {
        assert_eq!(plan_pages(1, 100, 250), vec![1, 2, 3]);
        assert_eq!(plan_pages(5, 100, 100), vec![5]);
        assert_eq!(plan_pages(9_999, 100, 1_000), vec![9_999, 10_000]);
        assert_eq!(plan_pages(1, 5000, 0).len(), 10_000);
        assert!(plan_pages(10_001, 10, 10).is_empty());
        assert_eq!(keep_from_page(0, 100, 250), 100);
        assert_eq!(keep_from_page(2, 100, 250), 50);
        assert_eq!(keep_from_page(3, 100, 250), 0);
        assert_eq!(keep_from_page(7, 100, 0), 100);
    }

    #[test]
    fn retry_policy() {
        assert!(FetchError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(FetchError::RateLimited(None).is_retriable());
        assert!(FetchError::Server(503).is_retriable());
        assert!(FetchError::Body(PageError::NotJson("x".into())).is_retriable());
        assert!(
            !FetchError::Client {
                status: 400,
                body: String::new()
            }
            .is_retriable()
        );
        assert_eq!(FetchError::RateLimited(None).outcome(), "rate_limited");
    }

    #[tokio::test]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(50.0);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        // 6 slots at 20 ms spacing: the last starts 100 ms after the first.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }
}
