//! Route path patterns: `/exact/path`, `/prefix/*` and `/users/{id}`.
//!
//! A pattern is a list of segments, each a literal or a `{param}` matching exactly one non-empty
//! segment, optionally ended by `*` as the whole last segment. `/prefix/*` matches `/prefix`,
//! `/prefix/` and everything below `/prefix/`; `/*` matches every path. Patterns are written in
//! normalized form (see [`super::normalize`]), because they are compared with normalized paths.
//!
//! Segments are what `path[1..].split('/')` yields, for patterns and paths alike: `/` is one
//! empty segment and `/a/` is `a` followed by an empty one, so a trailing slash is significant for
//! exact patterns and a `{param}` never matches it.

use std::borrow::Cow;
use std::fmt;

use super::normalize::normalize_path;

/// One segment of a pattern (the trailing `*` is not one; see [`RoutePattern::is_prefix`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches a path segment equal to it (both are normalized, so byte equality is enough).
    Literal(Box<str>),
    /// `{name}`: matches any one non-empty segment.
    Param(Box<str>),
}

impl Segment {
    /// Whether this pattern segment accepts one (normalized) path segment.
    pub fn matches(&self, path_segment: &str) -> bool {
        match self {
            Segment::Literal(literal) => **literal == *path_segment,
            Segment::Param(_) => !path_segment.is_empty(),
        }
    }

    /// True iff every path segment `other` accepts, `self` accepts.
    fn covers(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Literal(b)) => !b.is_empty(),
            (Segment::Param(_), Segment::Param(_)) => true,
            (Segment::Literal(_), Segment::Param(_)) => false,
        }
    }
}

/// How specific a pattern is; more specific compares greater. See [`RoutePattern::specificity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    /// Prefix < with parameters < all literal: the first thing compared.
    kind: Kind,
    /// More literal segments beat fewer.
    literals: usize,
    /// Then more segments beat fewer: a longer prefix beats a shorter one.
    segments: usize,
    /// Then, where both have parameters, a literal earlier in the path wins: bit 63 is the first
    /// segment. Deeper than 64 segments nothing is told apart, which no real route reaches.
    literal_positions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Prefix,
    Param,
    Exact,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// The pattern as written.
    pub raw: String,
    segments: Vec<Segment>,
    prefix: bool,
    specificity: Specificity,
}

