//! Gatehouse's gateway: every request passes eight stages in order — `tls`, `authn`, `authz`,
//! `ratelimit`, `route`, `mutate_request`, `forward`, `mutate_response` — and any stage can stop
//! it. Every request, stopped or not, leaves one [`record::RequestRecord`].
//!
//! The modules form layers; each imports only from layers below it (ARCHITECTURE.md, checked by
//! `tests/integration/tidy.rs`), bottom to top:
//! 1. vocabulary — [`clock`], [`vocab`] (stage ids, stop reasons, identity, the typed stop);
//! 2. rules — [`routing`], [`ratelimit`], [`identity`], [`resilience`]: pure algorithms and their
//!    own state, over an explicit `now`; [`wire`]: the strict HTTP/1.1 parser and stream guard;
//! 3. [`config`]: raw YAML → compiled config, data only, with diagnostics naming file, line, field;
//! 4. [`record`]: the request record, its metrics and sinks;
//! 5. [`body`]: the streaming request and response bodies;
//! 6. [`state`]: what lives across requests and reloads, and binding a config to it;
//! 7. [`stage`]: one module per stage, glue over the layers below, and the request context;
//! 8. [`pipeline`]: the driver that runs the stages;
//! 9. [`admin`], [`reload`], [`route_test`]; then [`server`], and the `gateway` binary.

pub mod clock;
pub mod vocab;

pub mod identity;
pub mod ratelimit;
pub mod resilience;
pub mod routing;
pub mod wire;

pub mod config;

pub mod record;

pub mod body;

pub mod state;

pub mod stage;

pub mod pipeline;

pub mod admin;
pub mod reload;
pub mod route_test;

pub mod server;

pub use server::{GatewayHandle, StartOptions, start};
