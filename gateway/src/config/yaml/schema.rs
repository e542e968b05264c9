//! Every schema problem in a YAML value at once, not only serde's first: after each error the
//! node it is about is set aside and the rest deserialized again, so one typo does not hide the
//! next. Works on a `Value` (which can be edited and retried) rather than on the text, so
//! positions come afterwards from [`super::LineIndex`], by field path.

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::suggest::{is_typo_of, polish};
use super::{At, Finding};

/// A caller's own words for an error serde words too vaguely (an untagged enum says only that no
/// variant matched): given serde's message, the node it is about and its field path, it reports
/// the problem and returns true, or returns false to leave it to the generic wording.
pub type Explain = fn(&str, Option<&Value>, &str, &mut Vec<Finding>) -> bool;

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
pub fn deserialize_all<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
    findings: &mut Vec<Finding>,
    explain: Explain,
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
        if explain(&message, node_at(&value, &current), &path, findings) {
            // The caller said it better.
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
pub fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a value is, in the words of someone writing YAML.
pub fn kind(value: &Value) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
