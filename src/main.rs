//! The `pipeline` binary: parses the command line, loads config, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline::config::Config;
#[cfg(feature = "emulator")]
use pipeline::emulator::EmulatorArgs;
use pipeline::exit::Exit;
use pipeline::telemetry::status::client;
use pipeline::{app, replay, telemetry};

/// mimalloc instead of glibc malloc: the data path allocates and frees many small JSON nodes,
/// and glibc spent ~45% of the daemon's CPU on it (see docs/performance.md). The `mimalloc`
/// feature (default) can be turned off to profile the heap with heaptrack.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One daemon: randomuser API -> Postgres outbox -> Kafka -> Cassandra.
#[derive(Parser)]
#[command(name = "pipeline", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (env PIPELINE_<SECTION>__<KEY> overrides any key).
    #[arg(
        long,
        global = true,
        default_value = "pipeline.toml",
        env = "PIPELINE_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage under the supervisor until SIGTERM/SIGINT.
    Run {
        /// Exit (0) once a bounded source run is fully through to Cassandra, printing a report.
        #[arg(long)]
        drain_and_exit: bool,
        /// Also write the run report as JSON to this file.
        #[arg(long)]
        report_json: Option<PathBuf>,
        /// Write the final Prometheus metrics text to this file at exit.
        #[arg(long)]
        metrics_out: Option<PathBuf>,
    },
    /// Validate the configuration and print it (secrets masked); exit 78 if invalid.
    Check {
        /// Also connect to Postgres, Kafka, Cassandra and the API.
        #[arg(long)]
        connect: bool,
    },
    /// Apply the Postgres migrations and exit.
    Migrate,
    /// Print the running daemon's status once; exit 0 ready, 1 not ready, 69 unreachable,
    /// 77 token refused.
    Status {
        /// Daemon address (default: from the config's http.listen).
        #[arg(long)]
        url: Option<String>,
        /// Print the /api/status JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A terminal view of the running daemon, refreshed every second (q or Ctrl-C quits).
    Top {
        /// Daemon address (default: from the config's http.listen).
        #[arg(long)]
        url: Option<String>,
    },
    /// Rebuild the table: re-publish landed users (`--from landing`, through the running
    /// daemon's relay) or move the consumers' stored offsets (`--from kafka`).
    Replay(ReplayArgs),
    /// Dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Serve a randomuser.me-compatible API (deterministic, with fault injection).
    #[cfg_attr(
        not(feature = "emulator"),
        command(about = "Not in this binary: it was built without the emulator feature")
    )]
    Emulator(EmulatorArgs),
}

/// Where `pipeline replay` reads from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReplayFrom {
    /// The landing zone (Postgres `users_landed`), through the outbox and the relay.
    Landing,
    /// The topic itself: move the consumers' stored offsets.
    Kafka,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// What to replay from.
    #[arg(long, value_enum)]
    from: ReplayFrom,
    /// landing: users fetched at or after this RFC 3339 time.
    #[arg(long, value_parser = replay::parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// landing: users fetched before this RFC 3339 time.
    #[arg(long, value_parser = replay::parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// landing: users of pages fetched with this seed.
    #[arg(long)]
    seed: Option<String>,
    /// landing: wait while the outbox holds more rows than this (flow control).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    max_outbox_rows: i64,
    /// landing: users queued per statement.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    chunk_rows: i64,
    /// landing: abandon an unfinished replay job that was asked something else.
    #[arg(long)]
    restart: bool,
    /// kafka: move each partition to its first record at or after this RFC 3339 time.
    #[arg(long, value_parser = replay::parse_time, conflicts_with = "to_offset")]
    to_time: Option<chrono::DateTime<chrono::Utc>>,
    /// kafka: move to `earliest`, `latest` or this offset.
    #[arg(long)]
    to_offset: Option<replay::kafka::Target>,
    /// kafka: only these partitions (default: all).
    #[arg(long, value_delimiter = ',')]
    partitions: Vec<i32>,
    /// kafka: move even while daemons are connected (they may overwrite the offsets).
    #[arg(long)]
    force: bool,
    /// Print what would be done and the counts; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Re-validate dead letters with the current rules and write those that pass.
    Redrive {
        /// Only letters with this reason (repeatable).
        #[arg(long = "reason")]
        reasons: Vec<String>,
        /// Only letters dead-lettered at or after this RFC 3339 time.
        #[arg(long, value_parser = replay::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Validate and count; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The flags of `--from landing` / `--from kafka` that the other one does not take.
fn replay_flag_misuse(args: &ReplayArgs) -> Option<&'static str> {
    match args.from {
        ReplayFrom::Landing => {
            if args.to_time.is_some() || args.to_offset.is_some() {
                Some("--to-time/--to-offset are for --from kafka")
            } else if !args.partitions.is_empty() || args.force {
                Some("--partitions/--force are for --from kafka")
            } else {
                None
            }
        }
        ReplayFrom::Kafka => {
            if args.since.is_some() || args.until.is_some() || args.seed.is_some() || args.restart {
                Some("--since/--until/--seed/--restart are for --from landing")
            } else if args.to_time.is_none() && args.to_offset.is_none() {
                Some("--from kafka needs --to-time or --to-offset")
            } else {
                None
            }
        }
    }
}

