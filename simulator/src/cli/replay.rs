//! `simulator replay RECORDING`: the replay's front end (docs/replay.md). The flags are grouped by
//! the module that reads them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::replay::diff::DiffArgs;
use crate::replay::diff::{ConfigDiff, diff_decisions};
use crate::replay::expect::Expected;
use crate::replay::identity::IdentityArgs;
use crate::replay::model::Exchange;
use crate::replay::predict::Prediction;
use crate::replay::report::OutputArgs;
use crate::replay::report::{ReplayReport, RunReport};
use crate::replay::responses::{self, Noise, ResponseDiffArgs};
use crate::replay::run::{self as replay_run, RunOptions, RunResult};
use crate::replay::schedule::{Pacing, PacingArgs};
use crate::replay::send::Progress;
use crate::replay::target::{TargetError, TargetSpec};
use crate::scenario::interrupt::{Interrupt, Interrupter};
use crate::scenario::under_test::GatewayMode;
use crate::tui::app::ChangedRequest;
use crate::tui::term::RunTui;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A Gatehouse recording (`.jsonl`), a HAR file or a GoReplay `.gor` file.
    pub recording: PathBuf,
    /// The gateway config to replay through (in-process, with fake upstreams and issuer).
    #[arg(long, value_name = "GATEWAY.yaml")]
    pub config: Option<PathBuf>,
    /// Run the `gateway` binary as a child process instead of in-process.
    #[arg(long, requires = "config")]
    pub process: bool,
    /// Replay against a running gateway at this URL instead (its admin `/records` stream is read
    /// when `--admin` names it).
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "process"])]
    pub target: Option<String>,
    /// The running gateway's admin address, for its records (`--target` runs).
    #[arg(long, value_name = "URL", requires = "target")]
    pub admin: Option<String>,
    /// Print, per rate-limit policy, the lab's predicted admitted/refused counts next to the
    /// gateway's decisions.
    #[arg(long, requires = "config")]
    pub predict: bool,
    /// With `--predict`: exit 4 when the lab's prediction for any policy differs from the
    /// gateway's decisions by more than this share of its requests (`0.01` is 1%).
    #[arg(long, value_name = "SHARE", requires = "predict", value_parser = share)]
    pub predict_within: Option<f64>,
    /// Have the gateway record this replay (through `--config`) into FILE, responses included:
    /// a Gatehouse recording whose own replay must decide every request the same.
    #[arg(
        long,
        value_name = "FILE",
        requires = "config",
        conflicts_with = "noise_runs"
    )]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub diff: DiffArgs,
    #[command(flatten)]
    pub responses: ResponseDiffArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs the replay; the exit code follows the runner's: 0 done, 1 usage, 2 an unreadable
/// recording or config, 3 a runtime failure (target unreachable, nothing answered, `--tui`
/// without a terminal), 4 more changed requests (or, with `--diff-responses`, changed responses)
/// than `--max-changed` allows, 130 interrupted (the report still printed).
pub async fn run(args: ReplayArgs) -> ExitCode {
    let tui = args.output.tui;
    match replay(args).await {
        Ok(code) => code,
        Err(Failure(code, message)) => {
            if tui {
                // A run that failed under the TUI leaves it open: the message needs the
                // terminal back.
                crate::tui::term::restore();
            }
            eprintln!("simulator replay: {message}");
            ExitCode::from(code)
        }
    }
}

struct Failure(u8, String);

fn usage(message: impl Into<String>) -> Failure {
    Failure(1, message.into())
}

