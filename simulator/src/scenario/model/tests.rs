//! How a scenario file that cannot be used is reported: pinned to the exact text, because the
//! runner prints it and moving to the shared YAML loader must not change it. Unlike the
//! gateway's route cases, the field path is left out when serde_yaml_ng's message already starts
//! with it (or when it is the document itself).

use super::*;

fn diagnose(text: &str) -> String {
    match parse("s.yaml", text) {
        Ok(_) => panic!("expected a diagnostic for {text:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "name: t\ngateway: {config: g.yaml}\n";

#[test]
fn a_scenario_that_cannot_be_used_is_one_diagnostic_in_serdes_words() {
    let cases = [
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect:\n      statuss: 200\n"
            ),
            "s.yaml:7:7: steps[0].expect.statuss: steps[0].expect: unknown field `statuss`, expected one of `status`, `stopped_at`, `reason`, `headers`, `absent_headers`, `upstream`, `status_counts`, `stopped_counts`, `latency`, `upstream_hits`, `issuer_fetches` at line 7 column 7",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect: {{status: many}}\n"
            ),
            "s.yaml:6:22: steps[0].expect.status: invalid type: string \"many\", expected u16 at line 6 column 22",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect: {{stopped_at: nowhere}}\n"
            ),
            "s.yaml:6:13: steps[0].expect.stopped_at: steps[0].expect: unknown stage `nowhere`: expected `none` or one of tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response at line 6 column 13",
        ),
        (
            format!("{HEAD}steps:\n  - name: a\n"),
            "s.yaml: steps[0]: a step needs a `request` or a `load` phase",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    load: {{profile: {{steady: {{rate: 1, duration: 1s}}}}, request: {{path: /}}}}\n"
            ),
            "s.yaml: steps[0]: a step is either a `request` or a `load` phase, not both",
        ),
        (
            format!("{HEAD}steps:\n  - request: {{path: /}}\n"),
            "s.yaml:4:5: steps[0]: missing field `name` at line 4 column 5",
        ),
        (
            format!("{HEAD}steps:\n  - name: a\n    after: soon\n    request: {{path: /}}\n"),
            "s.yaml:5:12: steps[0].after: invalid value: string \"soon\", expected a duration at line 5 column 12",
        ),
        (
            "nme: t\n".to_string(),
            "s.yaml:1:1: nme: unknown field `nme`, expected one of `name`, `description`, `gateway`, `upstreams`, `issuer`, `identities`, `steps`",
        ),
        (
            "name: [\n".to_string(),
            "s.yaml:1:7: name: invalid type: sequence, expected a string at line 1 column 7",
        ),
        (String::new(), "s.yaml:1:1: missing field `name`"),
        (
            "name: a\nname: b\n".to_string(),
            "s.yaml:1:1: duplicate field `name`",
        ),
        (
            "- 1\n".to_string(),
            "s.yaml:1:1: invalid type: sequence, expected struct Scenario",
        ),
        (
            format!("{HEAD}steps: []\n---\nx: 1\n"),
            "s.yaml: deserializing from YAML containing more than one document is not supported",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnose(&text), want, "{text:?}");
    }
}

#[test]
fn an_unreadable_scenario_is_named() {
    let err = load(Path::new("/nonexistent/s.yaml")).expect_err("missing file");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/s.yaml: cannot read the file: "),
        "{err}"
    );
}

#[test]
fn a_good_scenario_loads() {
    let scenario = parse(
        "s.yaml",
        &format!("{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n"),
    )
    .expect("valid");
    assert_eq!(scenario.steps.len(), 1);
    assert_eq!(scenario.gateway.config, PathBuf::from("g.yaml"));
}
