//! Loading and checking a config file: every problem at once, each with file, line and field path.
//! (Interface stub: the config helper fills it in.)

use std::path::Path;

use super::compiled::Runtime;

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

pub fn load_str(source: &str, text: &str) -> Result<Runtime, Vec<Diagnostic>> {
    let raw: super::raw::RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
        vec![Diagnostic {
            file: source.to_string(),
            line: e.location().map(|l| l.line()),
            column: e.location().map(|l| l.column()),
            path: String::new(),
            message: e.to_string(),
        }]
    })?;
    super::compile::compile(&raw, source, text).map_err(|problems| {
        problems
            .into_iter()
            .map(|(path, message)| Diagnostic {
                file: source.to_string(),
                line: None,
                column: None,
                path,
                message,
            })
            .collect()
    })
}
