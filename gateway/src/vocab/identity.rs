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
    /// The id of the API key or of the signing key that vouched for this identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}
