//! The former home of auth and TLS configuration, now [`super::auth`] and [`super::tls`]. It
//! names only what code outside that split still imports from here (`stage::authn`,
//! `stage::authz`, `config::check`); once they import from `config::auth`, delete it.

pub use super::auth::raw::RawAuth;
pub use super::auth::{AuthConfig, RouteAuth, TenantRule};
