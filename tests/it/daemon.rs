//! The runtime through the real binary: config errors, endpoints, readiness, SIGTERM.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

fn pipeline(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
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

#[test]
fn bad_configs_exit_78_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str)] = &[
        ("[source]\nresults = 5001\n", "source.results"),
        ("[source]\nresults = \"lots\"\n", "source.results"),
        ("[source]\nurl = \"not a url\"\n", "source.url"),
        (
            "[source]\nrequests_per_second = 100.0\n",
            "source.requests_per_second",
        ),
        ("[source]\nmode = \"hourly\"\n", "source.mode"),
        ("[source]\ntimeout = \"forever\"\n", "source.timeout"),
        ("[source]\ntypo_key = 1\n", "source.typo_key"),
        ("[sorce]\nresults = 1\n", "sorce"),
        ("[postgres]\nurl = \"mysql://x/y\"\n", "postgres.url"),
        (
            "[postgres]\nmax_connections = 0\n",
            "postgres.max_connections",
        ),
        (
            "[postgres]\npassword_file = \"/does/not/exist\"\n",
            "postgres.password_file",
        ),
        ("[kafka]\nbootstrap = [\"no-port\"]\n", "kafka.bootstrap"),
        (
            "[kafka]\nreplication_factor = 0\n",
            "kafka.replication_factor",
        ),
        ("[kafka]\ncompression = \"lzma\"\n", "kafka.compression"),
        // No write could ever be acknowledged by min.insync.replicas 2 of one replica.
        (
            "[kafka]\nreplication_factor = 1\nmin_insync_replicas = 2\n",
            "kafka.min_insync_replicas",
        ),
        ("[consumer]\ninstances = 0\n", "consumer.instances"),
        // A static split needs assignment = "static": the group shares partitions itself.
        ("[consumer]\ninstances = 3\n", "consumer.instances"),
        (
            "[consumer]\nheartbeat_interval = \"10s\"\nsession_timeout = \"10s\"\n",
            "consumer.heartbeat_interval",
        ),
        (
            "[consumer]\nfetch_max_wait = \"1h\"\n",
            "consumer.fetch_max_wait",
        ),
        ("[cassandra]\ntable = \"users;drop\"\n", "cassandra.table"),
        (
            "[cassandra]\nwrite_mode = \"yolo\"\n",
            "cassandra.write_mode",
        ),
        ("[dlq]\ntopic = \"\"\n", "dlq.topic"),
        (
            "[lease]\ncheck_interval = \"2s\"\nsession_timeout = \"2s\"\n",
            "lease.session_timeout",
        ),
        ("[http]\nlisten = 9898\n", "http.listen"),
        ("[log]\nformat = \"yaml\"\n", "log.format"),
        (
            "[runtime]\nshutdown_deadline = \"0s\"\n",
            "runtime.shutdown_deadline",
        ),
        (
            "[runtime.backoff]\nmultiplier = 0.5\n",
            "runtime.backoff.multiplier",
        ),
    ];
    assert!(cases.len() >= 15);
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let p = path.to_str().expect("utf8 path");
        for command in ["check", "run"] {
            let (code, _out, err) = pipeline(&["--config", p, command], &[]);
            assert_eq!(
                code, 78,
                "{command} with {toml:?}: exit {code}, stderr: {err}"
            );
            assert!(
                err.contains(&format!("`{key}`")),
                "{command} with {toml:?} must name `{key}`: {err}"
            );
        }
    }
    // The same through the environment.
    let (code, _, err) = pipeline(&["check"], &[("PIPELINE_SOURCE__RESULTS", "0")]);
    assert_eq!(code, 78);
    assert!(err.contains("`source.results`"), "{err}");
    let (code, _, err) = pipeline(&["check"], &[("PIPELINE_KAFKA__MIN_INSYNC_REPLICAS", "2")]);
    assert_eq!(code, 78, "min ISR 2 over replication factor 1: {err}");
    assert!(err.contains("`kafka.min_insync_replicas`"), "{err}");
    let (code, _, err) = pipeline(&["check"], &[("PIPELINE_KAFAK__TOPIC", "x")]);
    assert_eq!(code, 78);
    assert!(err.contains("`kafak.topic`"), "{err}");
    // A missing explicit config file is an error too.
    let (code, _, err) = pipeline(&["--config", "/nonexistent/pipeline.toml", "check"], &[]);
    assert_eq!(code, 78, "{err}");
}

#[test]
fn toml_syntax_error_names_the_file_read_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.toml");
    std::fs::write(&path, "[source\nresults = 1\n").expect("write");
    let p = path.to_str().expect("utf8 path");
    for command in ["check", "run"] {
        let (code, _out, err) = pipeline(&["--config", p, command], &[]);
        assert_eq!(code, 78, "{command}: {err}");
        assert!(err.contains(p), "{command} must name {p}: {err}");
        assert!(!err.contains("pipeline.toml"), "{command}: {err}");
        assert_eq!(err.matches("invalid table header").count(), 1, "{err}");
    }
}

