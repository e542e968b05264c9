//! `check`'s diagnostics, pinned: each kind of problem with its line, column and field path, the
//! invalid fixtures, and proptests that no text makes the loader panic or misplace a position.

use super::*;
use proptest::prelude::*;

/// A diagnostic as a test expects it: `line:column` (`-` for none), field path, and a
/// substring of the message.
type Want = (&'static str, &'static str, &'static str);

fn diagnose(yaml: &str) -> Vec<Diagnostic> {
    match load_str("test.yaml", yaml) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    }
}

fn position(d: &Diagnostic) -> String {
    match (d.line, d.column) {
        (Some(line), Some(column)) => format!("{line}:{column}"),
        _ => "-".into(),
    }
}

fn assert_diagnostics(case: &str, yaml: &str, want: &[Want]) {
    let got = diagnose(yaml);
    let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), want.len(), "{case}: {shown:#?}");
    for (d, (at, path, message)) in got.iter().zip(want) {
        assert_eq!(d.file, "test.yaml", "{case}");
        assert_eq!(position(d), *at, "{case}: position of {d}");
        assert_eq!(d.path, *path, "{case}: path of {d}");
        assert!(
            d.message.contains(message),
            "{case}: `{d}` lacks `{message}`"
        );
    }
}

#[test]
fn each_kind_of_problem_is_reported_with_its_line_column_and_path() {
    let cases: &[(&str, &str, &[Want])] = &[
        (
            "YAML syntax: one diagnostic where reading stopped",
            "routes:\n  - name: a\n    match: {path: /x\n",
            &[("4:1", "", "invalid YAML: did not find expected ',' or '}'")],
        ),
        (
            "duplicate keys: every one, at the second occurrence",
            "upstreams:\n  a:\n    instances: [127.0.0.1:1]\n  a:\n    instances: [127.0.0.1:2]\nlimits: {idle_timeout: 1s, idle_timeout: 2s}\n",
            &[
                (
                    "4:3",
                    "upstreams.a",
                    "duplicate key `a` (first written on line 2)",
                ),
                (
                    "6:28",
                    "limits.idle_timeout",
                    "duplicate key `idle_timeout`",
                ),
            ],
        ),
        (
            "a sequence is not a config",
            "- a\n- b\n",
            &[(
                "1:1",
                "",
                "must be a mapping of sections (`listeners`, `upstreams`, `routes`, ...), found a sequence",
            )],
        ),
        (
            "a scalar is not a config",
            "hello\n",
            &[("1:1", "", "found a string")],
        ),
        (
            "two documents",
            "a: 1\n---\nb: 2\n",
            &[("-", "", "more than one YAML document")],
        ),
        (
            "unknown top-level keys, with a suggestion when one is close",
            "rotes: []\nlistnrs: []\ncolour: blue\n",
            &[
                (
                    "1:1",
                    "rotes",
                    "unknown field `rotes`, did you mean `routes`?",
                ),
                (
                    "2:1",
                    "listnrs",
                    "unknown field `listnrs`, did you mean `listeners`?",
                ),
                (
                    "3:1",
                    "colour",
                    "unknown field `colour`, expected one of `listeners`, `admin`, `limits`, `workers`, `internal_headers`, `access_log`, `recording`, `cors`, `auth`, `rate_limits`, `upstreams`, `routes`",
                ),
            ],
        ),
        (
            "nested unknown field, wrong type, bad duration, negative count: all at once",
            "limits:\n  idle_timeout: soon\n  max_headers: -1\nroutes:\n  - name: a\n    match:\n      path: /x\n      method: [GET]\n    priority: high\n",
            &[
                (
                    "2:17",
                    "limits.idle_timeout",
                    "invalid value: string \"soon\", expected a duration such as `250ms`",
                ),
                (
                    "3:16",
                    "limits.max_headers",
                    "invalid value: integer `-1`, expected a non-negative integer",
                ),
                (
                    "8:7",
                    "routes[0].match.method",
                    "unknown field `method`, did you mean `methods`?",
                ),
                (
                    "9:15",
                    "routes[0].priority",
                    "invalid type: string \"high\", expected an integer",
                ),
            ],
        ),
        (
            "problems in one sequence keep their own indices",
            "routes:\n  - name: a\n    match: {path: /x, methods: [GET, 1, POST, [x]]}\n",
            &[
                (
                    "3:38",
                    "routes[0].match.methods[1]",
                    "invalid type: integer `1`, expected a string",
                ),
                (
                    "3:47",
                    "routes[0].match.methods[3]",
                    "invalid type: sequence, expected a string",
                ),
            ],
        ),
        (
            "upstream instances in both forms",
            "upstreams:\n  a:\n    instances:\n      - 9101\n      - {address: 127.0.0.1:1, wieght: 2}\n      - {address: 127.0.0.1:2, weight: heavy}\n",
            &[
                (
                    "4:9",
                    "upstreams.a.instances[0]",
                    "expected an instance address such as `127.0.0.1:9001` or a mapping with `address` and `weight`, found a number",
                ),
                (
                    "5:32",
                    "upstreams.a.instances[1].wieght",
                    "unknown field `wieght`, did you mean `weight`?",
                ),
                (
                    "6:40",
                    "upstreams.a.instances[2].weight",
                    "invalid type: string \"heavy\", expected an integer from 0 to 4294967295",
                ),
            ],
        ),
        (
            "missing fields; a typo is not also reported as a missing field",
            "listeners:\n  - name: public\n    adress: 127.0.0.1:8080\n  - address: 127.0.0.1:8081\nroutes:\n  - name: a\n",
            &[
                (
                    "3:5",
                    "listeners[0].adress",
                    "unknown field `adress`, did you mean `address`?",
                ),
                ("4:5", "listeners[1]", "missing field `name`"),
                ("6:5", "routes[0]", "missing field `match`"),
            ],
        ),
        (
            "sections of the wrong kind; empty sections are absent ones",
            "listeners: {public: 127.0.0.1:8080}\nupstreams: [a, b]\nroutes: true\nadmin:\ncors: ~\n",
            &[
                (
                    "1:1",
                    "listeners",
                    "expected a sequence (a list of `- ...` entries), found a mapping",
                ),
                (
                    "2:1",
                    "upstreams",
                    "expected a mapping from upstream name to upstream, found a sequence",
                ),
                ("3:9", "routes", "found a boolean"),
            ],
        ),
        (
            "a route that is not a mapping",
            "routes:\n  - hello\n",
            &[(
                "2:5",
                "routes[0]",
                "invalid type: string \"hello\", expected a mapping",
            )],
        ),
        (
            "meaning: addresses, instances, methods, names, upstreams, actions, statuses",
            concat!(
                "listeners:\n",
                "  - name: public\n",
                "    address: 127.0.0.1\n",
                "upstreams:\n",
                "  users-svc:\n",
                "    instances: []\n",
                "routes:\n",
                "  - name: users\n",
                "    match: {path: /api/*, methods: [\"GE T\"]}\n",
                "    upstream: users-svc\n",
                "  - name: users\n",
                "    match: {path: /api/v2/*}\n",
                "    upstream: nope\n",
                "  - name: both\n",
                "    match: {path: /b}\n",
                "    upstream: users-svc\n",
                "    respond: {status: 404}\n",
                "  - name: neither\n",
                "    match: {path: /c}\n",
                "  - name: fallback\n",
                "    match: {path: /*}\n",
                "    respond: {status: 302}\n",
            ),
            &[
                (
                    "3:14",
                    "listeners[0].address",
                    "`127.0.0.1` is not a `host:port` address",
                ),
                (
                    "6:5",
                    "upstreams.users-svc.instances",
                    "an upstream needs at least one instance",
                ),
                (
                    "9:37",
                    "routes[0].match.methods[0]",
                    "`GE T` is not an HTTP method",
                ),
                (
                    "11:11",
                    "routes[1].name",
                    "duplicate route name `users` (first used by routes[0])",
                ),
                (
                    "13:15",
                    "routes[1].upstream",
                    "unknown upstream `nope` (known: users-svc)",
                ),
                ("17:5", "routes[2].respond", "not both"),
                (
                    "18:5",
                    "routes[3]",
                    "a route needs an `upstream` to forward to or a `respond` answer",
                ),
                (
                    "22:23",
                    "routes[4].respond.status",
                    "`302` is not a 4xx or 5xx status",
                ),
            ],
        ),
        (
            "meaning: header names and CORS",
            "internal_headers: [\"x-ok\", \"bad header\"]\ncors:\n  allowed_origins: [\"*\"]\n  allow_credentials: true\n",
            &[
                (
                    "1:28",
                    "internal_headers[1]",
                    "`bad header` is not a valid header name",
                ),
                (
                    "3:3",
                    "cors.allowed_origins",
                    "`*` cannot be combined with allow_credentials",
                ),
            ],
        ),
        (
            "meaning: CORS with no methods is not silently off",
            "cors: {allowed_origins: [a], allowed_methods: []}\n",
            &[("1:30", "cors.allowed_methods", "list at least one method")],
        ),
        (
            "routing: a shadowed route and a path no catch-all covers",
            concat!(
                "upstreams:\n",
                "  legacy: {instances: [127.0.0.1:1]}\n",
                "  users: {instances: [127.0.0.1:2]}\n",
                "routes:\n",
                "  - name: legacy-api\n",
                "    match: {path: /api/*}\n",
                "    priority: 200\n",
                "    upstream: legacy\n",
                "  - name: users\n",
                "    match: {path: /api/v1/users/*, methods: [GET]}\n",
                "    priority: 100\n",
                "    upstream: users\n",
                "  - name: health\n",
                "    match: {path: /health}\n",
                "    respond: {status: 503}\n",
            ),
            &[
                (
                    "9:5",
                    "routes[1]",
                    "route `users` can never match: `legacy-api` (routes[0], priority 200) ranks higher",
                ),
                (
                    "14:19",
                    "routes[2].match.path",
                    "no catch-all route covers `/health`",
                ),
            ],
        ),
        (
            "upstream protocols: ALPN needs TLS, h2c is cleartext, a connection carries a stream",
            concat!(
                "upstreams:\n",
                "  a: {instances: [127.0.0.1:1], protocol: h2}\n",
                "  b: {instances: [127.0.0.1:2], protocol: auto}\n",
                "  c: {instances: [127.0.0.1:3], protocol: h2c, http2: {max_concurrent_streams: 0}}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, upstream: a}\n",
            ),
            &[
                (
                    "2:43",
                    "upstreams.a.protocol",
                    "`h2` is HTTP/2 agreed over TLS",
                ),
                (
                    "3:43",
                    "upstreams.b.protocol",
                    "`auto` picks the protocol by ALPN",
                ),
                (
                    "4:80",
                    "upstreams.c.http2.max_concurrent_streams",
                    "at least one stream",
                ),
            ],
        ),
        (
            "workers: zero threads cannot serve",
            concat!(
                "workers: 0\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
            ),
            &[("1:10", "workers", "at least one worker thread")],
        ),
        (
            "upstream protocols: an unknown one names those there are",
            concat!(
                "upstreams:\n",
                "  d: {instances: [127.0.0.1:4], protocol: http3}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, upstream: d}\n",
            ),
            &[(
                "2:43",
                "upstreams.d.protocol",
                "unknown variant `http3`, expected one of `http1`, `h2c`, `h2`, `auto`",
            )],
        ),
        (
            "listener paths: an unknown action names those there are, an unknown key is named",
            concat!(
                "listeners:\n",
                "  - {name: a, address: 127.0.0.1:0, paths: {escaped_slashes: decode}}\n",
                "  - {name: b, address: 127.0.0.1:0, paths: {path_parameters: strip}}\n",
                "  - {name: c, address: 127.0.0.1:0, paths: {merge_slashes: true}}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
            ),
            &[
                (
                    "2:62",
                    "listeners[0].paths.escaped_slashes",
                    "unknown variant `decode`, expected one of `reject`, `keep`, `unescape_and_redirect`",
                ),
                (
                    "3:62",
                    "listeners[1].paths.path_parameters",
                    "unknown variant `strip`, expected `reject` or `keep`",
                ),
                (
                    "4:45",
                    "listeners[2].paths.merge_slashes",
                    "unknown field `merge_slashes`, expected one of `escaped_slashes`, `path_parameters`",
                ),
            ],
        ),
        (
            "a gRPC route never upgrades",
            concat!(
                "upstreams:\n",
                "  a: {instances: [127.0.0.1:1], protocol: h2c}\n",
                "routes:\n",
                "  - {name: rpc, match: {path: /pkg.Svc/*}, upstream: a, grpc: true, websocket: true}\n",
                "  - {name: all, match: {path: /*}, upstream: a}\n",
            ),
            &[(
                "4:63",
                "routes[0].grpc",
                "serves gRPC or WebSocket upgrades, not both",
            )],
        ),
        (
            "`grpc` is a boolean",
            concat!(
                "routes:\n",
                "  - {name: odd, match: {path: /odd/*}, respond: {status: 404}, grpc: sometimes}\n",
            ),
            &[("2:70", "routes[0].grpc", "expected a boolean")],
        ),
    ];
    for (case, yaml, want) in cases {
        assert_diagnostics(case, yaml, want);
    }
}

