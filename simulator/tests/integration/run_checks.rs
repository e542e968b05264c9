//! What `simulator run` checks before anything starts, through the binary: names a scenario uses
//! that do not exist are exit 2 with `file:line:column: field: message`, and nothing runs.

use std::path::{Path, PathBuf};

use super::runner::simulator;

fn config(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Writes `body` as a scenario on `config` and returns its path.
fn scenario(test: &str, config: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{test}.yaml"));
    let text = format!("name: {test}\ngateway:\n  config: {config}\n{body}");
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// `file:line:column` of the first `needle` in the file, as the runner should name it.
fn position(path: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(path).expect("scenario");
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{needle} in {text}"));
    format!("{}:{line}:{column}", path.display())
}

/// Runs the scenario and returns stderr, asserting exit 2 and that no scenario ran.
fn rejected(path: &Path) -> String {
    let (code, stdout, stderr) = simulator(&["run", path.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        !stdout.contains("PASS") && !stdout.contains("FAIL"),
        "nothing ran: {stdout}"
    );
    stderr
}

#[test]
fn acting_as_someone_without_an_issuer_is_caught_before_the_run() {
    let path = scenario(
        "as-without-issuer",
        &config("reference.yaml"),
        "steps:\n  - name: acts\n    request: { path: /api/v1/users/1, as: alice }\n    expect: { status: 200 }\n",
    );
    let stderr = rejected(&path);
    let want = format!(
        "{}: steps[0].request.as: `as: alice` needs a fake issuer to mint the token: add `issuer: {{}}` to the scenario",
        position(&path, "alice")
    );
    assert!(stderr.contains(&want), "want {want}\n got {stderr}");
}

#[test]
fn an_unknown_identity_is_caught_with_a_suggestion() {
    let path = scenario(
        "unknown-identity",
        &config("testbed.yaml"),
        "issuer: {}\nidentities:\n  alice: { subject: alice, tenant: acme, scopes: [users:read], tier: paid }\n\
         steps:\n  - name: acts\n    request: { path: /api/v1/users/1, as: alise }\n    expect: { status: 200 }\n",
    );
    let stderr = rejected(&path);
    let want = format!(
        "{}: steps[0].request.as: no identity `alise` in `identities:`, did you mean `alice`?",
        position(&path, "alise")
    );
    assert!(stderr.contains(&want), "want {want}\n got {stderr}");
}

#[test]
fn an_upstream_the_config_does_not_have_is_caught_wherever_it_is_named() {
    let path = scenario(
        "unknown-upstream",
        &config("reference.yaml"),
        "upstreams:\n  users-sv: { instances: 2 }\nsteps:\n  - name: load\n    load:\n      profile: { steady: { rate: 5, duration: 1s } }\n      request: { path: /api/v1/users/1 }\n    expect: { upstream_hits: { nowhere-svc: 5 } }\n",
    );
    let stderr = rejected(&path);
    let want = format!(
        "{}: upstreams.users-sv: no upstream `users-sv` in the gateway config {}, did you mean `users-svc`?",
        position(&path, "users-sv"),
        config("reference.yaml")
    );
    assert!(stderr.contains(&want), "want {want}\n got {stderr}");
    let want = format!(
        "{}: steps[0].expect.upstream_hits.nowhere-svc: no upstream `nowhere-svc`",
        position(&path, "nowhere-svc")
    );
    assert!(
        stderr.contains(&want),
        "both at once: want {want}\n got {stderr}"
    );
}

#[test]
fn an_unknown_stage_is_caught_in_stopped_at_and_stopped_counts() {
    let path = scenario(
        "unknown-stage",
        &config("reference.yaml"),
        "steps:\n  - name: one\n    request: { path: /api/unknown }\n    expect: { stopped_at: rout }\n",
    );
    let stderr = rejected(&path);
    let want = format!(
        "{}: steps[0].expect.stopped_at: unknown stage `rout`",
        position(&path, "rout")
    );
    assert!(stderr.contains(&want), "want {want}\n got {stderr}");
    assert_eq!(
        stderr.matches(&*path.display().to_string()).count(),
        1,
        "once: {stderr}"
    );

    let path = scenario(
        "unknown-stage-count",
        &config("reference.yaml"),
        "steps:\n  - name: load\n    load:\n      profile: { steady: { rate: 5, duration: 1s } }\n      request: { path: /api/unknown }\n    expect: { stopped_counts: { routing: 5 } }\n",
    );
    let stderr = rejected(&path);
    let want = format!(
        "{}: steps[0].expect.stopped_counts.routing: no stage `routing` in the pipeline",
        position(&path, "routing")
    );
    assert!(stderr.contains(&want), "want {want}\n got {stderr}");
}
