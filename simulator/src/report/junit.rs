//! JUnit XML: one testsuite per scenario file, one testcase per step, so CI shows which step
//! failed. Every file given is in it — one that could not be used as an errored testcase with its
//! diagnostics — so a red job never shows a green test tab. The classname is the scenario's name
//! (not its path, which CI tools split on dots into nonsense packages).

use chrono::{DateTime, FixedOffset};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::RunInfo;
use crate::scenario::outcome::ScenarioResult;
use crate::scenario::suite::{FileOutcome, Rejected, SuiteOutcome};

pub fn render(
    outcome: &SuiteOutcome,
    info: &RunInfo,
) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("gatehouse-scenarios");
    if let Some(at) = timestamp(info.started_unix_ms) {
        report.set_timestamp(at);
    }
    report.set_time(std::time::Duration::from_millis(info.duration_ms));
    for file in &outcome.files {
        report.add_test_suite(match file {
            FileOutcome::Ran(result) => scenario_suite(result),
            FileOutcome::Rejected(rejected) => rejected_suite(rejected, info),
        });
    }
    report.to_string()
}

fn timestamp(unix_ms: u64) -> Option<DateTime<FixedOffset>> {
    DateTime::from_timestamp_millis(i64::try_from(unix_ms).ok()?).map(|t| t.fixed_offset())
}

fn scenario_suite(scenario: &ScenarioResult) -> TestSuite {
    let mut suite = TestSuite::new(scenario.name.as_str());
    if let Some(at) = timestamp(scenario.started_unix_ms) {
        suite.set_timestamp(at);
    }
    suite.set_time(std::time::Duration::from_millis(scenario.duration_ms));
    for step in &scenario.steps {
        let status = if step.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(step.failures.join("; "));
            let mut description = step.failures.join("\n");
            if let Some(record) = &step.record {
                description.push_str("\nrecord: ");
                description.push_str(&serde_json::to_string(record).unwrap_or_default());
            }
            status.set_description(description);
            status
        };
        let mut case = TestCase::new(step.name.as_str(), status);
        case.set_classname(scenario.name.as_str());
        case.set_time(std::time::Duration::from_millis(step.duration_ms));
        suite.add_test_case(case);
    }
    if let Some(error) = &scenario.runtime_error {
        // Named for when it happened: before any step, or part-way (an interrupted run).
        let name = if scenario.steps.is_empty() {
            "start"
        } else {
            "run"
        };
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(error.as_str());
        let mut case = TestCase::new(name, status);
        case.set_classname(scenario.name.as_str());
        suite.add_test_case(case);
    }
    suite
}

fn rejected_suite(rejected: &Rejected, info: &RunInfo) -> TestSuite {
    let mut suite = TestSuite::new(rejected.name.as_str());
    if let Some(at) = timestamp(info.started_unix_ms) {
        suite.set_timestamp(at);
    }
    suite.set_time(std::time::Duration::ZERO);
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(rejected.diagnostics.first().map_or("", String::as_str));
    status.set_description(rejected.diagnostics.join("\n"));
    let mut case = TestCase::new("parse", status);
    case.set_classname(rejected.name.as_str());
    case.set_time(std::time::Duration::ZERO);
    suite.add_test_case(case);
    suite
}
