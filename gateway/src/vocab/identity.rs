//! Who made a request, as `authn` established it: what authz, rate limits, identity headers and
//! the record read. Never holds a secret.

use serde::{Deserialize, Serialize};

/// Who made the request, as established by `authn`. Never holds a secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The id of the API key that authenticated the request; `None` for every other credential.
    /// What a rate-limit policy keyed by `api_key` counts by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// The `kid` of the key that signed the caller's JWT: which key vouched, for forensics. Shared
    /// by every caller that key signed for, so never a rate-limit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
}