#[test]
fn an_empty_file_is_one_clear_diagnostic() {
    for yaml in [
        "",
        "\n\n",
        "# everything commented out\n# routes: []\n",
        "~\n",
    ] {
        let got = diagnose(yaml);
        assert_eq!(got.len(), 1, "{yaml:?}: {got:?}");
        assert_eq!(
            got[0].to_string(),
            "test.yaml: the config is empty: expected a mapping with sections such as `listeners`, `upstreams` and `routes`"
        );
    }
}

#[test]
fn empty_sections_count_as_absent() {
    let runtime = load_str(
        "test.yaml",
        "listeners:\nupstreams:\ncors:\nroutes:\n  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
    );
    let runtime = runtime.expect("empty sections are absent");
    assert!(runtime.listeners.is_empty());
    assert!(runtime.cors.is_none());
    assert_eq!(runtime.routes.routes().len(), 1);
}

#[test]
fn display_reads_file_line_column_path_message() {
    let d = Diagnostic {
        file: "fixtures/bad.yaml".into(),
        line: Some(14),
        column: Some(15),
        path: "routes[2].upstream".into(),
        message: "unknown upstream `nope` (known: users-svc, admin-svc)".into(),
    };
    assert_eq!(
        d.to_string(),
        "fixtures/bad.yaml:14:15: routes[2].upstream: unknown upstream `nope` (known: users-svc, admin-svc)"
    );
    let nowhere = Diagnostic {
        line: None,
        column: None,
        path: String::new(),
        ..d
    };
    assert_eq!(
        nowhere.to_string(),
        "fixtures/bad.yaml: unknown upstream `nope` (known: users-svc, admin-svc)"
    );
}

