//! Loading and checking a config file: every problem at once, each with file, line and field path.
//!
//! Three passes, each run only when the one before found nothing, because later passes would
//! only report echoes of earlier problems:
//! 1. YAML syntax (one diagnostic: the parser cannot go on after it), and duplicate keys (all);
//! 2. schema: each top-level section, each listener, upstream and route deserialized on its own,
//!    and inside each one, after a problem the offending node is set aside and the rest tried
//!    again, so one typo does not hide the next;
//! 3. meaning: [`super::compile`] (unknown upstreams, bad addresses, shadowed routes, ...).
//!
//! Field paths come from serde_path_to_error (schema) or from compile (meaning); lines come from
//! [`LineIndex`].

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::compiled::Runtime;
use super::identity::RawAuth;
use super::locate::{LineIndex, Position};
use super::ratelimit::RawRateLimits;
use super::raw::{
    RawAccessLog, RawAdmin, RawConfig, RawCors, RawInstanceDetail, RawLimits, RawListener,
    RawRoute, RawUpstream,
};

/// One problem in a config file. Displays as `file:line:column: path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted field path such as `routes[2].match.path`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads and checks the config at `path`.
pub fn load_file(path: &Path) -> Result<Runtime, Vec<Diagnostic>> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&name, &text),
        Err(e) => Err(vec![Diagnostic {
            file: name,
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }]),
    }
}

/// What `gateway check` prints: every diagnostic for the config at `path`, sorted by line; empty
/// when the config is good.
pub fn check_file(path: &Path) -> Vec<Diagnostic> {
    load_file(path).err().unwrap_or_default()
}

/// Checks `text`, naming it `source` in diagnostics (a file path, or `<inline>`).
pub fn load_str(source: &str, text: &str) -> Result<Runtime, Vec<Diagnostic>> {
    let index = LineIndex::build(text);
    let findings = match check(source, text, &index) {
        Ok(runtime) => return Ok(runtime),
        Err(findings) => findings,
    };
    let mut diagnostics: Vec<Diagnostic> = findings
        .into_iter()
        .map(|f| {
            let at = match f.at {
                At::Node => index.locate(&f.path),
                At::Key => index.locate_key(&f.path),
                At::Position(p) => Some(p),
                At::Nowhere => None,
            };
            Diagnostic {
                file: source.to_string(),
                line: at.map(|(line, _)| line),
                column: at.map(|(_, column)| column),
                path: f.path,
                message: f.message,
            }
        })
        .collect();
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    Err(diagnostics)
}

/// The top-level sections, in the order the docs list them.
const SECTIONS: [&str; 10] = [
    "listeners",
    "admin",
    "limits",
    "internal_headers",
    "access_log",
    "cors",
    "auth",
    "rate_limits",
    "upstreams",
    "routes",
];

/// A problem before it has a line: where to point once the source is indexed.
#[derive(Debug)]
struct Finding {
    path: String,
    message: String,
    at: At,
}

#[derive(Debug)]
enum At {
    /// The node at the path (a scalar's value, a collection's key).
    Node,
    /// The key of the mapping entry at the path: where an unknown field is.
    Key,
    Position(Position),
    Nowhere,
}

impl Finding {
    fn new(path: impl Into<String>, message: impl Into<String>, at: At) -> Self {
        Finding {
            path: path.into(),
            message: message.into(),
            at,
        }
    }
}

fn check(source: &str, text: &str, index: &LineIndex) -> Result<Runtime, Vec<Finding>> {
    let root = parse(text, index)?;
    let root = match root {
        Value::Mapping(root) => root,
        Value::Null => {
            return Err(vec![Finding::new(
                "",
                "the config is empty: expected a mapping with sections such as `listeners`, `upstreams` and `routes`",
                At::Nowhere,
            )]);
        }
        other => {
            return Err(vec![Finding::new(
                "",
                format!(
                    "the config must be a mapping of sections (`listeners`, `upstreams`, `routes`, ...), found {}",
                    kind(&other)
                ),
                At::Node,
            )]);
        }
    };

    let mut findings = Vec::new();
    let raw = sections(&root, &mut findings);
    if !findings.is_empty() {
        return Err(findings);
    }
    super::compile::compile(&raw, source, text).map_err(|problems| {
        problems
            .into_iter()
            .map(|(path, message)| Finding::new(path, message, At::Node))
            .collect()
    })
}

