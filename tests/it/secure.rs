//! The pipeline against the secured stack (`scripts/stack up --secure`): Kafka SASL (PLAIN,
//! SCRAM-SHA-256/512) over TLS and plaintext, Cassandra TLS + password, Postgres TLS
//! (verify-full) + password. Wrong credentials are fatal at once (no retry storm), and no
//! secret appears in the daemon's output.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::emulator::EmulatorConfig;

struct Secure {
    kafka_ssl: String,
    kafka_sasl_plaintext: String,
    kafka_user: String,
    kafka_password_file: String,
    cassandra: String,
    cassandra_user: String,
    cassandra_password_file: String,
    postgres_url: String,
    postgres_password_file: String,
    ca: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/stack up --secure` and `eval \"$(scripts/stack env --secure)\"` (make test does both)")
    })
}

fn secure() -> Secure {
    let s = Secure {
        kafka_ssl: var("SECURE_KAFKA_BOOTSTRAP"),
        kafka_sasl_plaintext: var("SECURE_KAFKA_SASL_PLAINTEXT"),
        kafka_user: var("SECURE_KAFKA_USER"),
        kafka_password_file: var("SECURE_KAFKA_PASSWORD_FILE"),
        cassandra: var("SECURE_CASSANDRA_CONTACT"),
        cassandra_user: var("SECURE_CASSANDRA_USER"),
        cassandra_password_file: var("SECURE_CASSANDRA_PASSWORD_FILE"),
        postgres_url: var("SECURE_POSTGRES_URL"),
        postgres_password_file: var("SECURE_POSTGRES_PASSWORD_FILE"),
        ca: var("SECURE_CA_FILE"),
    };
    common::require("secure Kafka", &s.kafka_ssl);
    common::require("secure Cassandra", &s.cassandra);
    s
}

fn secret(path: &str) -> String {
    std::fs::read_to_string(path)
        .expect("secret file")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Environment for a fully secured run; `mechanism` picks the Kafka SASL mechanism.
fn secure_env(
    s: &Secure,
    api: &str,
    id: &str,
    mechanism: &str,
    tls: bool,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("PIPELINE_SOURCE__URL", api);
    set("PIPELINE_SOURCE__SEED", id);
    set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "100");
    set(
        "PIPELINE_KAFKA__BOOTSTRAP",
        &format!(
            "[\"{}\"]",
            if tls {
                &s.kafka_ssl
            } else {
                &s.kafka_sasl_plaintext
            }
        ),
    );
    set(
        "PIPELINE_KAFKA__SECURITY_PROTOCOL",
        if tls { "sasl_ssl" } else { "sasl_plaintext" },
    );
    set("PIPELINE_KAFKA__SASL_MECHANISM", mechanism);
    set("PIPELINE_KAFKA__SASL_USERNAME", &s.kafka_user);
    set("PIPELINE_KAFKA__SASL_PASSWORD_FILE", &s.kafka_password_file);
    set("PIPELINE_KAFKA__TLS_CA_FILE", &s.ca);
    set("PIPELINE_KAFKA__TOPIC", &format!("{id}_users"));
    set("PIPELINE_CONSUMER__GROUP", id);
    set("PIPELINE_DLQ__TOPIC", &format!("{id}_users.dlq"));
    set(
        "PIPELINE_CASSANDRA__CONTACT_POINTS",
        &format!("[\"{}\"]", s.cassandra),
    );
    set("PIPELINE_CASSANDRA__TLS", "true");
    set("PIPELINE_CASSANDRA__TLS_CA_FILE", &s.ca);
    set("PIPELINE_CASSANDRA__USERNAME", &s.cassandra_user);
    set(
        "PIPELINE_CASSANDRA__PASSWORD_FILE",
        &s.cassandra_password_file,
    );
    set("PIPELINE_CASSANDRA__KEYSPACE", &format!("ks_{id}"));
    set("PIPELINE_CASSANDRA__CONSISTENCY", "one");
    set("PIPELINE_POSTGRES__URL", &s.postgres_url);
    set(
        "PIPELINE_POSTGRES__PASSWORD_FILE",
        &s.postgres_password_file,
    );
    set("PIPELINE_POSTGRES__SSLMODE", "verify-full");
    set("PIPELINE_POSTGRES__SSLROOTCERT", &s.ca);
    set(
        "PIPELINE_HTTP__LISTEN",
        &format!("127.0.0.1:{}", common::free_port()),
    );
    set("PIPELINE_RUNTIME__BACKOFF__INITIAL", "50ms");
    set("PIPELINE_RUNTIME__BACKOFF__MAX", "1s");
    env
}