#[test]
fn a_missing_file_is_a_diagnostic_naming_it() {
    let got = check_file(Path::new("/nonexistent/gateway.yaml"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].file, "/nonexistent/gateway.yaml");
    assert!(
        got[0].message.starts_with("cannot read the file"),
        "{}",
        got[0]
    );
}

const REFERENCE: &str = include_str!("../../../../fixtures/reference.yaml");

#[test]
fn the_reference_fixture_loads_clean() {
    let runtime = match load_str("fixtures/reference.yaml", REFERENCE) {
        Ok(runtime) => runtime,
        Err(diagnostics) => panic!("{diagnostics:#?}"),
    };
    assert_eq!(runtime.listeners.len(), 1);
    assert_eq!(runtime.listeners[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(
        runtime.admin.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9901")
    );
    let mut upstreams: Vec<&str> = runtime.upstreams.keys().map(|k| &**k).collect();
    upstreams.sort_unstable();
    assert_eq!(
        upstreams,
        ["admin-svc", "payments-svc", "users-svc", "users-svc-v2"]
    );
    let routes: Vec<&str> = runtime.routes.routes().iter().map(|r| &*r.name).collect();
    for name in [
        "users-v1",
        "users-v1-create",
        "users-v2",
        "admin",
        "payments",
        "unknown-route",
        "not-found",
    ] {
        assert!(routes.contains(&name), "{name} in {routes:?}");
    }
    let cors = runtime.cors.expect("cors");
    assert_eq!(cors.allowed_origins, ["https://app.example.com"]);
    assert!(cors.allow_credentials);
}

/// The broken fixtures, as `gateway check` prints them: every problem of a file in one call.
#[test]
fn the_invalid_fixtures_report_every_problem_in_one_call() {
    let fixtures: &[(&str, &str, &[&str])] = &[
        (
            "fixtures/invalid/syntax.yaml",
            include_str!("../../../../fixtures/invalid/syntax.yaml"),
            &[
                "fixtures/invalid/syntax.yaml:9:7: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 8 column 16",
            ],
        ),
        (
            "fixtures/invalid/duplicate-keys.yaml",
            include_str!("../../../../fixtures/invalid/duplicate-keys.yaml"),
            &[
                "fixtures/invalid/duplicate-keys.yaml:9:3: upstreams.users-svc: duplicate key `users-svc` (first written on line 7): YAML keeps only one of them",
                "fixtures/invalid/duplicate-keys.yaml:15:7: routes[0].match.path: duplicate key `path` (first written on line 14): YAML keeps only one of them",
            ],
        ),
        (
            "fixtures/invalid/schema.yaml",
            include_str!("../../../../fixtures/invalid/schema.yaml"),
            &[
                "fixtures/invalid/schema.yaml:5:5: listeners[0].adress: unknown field `adress`, did you mean `address`?",
                "fixtures/invalid/schema.yaml:8:17: limits.idle_timeout: invalid value: string \"soon\", expected a duration such as `250ms`, `30s` or `2m`",
                "fixtures/invalid/schema.yaml:9:16: limits.max_headers: invalid value: integer `-1`, expected a non-negative integer",
                "fixtures/invalid/schema.yaml:11:1: timeouts: unknown field `timeouts`, expected one of `listeners`, `admin`, `limits`, `workers`, `internal_headers`, `access_log`, `recording`, `cors`, `auth`, `rate_limits`, `upstreams`, `routes`",
                "fixtures/invalid/schema.yaml:16:33: upstreams.users-svc.instances[1]: expected an instance address such as `127.0.0.1:9001` or a mapping with `address` and `weight`, found a number",
                "fixtures/invalid/schema.yaml:17:22: upstreams.users-svc.connect_timeout: invalid value: string \"2 parsecs\", expected a duration such as `250ms`, `30s` or `2m`",
                "fixtures/invalid/schema.yaml:23:7: routes[0].match.method: unknown field `method`, did you mean `methods`?",
                "fixtures/invalid/schema.yaml:24:15: routes[0].priority: invalid type: string \"high\", expected an integer",
                "fixtures/invalid/schema.yaml:28:28: routes[1].respond.body: unknown field `body`, expected one of `status`, `detail`",
            ],
        ),
        (
            "fixtures/invalid/semantics.yaml",
            include_str!("../../../../fixtures/invalid/semantics.yaml"),
            &[
                "fixtures/invalid/semantics.yaml:5:14: listeners[0].address: `127.0.0.1` is not a `host:port` address",
                "fixtures/invalid/semantics.yaml:8:12: admin.address: `localhost:admin` is not a `host:port` address",
                "fixtures/invalid/semantics.yaml:14:5: upstreams.admin-svc.instances: an upstream needs at least one instance",
                "fixtures/invalid/semantics.yaml:22:11: routes[1].name: duplicate route name `users` (first used by routes[0])",
                "fixtures/invalid/semantics.yaml:25:15: routes[1].upstream: unknown upstream `users-svc-v2` (known: admin-svc, users-svc)",
                "fixtures/invalid/semantics.yaml:36:21: routes[3].rewrite.strip_prefix: `api/orders` must start with `/`",
                "fixtures/invalid/semantics.yaml:41:15: routes[4].respond.status: `200` is not a 4xx or 5xx status",
            ],
        ),
        (
            "fixtures/invalid/routing.yaml",
            include_str!("../../../../fixtures/invalid/routing.yaml"),
            &[
                "fixtures/invalid/routing.yaml:19:5: routes[1]: route `users` can never match: `legacy-api` (routes[0], priority 200) ranks higher and accepts every request it would",
                "fixtures/invalid/routing.yaml:28:13: routes[2].match.path: no catch-all route covers `/health`: add an unconstrained prefix route (e.g. `path: /*` with `respond: {status: 404}`) so unmatched requests are answered on purpose",
            ],
        ),
    ];
    for (name, text, want) in fixtures {
        let got: Vec<String> = match load_str(name, text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(got, *want, "{name}");
    }
}

/// Snippets that make YAML interesting: indentation, flow and block markers, anchors, tags.
const SNIPPETS: &[&str] = &[
    "\n",
    "  ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "~",
    "\"",
    "'",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "\t",
    "? ",
    "0",
    "-1",
    "99999999999999999999",
    "/*",
    "/api/*",
    "{id}",
    "upstream: ",
    "routes:\n",
    "  - name: x\n",
    "priority: ",
    "127.0.0.1:0",
    "1s",
    "\u{feff}",
    "é",
    "\r\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..60).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), prop::sample::select(SNIPPETS)).prop_map(|(at, s)| Edit::Insert(at, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, edit: &Edit) -> String {
    match edit {
        Edit::Delete(at, n) => {
            let start = boundary(text, *at);
            let end = boundary(text, start.saturating_add(*n).min(text.len()));
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert(at, snippet) => {
            let at = boundary(text, *at);
            format!("{}{snippet}{}", &text[..at], &text[at..])
        }
        Edit::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let i = i % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.concat()
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.concat()
        }
    }
}

/// What every answer must satisfy, good config or not.
fn assert_well_formed(text: &str, result: Result<Runtime, Vec<Diagnostic>>) {
    let Err(diagnostics) = result else { return };
    assert!(!diagnostics.is_empty());
    // YAML breaks lines at CR, LF, CRLF, NEL, LS and PS; its positions count those.
    let breaks = text.replace("\r\n", "\n");
    let lines = breaks
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
        + 2;
    for d in &diagnostics {
        assert!(!d.message.is_empty(), "{d}");
        assert!(
            d.line.is_none_or(|l| (1..=lines).contains(&l)),
            "{d} beyond {lines} lines"
        );
        assert_eq!(d.line.is_some(), d.column.is_some(), "{d}");
    }
    assert!(diagnostics.is_sorted_by_key(|d| (d.line, d.column)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn load_str_never_panics_on_arbitrary_text(text in any::<String>()) {
        assert_well_formed(&text, load_str("p.yaml", &text));
    }

    #[test]
    fn load_str_never_panics_on_yaml_like_text(text in "[ a-z0-9:\\-\\[\\]{},#&*!|>'\"\n?~.]{0,300}") {
        assert_well_formed(&text, load_str("p.yaml", &text));
    }

    #[test]
    fn load_str_never_panics_on_mutations_of_the_reference(edits in prop::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(REFERENCE.to_string(), |text, e| apply(&text, e));
        assert_well_formed(&text, load_str("p.yaml", &text));
    }
}

#[test]
fn recording_problems_are_located_at_their_fields() {
    let routes = "routes:\n  - { name: all, match: { path: /* }, respond: { status: 404 } }\n";
    assert_diagnostics(
        "every value problem at once",
        &format!(
            "{routes}recording:\n  sample: 1.5\n  rotate_bytes: 100\n  keep: 0\n  queue: 0\n  redact_headers: [\"bad header\"]\n"
        ),
        &[
            ("3:1", "recording.path", "required when recording is on"),
            ("4:11", "recording.sample", "use a number from 0 to 1"),
            ("5:17", "recording.rotate_bytes", "4096 bytes or more"),
            ("6:9", "recording.keep", "keep at least 1"),
            ("7:10", "recording.queue", "at least 1"),
            (
                "8:20",
                "recording.redact_headers[0]",
                "not a valid header name",
            ),
        ],
    );
    assert_diagnostics(
        "a missing directory",
        &format!("{routes}recording: {{ path: /no/such/dir/traffic.jsonl }}\n"),
        &[(
            "3:20",
            "recording.path",
            "the directory `/no/such/dir` does not exist",
        )],
    );
    assert_diagnostics(
        "a typo",
        &format!("{routes}recording: {{ path: t.jsonl, smaple: 0.5 }}\n"),
        &[("3:29", "recording.smaple", "did you mean `sample`")],
    );
    assert_diagnostics(
        "switched off, nothing is required",
        &format!("{routes}recording: {{ enabled: false }}\n"),
        &[],
    );
    let on = load_str(
        "test.yaml",
        &format!("{routes}recording: {{ path: t.jsonl }}\n"),
    )
    .expect("valid");
    let recording = on.recording.expect("on");
    assert_eq!(
        (recording.max_body_bytes, recording.keep, recording.queue),
        (65_536, 5, 8192)
    );
    assert!(recording.always && !recording.responses);
    let off = load_str("test.yaml", routes).expect("valid");
    assert!(off.recording.is_none(), "off unless the section is written");
}

#[test]
fn the_access_log_is_a_destination_or_a_mapping_whose_fields_are_record_fields() {
    use crate::config::raw::AccessLogTo;
    use crate::vocab::record_fields::FieldSet;
    let routes = "routes:\n  - { name: all, match: { path: /* }, respond: { status: 404 } }\n";
    assert_diagnostics(
        "an unknown field name, at its line",
        &format!("{routes}access_log:\n  path: off\n  fields:\n    - status\n    - user_agent\n"),
        &[(
            "7:7",
            "access_log.fields[1]",
            "unknown record field `user_agent`, expected one of `request_id`",
        )],
    );
    assert_diagnostics(
        "a typo in the mapping",
        &format!("{routes}access_log: {{ path: off, field: [status] }}\n"),
        &[("3:26", "access_log.field", "did you mean `fields`")],
    );
    assert_diagnostics(
        "neither a string nor a mapping",
        &format!("{routes}access_log: [status]\n"),
        &[("3:1", "access_log", "a mapping with `path` and `fields`")],
    );
    let load = |section: &str| {
        load_str("test.yaml", &format!("{routes}{section}"))
            .expect("valid")
            .access_log
    };
    let default = load("");
    assert_eq!((default.to, default.fields), (AccessLogTo::Stdout, None));
    let file = load("access_log: /var/log/gw.jsonl\n");
    assert_eq!(file.to, AccessLogTo::File("/var/log/gw.jsonl".into()));
    let chosen = load("access_log: { path: gw.jsonl, fields: [status, peer] }\n");
    assert_eq!(chosen.to, AccessLogTo::File("gw.jsonl".into()));
    assert_eq!(chosen.fields, FieldSet::of(&["peer", "status"]).ok());
    assert_eq!(load("access_log: { path: off }\n").to, AccessLogTo::Off);
    assert_diagnostics(
        "an empty list",
        &format!("{routes}access_log: {{ fields: [] }}\n"),
        &[(
            "3:1",
            "access_log",
            "an empty `fields` list would write `{}` lines",
        )],
    );
}

#[test]
fn identity_header_and_client_certificate_problems_are_located_at_their_fields() {
    let cases: &[(&str, &str, &[Want])] = &[
        (
            "non_ascii names its two modes",
            concat!(
                "auth: {identity_headers: {non_ascii: escape}}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
            ),
            &[(
                "1:38",
                "auth.identity_headers.non_ascii",
                "unknown variant `escape`, expected `percent_encode` or `reject`",
            )],
        ),
        (
            "a certificate mapping needs a listener that verifies certificates, and one tenant source",
            concat!(
                "auth:\n",
                "  client_cert: {subject: cn, tenant: {ou: true, san_uri_pattern: 'spiffe://a/{tenant}'}}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
            ),
            &[
                ("2:3", "auth.client_cert", "no listener verifies them"),
                (
                    "2:30",
                    "auth.client_cert.tenant",
                    "exactly one of `ou: true`",
                ),
            ],
        ),
        (
            "a SAN pattern names the tenant; the subject is one of three names",
            concat!(
                "auth:\n",
                "  client_cert: {subject: email, tenant: {san_uri_pattern: 'spiffe://a/b'}}\n",
                "routes:\n",
                "  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
            ),
            &[(
                "2:26",
                "auth.client_cert.subject",
                "unknown variant `email`, expected one of `cn`, `san_uri`, `san_dns`",
            )],
        ),
        (
            "route rules: a fixed tenant, the client_cert kind, forward_client_cert",
            concat!(
                "auth: {api_keys: {keys: [{id: k, key: secret}]}}\n",
                "upstreams: {a: {instances: [127.0.0.1:1]}}\n",
                "routes:\n",
                "  - {name: t, match: {path: /t/*}, upstream: a, auth: {tenant: {equals: ''}}}\n",
                "  - {name: c, match: {path: /c/*}, upstream: a, auth: {credentials: [client_cert]}}\n",
                "  - {name: f, match: {path: /f/*}, upstream: a, forward_client_cert: yes please}\n",
            ),
            &[(
                "6:70",
                "routes[2].forward_client_cert",
                "expected a boolean",
            )],
        ),
        (
            "route rules after the schema passes",
            concat!(
                "auth: {api_keys: {keys: [{id: k, key: secret}]}}\n",
                "upstreams: {a: {instances: [127.0.0.1:1]}}\n",
                "routes:\n",
                "  - {name: t, match: {path: /t/*}, upstream: a, auth: {tenant: {equals: ''}}}\n",
                "  - {name: c, match: {path: /c/*}, upstream: a, auth: {credentials: [client_cert]}}\n",
                "  - {name: e, match: {path: /e/*}, upstream: a, auth: {tenant: {equals: a, header: x-t}}}\n",
            ),
            &[
                (
                    "4:65",
                    "routes[0].auth.tenant.equals",
                    "must be non-empty text",
                ),
                (
                    "5:56",
                    "routes[1].auth.credentials",
                    "accepts `client_cert` but `auth.client_cert` configures no mapping",
                ),
                (
                    "6:56",
                    "routes[2].auth.tenant",
                    "exactly one of `path_param`, `header` or `equals`",
                ),
            ],
        ),
    ];
    for (case, yaml, want) in cases {
        assert_diagnostics(case, yaml, want);
    }
}

#[test]
fn the_limits_that_protect_the_gateway_are_checked_where_written() {
    let routes = "routes:\n  - { name: all, match: { path: /* }, respond: { status: 404 }, max_concurrent_requests: 0 }\n";
    assert_diagnostics(
        "a zero turns nothing off: each is named where it is written",
        &format!(
            "{routes}limits:\n  tls_handshake_timeout: 0s\n  body_read_timeout: 0s\n  min_body_rate: 0\n  max_concurrent_requests: 0\n  max_connections: 0\n"
        ),
        &[
            (
                "2:90",
                "routes[0].max_concurrent_requests",
                "room for 0 requests",
            ),
            ("4:26", "limits.tls_handshake_timeout", "a timeout of 0s"),
            ("5:22", "limits.body_read_timeout", "a timeout of 0s"),
            ("6:18", "limits.min_body_rate", "leave the field out"),
            ("7:28", "limits.max_concurrent_requests", "a limit of 0"),
            ("8:20", "limits.max_connections", "a limit of 0"),
        ],
    );
    assert_diagnostics(
        "a rate is a number of bytes per second",
        &format!("{routes}limits: {{ min_body_rate: fast }}\n")
            .replace(", max_concurrent_requests: 0", ""),
        &[("3:26", "limits.min_body_rate", "")],
    );
    let defaults = load_str(
        "test.yaml",
        "routes:\n  - { name: all, match: { path: /* }, respond: { status: 404 } }\n",
    )
    .expect("valid");
    let limits = &defaults.limits;
    assert_eq!(
        limits.tls_handshake_timeout,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(limits.body_read_timeout, std::time::Duration::from_secs(30));
    assert_eq!(
        (
            limits.min_body_rate,
            limits.max_concurrent_requests,
            limits.max_connections
        ),
        (None, None, None),
        "off unless written"
    );
}

#[test]
fn the_fields_removed_by_name_are_compiled_into_one_list_each_way() {
    let runtime = load_str(
        "test.yaml",
        "internal_headers: [X-Internal, server]\nauth:\n  api_keys:\n    header: x-key\n    keys: []\nroutes:\n  - {name: all, match: {path: /*}, respond: {status: 404}}\n",
    )
    .expect("a config");
    let names = |list: &[http::HeaderName]| -> Vec<String> {
        list.iter().map(|n| n.as_str().to_owned()).collect()
    };
    // Internal headers first, then the credential fields (`x-api-key` always, and the configured
    // key header) and the client-certificate fields; each name once.
    assert_eq!(
        names(&runtime.request_fields_removed),
        [
            "x-user-id",
            "x-tenant-id",
            "x-auth-scopes",
            "x-internal",
            "server",
            "authorization",
            "x-api-key",
            "x-key",
            "client-cert",
            "client-cert-chain",
        ]
    );
    // The software fields, then the internal headers not already among them.
    assert_eq!(
        names(&runtime.response_fields_removed),
        [
            "server",
            "x-powered-by",
            "x-user-id",
            "x-tenant-id",
            "x-auth-scopes",
            "x-internal",
        ]
    );
}
