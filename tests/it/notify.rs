//! systemd `Type=notify` protocol of `pipeline run`, end to end with the real binary: the test
//! plays the service manager. It binds the `$NOTIFY_SOCKET` datagram socket, starts the daemon
//! with `WATCHDOG_USEC`, and checks READY=1, then WATCHDOG=1 pings at WATCHDOG_USEC/2, then
//! STOPPING=1 and exit 0 after SIGTERM (what deploy/pipeline.service relies on).
//!
//! Source and consumer are disabled; the relay stage still starts and uses Kafka/Postgres from
//! `KAFKA_BOOTSTRAP` / `DATABASE_URL` when set (`eval "$(scripts/stack env)"`), but READY=1 does
//! not wait for any service, so the test also passes without the stack.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG_USEC: u64 = 200_000;

/// Kills the daemon on every path out of the test (a failed assertion included) and, when the
/// test is failing, prints the daemon's log so the failure explains itself.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- pipeline log (last {} lines) ----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `postgres://user:pw@host/db` -> (`postgres://user@host/db`, Some(pw)): postgres.url must not
/// carry the password (config rule); it goes to PIPELINE_POSTGRES__PASSWORD instead.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return (url.to_owned(), None);
    };
    match userinfo.split_once(':') {
        Some((user, pw)) => (format!("{scheme}://{user}@{host}"), Some(pw.to_owned())),
        None => (url.to_owned(), None),
    }
}

fn start_daemon(socket: &Path, log: &Path, extra: &[(&str, &str)]) -> Daemon {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.args(["run", "--config", config]);
    // Inherited PIPELINE_* variables (make exports PIPELINE_REQUIRE_STACK) would be read as
    // config keys: start from a clean slate of those.
    for (name, _) in std::env::vars() {
        if name.starts_with("PIPELINE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env("PIPELINE_SOURCE__ENABLED", "false")
        .env("PIPELINE_CONSUMER__ENABLED", "false")
        .env(
            "PIPELINE_HTTP__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("PIPELINE_POSTGRES__PASSWORD", "pipeline")
        .env("PIPELINE_LOG__FORMAT", "pretty")
        // The relay's connects don't watch the shutdown token: bound them, so that a stack
        // service restarting under the test (chaos tests share it) cannot hold up the exit.
        .env("PIPELINE_KAFKA__REQUEST_TIMEOUT", "3s")
        .env("PIPELINE_POSTGRES__CONNECT_TIMEOUT", "3s")
        .env_remove("RUST_LOG");
    if let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") {
        let brokers: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| format!("{b:?}"))
            .collect();
        if !brokers.is_empty() {
            cmd.env(
                "PIPELINE_KAFKA__BOOTSTRAP",
                format!("[{}]", brokers.join(", ")),
            );
        }
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let (url, password) = split_password(&url);
        cmd.env("PIPELINE_POSTGRES__URL", url);
        if let Some(pw) = password {
            cmd.env("PIPELINE_POSTGRES__PASSWORD", pw);
        }
    }
    cmd.envs(extra.iter().copied());
    let log_file = std::fs::File::create(log).expect("create the daemon log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone the log file handle"))
        .stderr(log_file)
        .spawn()
        .expect("start the pipeline binary");
    Daemon {
        child,
        log: log.to_owned(),
    }
}

/// Receives notification datagrams until `want` (a line, or a prefix ending in `*`) arrives or `deadline` passes; returns whether
/// it arrived and every message seen (one state per datagram, as the daemon sends them).
fn receive_until(
    socket: &UnixDatagram,
    daemon: &mut Daemon,
    want: &str,
    deadline: Instant,
) -> (bool, Vec<(Instant, String)>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                // `want` ending in '*' matches a prefix.
                let found = msg.lines().any(|l| match want.strip_suffix('*') {
                    Some(prefix) => l.starts_with(prefix),
                    None => l == want,
                });
                seen.push((Instant::now(), msg));
                if found {
                    return (true, seen);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(status) = daemon.exited() {
                    panic!("the daemon exited ({status}) while waiting for {want}; seen: {seen:?}");
                }
            }
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    (false, seen)
}