fn run(
    env: &BTreeMap<String, String>,
    args: &[&str],
    timeout: Duration,
) -> (i32, String, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PIPELINE_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = command
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.toml"))
        .args(args)
        .envs(env)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pipeline");
    // Drain output on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break -9;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let output = format!(
        "{}{}",
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default()
    );
    (code, output, took)
}

fn assert_no_secrets(s: &Secure, output: &str) {
    for file in [
        &s.kafka_password_file,
        &s.cassandra_password_file,
        &s.postgres_password_file,
    ] {
        let value = secret(file);
        assert!(
            value.len() >= 8,
            "secret in {file} is too short to search for"
        );
        assert!(
            !output.contains(&value),
            "a secret from {file} appears in the daemon output"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pipeline_over_sasl_ssl_tls_and_passwords() {
    let s = secure();
    let (api, _stop) = common::start_emulator(EmulatorConfig::default()).await;
    let id = common::unique("sec");
    let mut env = secure_env(&s, &api, &id, "SCRAM-SHA-512", true);
    env.insert("PIPELINE_SOURCE__RESULTS".into(), "500".into());
    env.insert("PIPELINE_SOURCE__MAX_RECORDS".into(), "2000".into());
    let report = std::env::temp_dir().join(format!("{id}.json"));
    let (code, output, _) = tokio::task::spawn_blocking({
        let env = env.clone();
        let report = report.clone();
        move || {
            run(
                &env,
                &[
                    "run",
                    "--drain-and-exit",
                    "--report-json",
                    report.to_str().unwrap_or("r.json"),
                ],
                Duration::from_secs(180),
            )
        }
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "secured run failed:\n{}", tail(&output));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(report["written"], 2000, "{report}");
    // The consumer group (coordinator, offset commits) over the same SASL_SSL connections.
    assert!(
        output.contains("group assignment") && output.contains("left the group"),
        "{}",
        tail(&output)
    );
    assert_no_secrets(&s, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sasl_mechanism_connects() {
    let s = secure();
    for (mechanism, tls) in [
        ("PLAIN", true),
        ("SCRAM-SHA-256", false),
        ("SCRAM-SHA-512", false),
    ] {
        let id = common::unique("secchk");
        let mut env = secure_env(&s, "http://127.0.0.1:9/api/", &id, mechanism, tls);
        env.insert("PIPELINE_SOURCE__ENABLED".into(), "false".into());
        let (code, output, _) = tokio::task::spawn_blocking(move || {
            run(&env, &["check", "--connect"], Duration::from_secs(60))
        })
        .await
        .expect("join");
        assert_eq!(
            code,
            0,
            "{mechanism} (tls={tls}) failed:\n{}",
            tail(&output)
        );
        assert!(
            output.contains("kafka") && output.contains("ok"),
            "{output}"
        );
        assert_no_secrets(&s, &output);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_the_daemon_at_once() {
    let s = secure();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "definitely-not-the-password\n").expect("write");
    let wrong = wrong.to_str().expect("path").to_string();
    for (service, key) in [
        ("postgres", "PIPELINE_POSTGRES__PASSWORD_FILE"),
        ("kafka", "PIPELINE_KAFKA__SASL_PASSWORD_FILE"),
        ("cassandra", "PIPELINE_CASSANDRA__PASSWORD_FILE"),
    ] {
        let id = common::unique("secbad");
        let mut env = secure_env(&s, "http://127.0.0.1:9/api/", &id, "SCRAM-SHA-512", true);
        env.insert("PIPELINE_SOURCE__ENABLED".into(), "false".into());
        env.insert(key.into(), wrong.clone());
        let (code, output, took) =
            tokio::task::spawn_blocking(move || run(&env, &["run"], Duration::from_secs(90)))
                .await
                .expect("join");
        assert_eq!(
            code,
            1,
            "{service}: wrong password must be fatal (exit 1):\n{}",
            tail(&output)
        );
        assert!(
            took < Duration::from_secs(60),
            "{service}: took {took:?} to give up"
        );
        assert!(
            output.contains("fatal") && output.to_lowercase().contains(service),
            "{service}: the error must say fatal and name the service:\n{}",
            tail(&output)
        );
        // No retry storm: the failing stage is not restarted over and over.
        let restarts = output.matches("task failed; restarting").count();
        assert!(
            restarts <= 3,
            "{service}: {restarts} restarts before giving up"
        );
        assert!(
            !output.contains("definitely-not-the-password"),
            "{service}: wrong password printed"
        );
        assert_no_secrets(&s, &output);
    }
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
