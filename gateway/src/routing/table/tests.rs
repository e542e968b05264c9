//! The route table's tests, apart from the lookup they check so the lookup reads on its own:
//! examples of how routes rank, and the property that the trie always agrees with the linear
//! scan (`lookup_reference`). Proptest's saved failures live in
//! `proptest-regressions/routing/table/tests.txt`, the path it derives from this file's.

use http::{HeaderValue, StatusCode};
use proptest::prelude::*;

use super::super::normalize::normalize_path;
use super::super::pattern::RoutePattern;
use super::super::pattern::tests::{path_strategy, pattern_strategy};
use super::*;
use crate::config::CompiledRoute;
use crate::config::RouteAction;

/// What a test route needs; the rest of [`CompiledRoute`] is filled in by [`Spec::build`].
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    pattern: RoutePattern,
    priority: i32,
    methods: Vec<Method>,
    host: Option<String>,
    headers: Vec<(&'static str, ValueMatch)>,
    query: Vec<(&'static str, ValueMatch)>,
}

fn spec(name: &str, pattern: &str, priority: i32) -> Spec {
    Spec {
        name: name.to_string(),
        pattern: RoutePattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")),
        priority,
        methods: vec![],
        host: None,
        headers: vec![],
        query: vec![],
    }
}

impl Spec {
    fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }
    fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }
    fn header(mut self, name: &'static str, want: ValueMatch) -> Self {
        self.headers.push((name, want));
        self
    }
    fn query(mut self, name: &'static str, want: ValueMatch) -> Self {
        self.query.push((name, want));
        self
    }
    fn build(self, declaration_index: usize) -> Arc<CompiledRoute> {
        Arc::new(CompiledRoute {
            name: Arc::from(self.name.as_str()),
            declaration_index,
            priority: self.priority,
            template: Arc::from(self.pattern.raw.as_str()),
            pattern: self.pattern,
            methods: self.methods,
            host: self.host,
            headers: self
                .headers
                .into_iter()
                .map(|(n, m)| (http::HeaderName::from_static(n), m))
                .collect(),
            query: self
                .query
                .into_iter()
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
            action: RouteAction::Respond {
                status: StatusCode::NOT_FOUND,
                detail: Arc::from("test route"),
            },
            rewrite: None,
            max_body_bytes: 1 << 20,
            max_concurrent_requests: None,
            websocket: false,
            grpc: false,
            forward_client_cert: false,
            deprecation: None,
        })
    }
}

fn table(specs: Vec<Spec>) -> RouteTable<CompiledRoute> {
    RouteTable::new(
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.build(i))
            .collect(),
    )
}

/// A request in a test case.
struct Req {
    method: Method,
    host: Option<&'static str>,
    path: &'static str,
    headers: HeaderMap,
    query: Option<&'static str>,
}

fn req(method: Method, path: &'static str) -> Req {
    Req {
        method,
        host: None,
        path,
        headers: HeaderMap::new(),
        query: None,
    }
}

impl Req {
    fn host(mut self, host: &'static str) -> Self {
        self.host = Some(host);
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }
    fn query(mut self, query: &'static str) -> Self {
        self.query = Some(query);
        self
    }
    fn as_query(&self) -> RouteQuery<'_> {
        RouteQuery {
            method: &self.method,
            host: self.host,
            path: self.path,
            headers: &self.headers,
            query: self.query,
        }
    }
}

/// Looks up with both the trie and the reference, insists they agree, returns the name.
fn select(table: &RouteTable<CompiledRoute>, req: &Req) -> Option<String> {
    let q = req.as_query();
    let fast = table.lookup(&q).map(|r| r.name.to_string());
    let slow = lookup_reference(table.routes(), &q).map(|r| r.name.to_string());
    assert_eq!(fast, slow, "trie and reference disagree on {}", req.path);
    fast
}

/// The reference gateway's table (fixtures/reference.yaml), plus routes for the other conditions.
fn reference_table() -> RouteTable<CompiledRoute> {
    use ValueMatch::{Exact, Present};
    table(vec![
        spec("users", "/api/v1/users/*", 100).methods(&[Method::GET]),
        spec("users-v2", "/api/v2/users/*", 100).methods(&[Method::GET]),
        spec("admin", "/api/admin/*", 50),
        spec("payments", "/api/payments/*", 100),
        spec("catch-all", "/api/*", 0),
        spec("user-by-id", "/api/v1/users/{id}", 100).methods(&[Method::GET]),
        spec("user-create", "/api/v1/users", 100).methods(&[Method::POST]),
        spec("health", "/health", 0),
        spec("status-host", "/status", 0).host("ops.example.com"),
        spec("canary", "/api/v2/users/*", 110)
            .methods(&[Method::GET])
            .header("x-canary", Exact("1".into())),
        spec("debug", "/api/v2/users/*", 105)
            .methods(&[Method::GET])
            .query("debug", Present),
        spec("search", "/search", 0).query("q", Exact("a b".into())),
        spec("root", "/*", -10),
    ])
}