/// YAML syntax: the document as a tree of values, or the one error that stopped the parser (or
/// every duplicate key, which the parser reports only one of).
fn parse(text: &str, index: &LineIndex) -> Result<Value, Vec<Finding>> {
    let error = match serde_yaml_ng::from_str::<Value>(text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let message = error.to_string();
    if message.contains("duplicate entry") && !index.duplicate_keys().is_empty() {
        return Err(index
            .duplicate_keys()
            .iter()
            .map(|d| {
                let key = d.path.rsplit('.').next().unwrap_or(&d.path);
                Finding::new(
                    d.path.clone(),
                    format!(
                        "duplicate key `{key}` (first written on line {}): YAML keeps only one of them",
                        d.first_line
                    ),
                    At::Position(d.at),
                )
            })
            .collect());
    }
    if message.contains("more than one document") {
        return Err(vec![Finding::new(
            "",
            "the file holds more than one YAML document (`---`); a config is a single document",
            At::Nowhere,
        )]);
    }
    let at = error.location().map(|l| (l.line(), l.column()));
    // The position is reported as the diagnostic's own; drop the copy inside the message.
    let message = match at {
        Some((line, column)) => {
            message.replacen(&format!(" at line {line} column {column}"), "", 1)
        }
        None => message,
    };
    Err(vec![Finding::new(
        "",
        format!("invalid YAML: {message}"),
        at.map_or(At::Nowhere, At::Position),
    )])
}

/// Schema: each section on its own, so a problem in one does not hide those in the others.
fn sections(root: &Mapping, findings: &mut Vec<Finding>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (key, value) in root {
        let Some(name) = key_text(key) else {
            findings.push(Finding::new(
                "",
                format!("a section name must be a word, found {}", kind(key)),
                At::Node,
            ));
            continue;
        };
        // `routes:` with every entry commented out means no routes, not a type error.
        if value.is_null() && SECTIONS.contains(&name.as_str()) {
            continue;
        }
        match name.as_str() {
            "listeners" => {
                if let Some(v) = sequence_of::<RawListener>(value, "listeners", findings) {
                    raw.listeners = v;
                }
            }
            "admin" => raw.admin = deserialize_all::<RawAdmin>(value, "admin", findings),
            "limits" => {
                if let Some(v) = deserialize_all::<RawLimits>(value, "limits", findings) {
                    raw.limits = v;
                }
            }
            "internal_headers" => {
                if let Some(v) = deserialize_all::<Vec<String>>(value, "internal_headers", findings)
                {
                    raw.internal_headers = v;
                }
            }
            "access_log" => {
                if let Some(v) = deserialize_all::<RawAccessLog>(value, "access_log", findings) {
                    raw.access_log = v;
                }
            }
            "cors" => raw.cors = deserialize_all::<RawCors>(value, "cors", findings),
            "auth" => {
                if let Some(v) = deserialize_all::<RawAuth>(value, "auth", findings) {
                    raw.auth = v;
                }
            }
            "rate_limits" => {
                if let Some(v) = deserialize_all::<RawRateLimits>(value, "rate_limits", findings) {
                    raw.rate_limits = v;
                }
            }
            "upstreams" => {
                if let Some(v) = upstreams(value, findings) {
                    raw.upstreams = v;
                }
            }
            "routes" => {
                if let Some(v) = sequence_of::<RawRoute>(value, "routes", findings) {
                    raw.routes = v;
                }
            }
            unknown => findings.push(Finding::new(
                unknown,
                unknown_field(unknown, &SECTIONS),
                At::Key,
            )),
        }
    }
    raw
}

/// A sequence section: each element checked on its own.
fn sequence_of<T: DeserializeOwned>(
    value: &Value,
    name: &str,
    findings: &mut Vec<Finding>,
) -> Option<Vec<T>> {
    let Value::Sequence(items) = value else {
        findings.push(Finding::new(
            name,
            format!(
                "expected a sequence (a list of `- ...` entries), found {}",
                kind(value)
            ),
            At::Node,
        ));
        return None;
    };
    let before = findings.len();
    let parsed: Vec<T> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| deserialize_all(item, &format!("{name}[{i}]"), findings))
        .collect();
    (findings.len() == before).then_some(parsed)
}

/// `upstreams`: a mapping from name to upstream, each checked on its own.
fn upstreams(
    value: &Value,
    findings: &mut Vec<Finding>,
) -> Option<std::collections::BTreeMap<String, RawUpstream>> {
    let Value::Mapping(entries) = value else {
        findings.push(Finding::new(
            "upstreams",
            format!(
                "expected a mapping from upstream name to upstream, found {}",
                kind(value)
            ),
            At::Node,
        ));
        return None;
    };
    let before = findings.len();
    let mut parsed = std::collections::BTreeMap::new();
    for (key, upstream) in entries {
        let Some(name) = key_text(key) else {
            findings.push(Finding::new(
                "upstreams",
                format!("an upstream name must be a word, found {}", kind(key)),
                At::Node,
            ));
            continue;
        };
        let path = format!("upstreams.{name}");
        if let Some(up) = deserialize_all::<RawUpstream>(upstream, &path, findings) {
            parsed.insert(name, up);
        }
    }
    (findings.len() == before).then_some(parsed)
}