async fn replay(args: ReplayArgs) -> Result<ExitCode, Failure> {
    if args.config.is_none() && args.target.is_none() {
        return Err(usage(
            "give --config GATEWAY.yaml (the real gateway, with fakes) or --target URL",
        ));
    }
    if args.diff.against.is_some() && args.target.is_some() {
        return Err(usage(
            "--against replays through a second config: use it with --config, not --target",
        ));
    }
    let pacing = Pacing::from_args(&args.pacing).map_err(usage)?;
    crate::replay::responses::check_args(&args.responses).map_err(usage)?;
    let expected = match &args.diff.expect {
        Some(path) => Some(Expected::load(path).map_err(|d| Failure(2, d.to_string()))?),
        None => None,
    };
    let recording = replay_run::load(&args.recording, args.pacing.skip_bad)
        .map_err(|e| Failure(2, e.to_string()))?;
    let exchanges: Vec<Exchange> = match &pacing.shard {
        Some(shard) => shard.select(&recording.exchanges),
        None => recording.exchanges.clone(),
    };
    let exchanges = Arc::new(exchanges);
    let mode = if args.process {
        GatewayMode::Process(sibling_binary("gateway").ok_or_else(|| {
            Failure(
                3,
                "--process needs the `gateway` binary next to this one (cargo build -p gateway)"
                    .into(),
            )
        })?)
    } else {
        GatewayMode::InProcess
    };
    let spec = match (&args.config, &args.target) {
        (Some(config), _) => TargetSpec::Config {
            config: config.clone(),
            mode: mode.clone(),
            record: args.record.clone(),
        },
        (None, Some(url)) => TargetSpec::Url {
            url: url.clone(),
            admin: args.admin.clone(),
        },
        (None, None) => return Err(usage("give --config or --target")),
    };
    let (interrupter, interrupt) = Interrupt::new();
    let interrupter = Arc::new(interrupter);
    let on_ctrl_c = interrupter.clone();
    tokio::spawn(async move {
        let interrupter = on_ctrl_c;
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "simulator replay: interrupted; waiting briefly for the answers under way (Ctrl-C again to quit now)"
            );
            interrupter.interrupt();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let tui = match args.output.tui {
        true => Some(
            RunTui::start_replay(
                format!("simulator replay {}", args.recording.display()),
                policies_of_spec(&args),
                args.diff.against.is_some(),
            )
            .map_err(|e| Failure(3, format!("--tui: {e:#}")))?,
        ),
        false => None,
    };
    let progress = Arc::new(Progress::default());
    let options = RunOptions {
        pacing: pacing.clone(),
        keep_responses: args.responses.diff_responses,
        prepare: replay_run::minting_for(args.identity.clone()),
        interrupt: interrupt.clone(),
        progress: progress.clone(),
        sink: tui.as_ref().map(RunTui::sink).unwrap_or_default(),
        ..RunOptions::default()
    };
    let show_bar = std::io::stdout().is_terminal() && !args.output.quiet && tui.is_none();
    let bar = show_bar.then(|| progress_bar(progress.clone()));
    let watch = Watch {
        tui: tui.as_ref(),
        progress: &progress,
        interrupter: &interrupter,
    };
    // Diffy's way: the baseline replayed more than once first; what differs between those runs
    // varies on its own, and is not held against the candidate.
    let mut noise_runs = Vec::new();
    if args.responses.diff_responses {
        for n in 1..=args.responses.noise_runs {
            if interrupt.is_raised() {
                break;
            }
            let phase = format!("noise run {n} of {}", args.responses.noise_runs);
            let run = watch
                .run(&phase, replay_run::run(exchanges.clone(), &spec, &options))
                .await;
            noise_runs.push(finish_run(run)?.outcomes);
        }
    }
    let noise = (!noise_runs.is_empty()).then(|| responses::learn_noise(&noise_runs));
    let first = watch
        .run(
            "replaying",
            replay_run::run(exchanges.clone(), &spec, &options),
        )
        .await;
    let first = finish_run(first)?;
    let against = match &args.diff.against {
        Some(new) if !first.interrupted => {
            let spec = TargetSpec::Config {
                config: new.clone(),
                mode,
                record: None,
            };
            let run = watch
                .run(
                    "replaying through --against",
                    replay_run::run(exchanges.clone(), &spec, &options),
                )
                .await;
            Some(finish_run(run)?)
        }
        _ => None,
    };
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let response_diff = args.responses.diff_responses.then(|| {
        let baseline = match &against {
            Some(_) => first.outcomes.clone(),
            None => responses::recorded_responses(&exchanges, &first),
        };
        let candidate = against.as_ref().unwrap_or(&first);
        responses::diff_responses(
            &baseline,
            &candidate.outcomes,
            &args.responses,
            noise.as_ref().unwrap_or(&Noise::default()),
        )
    });
    let mut report = build_report(&args, &pacing, &recording, &exchanges, first, against);
    report.responses = response_diff;
    report.noise = noise;
    let diff = diff_of(&report);
    if let Some(tui) = tui {
        if let (Some(diff), true) = (&diff, report.against.is_some()) {
            for changed in &diff.requests {
                tui.changed(ChangedRequest {
                    id: changed.id.clone(),
                    method: changed.method.clone(),
                    path: changed.path.clone(),
                    before: in_few_words(&changed.before),
                    after: in_few_words(&changed.after),
                })
                .await;
            }
        }
        let end = match (&diff, &report.responses) {
            (Some(d), _) if d.changed > 0 => format!(
                "replay finished: {} of {} requests changed — q shows the report",
                d.changed, d.compared
            ),
            (_, Some(r)) if r.changed > 0 => format!(
                "replay finished: {} of {} responses changed — q shows the report",
                r.changed, r.compared
            ),
            _ => "replay finished — q shows the report".to_owned(),
        };
        if let Err(e) = tui.finish_with(end).await {
            eprintln!("simulator replay --tui: {e:#}");
        }
    }
    let text = render(&report);
    print!("{text}");
    write_outputs(&args, &report, &text)?;
    let mut changed_too_much = diff
        .as_ref()
        .is_some_and(|d| d.exceeds(args.diff.max_changed))
        || report
            .responses
            .as_ref()
            .is_some_and(|r| r.exceeds(args.diff.max_changed));
    if let (Some(path), Some(diff)) = (&args.diff.write_expect, &diff) {
        let yaml = Expected::from_diff(diff)
            .to_yaml()
            .map_err(|e| Failure(3, e))?;
        write_file(path, yaml.as_bytes()).map_err(|e| Failure(3, e))?;
    }
    if let Some(expected) = &expected {
        // Exactly the expected transitions, whatever --max-changed allows.
        let problems = match &diff {
            Some(diff) => expected.check(diff),
            None => vec![
                "--expect: nothing was compared (no recorded decisions and no --against)".into(),
            ],
        };
        for problem in &problems {
            println!("expect     {problem}");
        }
        // The responses keep their own verdict: `--expect` is about decisions.
        changed_too_much = !problems.is_empty()
            || report
                .responses
                .as_ref()
                .is_some_and(|r| r.exceeds(args.diff.max_changed));
    }
    if let Some(within) = args.predict_within {
        // The lab is trusted only as far as it agrees with the gateway on this traffic.
        let worst = report
            .prediction
            .clone()
            .and_then(|p| serde_json::from_value::<Prediction>(p).ok())
            .map(|p| p.worst_difference());
        match worst {
            Some(worst) if worst <= within => {}
            Some(worst) => {
                println!(
                    "predict    the lab and the gateway differ by {:.2}% on a policy, above --predict-within {:.2}%",
                    worst * 100.0,
                    within * 100.0
                );
                changed_too_much = true;
            }
            None => {
                println!(
                    "predict    nothing was predicted (the config has no rate-limit policies?)"
                );
                changed_too_much = true;
            }
        }
    }
    Ok(exit_code(&report, changed_too_much))
}

/// A share of requests, 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "`{text}` is not a share between 0 and 1 (0.01 is 1%)"
        )),
    }
}

