//! Rate-limit configuration (`rate_limits:`): the store and the policies. Raw (serde) types, their
//! compilation and their compiled forms live together here.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {}
