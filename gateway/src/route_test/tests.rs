//! How a route-case file that cannot be used is reported: pinned to the exact text, because
//! `gateway routes --test` prints it and moving to the shared YAML loader must not change it.
//! The text is serde_yaml_ng's own message after the field path, so the path often shows twice
//! and the position is repeated at the end; the scenario runner words the same errors differently
//! (see the simulator's `scenario::model` tests). Also: the JUnit report stays well-formed
//! whatever the case names hold.

use super::*;

fn diagnose(text: &str) -> String {
    match parse_cases("cases.yaml", text) {
        Ok(_) => panic!("expected a diagnostic for {text:?}"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn a_case_file_that_cannot_be_used_is_one_diagnostic_in_serdes_words() {
    let cases = [
        (
            "cases:\n  - request:\n      pth: /x\n    expect: {route: a}\n",
            "cases.yaml:3:7: cases[0].request.pth: cases[0].request: unknown field `pth`, expected one of `method`, `path`, `host`, `headers` at line 3 column 7",
        ),
        (
            "cases:\n  - request: {path: /x}\n    expect: {status: many}\n",
            "cases.yaml:3:22: cases[0].expect.status: cases[0].expect.status: invalid type: string \"many\", expected u16 at line 3 column 22",
        ),
        (
            "cases:\n  - request: {path: /x}\n",
            "cases.yaml:2:5: cases[0]: cases[0]: missing field `expect` at line 2 column 5",
        ),
        (
            "case: []\n",
            "cases.yaml:1:1: case: unknown field `case`, expected `cases`",
        ),
        (
            "cases: [\n",
            "cases.yaml:2:1: cases: did not find expected node content at line 2 column 1, while parsing a flow node",
        ),
        ("", "cases.yaml:1:1: .: missing field `cases`"),
        (
            "cases: []\ncases: []\n",
            "cases.yaml:1:1: .: duplicate field `cases`",
        ),
        (
            "cases: 5\n",
            "cases.yaml:1:8: cases: cases: invalid type: integer `5`, expected a sequence at line 1 column 8",
        ),
        (
            "cases:\n  - request: {path: /x}\n    expect: {stopped_at: nowhere}\n",
            "cases.yaml:3:13: cases[0].expect.stopped_at: cases[0].expect: unknown stage `nowhere`, expected one of: tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response at line 3 column 13",
        ),
        (
            "cases: []\n---\ncases: []\n",
            "cases.yaml: .: deserializing from YAML containing more than one document is not supported",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(diagnose(text), want, "{text:?}");
    }
}

#[test]
fn an_unreadable_case_file_is_named() {
    let err = load_cases(Path::new("/nonexistent/cases.yaml")).expect_err("missing file");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/cases.yaml: cannot read the file: "),
        "{err}"
    );
}

#[test]
fn a_good_case_file_loads() {
    let file = parse_cases(
        "cases.yaml",
        "cases:\n  - request: {path: /x}\n    expect: {route: a}\n",
    )
    .expect("valid");
    assert_eq!(file.cases.len(), 1);
    assert_eq!(file.cases[0].request.method, "GET");
}

#[test]
fn junit_survives_case_names_and_mismatches_that_xml_cannot_hold_raw() {
    let outcome = RunOutcome {
        cases: vec![CaseOutcome {
            label: "GET /a?x=1&y=<2> \"quoted\" \u{7}bell".into(),
            mismatches: vec!["path: expected /a&b, got </a>".into()],
            elapsed_nanos: 1_500_000,
        }],
        started_unix_millis: 0,
        unexercised: vec![],
        total_routes: 1,
    };
    let xml = outcome.junit("odd & named");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .expect("testcase");
    assert_eq!(
        case.attribute("name"),
        Some("GET /a?x=1&y=<2> \"quoted\" \u{FFFD}bell")
    );
    assert_eq!(case.attribute("classname"), Some("odd & named"));
    assert_eq!(case.attribute("time"), Some("0.001500"));
    let failure = case.first_element_child().expect("failure");
    assert_eq!(failure.text(), Some("path: expected /a&b, got </a>"));
    let suite = case.parent().expect("suite");
    assert_eq!(suite.attribute("timestamp"), Some("1970-01-01T00:00:00"));
}

#[test]
fn cases_are_evaluated_with_the_gateways_authority_and_the_first_listeners_path_options() {
    let config = |paths: &str| {
        crate::config::load_str(
            "<test>",
            &format!(
                "listeners: [{{name: a, address: 127.0.0.1:0{paths}}}]\n\
                 upstreams: {{u: {{instances: [127.0.0.1:1]}}}}\n\
                 routes:\n\
                 \x20 - {{name: admin, match: {{path: /admin/*, host: admin.example}}, upstream: u}}\n\
                 \x20 - {{name: all, match: {{path: /*}}, upstream: u}}\n"
            ),
        )
        .expect("config")
    };
    let case = |path: &str, host: Option<&str>| CaseRequest {
        method: "GET".into(),
        path: path.into(),
        host: host.map(str::to_string),
        headers: Default::default(),
    };
    let strict = config("");
    let verdict = |runtime: &Runtime, path: &str, host: Option<&str>| {
        let v = evaluate(runtime, &case(path, host)).expect("evaluates");
        (v.route, v.stopped_at.map(|s| s.as_str()), v.reason)
    };
    let stop = |stage: &'static str, reason: &str| (None, Some(stage), Some(reason.to_string()));
    assert_eq!(
        verdict(&strict, "/admin/x", Some("admin.example"))
            .0
            .as_deref(),
        Some("admin")
    );
    // The absolute form's authority wins over the case's host.
    assert_eq!(
        verdict(&strict, "http://admin.example/admin/x", Some("www.example"))
            .0
            .as_deref(),
        Some("admin")
    );
    assert_eq!(
        verdict(&strict, "/admin/x", Some("u@admin.example")),
        stop("tls", "invalid-host")
    );
    assert_eq!(
        verdict(&strict, "/a%2Fb", None),
        stop("route", "ambiguous-path")
    );
    assert_eq!(
        verdict(&strict, "/a;b", None),
        stop("route", "ambiguous-path")
    );
    let keep = config(", paths: {escaped_slashes: keep, path_parameters: keep}");
    assert_eq!(verdict(&keep, "/a%2Fb;c", None).0.as_deref(), Some("all"));
}