#[test]
fn selects_the_table() {
    let t = reference_table();
    let get = || Method::GET;
    // (request, the route it reaches)
    let cases: Vec<(Req, Option<&str>)> = vec![
        (req(get(), "/api/v1/users/7"), Some("user-by-id")),
        (req(get(), "/api/v1/users/7/posts"), Some("users")),
        (req(get(), "/api/v1/users"), Some("users")),
        (req(get(), "/api/v1/users/"), Some("users")),
        (req(Method::POST, "/api/v1/users"), Some("user-create")),
        // HEAD is not GET: the GET-only routes pass it by.
        (req(Method::HEAD, "/api/v1/users/7"), Some("catch-all")),
        (req(Method::DELETE, "/api/v1/users/7"), Some("catch-all")),
        (req(get(), "/api/v2/users/7"), Some("users-v2")),
        (req(Method::POST, "/api/admin/x"), Some("admin")),
        (req(get(), "/api/admin"), Some("admin")),
        (req(get(), "/api/payments/1"), Some("payments")),
        (req(get(), "/api/administrator"), Some("catch-all")),
        (req(get(), "/api"), Some("catch-all")),
        (req(get(), "/health"), Some("health")),
        (req(get(), "/health/"), Some("root")),
        (req(get(), "/"), Some("root")),
        (req(get(), "/status"), Some("root")),
        (
            req(get(), "/status").host("ops.example.com"),
            Some("status-host"),
        ),
        (
            req(get(), "/status").host("OPS.Example.COM:8443"),
            Some("status-host"),
        ),
        (
            req(get(), "/status").host("ops.example.com."),
            Some("status-host"),
        ),
        (
            req(get(), "/status").host("other.example.com"),
            Some("root"),
        ),
        (
            req(get(), "/api/v2/users/7").header("x-canary", "1"),
            Some("canary"),
        ),
        (
            req(get(), "/api/v2/users/7").header("x-canary", "0"),
            Some("users-v2"),
        ),
        // Any value of a repeated header may match.
        (
            req(get(), "/api/v2/users/7")
                .header("x-canary", "0")
                .header("x-canary", "1"),
            Some("canary"),
        ),
        (req(get(), "/api/v2/users/7").query("debug"), Some("debug")),
        (
            req(get(), "/api/v2/users/7").query("a=1&debug=0"),
            Some("debug"),
        ),
        (
            req(get(), "/api/v2/users/7").query("debugging=1"),
            Some("users-v2"),
        ),
        (req(get(), "/search").query("q=a+b"), Some("search")),
        (req(get(), "/search").query("x=1&q=a%20b"), Some("search")),
        (req(get(), "/search").query("q=ab"), Some("root")),
        (req(get(), "/search"), Some("root")),
        (req(get(), "relative"), None),
    ];
    for (request, expected) in &cases {
        assert_eq!(
            select(&t, request).as_deref(),
            *expected,
            "{} {} host={:?} query={:?}",
            request.method,
            request.path,
            request.host,
            request.query
        );
    }
}

#[test]
fn priority_then_specificity_then_declaration() {
    let get = || req(Method::GET, "/a/b");
    // Priority beats specificity.
    let t = table(vec![spec("exact", "/a/b", 0), spec("prefix", "/a/*", 1)]);
    assert_eq!(select(&t, &get()).as_deref(), Some("prefix"));
    // Specificity beats declaration order: exact, then param, then the longer prefix.
    let t = table(vec![
        spec("all", "/*", 0),
        spec("a", "/a/*", 0),
        spec("ab-prefix", "/a/b/*", 0),
        spec("param", "/a/{x}", 0),
        spec("exact", "/a/b", 0),
    ]);
    assert_eq!(select(&t, &get()).as_deref(), Some("exact"));
    let t = table(vec![
        spec("all", "/*", 0),
        spec("a", "/a/*", 0),
        spec("ab-prefix", "/a/b/*", 0),
        spec("param", "/a/{x}", 0),
    ]);
    assert_eq!(select(&t, &get()).as_deref(), Some("param"));
    let t = table(vec![spec("a", "/a/*", 0), spec("ab-prefix", "/a/b/*", 0)]);
    assert_eq!(select(&t, &get()).as_deref(), Some("ab-prefix"));
    // A literal earlier in the path wins among parameters.
    let t = table(vec![spec("late", "/{x}/b", 0), spec("early", "/a/{y}", 0)]);
    assert_eq!(select(&t, &get()).as_deref(), Some("early"));
    // Equal in all else: the one declared first.
    let t = table(vec![
        spec("first", "/a/{x}", 0),
        spec("second", "/a/{y}", 0),
    ]);
    assert_eq!(select(&t, &get()).as_deref(), Some("first"));
}