#[test]
fn run_speaks_the_systemd_notify_protocol() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut daemon = start_daemon(&socket_path, &dir.path().join("pipeline.log"), &[]);

    // 1. READY=1 once the stages are spawned, before any watchdog ping.
    let (ready, seen) = receive_until(
        &socket,
        &mut daemon,
        "READY=1",
        Instant::now() + Duration::from_secs(30),
    );
    assert!(ready, "no READY=1 within 30 s; seen: {seen:?}");
    let mut all: Vec<String> = seen.iter().map(|(_, m)| m.clone()).collect();
    assert!(
        seen.iter().all(|(_, m)| !m.contains("WATCHDOG=1")),
        "WATCHDOG=1 before READY=1: {seen:?}"
    );

    // 2. Watchdog pings every WATCHDOG_USEC/2 (100 ms): at least two within 2 s.
    let window_end = Instant::now() + Duration::from_secs(2);
    let (_, seen) = receive_until(&socket, &mut daemon, "<never>", window_end);
    all.extend(seen.iter().map(|(_, m)| m.clone()));
    let pings = seen.iter().filter(|(_, m)| m == "WATCHDOG=1").count();
    assert!(
        pings >= 2,
        "expected >= 2 WATCHDOG=1 within 2 s, got {pings}: {seen:?}"
    );
    let unexpected: Vec<&String> = seen
        .iter()
        .map(|(_, m)| m)
        .filter(|m| *m != "WATCHDOG=1" && !m.starts_with("STATUS="))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected notifications while running: {unexpected:?}"
    );

    // The one-line summary reaches `systemctl status` as STATUS= (first one at start-up).
    if !all.iter().any(|m| m.starts_with("STATUS=")) {
        let (_, seen) = receive_until(
            &socket,
            &mut daemon,
            "<never>",
            Instant::now() + Duration::from_secs(6),
        );
        all.extend(seen.into_iter().map(|(_, m)| m));
    }
    let status_line = all.iter().find(|m| m.starts_with("STATUS="));
    assert!(
        status_line.is_some_and(|m| m.contains("outbox") && m.contains("kafka lag")),
        "no STATUS= summary: {all:?}"
    );

    // 3. SIGTERM: STOPPING=1, then exit 0 within 15 s.
    let term_sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed: {status}");
    let deadline = term_sent + Duration::from_secs(15);
    let (stopping, seen) = receive_until(&socket, &mut daemon, "STOPPING=1", deadline);
    assert!(
        stopping,
        "no STOPPING=1 within 15 s of SIGTERM; seen: {seen:?}"
    );
    let status = loop {
        if let Some(status) = daemon.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "the daemon exited with {status} after SIGTERM (expected 0)"
    );
}

/// A stage that stops turning (the `_PIPELINE_TEST_HANG` hook: the relay reports ready, then
/// never beats) stops the watchdog pings after `runtime.stall_after`, and `STATUS=` names it;
/// SIGTERM still ends the daemon cleanly.
#[test]
fn watchdog_pings_stop_when_a_stage_stalls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut daemon = start_daemon(
        &socket_path,
        &dir.path().join("pipeline-stall.log"),
        &[
            ("_PIPELINE_TEST_HANG", "relay"),
            ("PIPELINE_RUNTIME__STALL_AFTER", "1s"),
        ],
    );
    let (ready, seen) = receive_until(
        &socket,
        &mut daemon,
        "READY=1",
        Instant::now() + Duration::from_secs(30),
    );
    assert!(ready, "no READY=1; seen: {seen:?}");
    // Pinged while the relay's ready beat is fresh, then "stalled" and no more pings.
    let (stalled, seen) = receive_until(
        &socket,
        &mut daemon,
        "STATUS=stalled: relay (no progress for *",
        Instant::now() + Duration::from_secs(10),
    );
    assert!(
        stalled,
        "no STATUS=stalled for the hung relay; seen: {seen:?}"
    );
    let (_, quiet) = receive_until(
        &socket,
        &mut daemon,
        "<never>",
        Instant::now() + Duration::from_millis(1500),
    );
    let pings = quiet.iter().filter(|(_, m)| m == "WATCHDOG=1").count();
    assert_eq!(pings, 0, "pinged while a stage is stalled: {quiet:?}");
    assert!(
        quiet
            .iter()
            .any(|(_, m)| m.starts_with("STATUS=stalled: relay")),
        "{quiet:?}"
    );
    let log = daemon.log_text();
    assert!(log.contains("withholding the watchdog ping"), "{log}");

    let status = Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = daemon.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status} after SIGTERM");
}

#[test]
fn database_url_password_is_split_off() {
    assert_eq!(
        split_password("postgres://pipeline:pipeline@127.0.0.1:5432/pipeline"),
        (
            "postgres://pipeline@127.0.0.1:5432/pipeline".to_owned(),
            Some("pipeline".to_owned())
        )
    );
    assert_eq!(
        split_password("postgres://pipeline@127.0.0.1/pipeline"),
        ("postgres://pipeline@127.0.0.1/pipeline".to_owned(), None)
    );
}
