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
//! The YAML machinery — reading, deserializing, rewording serde, placing a field path on its
//! line — is [`super::yaml`], shared with route-case files and scenarios; what is here is what
//! only a config has: its sections, its wording of syntax errors, and pass 3.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::auth::raw::RawAuth;
use super::compiled::Runtime;
use super::ratelimit::RawRateLimits;
use super::raw::{
    RawAccessLog, RawAdmin, RawConfig, RawCors, RawInstanceDetail, RawLimits, RawListener,
    RawRecording, RawRoute, RawUpstream,
};
use super::yaml::schema::{deserialize_all, key_text, kind};
use super::yaml::suggest::unknown_field;
use super::yaml::{At, Finding, LineIndex, located};

pub use super::yaml::Diagnostic;

/// Reads and checks the config at `path`.
pub fn load_file(path: &Path) -> Result<Runtime, Vec<Diagnostic>> {
    let text = super::yaml::read(path).map_err(|d| vec![d])?;
    load_str(&path.display().to_string(), &text)
}

/// What `gateway check` prints: every diagnostic for the config at `path`, sorted by line; empty
/// when the config is good.
pub fn check_file(path: &Path) -> Vec<Diagnostic> {
    load_file(path).err().unwrap_or_default()
}

/// Checks `text`, naming it `source` in diagnostics (a file path, or `<inline>`).
pub fn load_str(source: &str, text: &str) -> Result<Runtime, Vec<Diagnostic>> {
    let index = LineIndex::build(text);
    check(source, text, &index).map_err(|findings| located(source, &index, findings))
}

/// The top-level sections, in the order the docs list them.
const SECTIONS: [&str; 12] = [
    "listeners",
    "admin",
    "limits",
    "workers",
    "internal_headers",
    "access_log",
    "recording",
    "cors",
    "auth",
    "rate_limits",
    "upstreams",
    "routes",
];

fn check(source: &str, text: &str, index: &LineIndex) -> Result<Runtime, Vec<Finding>> {
    let root = parse(source, text, index)?;
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
fn parse(source: &str, text: &str, index: &LineIndex) -> Result<Value, Vec<Finding>> {
    let error = match super::yaml::load::<Value>(source, text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let message = error.message;
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
    let at = error.line.zip(error.column);
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
            "admin" => raw.admin = deserialize::<RawAdmin>(value, "admin", findings),
            "limits" => {
                if let Some(v) = deserialize::<RawLimits>(value, "limits", findings) {
                    raw.limits = v;
                }
            }
            "workers" => raw.workers = deserialize::<usize>(value, "workers", findings),
            "internal_headers" => {
                if let Some(v) = deserialize::<Vec<String>>(value, "internal_headers", findings) {
                    raw.internal_headers = v;
                }
            }
            "access_log" => {
                if let Some(v) = deserialize::<RawAccessLog>(value, "access_log", findings) {
                    raw.access_log = v;
                }
            }
            "recording" => {
                raw.recording = deserialize::<RawRecording>(value, "recording", findings);
            }
            "cors" => raw.cors = deserialize::<RawCors>(value, "cors", findings),
            "auth" => {
                if let Some(v) = deserialize::<RawAuth>(value, "auth", findings) {
                    raw.auth = v;
                }
            }
            "rate_limits" => {
                if let Some(v) = deserialize::<RawRateLimits>(value, "rate_limits", findings) {
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
        .filter_map(|(i, item)| deserialize(item, &format!("{name}[{i}]"), findings))
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
        if let Some(up) = deserialize::<RawUpstream>(upstream, &path, findings) {
            parsed.insert(name, up);
        }
    }
    (findings.len() == before).then_some(parsed)
}

/// [`deserialize_all`] with the config's own [`explain`], in one place so that no section can
/// forget it.
fn deserialize<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
    findings: &mut Vec<Finding>,
) -> Option<T> {
    deserialize_all(value, prefix, findings, explain)
}

/// The config's own words for what serde words too vaguely.
fn explain(message: &str, node: Option<&Value>, path: &str, findings: &mut Vec<Finding>) -> bool {
    if !message.contains("untagged enum RawInstance") {
        return false;
    }
    describe_instance(node, path, findings);
    true
}

/// An instance is an address string or `{address, weight}`; serde only says neither matched.
fn describe_instance(node: Option<&Value>, path: &str, findings: &mut Vec<Finding>) {
    let before = findings.len();
    if let Some(node @ Value::Mapping(_)) = node {
        let _ = deserialize::<RawInstanceDetail>(node, path, findings);
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

#[cfg(test)]
mod tests;
