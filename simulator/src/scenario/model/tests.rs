//! How a scenario file that cannot be used is reported: pinned to the exact text, because the
//! runner prints it. Each problem once as `file:line:column: field: message` (serde_yaml_ng's own
//! repeat of the position and path is gone), every schema problem at once, a misspelt field with
//! "did you mean".

use super::*;

fn diagnose(text: &str) -> String {
    match parse("s.yaml", text) {
        Ok(_) => panic!("expected a diagnostic for {text:?}"),
        Err(e) => e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

const HEAD: &str = "name: t\ngateway: {config: g.yaml}\n";

#[test]
fn a_scenario_that_cannot_be_used_gets_each_problem_once_with_its_position() {
    let cases = [
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect:\n      statuss: 200\n"
            ),
            "s.yaml:7:7: steps[0].expect.statuss: unknown field `statuss`, did you mean `status`?",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect: {{status: many}}\n"
            ),
            "s.yaml:6:22: steps[0].expect.status: invalid type: string \"many\", expected an integer from 0 to 65535",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    expect: {{stopped_at: nowhere}}\n"
            ),
            "s.yaml:6:26: steps[0].expect.stopped_at: unknown stage `nowhere`: expected `none` or one of tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response",
        ),
        (
            format!("{HEAD}steps:\n  - name: a\n"),
            "s.yaml:4:5: steps[0]: a step needs a `request` or a `load` phase",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /}}\n    load: {{profile: {{steady: {{rate: 1, duration: 1s}}}}, request: {{path: /}}}}\n"
            ),
            "s.yaml:4:5: steps[0]: a step is either a `request` or a `load` phase, not both",
        ),
        (
            format!("{HEAD}steps:\n  - request: {{path: /}}\n"),
            "s.yaml:4:5: steps[0]: missing field `name`",
        ),
        (
            format!("{HEAD}steps:\n  - name: a\n    after: soon\n    request: {{path: /}}\n"),
            "s.yaml:5:12: steps[0].after: invalid value: string \"soon\", expected a duration such as `250ms`, `30s` or `2m`",
        ),
        (
            "nme: t\n".to_string(),
            "s.yaml:1:1: nme: unknown field `nme`, did you mean `name`?",
        ),
        (
            // Every schema problem at once, in file order.
            format!(
                "{HEAD}steps:\n  - name: a\n    requst: {{path: /}}\n    expect: {{stauts: 200}}\n"
            ),
            "s.yaml:5:5: steps[0].requst: unknown field `requst`, did you mean `request`?\ns.yaml:6:14: steps[0].expect.stauts: unknown field `stauts`, did you mean `status`?",
        ),
        (
            "name: [\n".to_string(),
            "s.yaml:2:1: name: did not find expected node content",
        ),
        (
            String::new(),
            "s.yaml: the file is empty: a scenario needs `name`, `gateway` and `steps`",
        ),
        (
            "name: a\nname: b\n".to_string(),
            "s.yaml:2:1: name: duplicate key `name` (first written on line 1): YAML keeps only one of them",
        ),
        (
            "- 1\n".to_string(),
            "s.yaml:1:1: invalid type: sequence, expected a mapping",
        ),
        (
            format!(
                "{HEAD}steps:\n  - name: a\n    request: {{path: /a.B/C, grpc: {{mesages: [x]}}}}\n    expect: {{grpc_status: DEADLINE}}\n"
            ),
            "s.yaml:5:36: steps[0].request.grpc.mesages: unknown field `mesages`, did you mean `messages`?\ns.yaml:6:27: steps[0].expect.grpc_status: unknown gRPC status `DEADLINE`: expected 0 to 16 or a name (OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED)",
        ),
        (
            format!(
                "{HEAD}upstreams:\n  g: {{protocol: h3}}\nsteps:\n  - name: a\n    request: {{path: /}}\n    expect: {{upstream: {{version: 3}}, messages: {{gap: {{min: soon}}}}}}\n"
            ),
            "s.yaml:4:17: upstreams.g.protocol: unknown variant `h3`, expected one of `http1`, `h2c`, `h2`, `auto`\ns.yaml:8:34: steps[0].expect.upstream.version: unknown HTTP version `3`: expected \"1.1\" or \"2\"\ns.yaml:8:60: steps[0].expect.messages.gap.min: invalid value: string \"soon\", expected a duration such as `250ms`, `30s` or `2m`",
        ),
        (
            format!("{HEAD}steps: []\n---\nx: 1\n"),
            "s.yaml: the file holds more than one YAML document (`---`); a scenario is a single document",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnose(&text), want, "{text:?}");
    }
}

#[test]
fn an_unreadable_scenario_is_named() {
    let err = load(Path::new("/nonexistent/s.yaml")).expect_err("missing file");
    let err = &err[0];
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
