//! Authentication configuration: issuers and API keys (`auth:`) and each route's requirements
//! (`routes[].auth`). Split as the whole config is: [`raw`] (serde types, as written) →
//! `compile` (meaning, every problem, key files read) → here, the compiled forms `authn` and
//! `authz` read on every request.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use http::HeaderName;

use crate::identity::api_key::ApiKeyStore;
use crate::identity::client_cert::ClientCertMapping;
use crate::identity::header_text::NonAscii;
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
    /// `auth.identity_headers.non_ascii`.
    pub non_ascii: NonAscii,
    /// `auth.client_cert`: how a verified client certificate becomes an identity.
    pub client_cert: Option<ClientCertMapping>,
    /// Every request header the gateway reads a credential from: `Authorization`, the API-key
    /// header and `x-api-key`. Each is removed before any request goes upstream, on every route.
    pub credential_headers: Vec<HeaderName>,
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

    /// Whether the query parameter named `name` (as sent; compared percent-decoded) carries a
    /// bearer token: `access_token`, `jwt` or the configured `token_query_param`. Each is
    /// removed from every upstream request and redacted from recordings.
    pub fn is_token_query_param(&self, name: &str) -> bool {
        let name = percent_decoded(name);
        TOKEN_QUERY_PARAMS.iter().any(|p| p.as_bytes() == &*name)
            || self.token_query_param.as_deref().map(str::as_bytes) == Some(&*name)
    }
}

/// Query parameters that carry a bearer token by convention (RFC 6750 §2.3, and the common
/// `jwt`), beyond the configured one.
pub const TOKEN_QUERY_PARAMS: [&str; 2] = ["access_token", "jwt"];

/// The API-key header treated as a credential even when `auth.api_keys` names another (or none).
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

#[derive(Debug)]
pub struct RouteAuth {
    pub optional: bool,
    pub accept_jwt: bool,
    pub accept_api_key: bool,
    /// A verified client certificate is an identity here (`auth.client_cert`), when the request
    /// carries no other credential.
    pub accept_client_cert: bool,
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
    /// One fixed tenant.
    Equals(String),
}

/// `%XX` decoded, so `%61ccess_token` is `access_token` to the gateway as it is to the upstream
/// framework that will decode it. Invalid escapes stay as they are.
pub fn percent_decoded(name: &str) -> Cow<'_, [u8]> {
    if !name.contains('%') {
        return Cow::Borrowed(name.as_bytes());
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}
