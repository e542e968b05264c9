//! The state layer: what lives across requests and reloads — the active config bound to its live
//! upstream state, the identity caches, the rate-limit stores, the record sinks, reload
//! bookkeeping — and binding a freshly compiled config to it. Stages read it; they never build it.

pub mod active;
pub mod reload;
pub mod upstreams;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::identity::IdentityState;
use crate::ratelimit::store::Stores;
use crate::record::RecordSinks;
use crate::record::recording::Recorder;
pub use active::Active;
pub use reload::ReloadState;
use upstreams::Registry;

/// What every connection task shares: the active config, the clock and the record sinks.
pub struct GatewayState {
    /// The config requests start under, bound to the live upstream state; swapped whole on reload.
    pub active: ArcSwap<Active>,
    pub clock: SharedClock,
    pub sinks: RecordSinks,
    /// The recording (`recording:`), when on; fixed at start.
    pub recorder: Option<Arc<Recorder>>,
    /// JWKS caches and the verified-token cache: kept across reloads. After swapping the active
    /// config, a reload calls `identity.sync` with its issuers.
    pub identity: IdentityState,
    /// Rate-limit counters (memory and Redis stores): kept across reloads, keyed by policy id and
    /// definition, so only changed policies start afresh.
    pub ratelimit: Stores,
    /// Upstream pools, breakers, budgets, instance health: kept across reloads for what did not
    /// change (crate::resilience); each installed runtime is bound to it.
    pub upstreams: Registry,
    /// The active config's version and the last refused reload (crate::reload).
    pub reload: ReloadState,
}
