//! Rate-limit metrics, registered into the gateway's [`Metrics`](crate::record::metrics::Metrics).
//! Labels are bounded: policy ids come from the config, stores and outcomes are fixed words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub policy: String,
    /// `allowed` or `denied`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub store: &'static str,
    /// `timeout`, `connection`, `script`, `breaker_open`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    /// `idle` (the quota had fully recovered: nothing lost) or `pressure` (the budget was full).
    pub kind: &'static str,
}

/// Cheap to clone: every metric is a shared handle.
#[derive(Clone, Debug, Default)]
pub struct RateLimitMetrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub store_errors: Family<StoreErrorLabels, Counter>,
    /// Decisions taken by `on_store_error` because the store could not answer.
    pub fallback_decisions: Family<DecisionLabels, Counter>,
    pub memory_keys: Gauge,
    pub memory_evictions: Family<EvictionLabels, Counter>,
    /// 1 while the Redis breaker is open (the fallback answers without asking Redis).
    pub breaker_open: Gauge,
}

impl RateLimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "ratelimit_decisions",
            "Rate-limit decisions by policy and outcome",
            m.decisions.clone(),
        );
        registry.register(
            "ratelimit_store_errors",
            "Rate-limit store failures by store and kind (breaker_open: not asked, the breaker is open)",
            m.store_errors.clone(),
        );
        registry.register(
            "ratelimit_fallback_decisions",
            "Decisions taken by a policy's on_store_error because its store could not answer",
            m.fallback_decisions.clone(),
        );
        registry.register(
            "ratelimit_memory_keys",
            "Counters held by the in-memory store",
            m.memory_keys.clone(),
        );
        registry.register(
            "ratelimit_memory_evictions",
            "Counters evicted from the in-memory store, by kind",
            m.memory_evictions.clone(),
        );
        registry.register(
            "ratelimit_breaker_open",
            "1 while the Redis store's breaker is open",
            m.breaker_open.clone(),
        );
        m
    }
}
