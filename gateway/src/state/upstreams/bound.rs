//! Upstreams as one config version sees them: each compiled upstream bound to its live state
//! (pool, breaker, budget, instances), and the runtime's whole binding.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::json;

use super::pool::UpstreamClient;
use crate::clock::{Nanos, SharedClock};
use crate::config::Upstream;
use crate::record::metrics::Metrics;
use crate::resilience::balance::{self, Candidate};
use crate::resilience::breaker::{Breaker, BreakerState, Refused};
use crate::resilience::budget::RetryBudget;
use crate::resilience::health::Outcome;
use crate::resilience::metrics::{BreakerLabels, InstanceLabels, ResilienceMetrics};
use crate::resilience::settings::{HashOn, LoadBalancing};
use crate::resilience::{Admission, InFlight, InstanceState};
use crate::vocab::Identity;

/// An upstream bound to its live state for one runtime.
pub struct BoundUpstream {
    pub config: Arc<Upstream>,
    /// The pool requests go through: the one earlier versions used when the connection settings
    /// did not change, else the client compiled with `config`.
    pub client: UpstreamClient,
    pub breaker: Option<Arc<Breaker>>,
    pub budget: Option<Arc<RetryBudget>>,
    /// Parallel to `config.instances`.
    pub instances: Vec<Arc<InstanceState>>,
    schedule: Vec<u32>,
    cursor: AtomicUsize,
    /// Serializes ejection decisions so the ejected share is never exceeded.
    ejecting: Mutex<()>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for BoundUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundUpstream")
            .field("name", &self.config.name)
            .field("instances", &self.instances)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl BoundUpstream {
    pub fn new(
        config: Arc<Upstream>,
        client: UpstreamClient,
        breaker: Option<Arc<Breaker>>,
        budget: Option<Arc<RetryBudget>>,
        instances: Vec<Arc<InstanceState>>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let weights: Vec<u32> = config.instances.iter().map(|i| i.weight).collect();
        Self {
            schedule: balance::schedule(&weights),
            cursor: AtomicUsize::new(fastrand::usize(..)),
            ejecting: Mutex::new(()),
            config,
            client,
            breaker,
            budget,
            instances,
            clock,
            metrics,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }

    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    fn resilience_metrics(&self) -> &ResilienceMetrics {
        &self.metrics.resilience
    }

    /// Asks the breaker, if there is one, to let a try through.
    pub fn admit(&self, now: Nanos) -> Result<Option<Admission>, Refused> {
        let Some(breaker) = &self.breaker else {
            return Ok(None);
        };
        let (result, moved) = breaker.admit(now);
        if let Some(state) = moved {
            self.count_transition(state);
        }
        result.map(|ticket| Some(Admission::new(breaker.clone(), ticket)))
    }

    /// The instance for the next try: the balancer's choice among instances in rotation that
    /// this request has not tried; failing that, any instance in rotation (a retry on the same
    /// instance beats none).
    pub fn pick(&self, now: Nanos, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        let retry = !tried.is_empty();
        let fresh = |i: usize| !tried.contains(&i) && self.instances[i].available(now);
        self.pick_with(key, retry, fresh).or_else(|| {
            retry
                .then(|| self.pick_with(key, retry, |i| self.instances[i].available(now)))
                .flatten()
        })
    }

    fn pick_with(
        &self,
        key: Option<u64>,
        retry: bool,
        ok: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let round_robin = || {
            // A retry does not take a turn: it goes to the next instance in the schedule and the
            // next request still gets its own.
            let cursor = if retry {
                self.cursor.load(Ordering::Relaxed)
            } else {
                self.cursor.fetch_add(1, Ordering::Relaxed)
            };
            balance::round_robin(&self.schedule, cursor, &ok)
        };
        match (&self.config.resilience.load_balancing, key) {
            (LoadBalancing::RoundRobin, _) | (LoadBalancing::ConsistentHash(_), None) => {
                round_robin()
            }
            (LoadBalancing::LeastOutstanding, _) => {
                balance::least_outstanding(&self.candidates(), &ok, |n| fastrand::usize(..n))
            }
            (LoadBalancing::ConsistentHash(_), Some(key)) => {
                balance::rendezvous(&self.candidates(), key, &ok)
            }
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.config
            .instances
            .iter()
            .zip(&self.instances)
            .map(|(config, state)| Candidate {
                weight: config.weight,
                outstanding: state.outstanding(),
                seed: state.seed(),
            })
            .collect()
    }

    /// The consistent-hash key of a request, when the upstream hashes and the request has one.
    pub fn hash_key(&self, headers: &HeaderMap, identity: Option<&Identity>) -> Option<u64> {
        match &self.config.resilience.load_balancing {
            LoadBalancing::ConsistentHash(HashOn::Header(name)) => {
                headers.get(name).map(|v| balance::hash_bytes(v.as_bytes()))
            }
            LoadBalancing::ConsistentHash(HashOn::Subject) => {
                identity.map(|i| balance::hash_bytes(i.subject.as_bytes()))
            }
            _ => None,
        }
    }

    /// Marks a request in flight to instance `i` until the guard is dropped.
    pub fn begin(&self, i: usize) -> InFlight {
        InFlight::new(self.instances[i].clone())
    }

    /// The outcome of one try at instance `i`: feeds the breaker (through the try's admission)
    /// and outlier ejection.
    pub fn report(&self, i: usize, outcome: Outcome, admission: Option<Admission>) {
        // The clock is read only for a rule that needs the time: most upstreams have neither.
        if let Some(admission) = admission {
            let success = (outcome != Outcome::Neutral).then_some(outcome == Outcome::Success);
            if let Some(state) = admission.report(self.now(), success) {
                self.count_transition(state);
            }
        }
        let Some(config) = &self.config.resilience.outlier else {
            return;
        };
        let instance = &self.instances[i];
        let tripped = instance.observe_passive(outcome, config);
        if !tripped {
            return;
        }
        let now = self.now();
        let _one_at_a_time = self.ejecting.lock();
        let ejected = self.instances.iter().filter(|s| s.ejected(now)).count();
        if instance.ejected(now) || ejected >= config.max_ejected(self.instances.len()) {
            return;
        }
        let until = instance.eject(now, config);
        self.resilience_metrics()
            .ejections
            .get_or_create(&ResilienceMetrics::upstream(self.name()))
            .inc();
        tracing::warn!(
            upstream = %self.name(),
            instance = %instance.address,
            ejected_for_ms = until.saturating_sub(now) / 1_000_000,
            "instance ejected after repeated failures"
        );
    }

    fn count_transition(&self, state: BreakerState) {
        self.resilience_metrics()
            .breaker_transitions
            .get_or_create(&BreakerLabels {
                upstream: self.name().to_string(),
                state: state.as_str(),
            })
            .inc();
        match state {
            BreakerState::Open => {
                tracing::warn!(upstream = %self.name(), "circuit breaker opened")
            }
            other => {
                tracing::info!(upstream = %self.name(), state = other.as_str(), "circuit breaker moved")
            }
        }
    }

    /// A retry may go out: the budget has room. Counts what it decides.
    pub fn take_retry(&self, now: Nanos) -> bool {
        let allowed = self.budget.as_ref().is_none_or(|b| b.try_retry(now));
        let labels = ResilienceMetrics::upstream(self.name());
        if allowed {
            self.resilience_metrics()
                .retries
                .get_or_create(&labels)
                .inc();
        } else {
            self.resilience_metrics()
                .retries_over_budget
                .get_or_create(&labels)
                .inc();
        }
        allowed
    }

    /// What the admin `/upstreams` endpoint shows.
    pub fn snapshot(&self, now: Nanos) -> serde_json::Value {
        let instances: Vec<serde_json::Value> = self
            .config
            .instances
            .iter()
            .zip(&self.instances)
            .map(|(config, state)| {
                let until = state.ejected_until();
                json!({
                    "address": state.address.to_string(),
                    "weight": config.weight,
                    "available": state.available(now),
                    "healthy": state.healthy(),
                    "ejected": state.ejected(now),
                    "ejected_for_ms": until.saturating_sub(now) / 1_000_000,
                    "ejections": state.ejections(),
                    "outstanding": state.outstanding(),
                })
            })
            .collect();
        json!({
            "name": &*self.config.name,
            "load_balancing": self.config.resilience.load_balancing.name(),
            "breaker": self.breaker.as_ref().map(|b| b.state(now).as_str()),
            "health_checks": self.config.resilience.health_check.is_some(),
            "instances": instances,
        })
    }
}

/// A runtime's upstreams bound to their live state; filled when the runtime is installed.
#[derive(Debug, Default)]
pub struct Binding {
    /// 1 for the config the gateway started with, one more per successful reload; 0 when the
    /// runtime was never installed.
    pub version: u64,
    /// Looked up on every request, by names from the config: a fast hash (see Cargo.toml).
    upstreams: HashMap<Arc<str>, Arc<BoundUpstream>, foldhash::fast::RandomState>,
}

impl Binding {
    pub fn new(version: u64, upstreams: HashMap<Arc<str>, Arc<BoundUpstream>>) -> Self {
        Self {
            version,
            upstreams: upstreams.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<BoundUpstream>> {
        self.upstreams.get(name)
    }

    /// Sorted by name.
    pub fn upstreams(&self) -> Vec<&Arc<BoundUpstream>> {
        let mut all: Vec<&Arc<BoundUpstream>> = self.upstreams.values().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Sets the scrape-time gauges: breaker states and instances in rotation.
    pub fn refresh_gauges(&self, metrics: &ResilienceMetrics, now: Nanos) {
        metrics.breaker_state.clear();
        metrics.instance_available.clear();
        metrics.config_version.set(self.version as i64);
        for upstream in self.upstreams.values() {
            if let Some(breaker) = &upstream.breaker {
                let current = breaker.state(now);
                for state in BreakerState::ALL {
                    metrics
                        .breaker_state
                        .get_or_create(&BreakerLabels {
                            upstream: upstream.name().to_string(),
                            state: state.as_str(),
                        })
                        .set(i64::from(state == current));
                }
            }
            for instance in &upstream.instances {
                metrics
                    .instance_available
                    .get_or_create(&InstanceLabels {
                        upstream: upstream.name().to_string(),
                        instance: instance.address.to_string(),
                    })
                    .set(i64::from(instance.available(now)));
            }
        }
    }
}
