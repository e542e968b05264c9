//! `gateway`: thin — parse arguments, call the library, map outcomes to exit codes
//! (0 ok, 1 usage, 2 a file could not be accepted, 3 runtime failure, 4 a route test failed).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gateway", version, about = "Gatehouse API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic until SIGTERM or SIGINT, then drain in-flight requests. SIGHUP or a change
    /// to the file reloads the config; one with problems is refused and the last good one stays.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config (schema and meaning) and report every problem with file, line and field.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run table-driven route tests: request in, expected route/upstream/path or stop out.
    Routes {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        test: PathBuf,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => Ok(match gateway::config::load_file(&config) {
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
            Err(diagnostics) => report(&diagnostics),
        }),
        Command::Routes { config, test } => {
            let runtime = match gateway::config::load_file(&config) {
                Ok(r) => r,
                Err(diagnostics) => return Ok(report(&diagnostics)),
            };
            let cases = match gateway::route_test::load_cases(&test) {
                Ok(cases) => cases,
                Err(diagnostic) => return Ok(report(&[diagnostic])),
            };
            let outcome = gateway::route_test::run_cases(&runtime, &cases);
            print!("{}", outcome.render(&test.display().to_string()));
            Ok(if outcome.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Run { config } => {
            let runtime = match gateway::config::load_file(&config) {
                Ok(r) => r,
                Err(diagnostics) => return Ok(report(&diagnostics)),
            };
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            tokio.block_on(serve(runtime, config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report(diagnostics: &[gateway::config::Diagnostic]) -> ExitCode {
    for d in diagnostics {
        eprintln!("error: {d}");
    }
    eprintln!("{} problem(s) found", diagnostics.len());
    ExitCode::from(2)
}

async fn serve(runtime: gateway::config::Runtime, config: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handle = gateway::start(runtime, gateway::StartOptions::default()).await?;
    // SIGHUP and file changes reload the config; a file with problems keeps the last good one.
    tokio::spawn(gateway::reload::watch(
        handle.state().clone(),
        config,
        handle.shutdown_trigger().subscribe(),
    ));
    for address in handle.addresses() {
        tracing::info!(%address, "listening");
    }
    if let Some(admin) = handle.admin_address() {
        tracing::info!(%admin, "admin listening");
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
    }
    handle.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
