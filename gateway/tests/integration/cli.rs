//! The `gateway` binary: `check` and `routes --test` exit codes and output.

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