/// Bounds the retries inside one element; each retry removes a node, so a real config never
/// comes near it.
const MAX_ATTEMPTS: usize = 64;

/// One step of a field path inside an element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Deserializes `value` as `T`, reporting every schema problem in it under `prefix`, not only
/// serde's first: after each error the node it is about is removed and the rest tried again.
/// Returns the value only when nothing was wrong.
fn deserialize_all<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
    findings: &mut Vec<Finding>,
) -> Option<T> {
    let before = findings.len();
    let mut value = value.clone();
    // Paths of removed nodes as they were in the original value, to translate later error paths
    // (a removed sequence element shifts the indices after it) and to recognise `missing field`
    // errors that the removals themselves caused.
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return (findings.len() == before).then_some(parsed),
            Err(error) => error,
        };
        let current = segments(error.path());
        let original = to_original(&current, &removed);
        let path = join(prefix, &original);
        let message = error.inner().to_string();

        if let Some(field) = missing_field(&message) {
            // Not worth a diagnostic of its own when a removal caused it, or when an unknown
            // field beside it was reported as a likely typo for it (`adress`).
            let echo = removed.iter().any(|r| match r.split_last() {
                Some((Seg::Key(k), parent)) if parent == original.as_slice() => {
                    k == field || is_typo_of(k, field)
                }
                _ => false,
            });
            if !echo {
                findings.push(Finding::new(path, polish(&message), At::Node));
            }
            // Nothing can be removed to get past a missing field.
            return None;
        }
        if message.contains("untagged enum RawInstance") {
            describe_instance(node_at(&value, &current), &path, findings);
        } else if message.starts_with("unknown field") {
            findings.push(Finding::new(path, polish(&message), At::Key));
        } else {
            findings.push(Finding::new(path, polish(&message), At::Node));
        }
        if current.is_empty() || !remove(&mut value, &current) {
            return None;
        }
        removed.push(original);
    }
    None
}

/// An instance is an address string or `{address, weight}`; serde only says neither matched.
fn describe_instance(node: Option<&Value>, path: &str, findings: &mut Vec<Finding>) {
    let before = findings.len();
    if let Some(node @ Value::Mapping(_)) = node {
        let _ = deserialize_all::<RawInstanceDetail>(node, path, findings);
    }
    if findings.len() == before {
        findings.push(Finding::new(
            path,
            format!(
                "expected an instance address such as `127.0.0.1:9001` or a mapping with `address` and `weight`, found {}",
                node.map_or("nothing", kind)
            ),
            At::Node,
        ));
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    let mut out = Vec::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            // Enum variants and unknown steps have no place in a YAML path: stop at what is known.
            _ => break,
        }
    }
    out
}

/// Translates a path in the value after removals back to the original value's indices.
fn to_original(current: &[Seg], removed: &[Vec<Seg>]) -> Vec<Seg> {
    let mut original: Vec<Seg> = Vec::with_capacity(current.len());
    for seg in current {
        match seg {
            Seg::Key(k) => original.push(Seg::Key(k.clone())),
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter_map(|r| match r.split_last() {
                        Some((Seg::Index(j), parent)) if parent == original.as_slice() => Some(*j),
                        _ => None,
                    })
                    .collect();
                gone.sort_unstable();
                let mut j = *i;
                for g in gone {
                    if g <= j {
                        j += 1;
                    } else {
                        break;
                    }
                }
                original.push(Seg::Index(j));
            }
        }
    }
    original
}

