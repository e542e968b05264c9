//! Configuration in three steps: [`raw`] (serde types, as written) → [`compile`] (validated,
//! resolved, ready for the request path) → [`check`] (every diagnostic at once, each with file,
//! line and field path).

pub mod auth;
pub mod check;
pub mod compile;
pub mod compiled;
mod files;
pub mod locate;
pub mod problem;
pub mod ratelimit;
pub mod raw;
pub mod resilience;
pub mod tls;
pub mod yaml;

pub use check::{Diagnostic, load_file, load_str};
pub use compiled::{CompiledRoute, RouteAction, Runtime, Upstream, UpstreamProtocol};

/// What the section compilers' tests share: a config's problems as `field: message` lines, and a
/// catch-all route that makes a section-only config complete.
#[cfg(test)]
pub(crate) mod test_support {
    pub fn problems(yaml: &str) -> Vec<String> {
        match super::load_str("t.yaml", yaml) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect(),
        }
    }

    pub const ROUTES: &str =
        "routes:\n  - { name: all, match: { path: /* }, respond: { status: 404 } }\n";
}
