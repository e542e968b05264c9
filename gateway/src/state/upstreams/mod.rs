//! Upstreams' live state: the registry that outlives config versions, each version's binding of
//! its upstreams to that state, the pooled clients and the health probers.
//!
//! **Invariant:** reloading a config keeps a breaker, a budget, a client pool and an instance's
//! health for every upstream (and instance) whose relevant settings did not change.

pub mod bound;
pub mod pool;
pub mod probe;
pub mod registry;

pub use bound::{Binding, BoundUpstream};
pub use pool::{Lease, PoolError, PoolErrorKind, UpstreamClient, new_client};
pub use registry::Registry;