impl RoutePattern {
    /// Parses a pattern; the error says what is wrong and, where it can, how to write it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err(
                "the path pattern is empty: write `/` for the root or `/*` for everything".into(),
            );
        }
        if !raw.starts_with('/') {
            return Err(format!("the path pattern `{raw}` must start with `/`"));
        }
        match normalize_path(raw) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => {
                return Err(format!(
                    "the path pattern `{raw}` is not in normalized form (requests are matched after normalization, so it could never match as written): write `{normal}`"
                ));
            }
            Err(e) => return Err(format!("the path pattern `{raw}` is not a valid path: {e}")),
        }

        let pieces: Vec<&str> = raw[1..].split('/').collect();
        let prefix = pieces.last() == Some(&"*");
        let body = if prefix {
            &pieces[..pieces.len() - 1]
        } else {
            &pieces[..]
        };
        let mut segments = Vec::with_capacity(body.len());
        for piece in body {
            if piece.contains('*') {
                return Err(format!(
                    "`*` in `{raw}`: a wildcard is only allowed as the whole last segment, as in `/prefix/*`"
                ));
            }
            if piece.contains(['{', '}']) {
                let name = piece
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .filter(|name| {
                        !name.is_empty()
                            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                    .ok_or_else(|| {
                        format!(
                            "malformed parameter `{piece}` in `{raw}`: a parameter is a whole segment `{{name}}` with a name of letters, digits and `_`"
                        )
                    })?;
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(p) if **p == *name))
                {
                    return Err(format!(
                        "duplicate parameter `{{{name}}}` in `{raw}`: each parameter needs its own name"
                    ));
                }
                segments.push(Segment::Param(name.into()));
            } else {
                segments.push(Segment::Literal((*piece).into()));
            }
        }

        let literals = segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let kind = if prefix {
            Kind::Prefix
        } else if literals == segments.len() {
            Kind::Exact
        } else {
            Kind::Param
        };
        let literal_positions = segments
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, s)| matches!(s, Segment::Literal(_)))
            .fold(0u64, |mask, (i, _)| mask | (1u64 << (63 - i)));
        Ok(Self {
            raw: raw.to_string(),
            specificity: Specificity {
                kind,
                literals,
                segments: segments.len(),
                literal_positions,
            },
            segments,
            prefix,
        })
    }

    /// The segments before the trailing `*`, if any.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// `/prefix/*`: matches the prefix and everything below it.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Greater is more specific: all-literal beats parameters beats prefix, then more literal
    /// segments, then more segments (a longer prefix), then literals earlier in the path.
    pub fn specificity(&self) -> Specificity {
        self.specificity
    }

    /// True when every normalized path that `other` matches is also matched by `self`.
    /// Exact for these patterns (no path is matched by `other` but not `self` when this says
    /// true), and it says false whenever it cannot show coverage.
    pub fn covers(&self, other: &RoutePattern) -> bool {
        let n = self.segments.len();
        if self.prefix {
            // Every path `other` matches has at least `other.segments.len()` segments, the first
            // of which `other`'s segments accept.
            other.segments.len() >= n
                && self
                    .segments
                    .iter()
                    .zip(&other.segments)
                    .all(|(a, b)| a.covers(b))
        } else {
            // An exact pattern matches paths of one length only; a prefix pattern matches many.
            !other.prefix
                && other.segments.len() == n
                && self
                    .segments
                    .iter()
                    .zip(&other.segments)
                    .all(|(a, b)| a.covers(b))
        }
    }

    /// The slow, obviously-correct matcher used by `gateway routes`' reference checks and
    /// proptests: compares segment by segment.
    pub fn matches(&self, normalized_path: &str) -> bool {
        let Some(rest) = normalized_path.strip_prefix('/') else {
            return false;
        };
        let path: Vec<&str> = rest.split('/').collect();
        let n = self.segments.len();
        let length_ok = if self.prefix {
            path.len() >= n
        } else {
            path.len() == n
        };
        length_ok
            && self
                .segments
                .iter()
                .zip(&path)
                .all(|(pattern, segment)| pattern.matches(segment))
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p(raw: &str) -> RoutePattern {
        RoutePattern::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn parses_the_table() {
        // (pattern, prefix?, segments as written)
        let cases: &[(&str, bool, &[&str])] = &[
            ("/", false, &[""]),
            ("/*", true, &[]),
            ("/api", false, &["api"]),
            ("/api/", false, &["api", ""]),
            ("/api/*", true, &["api"]),
            ("/api/v1/users/*", true, &["api", "v1", "users"]),
            ("/users/{id}", false, &["users", "{id}"]),
            ("/users/{id}/*", true, &["users", "{id}"]),
            ("/{a}/{b_2}", false, &["{a}", "{b_2}"]),
            ("/files/a%2Fb", false, &["files", "a%2Fb"]),
        ];
        for (raw, prefix, segments) in cases {
            let pattern = p(raw);
            assert_eq!(pattern.raw, *raw);
            assert_eq!(pattern.is_prefix(), *prefix, "{raw}");
            let written: Vec<String> = pattern
                .segments()
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.to_string(),
                    Segment::Param(name) => format!("{{{name}}}"),
                })
                .collect();
            assert_eq!(written, *segments, "{raw}");
        }
    }

    #[test]
    fn rejects_the_table_with_a_reason() {
        // (pattern, a fragment the message must contain)
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("api/*", "must start with `/`"),
            ("*", "must start with `/`"),
            ("/api/*/users", "only allowed as the whole last segment"),
            ("/api*", "only allowed as the whole last segment"),
            ("/api/v*", "only allowed as the whole last segment"),
            ("/**", "only allowed as the whole last segment"),
            ("/users/{id", "malformed parameter `{id`"),
            ("/users/id}", "malformed parameter `id}`"),
            ("/users/{}", "malformed parameter `{}`"),
            ("/users/x{id}", "malformed parameter `x{id}`"),
            ("/users/{i-d}", "malformed parameter `{i-d}`"),
            ("/users/{{id}}", "malformed parameter"),
            ("/{id}/x/{id}", "duplicate parameter `{id}`"),
            ("/api//users", "write `/api/users`"),
            ("/api/./users", "write `/api/users`"),
            ("/api/v1/../users", "write `/api/users`"),
            ("/api/..", "write `/`"),
            ("/api/%61dmin", "write `/api/admin`"),
            ("/api/a%2fb", "write `/api/a%2Fb`"),
            ("/api/%zz", "not a valid path: invalid percent-escape"),
            ("/api/%00", "not a valid path"),
        ];
        for (raw, fragment) in cases {
            match RoutePattern::parse(raw) {
                Ok(_) => panic!("{raw:?} parsed"),
                Err(e) => assert!(e.contains(fragment), "{raw:?}: {e:?} lacks {fragment:?}"),
            }
        }
    }

    #[test]
    fn matches_the_table() {
        // (pattern, path, matches?)
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("/", "/a", false),
            ("/*", "/", true),
            ("/*", "/anything/at/all/", true),
            ("/api", "/api", true),
            ("/api", "/api/", false),
            ("/api", "/apis", false),
            ("/api/", "/api/", true),
            ("/api/", "/api", false),
            ("/api/*", "/api", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api/x", true),
            ("/api/*", "/api/x/y/", true),
            ("/api/*", "/apis", false),
            ("/api/*", "/", false),
            ("/users/{id}", "/users/7", true),
            ("/users/{id}", "/users/", false),
            ("/users/{id}", "/users", false),
            ("/users/{id}", "/users/7/", false),
            ("/users/{id}", "/users/7/x", false),
            ("/users/{id}/*", "/users/7", true),
            ("/users/{id}/*", "/users/7/posts", true),
            ("/users/{id}/*", "/users/", false),
            ("/files/{name}", "/files/a%2Fb", true),
            ("/files/a/*", "/files/a%2Fb", false),
            ("/api", "api", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(p(pattern).matches(path), *expected, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn covers_the_table() {
        // (a, b, a covers b?)
        let cases: &[(&str, &str, bool)] = &[
            ("/*", "/", true),
            ("/*", "/*", true),
            ("/*", "/api/{x}/*", true),
            ("/api/*", "/api", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api/*", true),
            ("/api/*", "/api/v1/*", true),
            ("/api/*", "/*", false),
            ("/api/*", "/apis", false),
            ("/api/v1/*", "/api/*", false),
            ("/api/{v}/*", "/api/v1/users", true),
            ("/api/{v}/*", "/api/", false),
            ("/api/{v}/*", "/api/*", false),
            ("/users/{id}", "/users/7", true),
            ("/users/{id}", "/users/{other}", true),
            ("/users/{id}", "/users/", false),
            ("/users/{id}", "/users/7/*", false),
            ("/users/7", "/users/{id}", false),
            ("/users/7", "/users/7", true),
            ("/users/7", "/users/8", false),
            ("/users", "/users/*", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(p(a).covers(&p(b)), *expected, "{a} covers {b}");
        }
    }

    #[test]
    fn specificity_orders_the_table() {
        // Each pattern is strictly more specific than the next.
        let ranked = [
            "/api/v1/users",
            "/api/v1/{id}",
            "/api/{v}/users",
            "/{a}/{b}/users",
            "/api/v1/users/*",
            "/api/{v}/users/*",
            "/api/v1/*",
            "/api/{v}/*",
            "/api/*",
            "/*",
        ];
        for pair in ranked.windows(2) {
            assert!(
                p(pair[0]).specificity() > p(pair[1]).specificity(),
                "{} should be more specific than {}",
                pair[0],
                pair[1]
            );
        }
    }

    /// Patterns over a small alphabet, so that they overlap often.
    pub(crate) fn pattern_strategy() -> impl Strategy<Value = RoutePattern> {
        let segment = prop_oneof![
            3 => prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|s| s.to_string()),
            1 => Just("{}".to_string()),
        ];
        (
            proptest::collection::vec(segment, 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(segments, prefix, trailing)| {
                let mut raw = String::new();
                for (i, s) in segments.iter().enumerate() {
                    raw.push('/');
                    if s == "{}" {
                        raw.push_str(&format!("{{p{i}}}"));
                    } else {
                        raw.push_str(s);
                    }
                }
                if prefix {
                    raw.push_str("/*");
                } else if trailing || raw.is_empty() {
                    raw.push('/');
                }
                RoutePattern::parse(&raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
            })
    }

    /// Normalized paths over the same alphabet plus a stranger.
    pub(crate) fn path_strategy() -> impl Strategy<Value = String> {
        let segment = prop_oneof![Just("a"), Just("b"), Just("c"), Just("x")];
        (proptest::collection::vec(segment, 0..6), any::<bool>()).prop_map(
            |(segments, trailing)| {
                let mut path = String::new();
                for s in segments {
                    path.push('/');
                    path.push_str(s);
                }
                if trailing || path.is_empty() {
                    path.push('/');
                }
                path
            },
        )
    }

    /// A path `pattern` matches: parameters filled in, something appended below a prefix.
    fn instance_of(pattern: &RoutePattern, fill: &[&str], tail: &str) -> String {
        let mut path = String::new();
        for (i, s) in pattern.segments().iter().enumerate() {
            path.push('/');
            match s {
                Segment::Literal(l) => path.push_str(l),
                Segment::Param(_) => path.push_str(fill[i % fill.len()]),
            }
        }
        if pattern.is_prefix() {
            path.push_str(tail);
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    proptest! {
        #[test]
        fn covers_is_sound(
            a in pattern_strategy(),
            b in pattern_strategy(),
            paths in proptest::collection::vec(path_strategy(), 8),
            fill in proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("x")], 1..4),
            tail in prop_oneof![Just(""), Just("/"), Just("/a"), Just("/x/"), Just("/b/c")],
        ) {
            if a.covers(&b) {
                // Paths `b` surely matches, and random ones.
                let mine = instance_of(&b, &fill, tail);
                prop_assert!(b.matches(&mine), "{} should match {}", b, mine);
                for path in paths.iter().chain([&mine]) {
                    if b.matches(path) {
                        prop_assert!(a.matches(path), "{} covers {} but misses {}", a, b, path);
                    }
                }
            }
        }

        #[test]
        fn every_pattern_covers_itself(a in pattern_strategy()) {
            prop_assert!(a.covers(&a));
        }

        #[test]
        fn written_patterns_are_normalized_paths(a in pattern_strategy()) {
            prop_assert!(matches!(normalize_path(&a.raw), Ok(Cow::Borrowed(_))));
        }
    }
}
