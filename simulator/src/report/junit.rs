//! JUnit XML: one testsuite per scenario, one testcase per step, so CI shows which step failed.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::scenario::outcome::ScenarioResult;

pub fn render(results: &[ScenarioResult]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("gatehouse-scenarios");
    for scenario in results {
        let mut suite = TestSuite::new(scenario.name.as_str());
        if let Some(error) = &scenario.runtime_error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(error.as_str());
            suite.add_test_case(TestCase::new("start", status));
        }
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
            case.set_classname(scenario.file.as_str());
            case.set_time(std::time::Duration::from_millis(step.duration_ms));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}