/// `pipeline replay`.
fn replay_command(cli: &Cli, args: &ReplayArgs) -> Result<ExitCode, ExitCode> {
    if let Some(misuse) = replay_flag_misuse(args) {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, misuse)
            .exit();
    }
    let config = load(cli)?;
    telemetry::logging::init(&config.log);
    let rt = runtime()?;
    let fail = |e: replay::ReplayError| {
        eprintln!("pipeline replay: {e}");
        ExitCode::from(e.exit())
    };
    match args.from {
        ReplayFrom::Landing => {
            let opts = replay::landing::LandingOptions {
                since: args.since,
                until: args.until,
                seed: args.seed.clone(),
                dry_run: args.dry_run,
                max_outbox_rows: args.max_outbox_rows,
                chunk_rows: args.chunk_rows,
                restart: args.restart,
            };
            let summary = rt
                .block_on(replay::landing::replay_landing(&config, &opts))
                .map_err(fail)?;
            println!("{summary}");
        }
        ReplayFrom::Kafka => {
            let target = match (args.to_time, args.to_offset) {
                (Some(t), _) => replay::kafka::Target::Time(t),
                (None, Some(target)) => target,
                (None, None) => return Err(ExitCode::from(Exit::Failure)),
            };
            let opts = replay::kafka::KafkaOptions {
                target,
                partitions: args.partitions.clone(),
                force: args.force,
                dry_run: args.dry_run,
            };
            let moved = rt
                .block_on(async {
                    match config.consumer.assignment {
                        pipeline::config::Assignment::Group => {
                            let offsets = replay::kafka::GroupOffsets::connect(&config).await?;
                            replay::kafka::replay_kafka(&config, &offsets, &opts).await
                        }
                        pipeline::config::Assignment::Static => {
                            let offsets = replay::kafka::CassandraOffsets::connect(&config).await?;
                            replay::kafka::replay_kafka(&config, &offsets, &opts).await
                        }
                    }
                })
                .map_err(fail)?;
            println!(
                "{} {} partition(s) of {}",
                if args.dry_run {
                    "dry run: would move"
                } else {
                    "moved"
                },
                moved.len(),
                config.kafka.topic
            );
        }
    }
    Ok(ExitCode::from(Exit::Success))
}

/// `pipeline dlq redrive`.
fn dlq_command(cli: &Cli, command: &DlqCommand) -> Result<ExitCode, ExitCode> {
    let DlqCommand::Redrive {
        reasons,
        since,
        dry_run,
    } = command;
    let config = load(cli)?;
    telemetry::logging::init(&config.log);
    let rt = runtime()?;
    let opts = replay::redrive::RedriveOptions {
        reasons: reasons.clone(),
        since: *since,
        dry_run: *dry_run,
    };
    let summary = rt
        .block_on(replay::redrive::redrive(&config, &opts))
        .map_err(|e| {
            eprintln!("pipeline dlq redrive: {e}");
            ExitCode::from(e.exit())
        })?;
    println!("{summary}");
    Ok(ExitCode::from(Exit::Success))
}

