//! The status page, `/api/status`, `pipeline status` and `pipeline top` against the real
//! binary with emulator traffic (malformed records included): what they show must equal
//! `/metrics` taken at the same moment. The browser test uses Debian's `chromium`, the `top`
//! test `tmux`; both are installed with apt when missing, and the tests skip (saying why)
//! only when that is impossible.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pipeline::emulator::{ContentFaults, EmulatorConfig};
use pipeline::telemetry::status::{Status, quantile};

const RESULTS: u32 = 100;
const RECORDS: u32 = 2_000;

/// A running daemon with its scenario and the emulator behind it.
struct Running {
    daemon: common::Daemon,
    scenario: common::Scenario,
    _stop: tokio_util::sync::CancellationToken,
}

/// Starts the daemon on a bounded run of `RECORDS` users (5% malformed) at `rps` requests/s.
async fn start(name: &str, rps: u32, extra: &[(&str, &str)]) -> Running {
    let (api, stop) = common::start_emulator(EmulatorConfig {
        content: ContentFaults::new(0.05, common::default_kinds()),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = common::Scenario::new(name, &api).await;
    s.set("PIPELINE_SOURCE__RESULTS", RESULTS.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", RECORDS.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", rps.to_string())
        .set("PIPELINE_SOURCE__CONCURRENCY", "1")
        .set("PIPELINE_LOG__PROGRESS_INTERVAL", "2s");
    for (k, v) in extra {
        s.set(k, *v);
    }
    let daemon = s.spawn(&["run"], &common::log_path(name));
    Running {
        daemon,
        scenario: s,
        _stop: stop,
    }
}

async fn status_of(daemon: &common::Daemon) -> Status {
    let body = daemon
        .wait_for("/api/status", Duration::from_secs(10), |st, _| st == 200)
        .await;
    serde_json::from_str(&body).expect("/api/status is a Status document")
}

/// Waits until every record went through (written or dead-lettered) and the status board
/// has sampled the final counts; returns `/api/status` and `/metrics` of one quiet moment
/// (nothing moves any more, so "at the same moment" holds exactly).
async fn settled(daemon: &common::Daemon) -> (Status, String) {
    daemon
        .wait_for("/metrics", Duration::from_secs(240), |_, b| {
            common::metric(b, "pipeline_stage_records_total{stage=\"consumer\"}")
                >= f64::from(RECORDS)
        })
        .await;
    // Until the board's rings hold the final counts and the rates (5-sample averages) are
    // back to 0: then nothing in the document moves but the clock.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = daemon.get("/metrics").await.expect("metrics").1;
        let status = status_of(daemon).await;
        let after = daemon.get("/metrics").await.expect("metrics").1;
        let at_rest = status.stages.iter().all(|s| s.rate_per_s == 0.0);
        if before == after && at_rest {
            return (status, after);
        }
        assert!(Instant::now() < deadline, "the daemon never came to rest");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `histogram_quantile` over the `_bucket` lines of `name` in Prometheus text (with `labels`
/// such as `stage="land"`, or empty).
fn prom_quantile(prom: &str, name: &str, labels: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let prefix = format!("{name}_bucket{{");
    for line in prom.lines().filter(|l| l.starts_with(&prefix)) {
        if !labels.is_empty() && !line.contains(labels) {
            continue;
        }
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let count: u64 = line.rsplit(' ').next()?.parse().ok()?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        buckets.push((bound, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bounds: Vec<f64> = buckets
        .iter()
        .filter(|b| b.0.is_finite())
        .map(|b| b.0)
        .collect();
    let counts: Vec<u64> = buckets.iter().map(|b| b.1).collect();
    quantile(&bounds, &counts, q)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (None, None) => true,
        _ => false,
    }
}

fn pipeline_cmd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run pipeline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Asserts the status agrees with the metrics text of the same moment.
fn assert_status_matches_metrics(status: &Status, prom: &str) {
    let stage_label = [
        ("source", "source"),
        ("landing", "landing"),
        ("relay", "relay"),
        ("consumer", "consumer"),
        ("cassandra", "sink"),
        ("dlq", "dlq"),
    ];
    for (name, label) in stage_label {
        let stage = status
            .stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("stage {name} missing"));
        let metric = common::metric(
            prom,
            &format!("pipeline_stage_records_total{{stage=\"{label}\"}}"),
        );
        assert_eq!(stage.records_total as f64, metric, "{name} total");
        assert!(stage.history_per_s.len() <= 300);
    }
    for (reason, n) in &status.dead_letters.by_reason {
        let metric = common::metric(
            prom,
            &format!("pipeline_dead_letters_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(*n as f64, metric, "dead letters {reason}");
    }
    assert_eq!(
        status.dead_letters.total as f64,
        common::metric(prom, "pipeline_dead_letters_total{")
    );
    let e2e = &status.latency.e2e.since_start;
    assert_eq!(
        e2e.count as f64,
        common::metric(prom, "pipeline_e2e_latency_seconds_count")
    );
    for (q, got) in [(0.5, e2e.p50_s), (0.95, e2e.p95_s), (0.99, e2e.p99_s)] {
        let want = prom_quantile(prom, "pipeline_e2e_latency_seconds", "", q);
        assert!(close(got, want), "e2e p{q}: {got:?} vs {want:?}");
    }
    for st in &status.latency.stages {
        let labels = format!("stage=\"{}\"", st.stage);
        let want = prom_quantile(prom, "pipeline_stage_latency_seconds", &labels, 0.99);
        assert!(
            close(st.since_start.p99_s, want),
            "{} p99: {:?} vs {want:?}",
            st.stage,
            st.since_start.p99_s
        );
    }
    assert_eq!(
        status.outbox.backlog_rows as f64,
        common::metric(prom, "pipeline_outbox_backlog_rows")
    );
    for p in &status.kafka.partitions {
        let lag = common::metric(
            prom,
            &format!(
                "pipeline_consumer_lag_records{{partition=\"{}\"}}",
                p.partition
            ),
        );
        assert_eq!(
            p.lag_records as f64, lag,
            "lag of partition {}",
            p.partition
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_status_matches_metrics_and_hides_credentials() {
    let r = start("status_api", 10, &[]).await;
    let d = &r.daemon;

    // While records flow: a stage has a live rate and a history.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status_of(d).await;
        let flowing = s
            .stages
            .iter()
            .find(|s| s.name == "cassandra")
            .is_some_and(|s| s.rate_per_s > 0.0 && s.history_per_s.iter().any(|v| *v > 0.0));
        if flowing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no live rate; log:\n{}",
            d.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (status, prom) = settled(d).await;
    assert_status_matches_metrics(&status, &prom);
    assert!(status.ready, "ready at rest: {:?}", status.readiness);
    assert!(
        status.dead_letters.total > 0,
        "the emulator sent malformed users"
    );
    let nonzero: Vec<&String> = status
        .dead_letters
        .by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, _)| r)
        .collect();
    assert!(nonzero.len() >= 2, "several reasons: {nonzero:?}");
    assert_eq!(
        status.dead_letters.recent.len() as u64,
        status.dead_letters.total.min(50)
    );
    for letter in &status.dead_letters.recent {
        assert!(nonzero.contains(&&letter.reason), "{letter:?}");
        assert!(letter.partition.is_some() && letter.offset.is_some());
        assert!(letter.preview.chars().count() <= 241);
    }
    let cassandra = status.stages.iter().find(|s| s.name == "cassandra");
    let dlq = status.stages.iter().find(|s| s.name == "dlq");
    assert_eq!(
        cassandra.map(|s| s.records_total).unwrap_or_default()
            + dlq.map(|s| s.records_total).unwrap_or_default(),
        u64::from(RECORDS)
    );
    assert_eq!(status.kafka.lag_records, 0);
    assert!(!status.kafka.partitions.is_empty());
    for p in &status.kafka.partitions {
        assert_eq!(p.committed, p.high_watermark);
        assert_eq!(p.lag_seconds, Some(0.0));
    }
    let version = |name: &str| {
        status
            .services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.version.clone())
    };
    assert!(version("postgres").is_some(), "{:?}", status.services);
    assert!(version("cassandra").is_some(), "{:?}", status.services);
    assert_eq!(status.config["postgres"]["password"], "***");
    assert_eq!(status.config["kafka"]["topic"], r.scenario.topic.as_str());

    // No credential value of any served user anywhere in the document.
    let json = serde_json::to_string(&status).expect("json");
    let seed = r.scenario.env["PIPELINE_SOURCE__SEED"].clone();
    let secrets = common::credential_values(&common::served_users(&seed, RESULTS, RECORDS));
    assert!(!secrets.is_empty());
    // ("password" itself is a randomuser password and the name of a config key.)
    for secret in secrets
        .iter()
        .filter(|s| !pipeline::model::CREDENTIAL_FIELDS.contains(&s.as_str()))
    {
        assert!(!json.contains(secret.as_str()), "credential {secret} shown");
    }

    // pipeline status: text, JSON, exit codes.
    let url = format!("http://127.0.0.1:{}", d.http_port);
    let (code, out, err) = pipeline_cmd(&["status", "--url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let cassandra_total = cassandra.map(|s| s.records_total).unwrap_or_default();
    let line = out
        .lines()
        .find(|l| l.starts_with("cassandra "))
        .unwrap_or_else(|| panic!("no cassandra line: {out}"));
    assert!(
        line.contains("running") && line.contains(&cassandra_total.to_string()),
        "{line}"
    );
    assert!(out.contains("DEAD LETTERS"), "{out}");
    let (code, out, _) = pipeline_cmd(&["status", "--url", &url, "--json"], &[]);
    assert_eq!(code, 0);
    let parsed: Status = serde_json::from_str(&out).expect("--json prints the document");
    assert_eq!(parsed.dead_letters.total, status.dead_letters.total);
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let (code, _, err) = pipeline_cmd(&["status", "--url", &closed], &[]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("cannot reach"), "{err}");

    // The log: readable in a file (no ANSI escapes), the progress line, no library chatter.
    let log = std::fs::read_to_string(&d.log).expect("log");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file");
    assert!(
        log.contains("pipeline::progress") && log.contains("written"),
        "no progress line:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains(" INFO rskafka")),
        "rskafka INFO lines:\n{log}"
    );
    common::assert_no_panic(&d.log);
}

/// `which name`, or install `package` with apt (as CI does) and try again; None (after
/// printing why) only when it cannot be had.
fn ensure_tool(name: &str, package: &str) -> Option<PathBuf> {
    let which = |n: &str| {
        Command::new("which")
            .arg(n)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if let Some(path) = which(name) {
        return Some(path);
    }
    eprintln!("{name} missing: installing {package} with apt-get");
    let _ = Command::new("apt-get").arg("update").status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let found = which(name);
    if found.is_none() {
        eprintln!("SKIPPED: {name} is not installed and apt-get could not install {package}");
    }
    found
}

/// Whether the stage box at `anchor` has a drawn sparkline (a non-empty line path).
fn dom_has_sparkline(dom: &str, anchor: &str) -> bool {
    dom.find(anchor).is_some_and(|at| {
        dom[at..]
            .split("class=\"line\" d=\"")
            .nth(1)
            .is_some_and(|d| d.starts_with('M'))
    })
}

/// The `data-value` of the first element with `class="<class>` after `anchor` in `dom`.
fn value_after(dom: &str, anchor: &str, class: &str) -> Option<String> {
    let from = dom.find(anchor)?;
    let rest = &dom[from..];
    let at = rest.find(&format!("class=\"{class}"))?;
    let rest = &rest[at..];
    let v = rest.split("data-value=\"").nth(1)?.split('"').next()?;
    Some(v.to_string())
}

fn chromium(bin: &PathBuf, profile: &std::path::Path, args: &[&str], url: &str) -> String {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_chromium_shows_the_live_values() {
    let Some(bin) = ensure_tool("chromium", "chromium") else {
        return;
    };
    // ~100 users/s for ~20 s: first the page while records flow, then at rest.
    let r = start("status_page", 1, &[]).await;
    let d = &r.daemon;
    let url = format!("http://127.0.0.1:{}/", d.http_port);
    let profile = tempfile::tempdir().expect("profile dir");
    d.wait_for("/metrics", Duration::from_secs(120), |_, b| {
        common::metric(b, "pipeline_stage_records_total{stage=\"sink\"}") >= 100.0
    })
    .await;
    let sink_total = |s: &Status| {
        s.stages
            .iter()
            .find(|x| x.name == "cassandra")
            .map(|x| (x.records_total, x.rate_per_s))
            .unwrap_or_default()
    };
    let before = sink_total(&status_of(d).await);
    let live = chromium(&bin, profile.path(), &["--dump-dom"], &url);
    let after = sink_total(&status_of(d).await);
    let anchor = "data-stage=\"cassandra\"";
    let shown_total: u64 = value_after(&live, anchor, "total")
        .and_then(|v| v.parse().ok())
        .expect("cassandra total on the page");
    let shown_rate: f64 = value_after(&live, anchor, "rate")
        .and_then(|v| v.parse().ok())
        .expect("cassandra rate on the page");
    println!("live: before {before:?}, page ({shown_total}, {shown_rate}), after {after:?}");
    assert!(
        (before.0..=after.0).contains(&shown_total),
        "the page's total {shown_total} is not between {before:?} and {after:?}"
    );
    assert!(shown_rate > 0.0, "no live rate on the page");
    assert!(
        dom_has_sparkline(&live, anchor),
        "no sparkline for cassandra"
    );

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/status");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let live_shot = dir.join("page-live.png");
    chromium(
        &bin,
        profile.path(),
        &[
            &format!("--screenshot={}", live_shot.display()),
            "--window-size=1400,1500",
        ],
        &url,
    );
    assert!(std::fs::metadata(&live_shot).is_ok_and(|m| m.len() > 20_000));

    let (status, prom) = settled(d).await;
    assert_status_matches_metrics(&status, &prom);
    let dom = chromium(&bin, profile.path(), &["--dump-dom"], &url);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page never rendered /api/status:\n{dom}"
    );
    // What the page shows equals the status (and so the metrics) of the same quiet moment.
    assert!(status.ready, "{:?}", status.readiness);
    assert!(
        dom.contains("data-value=\"true\">READY</span>"),
        "readiness badge"
    );
    for stage in &status.stages {
        let anchor = format!("data-stage=\"{}\"", stage.name);
        assert_eq!(
            value_after(&dom, &anchor, "state").as_deref(),
            Some(stage.state.as_str()),
            "state of {}",
            stage.name
        );
        assert_eq!(
            value_after(&dom, &anchor, "total"),
            Some(stage.records_total.to_string()),
            "total of {}",
            stage.name
        );
        assert_eq!(
            value_after(&dom, &anchor, "rate"),
            Some(format!("{}", stage.rate_per_s)),
            "rate of {}",
            stage.name
        );
        let page_total = value_after(&dom, &anchor, "total").unwrap_or_default();
        let label = if stage.name == "cassandra" {
            "sink"
        } else {
            stage.name.as_str()
        };
        let metric = common::metric(
            &prom,
            &format!("pipeline_stage_records_total{{stage=\"{label}\"}}"),
        );
        assert_eq!(page_total.parse::<f64>().ok(), Some(metric), "{label}");
    }
    for (reason, n) in &status.dead_letters.by_reason {
        let anchor = format!("<tr data-reason=\"{reason}\"><td class=\"\">{reason}</td>");
        assert_eq!(
            value_after(&dom, &anchor, "num count"),
            Some(n.to_string()),
            "reason {reason}"
        );
    }
    assert!(
        dom.contains(&format!(
            "id=\"dlq-total\" data-value=\"{}\"",
            status.dead_letters.total
        )),
        "DLQ total"
    );
    let recent = dom.matches("<tr data-reason=").count() - status.dead_letters.by_reason.len();
    assert_eq!(
        recent,
        status.dead_letters.recent.len(),
        "last dead letters"
    );
    let e2e = &status.latency.e2e.since_start;
    let fmt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    // JavaScript prints the same shortest round-trip form as Rust for these doubles.
    let want = format!("{},{},{}", fmt(e2e.p50_s), fmt(e2e.p95_s), fmt(e2e.p99_s));
    assert!(
        dom.contains(&format!("id=\"lat-start\" data-value=\"{want}\"")),
        "latency since start {want} not on the page"
    );
    for p in &status.kafka.partitions {
        let anchor = format!("data-partition=\"{}\"", p.partition);
        assert_eq!(
            value_after(&dom, &anchor, "num hw"),
            Some(p.high_watermark.to_string())
        );
        assert_eq!(
            value_after(&dom, &anchor, "num lag"),
            Some(p.lag_records.to_string())
        );
    }
    assert!(dom.contains("data-service=\"postgres\""));
    assert!(
        dom.contains("&quot;***&quot;") || dom.contains("\"***\""),
        "masked config"
    );

    // A screenshot of the page at rest, kept as a test artifact.
    let shot = dir.join("page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &bin,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1500",
        ],
        &url,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
}

fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("run tmux")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_under_tmux_shows_the_stage_rates() {
    if ensure_tool("tmux", "tmux").is_none() {
        return;
    }
    // Slow enough to be still flowing while `top` runs: ~100 records/s for ~20 s.
    let r = start("status_top", 1, &[]).await;
    let d = &r.daemon;
    d.wait_for("/metrics", Duration::from_secs(120), |_, b| {
        common::metric(b, "pipeline_stage_records_total{stage=\"sink\"}") >= 100.0
    })
    .await;
    let socket = common::unique("top");
    let command = format!(
        "{} top --url http://127.0.0.1:{}",
        env!("CARGO_BIN_EXE_pipeline"),
        d.http_port
    );
    let out = tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "60",
            &command,
        ],
    );
    assert!(out.status.success(), "tmux: {out:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let pane = tmux(&socket, &["capture-pane", "-p", "-t", "top"]);
        let text = String::from_utf8_lossy(&pane.stdout).to_string();
        let live = text.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&"cassandra")
                && cols.get(1) == Some(&"running")
                && cols
                    .get(3)
                    .and_then(|r| r.parse::<f64>().ok())
                    .is_some_and(|r| r > 0.0)
        });
        if live {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "top never showed a live cassandra rate:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("{screen}");
    for stage in ["source", "landing", "relay", "kafka", "consumer", "dlq"] {
        assert!(
            screen.lines().any(|l| l.starts_with(stage)),
            "{stage} row missing:\n{screen}"
        );
    }
    assert!(screen.contains("PARTITION") && screen.contains("LATENCY"));
    // The rates on the screen are the daemon's: source total <= what /api/status says now.
    let status = status_of(d).await;
    let shown_total: u64 = screen
        .lines()
        .find(|l| l.starts_with("source"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .expect("source total on screen");
    let source = status.stages.iter().find(|s| s.name == "source");
    assert!(shown_total <= source.map(|s| s.records_total).unwrap_or_default());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/status");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let _ = std::fs::write(dir.join("top.txt"), &screen);

    // q quits.
    let _ = tmux(&socket, &["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&socket, &["has-session", "-t", "top"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "top did not quit on q");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_the_page_and_api_but_not_metrics() {
    common::require_stack();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("http.token");
    let token = "status-token-9c1d2e3f4a5b";
    std::fs::write(&token_file, format!("{token}\n")).expect("write token");
    let mut s = common::Scenario::new("status_token", "http://127.0.0.1:9/api/").await;
    let listen = format!("0.0.0.0:{}", s.http_port);
    let token_path = token_file.to_str().expect("utf8").to_string();
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_HTTP__LISTEN", listen.clone())
        .set("PIPELINE_HTTP__TOKEN_FILE", token_path.clone());
    let d = s.spawn(&["run"], &common::log_path("status_token"));
    d.wait_for("/healthz", Duration::from_secs(30), |st, _| st == 200)
        .await;
    let base = format!("http://127.0.0.1:{}", d.http_port);
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/api/status", None).await.0, 401);
    assert_eq!(
        get("/api/status", Some("wrong-token-wrong-token")).await.0,
        401
    );
    assert_eq!(get("/", None).await.0, 401);
    let (code, body) = get("/api/status", Some(token)).await;
    assert_eq!(code, 200);
    let status: Status = serde_json::from_str(&body).expect("status JSON");
    assert!(!body.contains(token), "the token is never shown");
    assert!(status.tasks.iter().any(|t| t.name == "relay"));
    assert_eq!(get("/", Some(token)).await.0, 200);
    assert_eq!(get(&format!("/?token={token}"), None).await.0, 200);
    let (code, metrics) = get("/metrics", None).await;
    assert_eq!(code, 200);
    assert!(metrics.contains("pipeline_build_info"));
    assert_eq!(get("/healthz", None).await.0, 200);
    assert_ne!(get("/readyz", None).await.0, 401);

    // pipeline status sends the configured token; without it the daemon refuses (77).
    let env = [
        ("PIPELINE_HTTP__LISTEN", listen.as_str()),
        ("PIPELINE_HTTP__TOKEN_FILE", token_path.as_str()),
    ];
    let (code, out, err) = pipeline_cmd(&["status"], &env);
    assert!(code == 0 || code == 1, "exit {code}: {out}{err}");
    assert!(out.contains("relay"), "{out}");
    let (code, _, err) = pipeline_cmd(&["status", "--url", &base], &[]);
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("http.token_file"), "{err}");
}

#[test]
fn check_requires_a_token_for_a_non_loopback_listen() {
    let (code, _, err) = pipeline_cmd(&["check"], &[("PIPELINE_HTTP__LISTEN", "0.0.0.0:9898")]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("`http.token_file`"), "{err}");
    let (code, _, err) = pipeline_cmd(&["check"], &[("PIPELINE_HTTP__LISTEN", "127.0.0.1:9898")]);
    assert_eq!(code, 0, "{err}");
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Postgres goes away under a running daemon: the page shows the relay restarting with the
/// error, and readiness says why; polling the page and the API for "an hour" (3,600 polls,
/// as fast as they answer) does not grow the daemon's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_a_stage_down_and_polling_does_not_grow_memory() {
    let chromium_bin = ensure_tool("chromium", "chromium");
    common::require_stack();
    let mut s = common::Scenario::new("status_down", "http://127.0.0.1:9/api/").await;
    let proxy = common::Proxy::start(common::postgres_addr(&s.db_url)).await;
    let via_proxy = common::postgres_url_via(&s.db_url, proxy.port);
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_POSTGRES__URL", via_proxy.clone())
        .set("PIPELINE_POSTGRES__CONNECT_TIMEOUT", "1s");
    let d = s.spawn(&["run"], &common::log_path("status_down"));
    d.wait_for("/api/status", Duration::from_secs(90), |st, b| {
        st == 200 && serde_json::from_str::<Status>(b).is_ok_and(|s| s.ready)
    })
    .await;

    // Memory: warm up, then an hour's worth of polls of the API and the page.
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", d.http_port);
    let poll = |n: usize| {
        let client = client.clone();
        let base = base.clone();
        async move {
            for i in 0..n {
                let path = if i % 10 == 0 { "/" } else { "/api/status" };
                let resp = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("poll");
                assert_eq!(resp.status().as_u16(), 200);
                let _ = resp.bytes().await.expect("body");
            }
        }
    };
    poll(300).await;
    let before = rss_kb(d.pid());
    poll(3_600).await;
    let after = rss_kb(d.pid());
    println!("RSS before {before} kB, after 3,600 polls {after} kB");
    assert!(before > 0, "cannot read the daemon's RSS");
    assert!(
        after <= before + 4 * 1024,
        "RSS grew from {before} kB to {after} kB over 3,600 polls"
    );

    // Postgres goes away.
    proxy.down();
    let body = d
        .wait_for("/api/status", Duration::from_secs(60), |st, b| {
            st == 200
                && serde_json::from_str::<Status>(b).is_ok_and(|s| {
                    let relay = s.stages.iter().find(|x| x.name == "relay");
                    !s.ready
                        && relay.is_some_and(|r| r.state == "restarting" && r.last_error.is_some())
                        && s.readiness.iter().any(|r| r.starts_with("relay"))
                        && s.outbox.error.is_some()
                })
        })
        .await;
    let status: Status = serde_json::from_str(&body).expect("status");
    println!("readiness while Postgres is down: {:?}", status.readiness);
    if let Some(bin) = &chromium_bin {
        let profile = tempfile::tempdir().expect("profile dir");
        let url = format!("{base}/");
        let dom = chromium(bin, profile.path(), &["--dump-dom"], &url);
        assert!(dom.contains("data-loaded=\"1\""), "page did not render");
        assert!(
            dom.contains("class=\"stage restarting\" data-stage=\"relay\""),
            "the flow does not show the relay restarting"
        );
        assert!(dom.contains("data-value=\"false\">NOT READY</span>"));
        let reason = status
            .readiness
            .iter()
            .find(|r| r.starts_with("relay"))
            .expect("relay reason");
        let shown = reason.split(" after: ").next().unwrap_or(reason);
        assert!(
            dom.contains(&format!("<li>{shown}")),
            "readiness reason {shown:?} not on the page"
        );
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/status");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let shot = dir.join("page-postgres-down.png");
        chromium(
            bin,
            profile.path(),
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1400,1100",
            ],
            &url,
        );
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 20_000));
    }

    // It comes back; the restart is counted and the last error kept, with its time.
    proxy.restore();
    let body = d
        .wait_for("/api/status", Duration::from_secs(90), |st, b| {
            st == 200 && serde_json::from_str::<Status>(b).is_ok_and(|s| s.ready)
        })
        .await;
    let status: Status = serde_json::from_str(&body).expect("status");
    let relay = status
        .tasks
        .iter()
        .find(|t| t.name == "relay")
        .expect("relay task");
    assert_eq!(relay.state, "running");
    assert!(relay.last_error.is_some());
    let metrics = d.get("/metrics").await.expect("metrics").1;
    let restarts = common::metric(&metrics, "pipeline_task_restarts_total{task=\"relay\"}");
    assert!(relay.restarts >= 1 && relay.restarts as f64 <= restarts);
}
