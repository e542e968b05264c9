//! The route table: finds the best route for a request.
//!
//! A route is a candidate when its path pattern matches and its method, host, header and query
//! conditions hold; the best candidate is the first in [`route_order`]. Because priority may rank
//! a less specific route first, every candidate is found, not just the most specific one.
//!
//! The lookup walks a segment trie — literal children, one parameter child, prefix routes at each
//! node and exact routes where a pattern ends — on the stack, without allocating, so its cost
//! depends on the path's depth, not on the number of routes. [`lookup_reference`] is the linear
//! scan it must always agree with.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};

use super::pattern::{RoutePattern, Segment};

/// What the table needs to know of a route: where it was declared, its priority, its path
/// pattern and its other conditions. The compiled config's routes implement it, so routing never
/// depends on the config layer.
pub trait Rule {
    /// Position in the file: the last tie-breaker, so equal routes resolve the way they read.
    fn declaration_index(&self) -> usize;
    fn priority(&self) -> i32;
    fn pattern(&self) -> &RoutePattern;
    /// Empty means any method.
    fn methods(&self) -> &[Method];
    /// Lower-cased, without port.
    fn host(&self) -> Option<&str>;
    fn headers(&self) -> &[(HeaderName, ValueMatch)];
    fn query(&self) -> &[(String, ValueMatch)];
}

/// A header or query condition: present with any value, or exactly this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    Present,
    Exact(String),
}

impl ValueMatch {
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Present => true,
            ValueMatch::Exact(expected) => expected.as_bytes() == value,
        }
    }
}

/// The parts of a request routing looks at.
pub struct RouteQuery<'a> {
    pub method: &'a Method,
    /// The request's host (`Host` header or URI authority), in any case, with or without a port.
    pub host: Option<&'a str>,
    /// Already normalized by [`super::normalize::normalize_path`].
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
}

#[derive(Debug)]
pub struct RouteTable<R> {
    /// In declaration order, as given.
    routes: Vec<Arc<R>>,
    /// `by_rank[r]` is the index in `routes` of the route ranked `r` by [`route_order`]. The trie
    /// stores ranks, so "better" is "smaller number".
    by_rank: Vec<usize>,
    /// The trie; `nodes[0]` is the root. Empty only in `RouteTable::default()`.
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    literals: Children,
    /// The node after any one non-empty segment (every `{name}` shares it).
    param: Option<usize>,
    /// Ranks of prefix routes whose segments end here, best first.
    prefix: Vec<usize>,
    /// Ranks of exact routes whose segments end here, best first.
    exact: Vec<usize>,
    /// The best rank anywhere in this subtree: a walk that already holds a better one skips it.
    best_below: usize,
}

/// Literal children: a short list scanned in order, or a hash map once there are many (a
/// version or service segment can have thousands), so a step costs the same at any fan-out.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, usize)>),
    Many(HashMap<Box<str>, usize, BuildHasherDefault<Fnv1a>>),
}

impl Children {
    /// Above this many children a hash lookup beats comparing strings one by one.
    const FEW: usize = 8;

    fn new(children: BTreeMap<Box<str>, usize>) -> Self {
        if children.len() <= Self::FEW {
            Children::Few(children.into_iter().collect())
        } else {
            Children::Many(children.into_iter().collect())
        }
    }

    fn get(&self, segment: &str) -> Option<usize> {
        match self {
            Children::Few(list) => list
                .iter()
                .find(|(literal, _)| **literal == *segment)
                .map(|(_, child)| *child),
            Children::Many(map) => map.get(segment).copied(),
        }
    }

    fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        let (few, many) = match self {
            Children::Few(list) => (Some(list.iter().map(|(_, child)| *child)), None),
            Children::Many(map) => (None, Some(map.values().copied())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// FNV-1a with a final mix: short segments hash in a few cycles, unlike the default SipHash.
/// An unkeyed hash is safe here because only the configuration inserts keys: a client can pick
/// the segments it looks up, not build the collisions that would make lookups slow.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // FNV's low bits depend only on the inputs' low bits; the table indexes by low bits.
        let h = (self.0 ^ (self.0 >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
}

/// The trie while it is built: children in an ordered map, turned into [`Children`] once complete.
#[derive(Default)]
struct BuildNode {
    literals: BTreeMap<Box<str>, usize>,
    param: Option<usize>,
    prefix: Vec<usize>,
    exact: Vec<usize>,
}

impl<R: Rule> Default for RouteTable<R> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<R: Rule> RouteTable<R> {
    pub fn new(routes: Vec<Arc<R>>) -> Self {
        let mut by_rank: Vec<usize> = (0..routes.len()).collect();
        // Stable: routes equal in every respect keep their order, as `lookup_reference` does.
        by_rank.sort_by(|&a, &b| route_order(&*routes[a], &*routes[b]));

        let mut build: Vec<BuildNode> = vec![BuildNode::default()];
        // Inserting in rank order leaves every node's lists sorted best first.
        for (rank, &index) in by_rank.iter().enumerate() {
            let pattern = routes[index].pattern();
            let mut at = 0;
            for segment in pattern.segments() {
                let next = build.len();
                at = match segment {
                    Segment::Literal(literal) => {
                        *build[at].literals.entry(literal.clone()).or_insert(next)
                    }
                    Segment::Param(_) => *build[at].param.get_or_insert(next),
                };
                if at == next {
                    build.push(BuildNode::default());
                }
            }
            if pattern.is_prefix() {
                build[at].prefix.push(rank);
            } else {
                build[at].exact.push(rank);
            }
        }

        let mut nodes: Vec<Node> = build
            .into_iter()
            .map(|b| Node {
                best_below: b
                    .prefix
                    .iter()
                    .chain(&b.exact)
                    .copied()
                    .min()
                    .unwrap_or(usize::MAX),
                literals: Children::new(b.literals),
                param: b.param,
                prefix: b.prefix,
                exact: b.exact,
            })
            .collect();
        // Children are created after their parents, so walking backwards sees them first.
        for id in (0..nodes.len()).rev() {
            let node = &nodes[id];
            let children = node
                .literals
                .ids()
                .chain(node.param)
                .map(|child| nodes[child].best_below)
                .min()
                .unwrap_or(usize::MAX);
            nodes[id].best_below = nodes[id].best_below.min(children);
        }
        Self {
            routes,
            by_rank,
            nodes,
        }
    }

    /// The routes in declaration order.
    pub fn routes(&self) -> &[Arc<R>] {
        &self.routes
    }

    /// The best route for the request, if any accepts it. Does not allocate.
    pub fn lookup(&self, query: &RouteQuery<'_>) -> Option<&Arc<R>> {
        let rest = query.path.strip_prefix('/')?;
        let request = Request::new(query);
        let mut best = usize::MAX;
        if !self.nodes.is_empty() {
            self.walk(0, Some(rest), &request, &mut best);
        }
        let index = *self.by_rank.get(best)?;
        self.routes.get(index)
    }

    /// Visits `node` with `rest` the path after the segments that led here (`None` when there
    /// are no more segments), improving `best`. Recursion depth is bounded by the trie's depth.
    fn walk(&self, node: usize, rest: Option<&str>, request: &Request<'_>, best: &mut usize) {
        let node = &self.nodes[node];
        if node.best_below >= *best {
            return;
        }
        self.consider(&node.prefix, request, best);
        let Some(rest) = rest else {
            self.consider(&node.exact, request, best);
            return;
        };
        // Segments are short: a plain scan beats `split_once`'s general searcher here.
        let (segment, next) = match rest.bytes().position(|b| b == b'/') {
            Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
            None => (rest, None),
        };
        if let Some(child) = node.literals.get(segment) {
            self.walk(child, next, request, best);
        }
        match node.param {
            Some(param) if !segment.is_empty() => self.walk(param, next, request, best),
            _ => {}
        }
    }

    /// The first route of `ranks` (sorted best first) that accepts the request, if it beats `best`.
    fn consider(&self, ranks: &[usize], request: &Request<'_>, best: &mut usize) {
        for &rank in ranks {
            if rank >= *best {
                return;
            }
            if request.accepts(&*self.routes[self.by_rank[rank]]) {
                *best = rank;
                return;
            }
        }
    }
}

/// The slow, obviously-correct lookup: every route, [`RoutePattern::matches`], the same conditions,
/// the first by [`route_order`] (the earlier in `routes` among equals). For tests and tooling.
///
/// [`RoutePattern::matches`]: super::pattern::RoutePattern::matches
pub fn lookup_reference<'r, R: Rule>(
    routes: &'r [Arc<R>],
    query: &RouteQuery<'_>,
) -> Option<&'r Arc<R>> {
    let request = Request::new(query);
    routes
        .iter()
        .filter(|r| r.pattern().matches(query.path) && request.accepts(r.as_ref()))
        .reduce(|best, r| {
            if route_order(&**r, &**best) == Ordering::Less {
                r
            } else {
                best
            }
        })
}

/// The order in which routes are tried: priority (high first), then specificity (more specific
/// first), then declaration order.
pub fn route_order<R: Rule>(a: &R, b: &R) -> Ordering {
    b.priority()
        .cmp(&a.priority())
        .then_with(|| b.pattern().specificity().cmp(&a.pattern().specificity()))
        .then_with(|| a.declaration_index().cmp(&b.declaration_index()))
}

/// A [`RouteQuery`] with the host prepared once for all candidates.
struct Request<'q> {
    query: &'q RouteQuery<'q>,
    /// Without port or a final dot; compared ignoring ASCII case.
    host: Option<&'q str>,
}

impl<'q> Request<'q> {
    fn new(query: &'q RouteQuery<'q>) -> Self {
        Self {
            query,
            host: query.host.map(bare_host),
        }
    }

