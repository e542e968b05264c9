//! `simulator`: thin — parse arguments, call the library, map outcomes to exit codes
//! (Hurl's convention: 0 passed, 1 usage, 2 a file could not be parsed, 3 runtime failure,
//! 4 an expectation failed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use simulator::scenario::outcome::ScenarioResult;
use simulator::scenario::run::RunOptions;
use simulator::scenario::suite::{SuiteOutcome, collect_files, run_suite};
use simulator::scenario::under_test::GatewayMode;
use simulator::tui::term::RunTui;

#[derive(Parser)]
#[command(
    name = "simulator",
    version,
    about = "Gatehouse testbed: scenarios, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (or every *.yaml in the given directories) against the real gateway.
    Run {
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
    /// Maximum-rate load against a URL (closed loop, `connections` at a time), for comparing the
    /// load generator with wrk or oha on the same target.
    Loadgen {
        url: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value = "5s", value_parser = humantime_duration)]
        duration: Duration,
    },
    /// A fake upstream answering 200 at once, until interrupted: a fixed target for load tools.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:18181")]
        listen: std::net::SocketAddr,
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
            Command::Run { paths, jobs, junit, json, process, tui } => {
                run(paths, jobs, junit, json, process, tui).await
            }
            Command::Compare(args) => simulator::compare::cli::run(args).await,
            Command::Tui { attach } => match simulator::tui::term::run_attached(&attach).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simulator tui: {e:#}");
                    ExitCode::from(3)
                }
            },
            Command::Loadgen { url, connections, duration } => {
                match simulator::fake::loadgen::saturate(&url, connections, duration).await {
                    Ok(r) => {
                        println!(
                            "requests {}  errors {}  elapsed {:.2}s  rate {:.0}/s  p50 {} µs  p99 {} µs",
                            r.requests,
                            r.errors,
                            r.elapsed.as_secs_f64(),
                            r.per_second(),
                            r.p50_us,
                            r.p99_us
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("simulator loadgen: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Upstream { listen } => {
                match simulator::fake::upstream::FakeInstance::start_on(listen, Default::default()).await {
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
            Command::Demo { duration } => {
                let tui = std::io::IsTerminal::is_terminal(&std::io::stdout());
                let duration = duration.unwrap_or(Duration::from_secs(if tui { 86_400 } else { 20 }));
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
    let files = match collect_files(&paths) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            eprintln!("simulator: no scenario files in {paths:?}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("simulator: {e}");
            return ExitCode::from(1);
        }
    };
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
    let tui = match tui.then(RunTui::start).transpose() {
        Ok(tui) => tui,
        Err(e) => {
            eprintln!("simulator run --tui: {e:#}");
            return ExitCode::from(3);
        }
    };
    let options = RunOptions {
        gateway: mode,
        watchers: tui.as_ref().map(RunTui::sink).unwrap_or_default(),
    };
    let SuiteOutcome {
        results,
        parse_errors,
    } = run_suite(files, jobs, &options, async |result: &ScenarioResult| {
        if let Some(tui) = &tui {
            tui.scenario_done(result).await;
        }
    })
    .await;
    if let Some(tui) = tui {
        // The report prints on the restored terminal once the user quits the TUI.
        if let Err(e) = tui.finish().await {
            eprintln!("simulator run --tui: {e:#}");
        }
    }
    print!("{}", simulator::report::render_text(&results));
    for e in &parse_errors {
        eprintln!("error: {e}");
    }
    if let Some(path) = junit {
        match simulator::report::junit::render(&results) {
            Ok(xml) => write_report(&path, xml.as_bytes()),
            Err(e) => eprintln!("simulator: cannot render JUnit: {e}"),
        }
    }
    if let Some(path) = json {
        let body = serde_json::to_vec_pretty(&results).unwrap_or_default();
        write_report(&path, &body);
    }
    if !parse_errors.is_empty() {
        ExitCode::from(2)
    } else if results.iter().any(|r| r.runtime_error.is_some()) {
        ExitCode::from(3)
    } else if results.iter().any(|r| !r.passed()) {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

fn write_report(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, bytes) {
        eprintln!("simulator: cannot write {}: {e}", path.display());
    }
}

fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(name);
    candidate.exists().then_some(candidate)
}