/// The config review held in a report, typed again.
fn diff_of(report: &ReplayReport) -> Option<ConfigDiff> {
    serde_json::from_value(report.diff.clone()?).ok()
}

/// The report's text, then the config review and the prediction when there are.
fn render(report: &ReplayReport) -> String {
    let mut text = report.render_text();
    if let Some(diff) = diff_of(report) {
        text.push_str(&diff.render_text());
    }
    if let Some(prediction) = report
        .prediction
        .clone()
        .and_then(|p| serde_json::from_value::<Prediction>(p).ok())
    {
        text.push_str(&prediction.render_text());
    }
    if let Some(noise) = &report.noise {
        text.push_str(&noise.render_text());
    }
    if let Some(responses) = &report.responses {
        text.push_str(&responses.render_text());
    }
    text
}

/// `--json`, `--changed`, `--junit`, `--html`: a file that cannot be written fails the run
/// (exit 3), since CI would otherwise read a stale one.
fn write_outputs(args: &ReplayArgs, report: &ReplayReport, text: &str) -> Result<(), Failure> {
    let fail = |e: String| Failure(3, e);
    if let Some(path) = &args.output.json {
        report.write(path).map_err(fail)?;
    }
    let diff = diff_of(report);
    if let (Some(path), Some(diff)) = (&args.diff.changed, &diff) {
        let body =
            serde_json::to_vec_pretty(&diff.changed_json()).map_err(|e| fail(e.to_string()))?;
        write_file(path, &body).map_err(fail)?;
    }
    if let Some(path) = &args.output.junit {
        let responses = report.responses.as_ref();
        let xml = match (&diff, responses) {
            (Some(diff), _) => Some(crate::replay::junit::junit(
                &report.recording,
                diff,
                responses,
                args.diff.max_changed,
            )),
            (None, Some(responses)) => Some(crate::replay::junit::junit_responses(
                &report.recording,
                responses,
                args.diff.max_changed,
            )),
            (None, None) => None,
        };
        match xml {
            Some(xml) => write_file(path, xml.map_err(fail)?.as_bytes()).map_err(fail)?,
            None => eprintln!(
                "simulator replay: --junit: nothing was compared (no recorded decisions, no --against, no --diff-responses)"
            ),
        }
    }
    if let Some(dir) = &args.output.html {
        let mut runs: Vec<(&str, &[crate::replay::model::ExchangeOutcome])> =
            vec![(report.run.target.as_str(), &report.run.outcomes)];
        if let Some(against) = &report.against {
            runs.push((against.target.as_str(), &against.outcomes));
        }
        let title = format!("replay of {}", report.recording);
        crate::replay::plot::write_html(dir, &title, &runs, diff.as_ref(), text).map_err(fail)?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn finish_run(result: Result<RunResult, TargetError>) -> Result<RunResult, Failure> {
    result.map_err(|e| match e {
        TargetError::Config(m) => Failure(2, m),
        TargetError::Runtime(m) => Failure(3, m),
    })
}

fn build_report(
    args: &ReplayArgs,
    pacing: &Pacing,
    recording: &crate::replay::model::Recording,
    exchanges: &[Exchange],
    first: RunResult,
    against: Option<RunResult>,
) -> ReplayReport {
    // The config review: the recording's own decisions against this run, or this run against
    // `--against`'s; nothing to compare for a source without gateway records.
    let diff = match &against {
        Some(new) => Some(diff_decisions(&first.outcomes, &new.outcomes)),
        None => {
            let baseline: Vec<_> = first
                .recorded_baseline(exchanges)
                .into_iter()
                .flatten()
                .collect();
            (!baseline.is_empty() && first.records_seen)
                .then(|| diff_decisions(&baseline, &first.outcomes))
        }
    };
    let prediction = match (&args.config, args.predict) {
        (Some(config), true) => gateway::config::load_file(config).ok().map(|runtime| {
            crate::replay::predict::predict_with(
                &runtime,
                exchanges,
                &first.outcomes,
                &crate::replay::predict::PredictOptions {
                    origin_unix_micros: first.started_unix_nanos / 1_000,
                    ..Default::default()
                },
            )
        }),
        _ => None,
    };
    let mut report = ReplayReport::new(
        &args.recording,
        recording,
        crate::replay::read::detect(&args.recording).ok(),
        pacing.shard.map(|s| s.to_string()),
        RunReport::from_run(first),
        against.map(RunReport::from_run),
    );
    report.diff = diff.and_then(|d| serde_json::to_value(d).ok());
    report.prediction = prediction.and_then(|p| serde_json::to_value(p).ok());
    report
}

/// 130 when interrupted, 3 when requests left and none was answered, 4 when the compared share
/// of changed requests is above `--max-changed`, else 0.
fn exit_code(report: &ReplayReport, changed_too_much: bool) -> ExitCode {
    let runs = std::iter::once(&report.run).chain(report.against.as_ref());
    if report.interrupted {
        ExitCode::from(130)
    } else if runs.clone().any(|r| r.sent > 0 && r.answered == 0) {
        eprintln!("simulator replay: nothing was answered");
        ExitCode::from(3)
    } else if changed_too_much {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// Rate, sent/total and ETA, redrawn ten times a second from the sender's counters.
fn progress_bar(progress: Arc<Progress>) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{wide_bar} {pos}/{len} sent  {per_sec}  ETA {eta}  {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let drawn = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            drawn.set_length(progress.planned.load(Ordering::Relaxed));
            drawn.set_position(progress.sent.load(Ordering::Relaxed));
            drawn.set_message(format!(
                "{} answered, {} failed",
                progress.answered.load(Ordering::Relaxed),
                progress.failed.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (bar, ticker)
}

fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(name);
    candidate.exists().then_some(candidate)
}

/// What a run is watched through: the TUI's footer (the phase and the progress, twice a second)
/// when `--tui` is open, and the TUI closed early stops the replay as Ctrl-C would.
struct Watch<'a> {
    tui: Option<&'a RunTui>,
    progress: &'a Progress,
    interrupter: &'a Interrupter,
}

impl Watch<'_> {
    async fn run<T>(&self, phase: &str, run: impl std::future::Future<Output = T>) -> T {
        let Some(tui) = self.tui else {
            return run.await;
        };
        tokio::pin!(run);
        loop {
            tui.note(format!(
                "{phase}: {} sent, {} answered, {} failed",
                self.progress.sent.load(Ordering::Relaxed),
                self.progress.answered.load(Ordering::Relaxed),
                self.progress.failed.load(Ordering::Relaxed)
            ))
            .await;
            if tui.is_closed() {
                self.interrupter.interrupt();
            }
            tokio::select! {
                result = &mut run => return result,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// A decision as the Changed view shows it: `200 users-v1`, `429 ratelimit quota-exceeded`.
fn in_few_words(view: &crate::replay::diff::DecisionView) -> String {
    let status = match (view.status, &view.error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.split(':').next().unwrap_or("error").to_owned(),
        (None, None) => "no answer".to_owned(),
    };
    let mut words = vec![status];
    match (&view.stopped_at, &view.reason) {
        (Some(stage), reason) => {
            words.push(stage.clone());
            words.extend(reason.clone());
        }
        (None, reason) => {
            words.extend(view.route.clone());
            words.extend(reason.clone());
        }
    }
    words.join(" ")
}

/// The lab's starting policies for `--tui`: the replayed config's (none for `--target`).
fn policies_of_spec(args: &ReplayArgs) -> Vec<crate::tui::app::LabPolicy> {
    args.config
        .as_deref()
        .and_then(|config| gateway::config::load_file(config).ok())
        .map(|runtime| crate::tui::app::policies_of(&runtime.rate_limits))
        .unwrap_or_default()
}
