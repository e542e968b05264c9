//! Rate-limit metrics, registered into the gateway's [`Metrics`](crate::record::metrics::Metrics).
//! Labels are bounded: policy ids come from the config, stores and outcomes are fixed words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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
/// One policy's decision counters, resolved once per bound config so a decision builds no label
/// strings and searches no family map.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    allowed: Counter,
    denied: Counter,
    fallback_allowed: Counter,
    fallback_denied: Counter,
}

impl PolicyMetrics {
    /// Counts one decision; `fallback` when `on_store_error` took it, not the store.
    pub fn count(&self, allowed: bool, fallback: bool) {
        match (allowed, fallback) {
            (true, false) => self.allowed.inc(),
            (false, false) => self.denied.inc(),
            (true, true) => {
                self.fallback_allowed.inc();
                self.allowed.inc()
            }
            (false, true) => {
                self.fallback_denied.inc();
                self.denied.inc()
            }
        };
    }
}

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
    /// Requests decided per Redis script call (above 1 when concurrent requests are batched).
    pub redis_batch: BatchSizes,
}

/// A histogram of requests per Redis script call: 1, 2, 4, … 512.
#[derive(Clone, Debug)]
pub struct BatchSizes(pub Histogram);

impl Default for BatchSizes {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(1.0, 2.0, 10)))
    }
}

impl RateLimitMetrics {
    /// The counters of policy `id`.
    pub fn for_policy(&self, id: &str) -> PolicyMetrics {
        let labels = |outcome| DecisionLabels {
            policy: id.to_string(),
            outcome,
        };
        // One statement each: `get_or_create` returns a read guard on the family, and a second
        // call on the same family while the first guard lives would wait for itself.
        let allowed = self.decisions.get_or_create(&labels("allowed")).clone();
        let denied = self.decisions.get_or_create(&labels("denied")).clone();
        let fallback_allowed = self
            .fallback_decisions
            .get_or_create(&labels("allowed"))
            .clone();
        let fallback_denied = self
            .fallback_decisions
            .get_or_create(&labels("denied"))
            .clone();
        PolicyMetrics {
            allowed,
            denied,
            fallback_allowed,
            fallback_denied,
        }
    }

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
        registry.register(
            "ratelimit_redis_batch_requests",
            "Requests decided per Redis script call (concurrent requests share one call)",
            m.redis_batch.0.clone(),
        );
        m
    }
}
