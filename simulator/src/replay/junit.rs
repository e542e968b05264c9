//! A config review as JUnit XML, so CI shows it in its test tab: per compared run a testsuite,
//! one testcase per transition group (named by the transition, so a CI's history follows it from
//! run to run), one for the unchanged requests, one for the requests only one run has, and a
//! summary testcase that fails when the share of changed requests exceeds `--max-changed` — the
//! same verdict as exit 4. A group's testcase fails under that same verdict, so the test tab and
//! the exit code never disagree; within the threshold it passes and lists its examples in its
//! output.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::diff::{ConfigDiff, percent};
use super::model::RequestRef;
use super::responses::ResponseDiff;

/// One group as the testcases see it, whatever was compared.
struct Group {
    title: String,
    count: u64,
    detail: String,
    examples: Vec<RequestRef>,
}

/// What a suite is about: the counts and the groups of one comparison.
struct Compared<'a> {
    what: &'a str,
    compared: u64,
    changed: u64,
    share: f64,
    exceeds: bool,
    missing: Vec<String>,
    groups: Vec<Group>,
}

/// Renders the config diff (and the response diff, when there is one) as a JUnit report.
pub fn junit(
    name: &str,
    diff: &ConfigDiff,
    responses: Option<&ResponseDiff>,
    max_changed: f64,
) -> Result<String, String> {
    let mut report = Report::new("gatehouse-replay");
    report.add_test_suite(suite(
        name,
        &Compared {
            what: "requests",
            compared: diff.compared,
            changed: diff.changed,
            share: diff.share(),
            exceeds: diff.exceeds(max_changed),
            missing: diff
                .missing
                .iter()
                .map(|m| format!("{} ({} only)", m.request, m.only_in.as_str()))
                .collect(),
            groups: diff
                .groups
                .iter()
                .map(|g| Group {
                    title: g.title(),
                    count: g.count,
                    detail: format!(
                        "changed: {}",
                        g.fields
                            .iter()
                            .map(|f| f.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    examples: g.examples.clone(),
                })
                .collect(),
        },
        max_changed,
    ));
    if let Some(responses) = responses {
        report.add_test_suite(responses_suite(name, responses, max_changed));
    }
    report
        .to_string()
        .map_err(|e| format!("cannot write the JUnit report: {e}"))
}

/// A response diff alone as a JUnit report: for a `--target` run whose decisions could not be
/// compared (no `--admin`), the responses are still a verdict CI can read.
pub fn junit_responses(
    name: &str,
    responses: &ResponseDiff,
    max_changed: f64,
) -> Result<String, String> {
    let mut report = Report::new("gatehouse-replay");
    report.add_test_suite(responses_suite(name, responses, max_changed));
    report
        .to_string()
        .map_err(|e| format!("cannot write the JUnit report: {e}"))
}

fn responses_suite(name: &str, responses: &ResponseDiff, max_changed: f64) -> TestSuite {
    suite(
        &format!("{name}: responses"),
        &Compared {
            what: "responses",
            compared: responses.compared,
            changed: responses.changed,
            share: responses.share(),
            exceeds: responses.exceeds(max_changed),
            missing: responses
                .missing
                .iter()
                .map(|r| format!("{r} (not replayed)"))
                .collect(),
            groups: responses
                .groups
                .iter()
                .map(|g| Group {
                    title: g.title(),
                    count: g.count,
                    detail: String::new(),
                    examples: g.examples.clone(),
                })
                .collect(),
        },
        max_changed,
    )
}

fn suite(name: &str, c: &Compared, max_changed: f64) -> TestSuite {
    let mut suite = TestSuite::new(name);
    suite.add_property(Property::new("changed_share", c.share.to_string()));
    suite.add_property(Property::new("max_changed", max_changed.to_string()));
    suite.add_property(Property::new("compared", c.compared.to_string()));
    suite.add_property(Property::new("changed", c.changed.to_string()));
    let case = |title: &str, status: TestCaseStatus| {
        let mut case = TestCase::new(title, status);
        case.set_classname(name);
        case
    };
    for group in &c.groups {
        let mut headline = format!("{} {}: {}", group.count, c.what, group.title);
        if !group.detail.is_empty() {
            headline.push_str(&format!(" ({})", group.detail));
        }
        let mut examples: Vec<String> = group.examples.iter().map(ToString::to_string).collect();
        if group.count > group.examples.len() as u64 {
            examples.push(format!(
                "… and {} more",
                group.count - group.examples.len() as u64
            ));
        }
        let listing = format!("{headline}\n{}", examples.join("\n"));
        if c.exceeds {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(format!("{headline}; e.g. {}", examples.join("; ")));
            status.set_description(listing);
            suite.add_test_case(case(&group.title, status));
        } else {
            let mut passed = case(&group.title, TestCaseStatus::success());
            passed.set_system_out(format!("within --max-changed: {listing}"));
            suite.add_test_case(passed);
        }
    }
    let mut unchanged = case(&format!("unchanged {}", c.what), TestCaseStatus::success());
    unchanged.set_system_out(format!(
        "{} of {} {} decided the same",
        c.compared - c.changed,
        c.compared,
        c.what
    ));
    suite.add_test_case(unchanged);

    let both = format!("every {} in both runs", singular(c.what));
    if c.missing.is_empty() {
        suite.add_test_case(case(&both, TestCaseStatus::success()));
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_message(format!(
            "{} {} in one run only (an interrupted run?)",
            c.missing.len(),
            c.what
        ));
        status.set_description(c.missing.join("\n"));
        suite.add_test_case(case(&both, status));
    }

    let verdict = format!(
        "{} of {} {} changed ({}), --max-changed {}",
        c.changed,
        c.compared,
        c.what,
        percent(c.share),
        percent(max_changed)
    );
    let summary = "changed share within --max-changed";
    if c.exceeds {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_message(verdict);
        suite.add_test_case(case(summary, status));
    } else {
        let mut passed = case(summary, TestCaseStatus::success());
        passed.set_system_out(verdict);
        suite.add_test_case(passed);
    }
    suite
}

fn singular(what: &str) -> &str {
    what.strip_suffix('s').unwrap_or(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::diff::diff_decisions;
    use crate::replay::diff::tests::outcome;
    use crate::replay::model::ExchangeOutcome;
    use crate::replay::responses::{Noise, ResponseDiffArgs, diff_responses};
    use gateway::record::recording::format::RecordedResponse;

    /// Testcase name → (failed, message) per suite, read back from the XML.
    type Cases = Vec<(String, Vec<(String, bool, String)>)>;

    fn parse(xml: &str) -> Cases {
        let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .map(|suite| {
                let cases = suite
                    .children()
                    .filter(|n| n.has_tag_name("testcase"))
                    .map(|case| {
                        let failure = case.children().find(|n| n.has_tag_name("failure"));
                        (
                            case.attribute("name").unwrap_or_default().to_owned(),
                            failure.is_some(),
                            failure
                                .and_then(|f| f.attribute("message"))
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect();
                (
                    suite.attribute("name").unwrap_or_default().to_owned(),
                    cases,
                )
            })
            .collect()
    }

    fn property(xml: &str, name: &str) -> Option<String> {
        let doc = roxmltree::Document::parse(xml).expect("XML");
        doc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value").map(str::to_owned))
    }

    fn runs() -> (Vec<ExchangeOutcome>, Vec<ExchangeOutcome>) {
        let quota = Some(("ratelimit", "quota-exceeded", 429));
        let before = vec![
            outcome("r1", "/orders", Some("orders"), None),
            outcome("r2", "/orders/<script>", Some("orders"), None),
            outcome("r3", "/v1/users", Some("users"), None),
            outcome("r4", "/health", Some("health"), None),
        ];
        let after = vec![
            outcome("r1", "/orders", Some("orders"), quota),
            outcome("r2", "/orders/<script>", Some("orders"), quota),
            outcome("r3", "/v1/users", Some("users-v2"), None),
            outcome("r4", "/health", Some("health"), None),
        ];
        (before, after)
    }

    #[test]
    fn a_group_per_transition_an_unchanged_case_and_a_failing_summary_over_the_threshold() {
        let (before, after) = runs();
        let diff = diff_decisions(&before, &after);
        let xml = junit("old.yaml → new.yaml", &diff, None, 0.0).expect("xml");
        let suites = parse(&xml);
        assert_eq!(suites.len(), 1);
        let (name, cases) = &suites[0];
        assert_eq!(name, "old.yaml → new.yaml");
        let summary: Vec<(&str, bool)> = cases
            .iter()
            .map(|(n, failed, _)| (n.as_str(), *failed))
            .collect();
        assert_eq!(
            summary,
            [
                ("orders: passed → orders: ratelimit/quota-exceeded", true),
                ("users: passed → users-v2: passed", true),
                ("unchanged requests", false),
                ("every request in both runs", false),
                ("changed share within --max-changed", true),
            ]
        );
        let message = &cases[0].2;
        assert!(
            message.starts_with("2 requests: orders: passed → orders: ratelimit/quota-exceeded"),
            "{message}"
        );
        assert!(
            message.contains("r2  GET /orders/<script>"),
            "examples in the message: {message}"
        );
        assert_eq!(
            cases[4].2,
            "3 of 4 requests changed (75%), --max-changed 0%"
        );
        assert_eq!(property(&xml, "changed_share").as_deref(), Some("0.75"));
        assert_eq!(property(&xml, "max_changed").as_deref(), Some("0"));
    }

    #[test]
    fn within_the_threshold_every_case_passes_and_missing_requests_fail_their_own() {
        let (before, mut after) = runs();
        after.pop();
        let diff = diff_decisions(&before, &after);
        let xml = junit("review", &diff, None, 1.0).expect("xml");
        let cases = &parse(&xml)[0].1;
        let failed: Vec<&str> = cases
            .iter()
            .filter(|(_, failed, _)| *failed)
            .map(|(n, _, _)| n.as_str())
            .collect();
        assert_eq!(failed, ["every request in both runs"]);
        assert!(
            cases
                .iter()
                .find(|c| c.0 == "every request in both runs")
                .expect("case")
                .2
                .starts_with("1 requests in one run only")
        );
        assert!(xml.contains("within --max-changed"), "{xml}");
    }

    #[test]
    fn a_response_diff_is_a_second_suite() {
        let (before, after) = runs();
        let respond = |mut o: ExchangeOutcome, status: u16| {
            o.response = Some(RecordedResponse {
                status,
                headers: Vec::new(),
                body_sha256: Some("h".into()),
                body_len: 1,
            });
            o
        };
        let recorded: Vec<_> = before.into_iter().map(|o| respond(o, 200)).collect();
        let replayed: Vec<_> = after
            .into_iter()
            .map(|o| {
                let status = o.status.unwrap_or(0);
                respond(o, status)
            })
            .collect();
        let diff = diff_decisions(&recorded, &replayed);
        let responses = diff_responses(
            &recorded,
            &replayed,
            &ResponseDiffArgs::default(),
            &Noise::default(),
        );
        let xml = junit("r", &diff, Some(&responses), 0.0).expect("xml");
        let suites = parse(&xml);
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[1].0, "r: responses");
        let names: Vec<&str> = suites[1].1.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "200 → 429 [status]",
                "unchanged responses",
                "every response in both runs",
                "changed share within --max-changed"
            ]
        );
        assert!(
            suites[1].1[0].1,
            "a changed response group fails at --max-changed 0"
        );
    }
}
