//! Upstream resilience as rules and per-instance state: balancing, health (active verdicts and
//! outlier ejection), circuit breakers, retry budgets, rolling windows, and each instance's live
//! counters, the concurrency limits that protect the gateway itself, and when to trim the heap. All rules run over an explicit `now`; nothing here knows a request, a config file or
//! the gateway state.
//!
//! The state that must survive reloads is kept by the registry in `crate::state::upstreams`,
//! which binds each installed config to these pieces.

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod concurrency;
pub mod health;
pub mod heap;
pub mod instance;
pub mod metrics;
pub mod settings;
mod window;

pub use breaker::{Admission, BreakerState};
pub use instance::{InFlight, InstanceState};
