//! The runner on bad input and failing expectations, through the `simulator` binary: exit codes,
//! where a parse error is, what a failure explains, the JUnit and JSON reports.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(super) fn simulator(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .output()
        .expect("run simulator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_scenario_that_cannot_be_parsed_exits_2_naming_file_line_and_field() {
    let file = fixture("bad-field.yaml");
    let (code, _, stderr) = simulator(&["run", file.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad-field.yaml:"), "{stderr}");
    assert!(
        stderr.contains("steps[0].expect"),
        "names the field: {stderr}"
    );
    assert!(
        stderr.contains("bad-field.yaml:9:7: steps[0].expect.statuss: unknown field `statuss`, did you mean `status`?"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("bad-field.yaml").count(),
        1,
        "path and position once: {stderr}"
    );
}

#[test]
fn a_failed_expectation_exits_4_and_explains_itself_in_every_report() {
    let file = fixture("failing.yaml");
    let dir = std::env::temp_dir().join(format!("gatehouse-sim-reports-{}", std::process::id()));
    let junit = dir.join("junit.xml");
    let json = dir.join("run.json");
    let (code, stdout, stderr) = simulator(&[
        "run",
        file.to_str().expect("utf8"),
        "--junit",
        junit.to_str().expect("utf8"),
        "--json",
        json.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("✗ expects the wrong stage"), "{stdout}");
    assert!(
        stdout.contains("stopped_at: expected forward, got route (reason: catch-all)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("record: {"),
        "the record explains the failure: {stdout}"
    );
    assert!(stdout.contains("✓ passes"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("<testcase name=\"passes\""), "{xml}");
    assert!(xml.contains("<failure"), "{xml}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["status"], "failed");
    assert_eq!(scenario["steps"][1]["passed"], false);
    assert_eq!(scenario["steps"][1]["record"]["stopped_at"], "route");
    assert_eq!(report["totals"]["failed"], 1);
    assert_eq!(report["totals"]["failed_steps"], 1);
}

#[test]
fn a_gateway_config_with_problems_exits_2() {
    let file = fixture("bad-config.yaml");
    let (code, _, stderr) = simulator(&["run", file.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("several-problems.yaml:"), "{stderr}");
}

#[test]
fn usage_errors_exit_1() {
    let (code, _, _) = simulator(&["run"]);
    assert_eq!(code, 1);
    let (code, _, _) = simulator(&["run", "/no/such/dir"]);
    assert_eq!(code, 1);
}

#[test]
fn process_mode_runs_the_gateway_binary_as_a_child() {
    // The gateway binary is built by the workspace test run; the simulator finds it beside itself.
    let gateway = Path::new(env!("CARGO_BIN_EXE_simulator")).with_file_name("gateway");
    assert!(
        gateway.exists(),
        "cargo builds the gateway binary for workspace tests"
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/unknown-route.yaml");
    let (code, stdout, stderr) = simulator(&["run", "--process", file.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("PASS unknown route"), "{stdout}");
}
