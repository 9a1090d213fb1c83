//! The `pipeline` binary: parses the command line, loads config, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline::config::Config;
#[cfg(feature = "emulator")]
use pipeline::emulator::EmulatorArgs;
use pipeline::exit::Exit;
use pipeline::telemetry::status::client;
use pipeline::{app, telemetry};

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
    /// Serve a randomuser.me-compatible API (deterministic, with fault injection).
    #[cfg_attr(
        not(feature = "emulator"),
        command(about = "Not in this binary: it was built without the emulator feature")
    )]
    Emulator(EmulatorArgs),
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
                        Ok(detail) => eprintln!("  {service:<10} ok    {detail}"),
                        Err(e) => {
                            ok = false;
                            eprintln!("  {service:<10} FAIL  {e}");
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
