//! Identity configuration: issuers and API keys (`auth:`), a route's requirements (`routes[].auth`).
//! Raw (serde) types, their compilation and their compiled forms live together here.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteAuth {}