fn join(prefix: &str, segs: &[Seg]) -> String {
    let mut out = prefix.to_string();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn node_at<'v>(value: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let mut node = value;
    for seg in segs {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => m
                .iter()
                .find(|(key, _)| key_text(key).as_deref() == Some(k.as_str()))
                .map(|(_, v)| v)?,
            (Seg::Index(i), Value::Sequence(s)) => s.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the node at `segs`; false when there is none.
fn remove(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m
                .iter_mut()
                .find(|(key, _)| key_text(key).as_deref() == Some(k.as_str()))
            {
                Some((_, v)) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => {
            let key = m
                .keys()
                .find(|key| key_text(key).as_deref() == Some(k.as_str()))
                .cloned();
            key.is_some_and(|key| m.shift_remove(&key).is_some())
        }
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

/// A scalar key as text (what serde_path_to_error and the line index call it).
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

/// serde's messages, in the words of someone writing YAML rather than Rust.
fn polish(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            return unknown_field(field, &candidates);
        }
    }
    let mut message = message.replace("unit value", "an empty value");
    for (rust, plain) in [
        ("expected i32", "expected an integer"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        (
            "expected a duration",
            "expected a duration such as `250ms`, `30s` or `2m`",
        ),
    ] {
        if let Some(at) = message.find(rust) {
            if message[at + rust.len()..].is_empty() {
                message.replace_range(at.., plain);
            }
        }
    }
    // serde names the Rust type last: `expected struct RawRoute`.
    if let Some(at) = message.find("expected struct ") {
        message.replace_range(at.., "expected a mapping");
    }
    message
}

/// `unknown field `x``, with the closest allowed name when one is near enough to be a typo.
fn unknown_field(field: &str, allowed: &[&str]) -> String {
    let closest = allowed
        .iter()
        .filter(|a| is_typo_of(field, a))
        .min_by_key(|a| edit_distance(&field.to_ascii_lowercase(), a));
    match closest {
        Some(a) => format!("unknown field `{field}`, did you mean `{a}`?"),
        None if allowed.is_empty() => format!("unknown field `{field}`: no fields belong here"),
        None => format!(
            "unknown field `{field}`, expected one of {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Close enough to `intended` (two edits, ignoring case) that `written` is likely a typo of it.
fn is_typo_of(written: &str, intended: &str) -> bool {
    let d = edit_distance(&written.to_ascii_lowercase(), intended);
    d <= 2 && d < intended.chars().count()
}

/// Levenshtein distance, on chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
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
                        "unknown field `colour`, expected one of `listeners`, `admin`, `limits`, `internal_headers`, `access_log`, `cors`, `auth`, `rate_limits`, `upstreams`, `routes`",
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

    const REFERENCE: &str = include_str!("../../../fixtures/reference.yaml");

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
                include_str!("../../../fixtures/invalid/syntax.yaml"),
                &[
                    "fixtures/invalid/syntax.yaml:9:7: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 8 column 16",
                ],
            ),
            (
                "fixtures/invalid/duplicate-keys.yaml",
                include_str!("../../../fixtures/invalid/duplicate-keys.yaml"),
                &[
                    "fixtures/invalid/duplicate-keys.yaml:9:3: upstreams.users-svc: duplicate key `users-svc` (first written on line 7): YAML keeps only one of them",
                    "fixtures/invalid/duplicate-keys.yaml:15:7: routes[0].match.path: duplicate key `path` (first written on line 14): YAML keeps only one of them",
                ],
            ),
            (
                "fixtures/invalid/schema.yaml",
                include_str!("../../../fixtures/invalid/schema.yaml"),
                &[
                    "fixtures/invalid/schema.yaml:5:5: listeners[0].adress: unknown field `adress`, did you mean `address`?",
                    "fixtures/invalid/schema.yaml:8:17: limits.idle_timeout: invalid value: string \"soon\", expected a duration such as `250ms`, `30s` or `2m`",
                    "fixtures/invalid/schema.yaml:9:16: limits.max_headers: invalid value: integer `-1`, expected a non-negative integer",
                    "fixtures/invalid/schema.yaml:11:1: timeouts: unknown field `timeouts`, expected one of `listeners`, `admin`, `limits`, `internal_headers`, `access_log`, `cors`, `auth`, `rate_limits`, `upstreams`, `routes`",
                    "fixtures/invalid/schema.yaml:16:33: upstreams.users-svc.instances[1]: expected an instance address such as `127.0.0.1:9001` or a mapping with `address` and `weight`, found a number",
                    "fixtures/invalid/schema.yaml:17:22: upstreams.users-svc.connect_timeout: invalid value: string \"2 parsecs\", expected a duration such as `250ms`, `30s` or `2m`",
                    "fixtures/invalid/schema.yaml:23:7: routes[0].match.method: unknown field `method`, did you mean `methods`?",
                    "fixtures/invalid/schema.yaml:24:15: routes[0].priority: invalid type: string \"high\", expected an integer",
                    "fixtures/invalid/schema.yaml:28:28: routes[1].respond.body: unknown field `body`, expected one of `status`, `detail`",
                ],
            ),
            (
                "fixtures/invalid/semantics.yaml",
                include_str!("../../../fixtures/invalid/semantics.yaml"),
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
                include_str!("../../../fixtures/invalid/routing.yaml"),
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

    #[test]
    fn removed_sequence_elements_do_not_shift_later_paths() {
        let removed = vec![
            vec![Seg::Key("m".into()), Seg::Index(0)],
            vec![Seg::Key("m".into()), Seg::Index(2)],
            vec![Seg::Key("other".into()), Seg::Index(0)],
        ];
        let cases = [(0, 1), (1, 3), (2, 4)];
        for (now, then) in cases {
            assert_eq!(
                to_original(&[Seg::Key("m".into()), Seg::Index(now)], &removed),
                [Seg::Key("m".into()), Seg::Index(then)],
                "index {now} after removals"
            );
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
            (any::<usize>(), prop::sample::select(SNIPPETS))
                .prop_map(|(at, s)| Edit::Insert(at, s)),
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
}