// Without the `emulator` feature the command stays, so that it fails with a reason instead of
// clap's "unrecognized subcommand"; it accepts and ignores any flags.
#[cfg(not(feature = "emulator"))]
#[derive(clap::Args)]
struct EmulatorArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _ignored: Vec<String>,
}

fn load(cli: &Cli) -> Result<Config, ExitCode> {
    let allow_missing = cli.config == std::path::Path::new("pipeline.toml");
    Config::load(&cli.config, allow_missing).map_err(|e| {
        eprintln!("pipeline: configuration error: {e}");
        ExitCode::from(Exit::Config)
    })
}

/// Keys written in a deprecated spelling: logged once, after logging is initialised (config
/// is loaded before it).
fn log_deprecations(config: &Config) {
    for deprecation in &config.deprecations {
        tracing::warn!(
            old = deprecation.old,
            new = deprecation.new,
            "{deprecation}"
        );
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pipeline: cannot start the async runtime: {e}");
            ExitCode::from(Exit::Failure)
        })
}

/// `pipeline emulator`: serves until SIGINT/SIGTERM.
#[cfg(feature = "emulator")]
fn emulator(args: &EmulatorArgs) -> Result<ExitCode, ExitCode> {
    telemetry::logging::init(&pipeline::config::LogConfig::default());
    let rt = runtime()?;
    let token = tokio_util::sync::CancellationToken::new();
    rt.block_on(async {
        pipeline::shutdown::cancel_on_signal(token.clone())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        pipeline::emulator::run(args.clone(), token)
            .await
            .map_err(|e| e.to_string())
    })
    .map_err(|e| {
        eprintln!("pipeline emulator: {e}");
        ExitCode::from(Exit::Failure)
    })?;
    Ok(ExitCode::from(Exit::Success))
}

#[cfg(not(feature = "emulator"))]
fn emulator(_: &EmulatorArgs) -> Result<ExitCode, ExitCode> {
    eprintln!(
        "pipeline emulator: this binary was built without the emulator feature \
         (rebuild with the default features, or `--features emulator`)"
    );
    Err(ExitCode::from(Exit::Failure))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) | Err(code) => code,
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, ExitCode> {
    match &cli.command {
        Command::Emulator(args) => emulator(args),
        Command::Replay(args) => replay_command(&cli, args),
        Command::Dlq { command } => dlq_command(&cli, command),
        Command::Status { url, json } => {
            let config = load(&cli)?;
            let base = url
                .clone()
                .unwrap_or_else(|| client::base_url(config.http.listen));
            let token = config.http.token.as_ref().map(|t| t.expose().to_string());
            let rt = runtime()?;
            let code = rt.block_on(client::status_once(&base, token.as_deref(), *json));
            Ok(ExitCode::from(code))
        }
        Command::Top { url } => {
            let config = load(&cli)?;
            let base = url
                .clone()
                .unwrap_or_else(|| client::base_url(config.http.listen));
            let token = config.http.token.as_ref().map(|t| t.expose().to_string());
            let rt = runtime()?;
            rt.block_on(client::top(&base, token.as_deref()))
                .map_err(|e| {
                    eprintln!("pipeline top: {e}");
                    ExitCode::from(Exit::Failure)
                })?;
            Ok(ExitCode::from(Exit::Success))
        }
        Command::Check { connect } => {
            let config = load(&cli)?;
            print!("{}", config.to_redacted_toml());
            for deprecation in &config.deprecations {
                eprintln!("pipeline: warning: {deprecation}");
            }
            eprintln!("pipeline: configuration OK ({})", cli.config.display());
            if *connect {
                let rt = runtime()?;
                let results = rt.block_on(app::check_connect(&config));
                let mut ok = true;
                for (service, result) in results {
                    match result {
                        Ok(detail) => print_service(&service, "ok  ", &detail),
                        Err(e) => {
                            ok = false;
                            print_service(&service, "FAIL", &e);
                        }
                    }
                }
                if !ok {
                    return Err(Exit::Unavailable.into());
                }
            }
            Ok(ExitCode::from(Exit::Success))
        }
        Command::Migrate => {
            let config = load(&cli)?;
            telemetry::logging::init(&config.log);
            log_deprecations(&config);
            let rt = runtime()?;
            rt.block_on(app::migrate(&config)).map_err(|e| {
                eprintln!("pipeline migrate: {e}");
                ExitCode::from(Exit::Failure)
            })?;
            eprintln!("pipeline: migrations applied");
            Ok(ExitCode::from(Exit::Success))
        }
        Command::Run {
            drain_and_exit,
            report_json,
            metrics_out,
        } => {
            let config = load(&cli)?;
            telemetry::logging::init(&config.log);
            log_deprecations(&config);
            // Before the runtime starts its threads: mimalloc's option setter is not thread safe.
            let memory = pipeline::memory::apply(&config.runtime);
            tracing::info!(thp_disabled = memory.thp_disabled, purge_delay = ?memory.purge_delay, "memory settings");
            let rt = runtime()?;
            let options = app::RunOptions {
                drain_and_exit: *drain_and_exit,
            };
            let (outcome, report) = rt.block_on(app::run(config, options)).map_err(|e| {
                eprintln!("pipeline: {e}");
                ExitCode::from(Exit::Failure)
            })?;
            // Stages may still hold connections; don't wait for them after the deadline.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            println!("{report}");
            if let Some(path) = report_json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => {
                        if let Err(e) = std::fs::write(path, json) {
                            eprintln!("pipeline: cannot write {}: {e}", path.display());
                        }
                    }
                    Err(e) => eprintln!("pipeline: cannot encode report: {e}"),
                }
            }
            if let Some(path) = metrics_out
                && let Err(e) = std::fs::write(path, &report.metrics_text)
            {
                eprintln!("pipeline: cannot write {}: {e}", path.display());
            }
            match outcome {
                app::Outcome::Stopped => Ok(ExitCode::from(Exit::Success)),
                app::Outcome::Fatal(message) => {
                    eprintln!("pipeline: stopped by a fatal error: {message}");
                    Err(ExitCode::from(Exit::Failure))
                }
                app::Outcome::DeadlineExceeded => {
                    eprintln!("pipeline: shutdown deadline exceeded");
                    Err(ExitCode::from(Exit::Failure))
                }
            }
        }
    }
}

