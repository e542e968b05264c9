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
mod tests;
