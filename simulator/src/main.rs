//! `simulator`: thin — parse arguments, call the library, map outcomes to exit codes
//! (Hurl's convention: 0 passed, 1 usage, 2 a file could not be parsed, 3 runtime failure,
//! 4 an expectation failed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use simulator::report::{self, RunInfo, Style};
use simulator::scenario::interrupt::Interrupt;
use simulator::scenario::outcome::Status;
use simulator::scenario::run::RunOptions;
use simulator::scenario::suite::{FileOutcome, collect_files, run_suite};
use simulator::scenario::under_test::GatewayMode;
use simulator::tui::term::RunTui;

#[derive(Parser)]
#[command(
    name = "simulator",
    version,
    about = "Gatehouse's testbed: demo, run (scenarios), replay, import, generate, report, compare (the rate-limit lab), tui, loadgen, upstream, issuer, token, completions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (or the scenarios among the *.yaml files of the given directories) against
    /// the real gateway, printing each result as it completes (docs/scenarios.md).
    Run {
        /// Scenario files, or directories whose *.yaml scenarios are run (others are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Scenarios run in parallel.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Write JUnit XML here (one testcase per step).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run the `gateway` binary as a child process instead of in-process.
        #[arg(long)]
        process: bool,
        /// Watch the run in the TUI (docs/tui.md); the report prints when you quit it.
        #[arg(long)]
        tui: bool,
    },
    /// Rate-limit algorithms side by side on the same traffic, in virtual time (docs/compare.md).
    Compare(simulator::compare::cli::CompareArgs),
    /// The TUI on a running gateway's record stream (docs/tui.md).
    Tui {
        /// The gateway's admin address, e.g. http://127.0.0.1:9901.
        #[arg(long)]
        attach: String,
    },
    /// Maximum-rate load against a URL (closed loop, `connections` at a time), reporting statuses,
    /// errors by kind and latency quantiles; exits 1 when nothing succeeded (docs/by-hand.md).
    Loadgen(simulator::cli::loadgen::LoadgenArgs),
    /// The fake issuer as its own process: a JWKS endpoint over keys kept in a directory
    /// (docs/by-hand.md).
    Issuer(simulator::cli::issuer::IssuerArgs),
    /// Print a token signed with a key directory's current key (docs/by-hand.md).
    Token(simulator::cli::token::TokenArgs),
    /// A fake upstream answering 200 at once, until interrupted: a fixed target for load tools.
    Upstream {
        /// Where to listen; port 0 picks a free one (the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:18181")]
        listen: std::net::SocketAddr,
        /// Send this in an `x-upstream-marker` header on every response, so a script can check
        /// that what answers is the upstream it started.
        #[arg(long)]
        marker: Option<String>,
    },
    /// Convert a HAR or GoReplay file to a Gatehouse recording (docs/replay.md).
    Import(simulator::cli::import::ImportArgs),
    /// Replay a recording through the real gateway; with `--against`, compare two configs request
    /// by request (docs/replay.md).
    Replay(Box<simulator::cli::replay::ReplayArgs>),
    /// Generate a realistic recording: a day-shaped mix of clients (docs/replay.md).
    Generate(simulator::cli::generate::GenerateArgs),
    /// Work with replay reports: `merge` the reports of `--shard` runs (docs/replay.md).
    Report(simulator::cli::report::ReportArgs),
    /// Print a shell completion script: `simulator completions zsh > ~/.zfunc/_simulator`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The whole testbed in-process on embedded defaults, with a client mix that exercises
    /// every stop. On a terminal it opens the TUI until you quit; otherwise it prints a line per
    /// second and a final table.
    Demo {
        /// How long the clients send (default: 20 s, or until you quit the TUI).
        #[arg(long, value_parser = humantime_duration)]
        duration: Option<Duration>,
    },
}

/// The rate-limit policies of the first scenario whose gateway config loads: where `run --tui`'s
/// lab starts (a suite's scenarios usually share one config).
fn first_policies(files: &[PathBuf]) -> Vec<simulator::tui::app::LabPolicy> {
    files
        .iter()
        .find_map(|file| {
            let scenario = simulator::scenario::model::load(file).ok()?;
            let config = file.parent()?.join(&scenario.gateway.config);
            let runtime = gateway::config::load_file(&config).ok()?;
            Some(simulator::tui::app::policies_of(&runtime.rate_limits))
        })
        .unwrap_or_default()
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    // A bare number is the likeliest slip: say what to write instead of humantime's parse error.
    if s.trim().parse::<f64>().is_ok() {
        return Err(format!(
            "`{s}` has no unit: write a duration such as {}s",
            s.trim()
        ));
    }
    let de = serde_json::Value::String(s.to_string());
    humantime_serde::deserialize(de).map_err(|e: serde_json::Error| e.to_string())
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulator: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run {
                paths,
                jobs,
                junit,
                json,
                process,
                tui,
            } => run(paths, jobs, junit, json, process, tui).await,
            Command::Compare(args) => simulator::compare::cli::run(args).await,
            Command::Tui { attach } => match simulator::tui::term::run_attached(&attach).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simulator tui: {e:#}");
                    ExitCode::from(3)
                }
            },
            Command::Loadgen(args) => simulator::cli::loadgen::run(args).await,
            Command::Issuer(args) => simulator::cli::issuer::run(args).await,
            Command::Token(args) => simulator::cli::token::run(args),
            Command::Upstream { listen, marker } => {
                let behaviour = simulator::fake::upstream::Behaviour {
                    marker,
                    ..Default::default()
                };
                match simulator::fake::upstream::FakeInstance::start_on(listen, behaviour).await {
                    Ok(fake) => {
                        println!("fake upstream on http://{}", fake.address);
                        let _ = tokio::signal::ctrl_c().await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("simulator upstream: cannot listen on {listen}: {e}");
                        ExitCode::from(3)
                    }
                }
            }
            Command::Import(args) => simulator::cli::import::run(args).await,
            Command::Replay(args) => simulator::cli::replay::run(*args).await,
            Command::Generate(args) => simulator::cli::generate::run(args),
            Command::Report(args) => simulator::cli::report::run(args).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "simulator",
                    &mut std::io::stdout(),
                );
                ExitCode::SUCCESS
            }
            Command::Demo { duration } => {
                let tui = std::io::IsTerminal::is_terminal(&std::io::stdout());
                let duration =
                    duration.unwrap_or(Duration::from_secs(if tui { 86_400 } else { 20 }));
                match simulator::demo::run_with(duration, tui).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("simulator demo: {e:#}");
                        ExitCode::from(3)
                    }
                }
            }
        }
    })
}

