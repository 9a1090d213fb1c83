//! The client side of `/api/status`: `pipeline status` (one shot) and `pipeline top` (a
//! terminal view refreshed every second), both reading the same JSON as the page.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Status, summary_line};

use crate::exit::Exit;

/// Exit code when the daemon cannot be reached (`EX_UNAVAILABLE`).
pub const EXIT_UNREACHABLE: u8 = Exit::Unavailable.code();
/// Exit code when the daemon refused the token (`EX_NOPERM`).
pub const EXIT_UNAUTHORIZED: u8 = Exit::Unauthorized.code();

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("cannot reach the daemon at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "the daemon at {url} refused the request (401): set http.token_file to the daemon's token file"
    )]
    Unauthorized { url: String },
    #[error("unexpected answer from {url}: {message}")]
    Bad { url: String, message: String },
}

impl FetchError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unauthorized { .. } => EXIT_UNAUTHORIZED,
            _ => EXIT_UNREACHABLE,
        }
    }
}

/// The daemon's base URL for a `http.listen` address: an unspecified address (0.0.0.0, ::)
/// is reached through loopback.
pub fn base_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{ip}:{}", listen.port())
}

/// Reads `<base>/api/status`, with the bearer `token` when given.
///
/// # Errors
/// [`FetchError`]: unreachable (connect, timeout), unauthorized (401), or a bad answer.
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<Status, FetchError> {
    let url = format!("{}/api/status", base.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| FetchError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    })?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(FetchError::Unauthorized { url });
    }
    if !response.status().is_success() {
        return Err(FetchError::Bad {
            message: format!("HTTP {}", response.status()),
            url,
        });
    }
    response
        .json::<Status>()
        .await
        .map_err(|e| FetchError::Bad {
            url: url.clone(),
            message: e.to_string(),
        })
}

/// A client with short timeouts: a status tool must answer even when the daemon does not.
///
/// # Errors
/// When the TLS backend cannot initialise.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a bar sparkline, scaled to their maximum.
pub fn sparkline(values: &[f32], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(0.0_f32, f32::max);
    let mut out: String = std::iter::repeat_n(' ', width - tail.len()).collect();
    for v in tail {
        let i = if max > 0.0 {
            ((v / max) * 7.0).round().clamp(0.0, 7.0) as usize
        } else {
            0
        };
        out.push(BLOCKS[i]);
    }
    out
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}ms", v * 1000.0))
}

/// The status as text (`pipeline status`, and the body of `pipeline top` with `width` for
/// the sparklines).
pub fn render_text(status: &Status, spark_width: usize, recent_letters: usize) -> String {
    let mut o = String::new();
    let ready = if status.ready { "READY" } else { "NOT READY" };
    o.push_str(&format!(
        "pipeline {}  up {}  {ready}\n",
        status.version,
        duration(status.uptime_s)
    ));
    for reason in &status.readiness {
        o.push_str(&format!("  not ready: {reason}\n"));
    }
    o.push_str(&format!(
        "\n{:<10} {:<11} {:>12} {:>10}  last {} s\n",
        "STAGE",
        "STATE",
        "TOTAL",
        "RATE/S",
        spark_width.min(super::HISTORY)
    ));
    for s in &status.stages {
        o.push_str(&format!(
            "{:<10} {:<11} {:>12} {:>10.1}  {}\n",
            s.name,
            s.state,
            s.records_total,
            s.rate_per_s,
            sparkline(&s.history_per_s, spark_width)
        ));
        if s.name == "relay" {
            o.push_str(&format!(
                "{:<10} {:<11} {:>12} {:>10}  lag {} records\n",
                "kafka", "topic", status.kafka.topic, "", status.kafka.lag_records
            ));
            if let Some(g) = &status.kafka.group {
                o.push_str(&format!(
                    "{:<10} {:<11} {:>12} {:>10}  member {} generation {}{} partitions {:?}\n",
                    "",
                    "group",
                    g.group,
                    "",
                    if g.member_id.is_empty() {
                        "-"
                    } else {
                        &g.member_id
                    },
                    g.generation,
                    if g.leader { " (leader)" } else { "" },
                    g.partitions
                ));
            }
        }
        if let Some(e) = &s.last_error
            && s.state != "running"
        {
            o.push_str(&format!("           last error: {}\n", e.message));
        }
    }
    let oldest = status
        .outbox
        .oldest_age_s
        .map_or("-".into(), |a| format!("{a:.1}s"));
    o.push_str(&format!(
        "\nOUTBOX     {} rows, oldest {oldest}\n",
        status.outbox.backlog_rows
    ));
    o.push_str(&format!(
        "\n{:<10} {:>12} {:>14} {:>10} {:>9} {:>10}\n",
        "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG", "LAG_S", "RATE/S"
    ));
    for p in &status.kafka.partitions {
        let lag_s = p
            .lag_seconds
            .map_or("stalled".into(), |s| format!("{s:.1}"));
        o.push_str(&format!(
            "{:<10} {:>12} {:>14} {:>10} {:>9} {:>10.1}\n",
            p.partition, p.committed, p.high_watermark, p.lag_records, lag_s, p.rate_per_s
        ));
    }
    let e = &status.latency.e2e;
    o.push_str(&format!(
        "\nLATENCY    e2e last 60 s: p50 {} p95 {} p99 {}   since start: p50 {} p95 {} p99 {} ({} records)\n",
        ms(e.last_60s.p50_s),
        ms(e.last_60s.p95_s),
        ms(e.last_60s.p99_s),
        ms(e.since_start.p50_s),
        ms(e.since_start.p95_s),
        ms(e.since_start.p99_s),
        e.since_start.count
    ));
    for st in &status.latency.stages {
        o.push_str(&format!(
            "  {:<18} p50 {:>9} p95 {:>9} p99 {:>9}\n",
            st.stage,
            ms(st.since_start.p50_s),
            ms(st.since_start.p95_s),
            ms(st.since_start.p99_s)
        ));
    }
    let reasons: Vec<String> = status
        .dead_letters
        .by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    o.push_str(&format!(
        "\nDEAD LETTERS {}{}{}\n",
        status.dead_letters.total,
        if reasons.is_empty() { "" } else { ": " },
        reasons.join(", ")
    ));
    for d in status.dead_letters.recent.iter().take(recent_letters) {
        o.push_str(&format!(
            "  {:<14} {:<38} {}\n",
            d.reason,
            d.key.as_deref().unwrap_or("-"),
            d.detail
        ));
    }
    let tasks: Vec<String> = status
        .tasks
        .iter()
        .map(|t| format!("{} {} ({} restarts)", t.name, t.state, t.restarts))
        .collect();
    o.push_str(&format!("\nTASKS      {}\n", tasks.join(", ")));
    if !status.leases.is_empty() {
        o.push_str(&format!("LEASES     {}\n", lease_line(status)));
    }
    let services: Vec<String> = status
        .services
        .iter()
        .map(|s| format!("{} {}", s.name, s.version.as_deref().unwrap_or("?")))
        .collect();
    o.push_str(&format!("SERVICES   {}\n", services.join(", ")));
    o
}

