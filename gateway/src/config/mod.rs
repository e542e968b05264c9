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
pub use compiled::{CompiledRoute, RouteAction, Runtime, Upstream};
