//! Authentication configuration: issuers and API keys (`auth:`) and each route's requirements
//! (`routes[].auth`). Split as the whole config is: [`raw`] (serde types, as written) →
//! `compile` (meaning, every problem, key files read) → here, the compiled forms `authn` and
//! `authz` read on every request.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::HeaderName;

use crate::identity::api_key::ApiKeyStore;
use crate::identity::issuer::IssuerConfig;

mod compile;
pub mod raw;

pub use compile::compile_auth;
pub use raw::RawAuth;

/// The compiled `auth:` section and every route's rules.
#[derive(Debug, Default)]
pub struct AuthConfig {
    pub issuers: Vec<Arc<IssuerConfig>>,
    pub api_keys: Option<ApiKeyStore>,
    /// Every `tier` an API key names (kept even when a key has problems, so a policy naming
    /// that tier is not reported as an echo): what rate-limit policies check their tiers against.
    pub api_key_tiers: BTreeSet<String>,
    pub max_token_bytes: usize,
    pub token_query_param: Option<String>,
    pub token_cache_entries: usize,
    /// Each route's rules, by the route's declaration index; `None` for public routes.
    pub routes: Vec<Option<Arc<RouteAuth>>>,
}

impl AuthConfig {
    /// The rules of the route declared `declaration_index`th.
    pub fn route(&self, declaration_index: usize) -> Option<&Arc<RouteAuth>> {
        self.routes.get(declaration_index).and_then(Option::as_ref)
    }

    /// The issuer whose `iss` this is.
    pub fn issuer_for(&self, iss: &str) -> Option<&Arc<IssuerConfig>> {
        self.issuers.iter().find(|i| i.issuer == iss)
    }

    pub fn issuer_named(&self, name: &str) -> Option<&Arc<IssuerConfig>> {
        self.issuers.iter().find(|i| &*i.name == name)
    }
}

#[derive(Debug)]
pub struct RouteAuth {
    pub optional: bool,
    pub accept_jwt: bool,
    pub accept_api_key: bool,
    /// Issuer names; empty means any configured issuer.
    pub issuers: Vec<Arc<str>>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub tenant: Option<TenantRule>,
    pub client_cert: bool,
}

impl RouteAuth {
    pub fn accepts_issuer(&self, name: &str) -> bool {
        self.issuers.is_empty() || self.issuers.iter().any(|i| &**i == name)
    }
}

#[derive(Debug, Clone)]
pub enum TenantRule {
    /// The `index`th segment of the normalized path, the route's `{name}`.
    PathSegment {
        name: String,
        index: usize,
    },
    Header(HeaderName),
}
