//! Gatehouse's gateway: every request passes eight stages in order — `tls`, `authn`, `authz`,
//! `ratelimit`, `route`, `mutate_request`, `forward`, `mutate_response` — and any stage can stop
//! it. Every request, stopped or not, leaves one [`record::RequestRecord`].
//!
//! Crate map:
//! - [`pipeline`]: the stage ids, the request context and the driver that runs the stages;
//! - [`stage`]: one module per stage;
//! - [`rejection`]: the typed stop and its RFC 9457 body;
//! - [`record`]: the request record and its sinks (access log, metrics, subscribers);
//! - [`config`]: raw YAML → compiled runtime, with diagnostics that name file, line and field;
//! - [`identity`]: TLS, JWT and JWKS, API keys — what `tls`, `authn` and `authz` use;
//! - [`resilience`]: balancing, health, breakers, retry budgets — state that survives reloads;
//! - [`reload`]: swapping in a new config live (SIGHUP, file changes, `GatewayHandle::reload`);
//! - [`clock`]: the only reader of the system clock.

pub mod admin;
pub mod body;
pub mod clock;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod record;
pub mod rejection;
pub mod reload;
pub mod resilience;
pub mod server;
pub mod stage;

pub use server::{GatewayHandle, StartOptions, start};
pub mod route_test;
