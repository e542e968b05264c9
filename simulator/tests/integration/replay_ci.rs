//! The replays CI runs, through the binary as a user's CI job would: the gateway records traffic
//! and its own recording replays to the same decision for every request; the committed day of
//! traffic against tomorrow's config finds exactly the expected transitions (and a wrong
//! expectation fails); the lab's prediction holds within 1% of the gateway on that day.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn simulator(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("simulator runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("the JSON report")).expect("JSON")
}

#[test]
fn the_gateways_own_recording_replays_to_the_same_decision_for_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorded = dir.path().join("recorded.jsonl");
    let recorded = recorded.to_str().expect("utf-8 path");
    // A quarter of the day through the gateway, which records what it receives.
    let (code, out) = simulator(&[
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--virtual-time",
        "--shard",
        "1/4",
        "--record",
        recorded,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(recorded).expect("the recording");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() > 2_000, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l["v"] == 1 && l["record"].is_object()));
    // Minted tokens were sent; none reached the file.
    assert!(!text.contains("Bearer ey"), "a token in the recording");
    let stopped: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["record"]["stopped_at"].as_str())
        .collect();
    for stage in ["authn", "authz", "ratelimit", "route"] {
        assert!(
            stopped.contains(&stage),
            "no stop at {stage} in the recording"
        );
    }

    // The recording replayed: compared with its own decisions, request by request.
    let json = dir.path().join("replayed.json");
    let (code, out) = simulator(&[
        "replay",
        recorded,
        "--config",
        "fixtures/testbed.yaml",
        "--virtual-time",
        "--quiet",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("none changed"), "{out}");
    let report = report(&json);
    assert_eq!(report["diff"]["compared"], lines.len() as u64, "{out}");
    assert_eq!(report["diff"]["changed"], 0, "{out}");
}

#[test]
fn the_day_against_tomorrows_config_finds_exactly_the_expected_transitions() {
    let base = [
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--against",
        "fixtures/testbed-next.yaml",
        "--virtual-time",
        "--quiet",
    ];
    let mut args = base.to_vec();
    args.extend(["--expect", "fixtures/recordings/day-next.expect.yaml"]);
    let (code, out) = simulator(&args);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("payments: passed → payments: authz/insufficient-scope"),
        "{out}"
    );

    // One count off, and a transition that does not happen: both named, exit 4.
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.yaml");
    let committed =
        std::fs::read_to_string(repo_root().join("fixtures/recordings/day-next.expect.yaml"))
            .expect("the committed expectations");
    let mut expected: serde_yaml_ng::Value = serde_yaml_ng::from_str(&committed).expect("yaml");
    let transitions = expected["transitions"]
        .as_sequence_mut()
        .expect("transitions");
    let first = transitions[0]["count"].as_u64().expect("a count");
    transitions[0]["count"] = (first + 1).into();
    transitions.push(
        serde_yaml_ng::from_str("{from: 'admin: passed', to: 'admin: route/no-route', count: 1}")
            .expect("yaml"),
    );
    std::fs::write(&wrong, serde_yaml_ng::to_string(&expected).expect("yaml")).expect("write");
    let mut args = base.to_vec();
    args.extend(["--expect", wrong.to_str().expect("utf-8 path")]);
    let (code, out) = simulator(&args);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains(&format!("expected {} ×", first + 1))
            && out.contains(&format!("found {first}")),
        "{out}"
    );
    assert!(
        out.contains("expected 1 × `admin: passed → admin: route/no-route`, found none"),
        "{out}"
    );
}

#[test]
fn the_labs_prediction_holds_within_one_percent_of_the_gateway_on_the_day() {
    let (code, out) = simulator(&[
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--virtual-time",
        "--predict",
        "--predict-within",
        "0.01",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{out}");
    for policy in [
        "paid-sustained",
        "paid-per-second",
        "free-sustained",
        "v2-beta",
    ] {
        assert!(out.contains(policy), "{policy} predicted: {out}");
    }
    // In virtual time the lab and the gateway agree exactly: even a zero tolerance holds.
    let (code, out) = simulator(&[
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--virtual-time",
        "--shard",
        "1/8",
        "--predict",
        "--predict-within",
        "0",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0.00%"), "{out}");
    // A share outside 0..=1 is a usage error, before anything runs.
    let (code, out) = simulator(&[
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--predict",
        "--predict-within",
        "2",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("between 0 and 1"), "{out}");
}
