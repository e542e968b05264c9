//! The `auth:` section and a route's `auth:` exactly as YAML spells them, defaults included: the
//! schema `gateway check` locates fields in, and the one input compilation reads.

use std::time::Duration;

use serde::Deserialize;

use crate::identity::client_cert::SubjectFrom;
use crate::identity::header_text::NonAscii;
use crate::identity::issuer::ClaimNames;

/// `auth:` — what `authn` accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub issuers: Vec<RawIssuer>,
    pub api_keys: Option<RawApiKeys>,
    /// Bearer tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// A query parameter that may carry a bearer token instead of `Authorization` (RFC 6750
    /// §2.3). Off unless named.
    pub token_query_param: Option<String>,
    /// Verified tokens remembered, so a hot token skips signature verification.
    pub token_cache_entries: usize,
    /// How identity values travel in X-User-Id, X-Tenant-Id and X-Auth-Scopes.
    pub identity_headers: RawIdentityHeaders,
    /// A verified client certificate as an identity; off unless given.
    pub client_cert: Option<RawClientCert>,
}

/// `auth.identity_headers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    /// A claim that is not printable ASCII: `percent_encode` (default) or `reject`.
    pub non_ascii: NonAscii,
}

/// `auth.client_cert`: which names of a verified client certificate make the identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCert {
    pub subject: SubjectFrom,
    #[serde(default)]
    pub tenant: Option<RawCertTenant>,
}

/// `auth.client_cert.tenant`: `{ ou: true }` or `{ san_uri_pattern: "spiffe://x/{tenant}/*" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertTenant {
    #[serde(default)]
    pub ou: bool,
    #[serde(default)]
    pub san_uri_pattern: Option<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            api_keys: None,
            max_token_bytes: 8 * 1024,
            token_query_param: None,
            token_cache_entries: 10_000,
            identity_headers: RawIdentityHeaders::default(),
            client_cert: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// Names the issuer in records, metrics and route rules.
    pub name: String,
    /// The exact `iss` claim its tokens carry.
    pub issuer: String,
    pub jwks_url: String,
    /// A token's `aud` must name at least one of these.
    pub audiences: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    #[serde(default = "default_max_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Claims that must be present beyond `exp` (always required) and the subject claim.
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub claims: ClaimNames,
    #[serde(default)]
    pub jwks: RawJwks,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "PS256", "EdDSA"]
        .map(String::from)
        .to_vec()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_max_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwks {
    /// How long fetched keys are used before a background refresh.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// After a refetch caused by an unknown `kid`, further such refetches wait this long.
    #[serde(with = "humantime_serde")]
    pub refetch_cooldown: Duration,
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Last good keys are served while the issuer fails, for at most this long after they
    /// were fetched.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// CA bundle for an https `jwks_url`; the platform's roots when absent.
    pub ca_file: Option<String>,
}

impl Default for RawJwks {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            refetch_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_stale: Duration::from_secs(24 * 3600),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// A YAML file holding a sequence of keys in the same form as `keys`.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawApiKey>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Names the key in records; never the key itself.
    pub id: String,
    /// The key in clear text; hashed when the config is loaded. Prefer `sha256`.
    #[serde(default)]
    pub key: Option<String>,
    /// The key's SHA-256, 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The identity's subject; the key's `id` when absent.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `routes[].auth` — who may call a route. Absent means public.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteAuth {
    /// Requests without credentials pass anonymous; credentials that are sent must be valid.
    #[serde(default)]
    pub optional: bool,
    /// Which credentials the route accepts; by default whatever `auth` configures.
    #[serde(default)]
    pub credentials: Option<Vec<RawCredential>>,
    /// Issuers whose tokens the route accepts (by name); empty means any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Every one of these scopes is required.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// At least one of these roles is required.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The identity's tenant must equal the tenant the request names.
    #[serde(default)]
    pub tenant: Option<RawTenantRule>,
    /// The connection must have presented a verified client certificate.
    #[serde(default)]
    pub client_cert: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawCredential {
    Jwt,
    ApiKey,
    /// The identity `auth.client_cert` maps a verified client certificate to.
    ClientCert,
}

/// Which tenant a request is for: a `{param}` of the route's path, a header, or one fixed
/// tenant (`equals`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantRule {
    #[serde(default)]
    pub path_param: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
}