/// One `check --connect` answer: the first line beside the service, the rest indented below.
fn print_service(service: &str, verdict: &str, detail: &str) {
    let mut lines = detail.lines();
    eprintln!("  {service:<10} {verdict}  {}", lines.next().unwrap_or(""));
    for line in lines {
        eprintln!("  {:<10}       {line}", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay_args(args: &[&str]) -> ReplayArgs {
        let mut argv = vec!["pipeline", "replay"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Replay(args) => args,
            _ => panic!("not replay"),
        }
    }

    #[test]
    fn replay_flags_belong_to_their_source() {
        assert_eq!(
            replay_flag_misuse(&replay_args(&["--from", "landing"])),
            None
        );
        let kafka = replay_args(&[
            "--from",
            "kafka",
            "--to-offset",
            "earliest",
            "--partitions",
            "0,2",
        ]);
        assert_eq!(replay_flag_misuse(&kafka), None);
        assert_eq!(kafka.partitions, vec![0, 2]);
        assert!(replay_flag_misuse(&replay_args(&["--from", "kafka"])).is_some());
        assert!(
            replay_flag_misuse(&replay_args(&[
                "--from",
                "kafka",
                "--to-offset",
                "1",
                "--seed",
                "s"
            ]))
            .is_some()
        );
        assert!(
            replay_flag_misuse(&replay_args(&[
                "--from",
                "landing",
                "--to-offset",
                "latest"
            ]))
            .is_some()
        );
        assert!(
            Cli::try_parse_from([
                "pipeline",
                "replay",
                "--from",
                "kafka",
                "--to-offset",
                "1",
                "--to-time",
                "2026-12-06T18:00:00Z"
            ])
            .is_err(),
            "one target"
        );
        assert!(
            Cli::try_parse_from([
                "pipeline",
                "replay",
                "--from",
                "landing",
                "--max-outbox-rows",
                "0"
            ])
            .is_err()
        );
    }
}