#[test]
fn a_wide_node_agrees_with_reference() {
    // More children than `Children::FEW`, so one node holds them in a hash map.
    let mut specs = vec![spec("all", "/*", 0)];
    for i in 0..40 {
        specs.push(spec(&format!("svc{i}"), &format!("/api/svc{i}/*"), 0));
        specs.push(spec(
            &format!("item{i}"),
            &format!("/api/svc{i}/items/{{id}}"),
            0,
        ));
    }
    let t = table(specs);
    assert!(matches!(
        t.nodes.iter().map(|n| &n.literals).find(|c| matches!(c, Children::Many(_))),
        Some(Children::Many(m)) if m.len() == 40
    ));
    for (path, expected) in [
        ("/api/svc0/items/1", "item0"),
        ("/api/svc39/items/1", "item39"),
        ("/api/svc17/items", "svc17"),
        ("/api/svc17", "svc17"),
        ("/api/svc40/items/1", "all"),
        ("/api/", "all"),
    ] {
        assert_eq!(
            select(&t, &req(Method::GET, path)).as_deref(),
            Some(expected),
            "{path}"
        );
    }
}

#[test]
fn grpc_methods_route_one_by_one_and_by_service() {
    // gRPC's path is `/package.Service/Method`: the dots are literal bytes of one segment.
    let t = table(vec![
        spec("say", "/echo.v1.Echo/Say", 0),
        spec("echo", "/echo.v1.Echo/*", 0),
        spec("any-method", "/echo.v1.Echo/{method}", -1),
        spec("root", "/*", -10),
    ]);
    let post = |path| req(Method::POST, path);
    let cases = [
        ("/echo.v1.Echo/Say", Some("say")),
        ("/echo.v1.Echo/SayMore", Some("echo")),
        ("/echo.v1.Echo/Chat", Some("echo")),
        ("/echo.v1.Echo", Some("echo")),
        ("/echo.v1.Echoes/Say", Some("root")),
        ("/echo.v1/Echo/Say", Some("root")),
        ("/echoXv1.Echo/Say", Some("root")),
    ];
    for (path, want) in cases {
        assert_eq!(select(&t, &post(path)).as_deref(), want, "{path}");
        assert_eq!(normalize_path(path).ok().as_deref(), Some(path), "{path}");
    }
}

#[test]
fn an_empty_table_finds_nothing() {
    let r = req(Method::GET, "/");
    assert!(
        RouteTable::<CompiledRoute>::default()
            .lookup(&r.as_query())
            .is_none()
    );
    assert!(
        RouteTable::<CompiledRoute>::new(vec![])
            .lookup(&r.as_query())
            .is_none()
    );
}