#[test]
fn deprecated_spellings_warn_and_conflicts_exit_78() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml");
    // The old spelling still works; check warns and prints the new one.
    let (code, out, err) = pipeline(
        &["--config", config, "check"],
        &[("PIPELINE_POSTGRES__RELAY_BATCH_ROWS", "700")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[relay]\nbatch_rows = 700\n"), "{out}");
    assert!(!out.contains("relay_batch_rows"), "{out}");
    assert_eq!(err.matches("deprecated").count(), 1, "{err}");
    assert!(
        err.contains("`postgres.relay_batch_rows`") && err.contains("`relay.batch_rows`"),
        "{err}"
    );
    // The repository's file uses no deprecated key.
    let (code, _, err) = pipeline(&["--config", config, "check"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("deprecated"), "{err}");
    // Both spellings, different values: exit 78 naming both.
    let (code, _, err) = pipeline(
        &["--config", config, "check"],
        &[
            ("PIPELINE_POSTGRES__RELAY_BATCH_ROWS", "700"),
            ("PIPELINE_RELAY__BATCH_ROWS", "800"),
        ],
    );
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("`postgres.relay_batch_rows`") && err.contains("`relay.batch_rows`"),
        "{err}"
    );
    // An old spelling's bad value names the key as written.
    let (code, _, err) = pipeline(
        &["--config", config, "check"],
        &[("PIPELINE_POSTGRES__RELAY_IDLE_POLL", "0s")],
    );
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("config key `postgres.relay_idle_poll`"),
        "{err}"
    );
    // Logged once at start-up, after logging is initialised (migrate fails here: no server).
    let (code, _, err) = pipeline(
        &["--config", config, "migrate"],
        &[
            ("PIPELINE_POSTGRES__CHANNEL_CAPACITY", "4"),
            (
                "PIPELINE_POSTGRES__URL",
                "postgres://pipeline@127.0.0.1:1/pipeline",
            ),
            ("PIPELINE_POSTGRES__CONNECT_TIMEOUT", "1s"),
            ("PIPELINE_LOG__FORMAT", "json"),
        ],
    );
    assert_ne!(code, 0, "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("deprecated"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("landing.channel_capacity"), "{err}");
}

#[test]
fn check_prints_config_but_never_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("cassandra_pw");
    std::fs::write(&pw, "file-secret-9f3b\n").expect("write");
    let (code, out, err) = pipeline(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml"),
            "check",
        ],
        &[
            ("PIPELINE_POSTGRES__PASSWORD", "env-secret-71ac"),
            ("PIPELINE_CASSANDRA__USERNAME", "cass"),
            (
                "PIPELINE_CASSANDRA__PASSWORD_FILE",
                pw.to_str().expect("path"),
            ),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("topic = \"users_created\""), "{out}");
    assert!(out.contains("***"), "masked password shown as ***: {out}");
    for secret in ["env-secret-71ac", "file-secret-9f3b"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "secret leaked"
        );
    }
}

#[test]
fn help_and_version() {
    let (code, out, _) = pipeline(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pipeline "), "{out}");
    for sub in ["run", "check", "migrate", "emulator"] {
        let (code, out, _) = pipeline(&[sub, "--help"], &[]);
        assert_eq!(code, 0, "{sub} --help");
        assert!(out.contains("Usage: pipeline"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_flip_and_sigterm() {
    common::require_stack();
    let mut s = common::Scenario::new("daemon_ready", "http://127.0.0.1:9/api/").await;
    let proxy = common::Proxy::start(common::postgres_addr(&s.db_url)).await;
    let via_proxy = common::postgres_url_via(&s.db_url, proxy.port);
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_POSTGRES__URL", via_proxy.clone())
        .set("PIPELINE_POSTGRES__CONNECT_TIMEOUT", "1s")
        .set("PIPELINE_RUNTIME__SHUTDOWN_DEADLINE", "10s");
    let mut daemon = s.spawn(&["run"], &common::log_path("daemon_ready"));

    daemon
        .wait_for("/healthz", Duration::from_secs(30), |st, _| st == 200)
        .await;
    daemon
        .wait_for("/readyz", Duration::from_secs(90), |st, _| st == 200)
        .await;
    let metrics = daemon
        .wait_for("/metrics", Duration::from_secs(5), |st, _| st == 200)
        .await;
    assert!(metrics.contains("pipeline_build_info{"), "{metrics}");
    assert!(
        metrics.contains("pipeline_task_up{task=\"relay\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipeline_task_up{task=\"consumer\"} 1"),
        "{metrics}"
    );

    // Postgres goes away: the relay fails, /readyz says so, restarts are counted.
    proxy.down();
    let body = daemon
        .wait_for("/readyz", Duration::from_secs(30), |st, _| st == 503)
        .await;
    assert!(body.contains("relay"), "{body}");
    let metrics = daemon
        .wait_for("/metrics", Duration::from_secs(30), |_, b| {
            common::metric(b, "pipeline_task_restarts_total{task=\"relay\"}") >= 1.0
        })
        .await;
    assert!(common::metric(&metrics, "pipeline_task_up{task=\"relay\"}") == 0.0);
    // The process itself is alive the whole time.
    assert_eq!(daemon.get("/healthz").await.map(|r| r.0), Some(200));

    // It comes back without a restart of the daemon.
    proxy.restore();
    daemon
        .wait_for("/readyz", Duration::from_secs(60), |st, _| st == 200)
        .await;

    // SIGTERM: clean exit 0, well within the deadline.
    let started = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait(Duration::from_secs(15));
    let took = started.elapsed();
    assert_eq!(code, 0, "log:\n{}", daemon.log_tail(40));
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    println!("SIGTERM to exit: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_http_listen_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let (code, _, err) = pipeline(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml"),
            "run",
        ],
        &[("PIPELINE_HTTP__LISTEN", &listen)],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("http.listen") && err.contains(&listen),
        "{err}"
    );
}
