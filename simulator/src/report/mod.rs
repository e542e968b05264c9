//! What runs write: JUnit XML for CI, JSON for tools, and the readable console text; for
//! `simulator compare`, SVG plots (`plot`) and a self-contained HTML page (`html`).

pub mod html;
pub mod junit;
pub mod plot;

use std::fmt::Write as _;

use serde::Serialize;

use crate::scenario::outcome::{ScenarioResult, Status};
use crate::scenario::suite::{FileOutcome, Rejected, SuiteOutcome};

/// What the reports say about the run as a whole, beside its scenarios.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    /// Directory files that were not scenarios, left alone.
    pub skipped: Vec<String>,
}

/// Counts over a run, as the JSON report and the console summary give them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub scenarios: usize,
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub steps: usize,
    pub failed_steps: usize,
    pub duration_ms: u64,
}

impl Totals {
    pub fn of(outcome: &SuiteOutcome, duration_ms: u64) -> Self {
        let mut totals = Totals {
            scenarios: outcome.files.len(),
            duration_ms,
            ..Totals::default()
        };
        for file in &outcome.files {
            match file.status() {
                Status::Passed => totals.passed += 1,
                Status::Failed => totals.failed += 1,
                Status::Errored => totals.errored += 1,
            }
        }
        for result in outcome.results() {
            totals.steps += result.steps.len();
            totals.failed_steps += result.steps.iter().filter(|s| !s.passed).count();
        }
        totals
    }
}

/// ANSI colour for the console, or none: on when stdout is a terminal and `NO_COLOR` is unset
/// (https://no-color.org), so logs and pipes get plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal as _;
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: !no_colour && std::io::stdout().is_terminal(),
        }
    }

    fn paint(self, text: &str, sgr: &str) -> String {
        if self.colour {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn green(self, text: &str) -> String {
        self.paint(text, "32")
    }

    fn red(self, text: &str) -> String {
        self.paint(text, "31")
    }

    fn yellow(self, text: &str) -> String {
        self.paint(text, "33")
    }

    fn bold_red(self, text: &str) -> String {
        self.paint(text, "1;31")
    }
}

/// The console report: each step with ✓/✗, and for failures what was expected, what happened
/// and the record that explains it; then the totals. Plain text, for tests and logs.
pub fn render_text(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for scenario in results {
        out.push_str(&render_scenario(scenario, Style::default()));
    }
    let passed = results.iter().filter(|r| r.passed()).count();
    let steps: usize = results.iter().map(|r| r.steps.len()).sum();
    let failed_steps: usize = results
        .iter()
        .map(|r| r.steps.iter().filter(|s| !s.passed).count())
        .sum();
    let _ = writeln!(
        out,
        "{} scenarios, {steps} steps, {failed_steps} failed steps",
        results.len()
    );
    let _ = writeln!(out, "{} passed, {} failed", passed, results.len() - passed);
    out
}

/// One file's block of the console report, printed as soon as the file is done.
pub fn render_outcome(outcome: &FileOutcome, style: Style) -> String {
    match outcome {
        FileOutcome::Ran(result) => render_scenario(result, style),
        FileOutcome::Rejected(rejected) => render_rejected(rejected, style),
    }
}

fn render_rejected(rejected: &Rejected, style: Style) -> String {
    // The diagnostics themselves go to stderr, once; this line keeps the file in the list.
    format!(
        "{} {} ({}: {} problem{}, not run)\n",
        style.bold_red("ERROR"),
        rejected.name,
        rejected.file,
        rejected.diagnostics.len(),
        if rejected.diagnostics.len() == 1 {
            ""
        } else {
            "s"
        }
    )
}

/// One scenario's block: its verdict, then each step.
pub fn render_scenario(scenario: &ScenarioResult, style: Style) -> String {
    let mut out = String::new();
    let mark = match scenario.status() {
        Status::Passed => style.green("PASS"),
        Status::Failed => style.red("FAIL"),
        Status::Errored => style.bold_red("ERROR"),
    };
    let _ = writeln!(
        out,
        "{mark} {} ({}, {} ms)",
        scenario.name, scenario.file, scenario.duration_ms
    );
    for step in &scenario.steps {
        let mark = if step.passed {
            style.green("✓")
        } else {
            style.red("✗")
        };
        let _ = writeln!(out, "  {mark} {} ({} ms)", step.name, step.duration_ms);
        if let Some(phase) = &step.phase {
            let _ = writeln!(
                out,
                "      sent {}  statuses {:?}  stopped_at {:?}  p99 {} µs",
                phase.sent,
                phase.statuses,
                phase.stopped_at,
                phase.latency_us.get("p99").copied().unwrap_or(0)
            );
        }
        for failure in &step.failures {
            let _ = writeln!(out, "      {failure}");
        }
        if !step.passed {
            if let Some(record) = &step.record {
                let _ = writeln!(
                    out,
                    "      record: {}",
                    serde_json::to_string(record).unwrap_or_default()
                );
            }
        }
    }
    // After the steps, so an interrupted scenario reads in the order things happened.
    if let Some(error) = &scenario.runtime_error {
        let _ = writeln!(out, "  {} {error}", style.bold_red("error:"));
    }
    out
}

/// The closing lines of the console report.
pub fn render_summary(outcome: &SuiteOutcome, info: &RunInfo, style: Style) -> String {
    let totals = Totals::of(outcome, info.duration_ms);
    let mut out = String::new();
    if outcome.interrupted {
        let _ = writeln!(
            out,
            "{} {} scenario{} not run",
            style.yellow("interrupted:"),
            outcome.not_run.len(),
            if outcome.not_run.len() == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "{} scenarios, {} steps, {} failed steps, {} skipped files, {} ms",
        totals.scenarios,
        totals.steps,
        totals.failed_steps,
        info.skipped.len(),
        totals.duration_ms
    );
    // Alone on the last line, in the shape CI tools read.
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} errored",
        totals.passed, totals.failed, totals.errored
    );
    out
}

/// The JSON report: every file with its status, the files skipped and not run, and the totals.
pub fn render_json(outcome: &SuiteOutcome, info: &RunInfo) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = outcome
        .files
        .iter()
        .map(|file| match file {
            FileOutcome::Ran(result) => {
                let mut value = serde_json::to_value(result).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert("status".into(), serde_json::json!(result.status()));
                }
                value
            }
            FileOutcome::Rejected(rejected) => serde_json::json!({
                "name": rejected.name,
                "file": rejected.file,
                "status": Status::Errored,
                "diagnostics": rejected.diagnostics,
                "steps": [],
                "duration_ms": 0,
            }),
        })
        .collect();
    serde_json::json!({
        "scenarios": scenarios,
        "skipped": info.skipped,
        "interrupted": outcome.interrupted,
        "not_run": outcome.not_run.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "started_unix_ms": info.started_unix_ms,
        "totals": Totals::of(outcome, info.duration_ms),
    })
}
