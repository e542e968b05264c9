//! What runs write: JUnit XML for CI, JSON for tools, and the readable console text; for
//! `simulator compare`, SVG plots (`plot`) and a self-contained HTML page (`html`).

pub mod html;
pub mod junit;
pub mod plot;

use std::fmt::Write as _;

use crate::scenario::outcome::ScenarioResult;

/// The console report: each step with ✓/✗, and for failures what was expected, what happened
/// and the record that explains it.
pub fn render_text(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for scenario in results {
        let mark = if scenario.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {} ({}, {} ms)",
            scenario.name, scenario.file, scenario.duration_ms
        );
        if let Some(error) = &scenario.runtime_error {
            let _ = writeln!(out, "  error: {error}");
        }
        for step in &scenario.steps {
            let mark = if step.passed { "✓" } else { "✗" };
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
    // Alone on the last line, in the shape CI tools read.
    let _ = writeln!(out, "{} passed, {} failed", passed, results.len() - passed);
    out
}
