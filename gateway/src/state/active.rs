//! The active config: a compiled config bound to the live state it runs on. A request holds one
//! from arrival to its record, so a reload never changes its rules or its upstreams mid-request.

use super::upstreams::Binding;
use crate::config::Runtime;

/// What `GatewayState::active` swaps on reload.
#[derive(Debug)]
pub struct Active {
    /// The compiled config: data only.
    pub config: Runtime,
    /// Its upstreams bound to their pools, breakers, budgets and instance state.
    pub upstreams: Binding,
}