    /// Every condition but the path.
    fn accepts(&self, route: &impl Rule) -> bool {
        let q = self.query;
        (route.methods().is_empty() || route.methods().contains(q.method))
            && route.host().is_none_or(|want| {
                self.host
                    .is_some_and(|have| have.eq_ignore_ascii_case(want.trim_end_matches('.')))
            })
            && route.headers().iter().all(|(name, want)| {
                q.headers
                    .get_all(name)
                    .iter()
                    .any(|value| want.matches(value.as_bytes()))
            })
            && route
                .query()
                .iter()
                .all(|(name, want)| query_has(q.query, name, want))
    }
}

/// `Example.com:8080` → `Example.com`, `[::1]:80` → `[::1]`, `example.com.` → `example.com`.
fn bare_host(host: &str) -> &str {
    // Byte scans: hosts are short, and this runs on every request.
    let end = if host.starts_with('[') {
        host.bytes().position(|b| b == b']').map(|close| close + 1)
    } else {
        host.bytes().position(|b| b == b':')
    };
    let host = end.map_or(host, |end| &host[..end]);
    host.strip_suffix('.').unwrap_or(host)
}

/// Whether the query string has parameter `name` with a value `want` accepts. Names and values
/// are compared form-decoded (`%XX`, and `+` for a space); `?flag` has the empty value.
fn query_has(query: Option<&str>, name: &str, want: &ValueMatch) -> bool {
    let Some(query) = query else {
        return false;
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            form_decoded(key).eq(name.bytes())
                && match want {
                    ValueMatch::Present => true,
                    ValueMatch::Exact(expected) => form_decoded(value).eq(expected.bytes()),
                }
        })
}

/// The bytes of a form-encoded string, decoded lazily (no allocation). A malformed escape stands
/// for itself.
fn form_decoded(encoded: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = encoded.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        i += 1;
        match b {
            b'+' => Some(b' '),
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
                match (hex(i), hex(i + 1)) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        u8::try_from(hi * 16 + lo).ok()
                    }
                    _ => Some(b'%'),
                }
            }
            _ => Some(b),
        }
    })
}

#[cfg(test)]
mod tests {
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
                websocket: false,
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

    /// The reference gateway's table from DESIGN.md, plus routes for the other conditions.
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
}
