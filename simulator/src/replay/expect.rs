//! Expected transitions: the config review a CI job pins down. A file lists every transition
//! group a change should cause, with its count; `replay --against NEW --expect FILE` fails (exit
//! 4) when the review finds a group the file does not list, misses one it lists, or counts
//! differently. `--write-expect FILE` writes the file from a review, to read and commit.
//!
//! ```yaml
//! transitions:
//!   - from: "users-v1: passed"
//!     to: "users-v1: ratelimit/quota-exceeded"
//!     count: 37
//! ```
//!
//! Groups are named as the text summary prints them (`route: stage/reason`, `route: passed`,
//! `(no route): route/no-route`), so a file reads like the report it checks.

use std::collections::BTreeMap;
use std::path::Path;

use gateway::config::yaml::Diagnostic;
use serde::{Deserialize, Serialize};

use super::diff::ConfigDiff;

/// Every transition group a review is expected to find.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(default)]
    pub transitions: Vec<ExpectedTransition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedTransition {
    pub from: String,
    pub to: String,
    pub count: u64,
}

impl Expected {
    /// Reads an expectations file; a problem names the file, line and field.
    pub fn load(path: &Path) -> Result<Expected, Diagnostic> {
        let text = gateway::config::yaml::read(path)?;
        let source = path.display().to_string();
        let expected: Expected = gateway::config::yaml::load(&source, &text)?;
        let mut seen = BTreeMap::new();
        for (i, t) in expected.transitions.iter().enumerate() {
            if let Some(first) = seen.insert((t.from.as_str(), t.to.as_str()), i) {
                return Err(Diagnostic::whole_file(
                    &source,
                    format!(
                        "transitions[{i}]: `{} → {}` is listed twice (first at transitions[{first}])",
                        t.from, t.to
                    ),
                ));
            }
        }
        Ok(expected)
    }

    /// What a review found, as an expectations file would say it.
    pub fn from_diff(diff: &ConfigDiff) -> Expected {
        Expected {
            transitions: diff
                .groups
                .iter()
                .map(|g| ExpectedTransition {
                    from: g.before.to_string(),
                    to: g.after.to_string(),
                    count: g.count,
                })
                .collect(),
        }
    }

    pub fn to_yaml(&self) -> Result<String, String> {
        serde_yaml_ng::to_string(self).map_err(|e| format!("cannot write the expectations: {e}"))
    }

    /// One line per difference between the review and the expectations; empty when they agree.
    pub fn check(&self, diff: &ConfigDiff) -> Vec<String> {
        let found: BTreeMap<(String, String), u64> = diff
            .groups
            .iter()
            .map(|g| ((g.before.to_string(), g.after.to_string()), g.count))
            .collect();
        let mut problems = Vec::new();
        for t in &self.transitions {
            match found.get(&(t.from.clone(), t.to.clone())) {
                None => problems.push(format!(
                    "expected {} × `{} → {}`, found none",
                    t.count, t.from, t.to
                )),
                Some(&n) if n != t.count => problems.push(format!(
                    "expected {} × `{} → {}`, found {n}",
                    t.count, t.from, t.to
                )),
                Some(_) => {}
            }
        }
        for ((from, to), n) in &found {
            if !self
                .transitions
                .iter()
                .any(|t| &t.from == from && &t.to == to)
            {
                problems.push(format!("unexpected {n} × `{from} → {to}`"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::diff::{Transition, TransitionGroup};

    fn group(from: &str, to_reason: Option<&str>, count: u64) -> TransitionGroup {
        TransitionGroup {
            before: Transition {
                route: Some(from.into()),
                stopped_at: None,
                reason: None,
            },
            after: Transition {
                route: Some(from.into()),
                stopped_at: to_reason.map(|_| "ratelimit".into()),
                reason: to_reason.map(str::to_owned),
            },
            count,
            fields: Vec::new(),
            examples: Vec::new(),
        }
    }

    fn diff(groups: Vec<TransitionGroup>) -> ConfigDiff {
        ConfigDiff {
            compared: 100,
            changed: groups.iter().map(|g| g.count).sum(),
            missing: Vec::new(),
            groups,
            requests: Vec::new(),
        }
    }

    #[test]
    fn a_review_agrees_with_the_file_written_from_it() {
        let d = diff(vec![group("orders", Some("quota-exceeded"), 3)]);
        let expected = Expected::from_diff(&d);
        assert_eq!(expected.transitions[0].from, "orders: passed");
        assert_eq!(
            expected.transitions[0].to,
            "orders: ratelimit/quota-exceeded"
        );
        assert!(expected.check(&d).is_empty());
        let yaml = expected.to_yaml().expect("yaml");
        let back: Expected = gateway::config::yaml::load("x.yaml", &yaml).expect("reads back");
        assert_eq!(back, expected);
    }

    #[test]
    fn a_wrong_count_a_missing_group_and_an_unexpected_one_are_each_named() {
        let expected = Expected {
            transitions: vec![
                ExpectedTransition {
                    from: "orders: passed".into(),
                    to: "orders: ratelimit/quota-exceeded".into(),
                    count: 4,
                },
                ExpectedTransition {
                    from: "users: passed".into(),
                    to: "users: ratelimit/quota-exceeded".into(),
                    count: 1,
                },
            ],
        };
        let d = diff(vec![
            group("orders", Some("quota-exceeded"), 3),
            group("carts", Some("quota-exceeded"), 2),
        ]);
        let problems = expected.check(&d);
        assert_eq!(
            problems,
            vec![
                "expected 4 × `orders: passed → orders: ratelimit/quota-exceeded`, found 3",
                "expected 1 × `users: passed → users: ratelimit/quota-exceeded`, found none",
                "unexpected 2 × `carts: passed → carts: ratelimit/quota-exceeded`",
            ]
        );
    }

    #[test]
    fn a_bad_file_names_its_line_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("expect.yaml");
        std::fs::write(
            &path,
            "transitions:\n  - from: a\n    to: b\n    count: many\n",
        )
        .expect("write");
        let e = Expected::load(&path).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("expect.yaml:4"), "{text}");
        assert!(text.contains("count"), "{text}");
    }
}