async fn run(
    paths: Vec<PathBuf>,
    jobs: usize,
    junit: Option<PathBuf>,
    json: Option<PathBuf>,
    process: bool,
    tui: bool,
) -> ExitCode {
    let collected = match collect_files(&paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("simulator: {e}");
            return ExitCode::from(1);
        }
    };
    let style = Style::for_stdout();
    for file in &collected.skipped {
        println!(
            "skip {} (not a scenario: no top-level `steps:`)",
            file.display()
        );
    }
    if collected.scenarios.is_empty() {
        eprintln!("simulator: no scenario files in {paths:?}");
        return ExitCode::from(1);
    }
    let mode = if process {
        match sibling_binary("gateway") {
            Some(b) => GatewayMode::Process(b),
            None => {
                eprintln!(
                    "simulator: --process needs the `gateway` binary next to this one (cargo build -p gateway)"
                );
                return ExitCode::from(3);
            }
        }
    } else {
        GatewayMode::InProcess
    };
    let tui = match tui
        .then(|| RunTui::start(first_policies(&collected.scenarios)))
        .transpose()
    {
        Ok(tui) => tui,
        Err(e) => {
            eprintln!("simulator run --tui: {e:#}");
            return ExitCode::from(3);
        }
    };
    let (interrupter, interrupt) = Interrupt::new();
    // Ctrl-C stops the run at the next step boundary and still reports what ran; a second
    // Ctrl-C is for when even that takes too long.
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "simulator: interrupted; stopping after the steps under way (Ctrl-C again to quit now)"
            );
            interrupter.interrupt();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let options = RunOptions {
        gateway: mode,
        watchers: tui.as_ref().map(RunTui::sink).unwrap_or_default(),
        interrupt,
    };
    let started_unix_ms = gateway::clock::Clock::unix_millis(&gateway::clock::SystemClock::new());
    let started = tokio::time::Instant::now();
    let outcome = run_suite(
        collected.scenarios,
        jobs,
        &options,
        async |file: &FileOutcome| {
            if let FileOutcome::Rejected(rejected) = file {
                // Once, to stderr, each as `file:line:column: field: message`.
                for diagnostic in &rejected.diagnostics {
                    eprintln!("{diagnostic}");
                }
            }
            match &tui {
                Some(tui) => {
                    if let FileOutcome::Ran(result) = file {
                        tui.scenario_done(result).await;
                    }
                }
                // Each file's result as it completes; with the TUI it prints when the user quits.
                None => print!("{}", report::render_outcome(file, style)),
            }
        },
    )
    .await;
    let info = RunInfo {
        started_unix_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        skipped: collected
            .skipped
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    };
    if let Some(tui) = tui {
        // The report prints on the restored terminal once the user quits the TUI.
        if let Err(e) = tui.finish().await {
            eprintln!("simulator run --tui: {e:#}");
        }
        for file in &outcome.files {
            print!("{}", report::render_outcome(file, style));
        }
    }
    print!("{}", report::render_summary(&outcome, &info, style));
    let mut report_failures = Vec::new();
    if let Some(path) = junit {
        match report::junit::render(&outcome, &info) {
            Ok(xml) => report_failures.extend(write_report(&path, xml.as_bytes()).err()),
            Err(e) => report_failures.push(format!("cannot render JUnit: {e}")),
        }
    }
    if let Some(path) = json {
        match serde_json::to_vec_pretty(&report::render_json(&outcome, &info)) {
            Ok(body) => report_failures.extend(write_report(&path, &body).err()),
            Err(e) => report_failures.push(format!("cannot render the JSON report: {e}")),
        }
    }
    for e in &report_failures {
        eprintln!("simulator: {e}");
    }
    let statuses: Vec<Status> = outcome.files.iter().map(FileOutcome::status).collect();
    if outcome.interrupted {
        // The shell's code for "stopped by SIGINT", so CI and scripts see it was cut short.
        ExitCode::from(130)
    } else if outcome.rejected().next().is_some() {
        ExitCode::from(2)
    } else if !report_failures.is_empty() || statuses.contains(&Status::Errored) {
        ExitCode::from(3)
    } else if statuses.contains(&Status::Failed) {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes a report, creating its folder; a report that cannot be written fails the run (exit 3),
/// since CI would otherwise read a stale file or none.
fn write_report(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(name);
    candidate.exists().then_some(candidate)
}
