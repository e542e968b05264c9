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
mod tests;
