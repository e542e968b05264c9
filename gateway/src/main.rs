//! `gateway`: thin — parse arguments, call the library, map outcomes to exit codes
//! (0 ok, 1 usage, 2 a file could not be accepted, 3 runtime failure, 4 a route test failed).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Gatehouse API gateway: run (serve traffic), check (validate a config), routes (table-driven route tests), completions (shell completions)"
)]
struct Cli {
    /// How the gateway's own logs and diagnostics are written: `text` for people, `json` (one
    /// object per line) for log shippers. `RUST_LOG` sets the level (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    /// `error: file:line:column: field: message` lines on stderr.
    Text,
    /// One JSON object on stdout: `{file, ok, problems: [{line, column, field, message}]}`.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic until SIGTERM or SIGINT, then drain in-flight requests. SIGHUP or a change
    /// to the file reloads the config; one with problems is refused and the last good one stays.
    Run {
        /// The config file (YAML) to serve; watched for changes.
        #[arg(long, short)]
        config: PathBuf,
        /// Written once every listener is bound, holding the same `listening NAME URL` lines as
        /// stdout (ports resolved, so port 0 works); removed again on a clean shutdown.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Validate a config (schema and meaning) and report every problem with file, line and field.
    Check {
        /// The config file (YAML) to check.
        #[arg(long, short)]
        config: PathBuf,
        /// How problems are reported; the exit code is the same either way (0 ok, 2 problems).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Run table-driven route tests: request in, expected route/upstream/path or stop out.
    Routes {
        /// The config file (YAML) whose routes are tested.
        #[arg(long, short)]
        config: PathBuf,
        /// The cases file: `cases: [{name, request: {method, path, host, headers}, expect}]`.
        #[arg(long, value_name = "CASES")]
        test: PathBuf,
        /// Also write the run as a JUnit XML report here (exit 3 when it cannot be written).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Print a shell completion script to stdout, e.g. `gateway completions bash >
    /// ~/.local/share/bash-completion/completions/gateway`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format);
    let log_format = cli.log_format;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if log_format == LogFormat::Json {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(3)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.with_ansi(colour_on_stderr()).init(),
        // Structured fields stay fields; escape codes would only corrupt the strings.
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Colour only for a person at a terminal who has not asked for none (https://no-color.org: a
/// non-empty `NO_COLOR` turns it off).
fn colour_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Check { config, format } => {
            let loaded = gateway::config::load_file(&config);
            if format == CheckFormat::Json {
                println!("{}", check_json(&config, &loaded));
                return Ok(if loaded.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            Ok(match loaded {
                Ok(runtime) => {
                    println!(
                        "{}: ok — {} routes, {} upstreams, hash {}",
                        config.display(),
                        runtime.routes.routes().len(),
                        runtime.upstreams.len(),
                        runtime.hash
                    );
                    ExitCode::SUCCESS
                }
                Err(diagnostics) => report(&diagnostics, log_format),
            })
        }
        Command::Routes {
            config,
            test,
            junit,
        } => {
            let runtime = match gateway::config::load_file(&config) {
                Ok(r) => r,
                Err(diagnostics) => return Ok(report(&diagnostics, log_format)),
            };
            let cases = match gateway::route_test::load_cases(&test) {
                Ok(cases) => cases,
                Err(diagnostic) => return Ok(report(&[diagnostic], log_format)),
            };
            let clock = gateway::clock::SystemClock::new();
            let outcome = gateway::route_test::run_cases(&runtime, &cases, &clock);
            print!("{}", outcome.render(&test.display().to_string()));
            if let Some(junit) = junit {
                // The suite is named by the cases file's stem: `routes.yaml` → `routes`.
                let suite = test
                    .file_stem()
                    .map_or_else(|| "routes".into(), |s| s.to_string_lossy().into_owned());
                std::fs::write(&junit, outcome.junit(&suite)).map_err(|e| {
                    anyhow::anyhow!("cannot write the JUnit report to {}: {e}", junit.display())
                })?;
            }
            Ok(if outcome.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Run { config, ready_file } => {
            let runtime = match gateway::config::load_file(&config) {
                Ok(r) => r,
                Err(diagnostics) => return Ok(report(&diagnostics, log_format)),
            };
            // `workers:` or one per core this process may run on (affinity and cgroup quotas
            // count): the documented setting instead of tokio's environment variable.
            let workers = runtime.workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            // One worker is tokio's current-thread scheduler on a thread of its own: everything
            // on one thread, with no work-stealing queues or cross-thread wake-ups to pay for.
            // More get the multi-threaded scheduler with that many threads. Either way the
            // threads that serve are named `WORKER_THREAD`.
            if workers == 1 {
                let tokio = tokio::runtime::Builder::new_current_thread()
                    .event_interval(EVENT_INTERVAL)
                    .thread_name(WORKER_THREAD)
                    .enable_all()
                    .build()?;
                std::thread::Builder::new()
                    .name(WORKER_THREAD.into())
                    .spawn(move || tokio.block_on(serve(runtime, config, ready_file)))?
                    .join()
                    .map_err(|_| anyhow::anyhow!("the worker thread panicked"))??;
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name(WORKER_THREAD)
                    .enable_all()
                    .build()?
                    .block_on(serve(runtime, config, ready_file))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gateway",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `gateway check --format json`: what scripts and editors read back.
fn check_json(
    config: &Path,
    loaded: &Result<gateway::config::Runtime, Vec<gateway::config::Diagnostic>>,
) -> serde_json::Value {
    let problems: Vec<serde_json::Value> = match loaded {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics
            .iter()
            .map(|d| {
                serde_json::json!({
                    "file": d.file,
                    "line": d.line,
                    "column": d.column,
                    "field": d.path,
                    "message": d.message,
                })
            })
            .collect(),
    };
    let mut report = serde_json::json!({
        "file": config.display().to_string(),
        "ok": loaded.is_ok(),
        "problems": problems,
    });
    if let Ok(runtime) = loaded {
        report["routes"] = runtime.routes.routes().len().into();
        report["upstreams"] = runtime.upstreams.len().into();
        report["hash"] = runtime.hash.clone().into();
    }
    report
}

fn report(diagnostics: &[gateway::config::Diagnostic], log_format: LogFormat) -> ExitCode {
    if log_format == LogFormat::Json {
        for d in diagnostics {
            tracing::error!(
                file = %d.file,
                line = d.line,
                column = d.column,
                field = %d.path,
                "{}",
                d.message
            );
        }
        tracing::error!(problems = diagnostics.len(), "the file was not accepted");
    } else {
        for d in diagnostics {
            eprintln!("error: {d}");
        }
        eprintln!("{} problem(s) found", diagnostics.len());
    }
    ExitCode::from(2)
}

/// What the threads that serve requests are called (`top -H`, `/proc/<pid>/task/*/comm`).
const WORKER_THREAD: &str = "gatehouse-worker";

/// Task polls between two looks at the socket events, for the current-thread scheduler (tokio's
/// default is 61). With every request's tasks on one thread the run queue is rarely empty, so at
/// 61 a Redis reply waited behind dozens of other requests' polls before its batch could go on:
/// the Redis-backed limit row lost 12% of its requests/s against the multi-threaded scheduler.
/// At 16 it got them back, and the other rows did not move.
const EVENT_INTERVAL: u32 = 16;

async fn serve(
    runtime: gateway::config::Runtime,
    config: PathBuf,
    ready_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Names and schemes by listener index: start consumes the runtime.
    let listeners: Vec<(String, &'static str)> = runtime
        .listeners
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                if l.tls.is_some() { "https" } else { "http" },
            )
        })
        .collect();
    let handle = gateway::start(runtime, gateway::StartOptions::default()).await?;
    // SIGHUP and file changes reload the config; a file with problems keeps the last good one.
    // Armed here, before the listening line and the ready file: an edit or SIGHUP that follows
    // them is never missed.
    let reloads = gateway::reload::ConfigWatch::arm(handle.state().clone(), config);
    tokio::spawn(reloads.run(handle.shutdown_trigger().subscribe()));
    let listening = listening_lines(&listeners, handle.addresses(), handle.admin_address());
    // On stdout whatever the log level: with port 0 this is how a script learns the ports.
    print!("{listening}");
    for address in handle.addresses() {
        tracing::info!(%address, "listening");
    }
    if let Some(admin) = handle.admin_address() {
        tracing::info!(%admin, "admin listening");
    }
    if let Some(path) = &ready_file {
        if let Err(e) = write_ready_file(path, &listening) {
            handle.shutdown().await;
            anyhow::bail!("cannot write the ready file {}: {e}", path.display());
        }
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
    }
    // Gone first: a supervisor watching it must not take a draining gateway for a ready one.
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    handle.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// `listening public http://127.0.0.1:8080`, one line per listener, then the admin endpoint.
fn listening_lines(
    listeners: &[(String, &str)],
    addresses: &[SocketAddr],
    admin: Option<SocketAddr>,
) -> String {
    let mut out = String::new();
    for (i, address) in addresses.iter().enumerate() {
        let (name, scheme) = listeners
            .get(i)
            .map_or((format!("listeners[{i}]"), "http"), |(n, s)| {
                (n.clone(), *s)
            });
        out.push_str(&format!("listening {name} {scheme}://{address}\n"));
    }
    if let Some(admin) = admin {
        out.push_str(&format!("listening admin http://{admin}\n"));
    }
    out
}

/// Written beside the target and renamed into place, so a reader never sees half a file.
fn write_ready_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
