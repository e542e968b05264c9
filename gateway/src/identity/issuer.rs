//! What the identity rules know of one JWT issuer — its name, `iss`, audiences, algorithms, time
//! leeway, claim names and how its keys are fetched — as a compiled config holds it. Defined here
//! so JWT verification and the key cache never reach up into the config layer.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use rustls::ClientConfig;
use serde::Deserialize;

/// Which claims hold the parts of an identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub tenant: String,
    /// A space-separated string (OAuth `scope`) or an array of strings.
    pub scopes: String,
    pub roles: String,
    pub tier: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            tenant: "tenant".into(),
            scopes: "scope".into(),
            roles: "roles".into(),
            tier: "tier".into(),
        }
    }
}

#[derive(Debug)]
pub struct IssuerConfig {
    pub name: Arc<str>,
    pub issuer: String,
    pub jwks_url: http::Uri,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: i64,
    pub max_lifetime_secs: i64,
    pub required_claims: Vec<String>,
    pub claims: ClaimNames,
    pub jwks: JwksSettings,
}

impl IssuerConfig {
    /// Identifies the JWKS cache this issuer uses: a reload that changes where or how keys
    /// are fetched starts a new cache; one that does not keeps the cached keys.
    pub fn jwks_cache_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.name,
            self.jwks_url,
            self.jwks.ca_file.as_deref().unwrap_or("")
        )
    }
}

#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub ttl: Duration,
    pub refetch_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub max_stale: Duration,
    pub ca_file: Option<String>,
    /// For an https `jwks_url`.
    pub tls: Option<ClientConfig>,
}

/// A value that will travel in a header toward the upstream (X-User-Id, ...): no control
/// characters, so it can never split or end a header.
pub fn header_safe(value: &str) -> bool {
    http::HeaderValue::from_str(value).is_ok()
}