/// `relay held 12s (1 takeover), source standby 12s`: each lease, whether this daemon holds
/// it and since how long.
fn lease_line(status: &Status) -> String {
    status
        .leases
        .iter()
        .map(|l| {
            let for_s = (status.generated_at_ms - l.since_ms).max(0) / 1000;
            let state = if l.held { "held" } else { "standby" };
            let mut line = format!("{} {state} {for_s}s", l.name);
            let mut counts = Vec::new();
            if l.takeovers > 0 {
                counts.push(format!("{} takeovers", l.takeovers));
            }
            if l.lost > 0 {
                counts.push(format!("{} lost", l.lost));
            }
            if !counts.is_empty() {
                line.push_str(&format!(" ({})", counts.join(", ")));
            }
            line
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pipeline status`: prints the status (text or JSON) and returns the exit code: 0 ready,
/// 1 not ready, 69 unreachable, 77 unauthorized.
pub async fn status_once(base: &str, token: Option<&str>, json: bool) -> u8 {
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pipeline status: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    match fetch(&client, base, token).await {
        Ok(status) => {
            let text = if json {
                serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
            } else {
                render_text(&status, 30, 10)
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            if !json {
                eprintln!("pipeline status: {}", summary_line(&status));
            }
            u8::from(!status.ready)
        }
        Err(e) => {
            eprintln!("pipeline status: {e}");
            e.exit_code()
        }
    }
}

/// `pipeline top`: the status redrawn every second until q, Esc or Ctrl-C.
///
/// # Errors
/// Terminal I/O errors.
pub async fn top(base: &str, token: Option<&str>) -> Result<(), String> {
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    use crossterm::{cursor, execute, terminal};

    let client = http_client()?;
    let raw = terminal::enable_raw_mode().is_ok();
    let mut out = std::io::stdout();
    let _ = execute!(out, terminal::EnterAlternateScreen, cursor::Hide);
    let restore = |out: &mut std::io::Stdout| {
        let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
        if raw {
            let _ = terminal::disable_raw_mode();
        }
    };
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Keys are read on a thread of their own: crossterm's reader blocks.
    std::thread::spawn(move || {
        loop {
            match crossterm::event::poll(Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) => {
                    if quit_tx.is_closed() {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            if let Ok(Event::Key(KeyEvent {
                code, modifiers, ..
            })) = crossterm::event::read()
            {
                let quit = matches!(code, KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc)
                    || (code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL));
                if quit {
                    let _ = quit_tx.send(());
                    return;
                }
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = quit_rx.recv() => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
        let (cols, rows) = terminal::size().unwrap_or((100, 40));
        let spark = usize::from(cols).saturating_sub(50).clamp(10, 120);
        let body = match fetch(&client, base, token).await {
            Ok(status) => render_text(&status, spark, 5),
            Err(e) => format!("{e}\n(retrying every second)\n"),
        };
        let now = chrono::Utc::now().format("%H:%M:%S");
        let mut frame = format!("pipeline top  {base}  {now}  (q to quit)\n\n{body}");
        // Fit the screen: no wrapping, no scrolling.
        let lines: Vec<String> = frame
            .lines()
            .take(usize::from(rows.max(2)) - 1)
            .map(|l| l.chars().take(usize::from(cols.max(20))).collect())
            .collect();
        frame = lines.join("\r\n");
        let drawn = execute!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )
        .and_then(|()| out.write_all(frame.as_bytes()))
        .and_then(|()| out.flush());
        if let Err(e) = drawn {
            break Err(format!("cannot draw: {e}"));
        }
    };
    restore(&mut out);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_reaches_unspecified_through_loopback() {
        assert_eq!(
            base_url("0.0.0.0:9898".parse().expect("addr")),
            "http://127.0.0.1:9898"
        );
        assert_eq!(base_url("[::]:1".parse().expect("addr")), "http://[::1]:1");
        assert_eq!(
            base_url("10.1.2.3:80".parse().expect("addr")),
            "http://10.1.2.3:80"
        );
    }

    #[test]
    fn sparkline_is_scaled_and_padded() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0], 5), "  ▁▅█");
        assert_eq!(sparkline(&[], 3), "   ");
        assert_eq!(sparkline(&[5.0; 400], 10).chars().count(), 10);
    }
}
