//! The one way Gatehouse reads YAML into serde types, with diagnostics that read
//! `file:line:column: field: message`: the config check, `gateway routes --test` case files and
//! the simulator's scenarios all come through here.
//!
//! Two depths, because a config deserves more care than a test fixture:
//! - [`load`]: serde_yaml_ng straight into `T` through serde_path_to_error. The first error only,
//!   placed where serde_yaml_ng says and named by the path serde_path_to_error tracked, in
//!   serde's own words. Route cases and scenarios use it as it is; the config check uses it (into
//!   a `Value`) for its syntax pass.
//! - [`schema::deserialize_all`], [`suggest`] and [`located`]: every schema problem in a `Value`
//!   at once, reworded for YAML writers, then placed by [`LineIndex`] (a `Value` has no
//!   positions of its own) and sorted. The config check builds its schema pass from these.

pub mod schema;
pub mod suggest;

use std::path::Path;

use serde::de::DeserializeOwned;

pub use super::locate::{DuplicateKey, LineIndex, Position};

/// One problem in a YAML file. Displays as `file:line:column: path: message`, leaving out what
/// is unknown.
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

impl std::error::Error for Diagnostic {}

impl Diagnostic {
    /// About the file as a whole: no position, no field.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: None,
            column: None,
            path: String::new(),
            message: message.into(),
        }
    }
}

/// The text at `path`, or a diagnostic naming the file (by `path.display()`, as every loader
/// names it) and why it could not be read.
pub fn read(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::whole_file(
            &path.display().to_string(),
            format!("cannot read the file: {e}"),
        )
    })
}

/// Deserializes `text` as `T`, naming it `source` in the diagnostic.
///
/// On error: the position serde_yaml_ng reports, the field path as serde_path_to_error prints it
/// (`.` for the document itself: route-case files have always shown it), and serde_yaml_ng's
/// message untouched, which may repeat the path and the position. Streaming deserialization
/// stops at the first error, so there is only ever one; a caller that wants them all deserializes
/// a `Value` with [`schema::deserialize_all`] instead.
pub fn load<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, Diagnostic> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut message = e.inner().to_string();
        let at = e.inner().location().map(|l| {
            let (line, column) = (l.line(), l.column());
            let inside = super::locate::inside_text(text, (line, column));
            if inside != (line, column) {
                message = message.replacen(
                    &format!(" at line {line} column {column}"),
                    &format!(" at line {} column {}", inside.0, inside.1),
                    1,
                );
            }
            inside
        });
        Diagnostic {
            file: source.to_string(),
            line: at.map(|(line, _)| line),
            column: at.map(|(_, column)| column),
            path: e.path().to_string(),
            message,
        }
    })
}

/// A problem before it has a line: where to point once the source is indexed.
#[derive(Debug)]
pub struct Finding {
    pub path: String,
    pub message: String,
    pub at: At,
}

/// Which line a [`Finding`] belongs on.
#[derive(Debug)]
pub enum At {
    /// The node at the path (a scalar's value, a collection's key).
    Node,
    /// The key of the mapping entry at the path: where an unknown field is.
    Key,
    Position(Position),
    Nowhere,
}

impl Finding {
    pub fn new(path: impl Into<String>, message: impl Into<String>, at: At) -> Self {
        Finding {
            path: path.into(),
            message: message.into(),
            at,
        }
    }
}

/// `findings` as diagnostics on `source`, each placed by `index`, in the order a reader meets
/// them, each only once.
pub fn located(source: &str, index: &LineIndex, findings: Vec<Finding>) -> Vec<Diagnostic> {
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
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: an unfinished flow mapping at the end of a file without a final
    /// newline was reported on line 5 of a 4-line file.
    #[test]
    fn an_error_at_the_end_of_a_file_without_a_final_newline_stays_inside_it() {
        let text = "routes:\n  - name: orders\n    match: { path :";
        let d = load::<serde_yaml_ng::Value>("t.yaml", text).expect_err("unfinished");
        assert_eq!((d.line, d.column), (Some(3), Some(20)), "{d}");
        assert!(d.message.contains(" at line 3 column 20,"), "{}", d.message);
        // With the newline, the position after it is a real line.
        let d =
            load::<serde_yaml_ng::Value>("t.yaml", &format!("{text}\n")).expect_err("unfinished");
        assert_eq!(d.line, Some(4), "{d}");
    }
}
