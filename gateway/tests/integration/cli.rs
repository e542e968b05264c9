//! The `gateway` binary: `check` and `routes --test` exit codes and output, the JSON and JUnit
//! forms read back, completions and help text.

use std::process::Command;

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_reference_config() {
    let (code, stdout, stderr) = gateway(&["check", "--config", "fixtures/reference.yaml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_file_line_and_field_and_exits_2() {
    let (code, _, stderr) = gateway(&[
        "check",
        "--config",
        "fixtures/invalid/several-problems.yaml",
    ]);
    assert_eq!(code, 2, "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert!(problems.len() >= 2, "several problems at once: {stderr}");
    for p in &problems {
        assert!(
            p.starts_with("error: fixtures/invalid/several-problems.yaml:"),
            "names the file and line: {p}"
        );
    }
}

#[test]
fn routes_test_passes_the_reference_cases_with_full_coverage() {
    let (code, stdout, stderr) = gateway(&[
        "routes",
        "--config",
        "fixtures/reference.yaml",
        "--test",
        "fixtures/reference-routes.yaml",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    let coverage = stdout
        .lines()
        .find(|l| l.starts_with("coverage:"))
        .expect("coverage line");
    assert!(!coverage.contains("not exercised"), "{coverage}");
}

#[test]
fn routes_test_fails_with_exit_4_and_names_the_mismatch_and_unexercised_routes() {
    let (code, stdout, _) = gateway(&[
        "routes",
        "--config",
        "fixtures/reference.yaml",
        "--test",
        "fixtures/invalid/failing-route-cases.yaml",
    ]);
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("upstream: expected users-svc, got admin-svc"),
        "{stdout}"
    );
    assert!(stdout.contains("not exercised: "), "{stdout}");
}

#[test]
fn usage_errors_exit_1() {
    let (code, _, _) = gateway(&["check"]);
    assert_eq!(code, 1);
}

/// Three policy problems of three kinds: serde used to stop at the first, hiding the others.
const THREE_RATE_LIMIT_MISTAKES: &str = r#"listeners: [{ name: public, address: "127.0.0.1:0" }]
upstreams:
  svc: { instances: ["127.0.0.1:9"] }
rate_limits:
  default_tier: free
  policies:
    - { id: a, algorithm: token-buckt, limit: 5, period: 1s, key: [api_kye], tiers: [piad] }
routes:
  - { name: svc, match: { path: /* }, upstream: svc }
"#;

fn temp_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path.display().to_string()
}

#[test]
fn check_json_reports_every_rate_limit_problem_at_once_with_line_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = temp_file(&dir, "gateway.yaml", THREE_RATE_LIMIT_MISTAKES);
    let (code, stdout, stderr) = gateway(&["check", "--config", &config, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["file"], config.as_str());
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().expect("problems");
    let found: Vec<(u64, &str)> = problems
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().expect("line"),
                p["field"].as_str().expect("field"),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (7, "rate_limits.policies[0].algorithm"),
            (7, "rate_limits.policies[0].key[0]"),
            (7, "rate_limits.policies[0].tiers[0]"),
        ]
    );
    for p in problems {
        assert!(p["column"].as_u64().is_some_and(|c| c > 0), "{p}");
    }
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean `token-bucket`?")),
        "{report}"
    );
    assert!(
        problems[2]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tier `piad`")),
        "{report}"
    );
}

#[test]
fn check_json_on_a_good_config_is_ok_with_no_problems_and_exits_0() {
    let (code, stdout, stderr) = gateway(&[
        "check",
        "--config",
        "fixtures/reference.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["ok"], true);
    assert_eq!(report["file"], "fixtures/reference.yaml");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(0));
}

#[test]
fn log_format_json_writes_each_diagnostic_as_a_json_object_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = temp_file(&dir, "gateway.yaml", THREE_RATE_LIMIT_MISTAKES);
    let (code, _, stderr) = gateway(&["check", "--config", &config, "--log-format", "json"]);
    assert_eq!(code, 2, "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let fields: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["field"].as_str())
        .collect();
    assert_eq!(fields.len(), 3, "{stderr}");
    for e in events.iter().filter(|e| e["fields"]["field"].is_string()) {
        assert_eq!(e["level"], "ERROR");
        assert_eq!(e["fields"]["file"], config.as_str());
        assert_eq!(e["fields"]["line"], 7);
    }
    assert!(!stderr.contains('\x1b'), "no ANSI in JSON: {stderr}");
}

fn junit(cases: &str, report: &str) -> (i32, String) {
    let (code, stdout, stderr) = gateway(&[
        "routes",
        "--config",
        "fixtures/reference.yaml",
        "--test",
        cases,
        "--junit",
        report,
    ]);
    (code, format!("{stdout}{stderr}"))
}

#[test]
fn routes_junit_has_one_testcase_per_case_and_the_failures_with_expected_and_got() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("routes.xml").display().to_string();
    let (code, output) = junit("fixtures/reference-routes.yaml", &report);
    assert_eq!(code, 0, "{output}");
    let xml = std::fs::read_to_string(&report).expect("report written");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("testsuite");
    assert_eq!(suite.attribute("name"), Some("reference-routes"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let declared = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reference-routes.yaml"),
    )
    .expect("cases file")
    .lines()
    .filter(|l| l.trim_start().starts_with("- name:"))
    .count();
    assert!(declared > 0);
    assert_eq!(cases.len(), declared, "one testcase per case");
    assert_eq!(
        suite.attribute("tests"),
        Some(declared.to_string().as_str())
    );
    assert_eq!(suite.attribute("failures"), Some("0"));
    for case in &cases {
        assert_eq!(case.attribute("classname"), Some("reference-routes"));
        let time: f64 = case
            .attribute("time")
            .expect("time")
            .parse()
            .expect("seconds");
        assert!(time >= 0.0);
        assert!(case.children().all(|c| !c.has_tag_name("failure")));
    }
    // `2026-12-01T11:19:38`: ISO 8601, UTC, no zone suffix (JUnit's schema allows none).
    let timestamp = suite.attribute("timestamp").expect("timestamp");
    assert_eq!(timestamp.len(), 19, "{timestamp}");
    assert_eq!(&timestamp[4..5], "-");
    assert_eq!(&timestamp[10..11], "T");

    let (code, output) = junit("fixtures/invalid/failing-route-cases.yaml", &report);
    assert_eq!(code, 4, "exit code unchanged by --junit: {output}");
    let xml = std::fs::read_to_string(&report).expect("report written");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure");
    assert_eq!(
        failure.parent().and_then(|c| c.attribute("name")),
        Some("admin is wrongly expected at users-svc")
    );
    assert_eq!(
        failure.text(),
        Some("upstream: expected users-svc, got admin-svc")
    );
    assert_eq!(
        failure.attribute("message"),
        Some("upstream: expected users-svc, got admin-svc")
    );
}

#[test]
fn an_unwritable_junit_path_is_exit_3_and_says_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir
        .path()
        .join("missing-dir/routes.xml")
        .display()
        .to_string();
    let (code, output) = junit("fixtures/reference-routes.yaml", &report);
    assert_eq!(code, 3, "{output}");
    assert!(
        output.contains(&format!("error: cannot write the JUnit report to {report}")),
        "{output}"
    );
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef gateway"),
        ("fish", "complete -c gateway"),
    ] {
        let (code, stdout, stderr) = gateway(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {stdout}");
        for word in [
            "run",
            "check",
            "routes",
            "junit",
            "ready-file",
            "log-format",
        ] {
            assert!(stdout.contains(word), "{shell} completes {word}");
        }
    }
    let (code, _, _) = gateway(&["completions", "tcsh"]);
    assert_eq!(code, 1, "an unknown shell is a usage error");
}

#[test]
fn the_about_line_names_every_subcommand_and_every_argument_has_help() {
    let (code, stdout, _) = gateway(&["--help"]);
    assert_eq!(code, 0);
    let about = stdout.lines().next().expect("about line");
    for sub in ["run", "check", "routes", "completions"] {
        assert!(about.contains(sub), "about names {sub}: {about}");
    }
    for sub in ["run", "check", "routes", "completions"] {
        // `-h`: the one-line-per-argument form (`--help` puts long help on lines of its own).
        let (code, help, _) = gateway(&[sub, "-h"]);
        assert_eq!(code, 0, "{sub}");
        let mut in_list = false;
        let mut described = 0;
        for line in help.lines() {
            if line == "Options:" || line == "Arguments:" {
                in_list = true;
                continue;
            }
            if line.is_empty() {
                in_list = false;
                continue;
            }
            if in_list && line.trim_start().starts_with(['-', '<']) {
                // Flag or argument, then at least two spaces, then its help.
                let text = line.trim_start();
                let help_text = text.split_once("  ").map(|(_, h)| h.trim()).unwrap_or("");
                assert!(
                    !help_text.is_empty(),
                    "`gateway {sub}` has no help for: {line}"
                );
                described += 1;
            }
        }
        assert!(
            described >= 2,
            "`gateway {sub} -h` lists its arguments: {help}"
        );
    }
}
