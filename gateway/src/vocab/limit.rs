//! What the rate limiter decided about one request, as the record and the response headers
//! carry it.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// What one stage decided about the limit, kept for the record and the response headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitDecision {
    /// The policy's id, shared with the config that declares it.
    pub policy: Arc<str>,
    pub subject: String,
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// The store could not answer; the policy's `on_store_error` decided (remaining unknown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_fallback: bool,
}

/// The limit outcome a request carries: the decision, and the `RateLimit-Policy` / `RateLimit`
/// (and legacy) fields chosen for the answer — empty when the store could not answer.
#[derive(Debug, Clone)]
pub struct LimitOutcome {
    pub decision: LimitDecision,
    pub headers: LimitFields,
}

/// A limited answer's fields: `RateLimit-Policy` and `RateLimit` inline (the legacy three spill
/// to the heap).
pub type LimitFields = smallvec::SmallVec<[(HeaderName, HeaderValue); 2]>;
