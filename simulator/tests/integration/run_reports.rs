//! `simulator run` outputs CI can trust, through the binary: every file in the JUnit and JSON
//! reports (a file that failed to parse as an errored testcase), totals, an unwritable report as
//! exit 3, plain text off a terminal, folders that skip non-scenarios, and Ctrl-C that stops
//! cleanly with the reports of what ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::runner::{fixture, simulator};
use super::util::eventually_blocking;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

#[test]
fn a_folder_run_reports_every_file_with_totals_and_skips_what_is_not_a_scenario() {
    let dir = temp_dir("suite-reports");
    let junit = dir.join("junit.xml");
    let json = dir.join("run.json");
    let suite = fixture("suite");
    let (code, stdout, stderr) = simulator(&[
        "run",
        text(&suite),
        "--junit",
        text(&junit),
        "--json",
        text(&json),
    ]);
    assert_eq!(
        code, 2,
        "a file that did not parse fails the run: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("skip") && stdout.contains("shared-config.yaml"),
        "the non-scenario is listed as skipped: {stdout}"
    );
    assert!(
        !stderr.contains("shared-config.yaml"),
        "not an error: {stderr}"
    );
    assert!(stdout.contains("PASS passes quickly"), "{stdout}");
    assert!(stdout.contains("ERROR has a typo"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour off a terminal: {stdout:?}"
    );

    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert!(root.attribute("timestamp").is_some(), "{xml}");
    assert!(root.attribute("time").is_some(), "{xml}");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(
        cases.len(),
        3,
        "one per step, and one for the file that did not parse: {xml}"
    );
    let typo = cases
        .iter()
        .find(|c| c.attribute("classname") == Some("has a typo"))
        .expect("the file that did not parse is in the report");
    let error = typo
        .children()
        .find(|n| n.has_tag_name("error"))
        .expect("as an errored testcase");
    assert!(
        error
            .attribute("message")
            .is_some_and(|m| m.contains("typo.yaml:9:7: steps[0].expect.statuss")),
        "{xml}"
    );
    for case in cases
        .iter()
        .filter(|c| c.attribute("classname") == Some("passes quickly"))
    {
        assert!(case.attribute("time").is_some(), "{xml}");
        assert!(case.children().all(|n| !n.is_element()), "passed: {xml}");
    }
    for suite in doc.descendants().filter(|n| n.has_tag_name("testsuite")) {
        assert!(suite.attribute("timestamp").is_some(), "{xml}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(
        report["totals"],
        serde_json::json!({
            "scenarios": 2, "passed": 1, "failed": 0, "errored": 1, "steps": 2, "failed_steps": 0,
            "duration_ms": report["totals"]["duration_ms"],
        })
    );
    assert_eq!(report["scenarios"][0]["status"], "passed");
    assert_eq!(report["scenarios"][1]["status"], "errored");
    assert!(
        report["scenarios"][1]["diagnostics"][0]
            .as_str()
            .is_some_and(|d| d.contains("did you mean `status`?")),
        "{report}"
    );
    assert!(
        report["skipped"][0]
            .as_str()
            .is_some_and(|s| s.ends_with("shared-config.yaml")),
        "{report}"
    );
}

#[test]
fn a_non_scenario_named_explicitly_is_still_an_error() {
    let file = fixture("suite/shared-config.yaml");
    let (code, _, stderr) = simulator(&["run", text(&file)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("shared-config.yaml:"), "{stderr}");
}

#[test]
fn a_report_that_cannot_be_written_is_a_runtime_failure() {
    let dir = temp_dir("unwritable");
    // A regular file where the report's folder should be: no one, root included, can write there.
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "").expect("blocker");
    let unwritable = blocker.join("report.json");
    let scenario = fixture("suite/passes.yaml");
    for flag in ["--json", "--junit"] {
        let (code, _, stderr) = simulator(&["run", text(&scenario), flag, text(&unwritable)]);
        assert_eq!(code, 3, "{flag}: {stderr}");
        assert!(stderr.contains("cannot create"), "{flag}: {stderr}");
    }
    for flag in ["--json", "--report", "--plots"] {
        let (code, _, stderr) = simulator(&[
            "compare",
            "steady:rate=20,duration=1s",
            flag,
            text(&unwritable),
        ]);
        assert_eq!(code, 3, "compare {flag}: {stderr}");
    }
}

#[test]
fn no_color_and_a_pipe_give_plain_text() {
    let scenario = fixture("failing.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(["run", text(&scenario)])
        .env("NO_COLOR", "1")
        .output()
        .expect("run simulator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("FAIL failing on purpose"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
}

#[test]
fn ctrl_c_stops_the_run_and_still_writes_the_reports_of_what_ran() {
    let dir = temp_dir("interrupted");
    let json = dir.join("run.json");
    let junit = dir.join("junit.xml");
    let stdout_path = dir.join("stdout.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args([
            "run",
            text(&fixture("suite/passes.yaml")),
            text(&fixture("slow.yaml")),
            text(&fixture("failing.yaml")),
            "--json",
            text(&json),
            "--junit",
            text(&junit),
        ])
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start simulator");
    // The first scenario's result is printed as it completes, before the slow one's 30 s wait.
    eventually_blocking(
        "the first scenario's result",
        Duration::from_secs(20),
        || {
            let seen = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if seen.contains("PASS passes quickly") {
                Ok(())
            } else {
                Err(seen)
            }
        },
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let status =
        eventually_blocking(
            "the simulator to stop",
            Duration::from_secs(10),
            || match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                other => Err(format!("{other:?}")),
            },
        );
    let stdout = std::fs::read_to_string(&stdout_path).expect("stdout");
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        stdout.contains("interrupted: 1 scenario not run"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["scenarios"][0]["status"], "passed");
    let slow = &report["scenarios"][1];
    assert_eq!(slow["status"], "errored", "{report}");
    // Whatever step it was in, the 30 s step never finished.
    assert!(
        slow["steps"].as_array().is_some_and(|s| s.len() <= 1),
        "{report}"
    );
    assert!(
        slow["runtime_error"]
            .as_str()
            // SIGINT can land while the slow scenario still starts its gateway or already waits.
            .is_some_and(|e| {
                e.contains("interrupted before step `quick`")
                    || e.contains("interrupted before step `waits`")
            }),
        "{report}"
    );
    assert!(
        report["not_run"][0]
            .as_str()
            .is_some_and(|f| f.ends_with("failing.yaml")),
        "{report}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is XML");
    assert!(
        doc.descendants()
            // `start` when no step of it had finished yet, `run` when one had.
            .any(|n| n.has_tag_name("testcase")
                && matches!(n.attribute("name"), Some("run" | "start"))
                && n.children().any(|c| c.has_tag_name("error"))),
        "the interruption is an errored testcase: {xml}"
    );
}