#[test]
fn bare_host_drops_port_and_final_dot() {
    let cases = [
        ("example.com", "example.com"),
        ("Example.com:8080", "Example.com"),
        ("example.com.", "example.com"),
        ("example.com.:443", "example.com"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
    ];
    for (input, expected) in cases {
        assert_eq!(bare_host(input), expected, "{input}");
    }
}

#[test]
fn query_matching_the_table() {
    use ValueMatch::{Exact, Present};
    // (query, name, want, matches?)
    let cases: &[(Option<&str>, &str, ValueMatch, bool)] = &[
        (None, "a", Present, false),
        (Some(""), "a", Present, false),
        (Some("a"), "a", Present, true),
        (Some("a"), "a", Exact(String::new()), true),
        (Some("a="), "a", Exact(String::new()), true),
        (Some("a=1"), "a", Exact("1".into()), true),
        (Some("a=1"), "a", Exact("2".into()), false),
        (Some("a=2&a=1"), "a", Exact("1".into()), true),
        (Some("ab=1"), "a", Present, false),
        (Some("b=a"), "a", Present, false),
        (Some("%61=%31"), "a", Exact("1".into()), true),
        (Some("a=x+y"), "a", Exact("x y".into()), true),
        (Some("a=100%"), "a", Exact("100%".into()), true),
        (Some("a=%zz"), "a", Exact("%zz".into()), true),
        (Some("&&a=1&"), "a", Exact("1".into()), true),
    ];
    for (query, name, want, expected) in cases {
        assert_eq!(
            query_has(*query, name, want),
            *expected,
            "{query:?} has {name} {want:?}"
        );
    }
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    use ValueMatch::{Exact, Present};
    (
        pattern_strategy(),
        prop_oneof![Just(0), Just(0), Just(10)],
        prop_oneof![
            3 => Just(vec![]),
            1 => Just(vec![Method::GET]),
            1 => Just(vec![Method::POST, Method::GET]),
        ],
        prop_oneof![3 => Just(None), 1 => Just(Some("a.example"))],
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(Exact("1".to_string()))),
            1 => Just(Some(Present)),
        ],
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(Exact("1".to_string()))),
            1 => Just(Some(Present)),
        ],
    )
        .prop_map(|(pattern, priority, methods, host, header, query)| {
            let mut s = Spec {
                name: String::new(),
                pattern,
                priority,
                methods,
                host: host.map(str::to_string),
                headers: vec![],
                query: vec![],
            };
            if let Some(h) = header {
                s = s.header("x-k", h);
            }
            if let Some(q) = query {
                s = s.query("k", q);
            }
            s
        })
}

fn routes_strategy() -> impl Strategy<Value = Vec<Arc<CompiledRoute>>> {
    proptest::collection::vec(spec_strategy(), 0..16).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.name = format!("r{i}");
                s.build(i)
            })
            .collect()
    })
}

/// Everything but the path of a random request.
fn request_strategy() -> impl Strategy<
    Value = (
        Method,
        Option<&'static str>,
        Vec<&'static str>,
        Option<&'static str>,
    ),
> {
    (
        prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::HEAD)],
        prop_oneof![
            Just(None),
            Just(Some("a.example")),
            Just(Some("A.Example:8080")),
            Just(Some("b.example")),
        ],
        proptest::collection::vec(prop_oneof![Just("1"), Just("2")], 0..3),
        prop_oneof![
            Just(None),
            Just(Some("k=1")),
            Just(Some("z&k=2")),
            Just(Some("k")),
            Just(Some("k=%31")),
        ],
    )
}

fn name_of(route: Option<&Arc<CompiledRoute>>) -> Option<&str> {
    route.map(|r| r.name.as_ref())
}

/// A path spelled differently but normalizing to `path`.
fn noisy(path: &str, noise: &[u8]) -> String {
    let mut out = String::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let n = noise.get(i).copied().unwrap_or(0);
        if n & 1 != 0 {
            out.push_str("/./");
        }
        if n & 2 != 0 {
            out.push_str("/zz/%2e%2E/");
        }
        if n & 4 != 0 {
            out.push('/');
        }
        out.push('/');
        for (j, c) in segment.chars().enumerate() {
            if n & 8 != 0 && j == 0 {
                out.push_str(&format!("%{:02x}", c as u32));
            } else {
                out.push(c);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_reference(
        routes in routes_strategy(),
        paths in proptest::collection::vec(path_strategy(), 1..8),
        (method, host, header_values, query) in request_strategy(),
    ) {
        let table = RouteTable::new(routes);
        let mut headers = HeaderMap::new();
        for v in header_values {
            headers.append("x-k", HeaderValue::from_static(v));
        }
        for path in &paths {
            let q = RouteQuery { method: &method, host, path, headers: &headers, query };
            prop_assert_eq!(
                name_of(table.lookup(&q)),
                name_of(lookup_reference(table.routes(), &q)),
                "path {}", path
            );
        }
    }

    #[test]
    fn a_path_and_its_normalized_form_select_the_same_route(
        routes in routes_strategy(),
        path in path_strategy(),
        noise in proptest::collection::vec(0u8..16, 0..6),
    ) {
        let table = RouteTable::new(routes);
        let spelled = noisy(&path, &noise);
        let normalized = normalize_path(&spelled).expect("noise keeps the path valid");
        prop_assert_eq!(normalized.as_ref(), path.as_str(), "from {}", spelled);
        let headers = HeaderMap::new();
        let spelled_query = RouteQuery {
            method: &Method::GET,
            host: None,
            path: &normalized,
            headers: &headers,
            query: None,
        };
        let normal_query = RouteQuery { path: &path, ..spelled_query };
        prop_assert_eq!(
            name_of(table.lookup(&spelled_query)),
            name_of(table.lookup(&normal_query))
        );
    }
}
