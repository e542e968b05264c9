//! Upstream resilience: the live state behind `route`'s choice of instance and `forward`'s
//! retries — pooled clients, circuit breakers, retry budgets, instance health and ejection,
//! requests in flight.
//!
//! The compiled config ([`Runtime`]) is immutable and swapped whole on reload, so this state
//! cannot live in it. It lives in a [`Registry`] in the gateway state, keyed by stable names
//! (upstream name; upstream name + instance address). Installing a runtime *binds* it: each of its
//! upstreams gets a [`BoundUpstream`] holding the compiled settings and `Arc`s to the live state
//! — the same `Arc`s the previous runtime held for whatever did not change — stored in the
//! runtime's [`Binding`]. A request keeps its runtime snapshot and therefore its binding; a
//! removed instance keeps its state, and its pooled connections, until the last request that
//! picked it has finished.
//!
//! **Invariant:** reloading a config keeps a breaker, a budget, a client pool and an instance's
//! health for every upstream (and instance) whose relevant settings did not change.

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod health;
pub mod metrics;
mod window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tokio::sync::Notify;

use crate::clock::{Nanos, SharedClock};
use crate::config::resilience::{HashOn, HealthCheck, LoadBalancing};
use crate::config::{Runtime, Upstream};
use crate::metrics::Metrics;
use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;
use crate::stage::forward::UpstreamClient;
use balance::Candidate;
pub use breaker::BreakerState;
use breaker::{Breaker, Refused, Ticket};
use budget::RetryBudget;
use health::{ActiveHealth, Outcome, Passive};
use metrics::{BreakerLabels, InstanceLabels, ResilienceMetrics};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every value behind these locks is a counter or a map that stays consistent step by step.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Instances.

/// One instance's live state; survives reloads that keep the instance.
#[derive(Debug)]
pub struct InstanceState {
    pub upstream: Arc<str>,
    pub address: SocketAddr,
    seed: u64,
    outstanding: AtomicUsize,
    /// Woken when `outstanding` drops to zero (a removed instance draining).
    drained: Notify,
    /// The active checks' verdict (true without active checks).
    healthy: AtomicBool,
    /// Monotonic nanos until which outlier ejection keeps it out; 0 when never ejected.
    ejected_until: AtomicU64,
    active: Mutex<ActiveHealth>,
    passive: Mutex<Passive>,
}

impl InstanceState {
    fn new(upstream: Arc<str>, address: SocketAddr) -> Self {
        Self {
            seed: balance::hash_bytes(address.to_string().as_bytes()),
            upstream,
            address,
            outstanding: AtomicUsize::new(0),
            drained: Notify::new(),
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            active: Mutex::new(ActiveHealth::default()),
            passive: Mutex::new(Passive::default()),
        }
    }

    /// Requests sent to it whose response has not finished.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now: Nanos) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// In rotation: passing active checks and not ejected.
    pub fn available(&self, now: Nanos) -> bool {
        self.healthy() && !self.ejected(now)
    }

    pub(crate) fn observe_active(&self, passed: bool, config: &HealthCheck) -> Option<bool> {
        let changed = lock(&self.active).observe(passed, config);
        if let Some(healthy) = changed {
            self.healthy.store(healthy, Ordering::Relaxed);
        }
        changed
    }

    /// Without active checks an instance is healthy: forget an old verdict.
    fn forget_active(&self) {
        *lock(&self.active) = ActiveHealth::default();
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// Waits until no request is in flight to this instance, at most `timeout`; true if drained.
    async fn wait_drained(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.drained.notified();
                if self.outstanding() == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Counts one request in flight to an instance until dropped — which the pipeline arranges to
/// happen when the response body has been sent, so "outstanding" means the whole exchange.
pub struct InFlight {
    instance: Arc<InstanceState>,
}

impl InFlight {
    fn new(instance: Arc<InstanceState>) -> Self {
        instance.outstanding.fetch_add(1, Ordering::Relaxed);
        Self { instance }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.instance.outstanding.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.instance.drained.notify_waiters();
        }
    }
}

/// A breaker's permission held by a request. Reported through [`BoundUpstream::report`]; if the
/// try never happens (a later stage stopped the request) dropping it gives a probe slot back.
pub struct Admission {
    breaker: Arc<Breaker>,
    ticket: Option<Ticket>,
}

impl Admission {
    pub fn state(&self) -> Option<BreakerState> {
        self.ticket.map(|t| t.state)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.release(ticket);
        }
    }
}

/// What `route` and `forward` note about one request's upstream: carried in the request
/// context, read back into the record.
#[derive(Default)]
pub struct RequestResilience {
    pub upstream: Option<Arc<BoundUpstream>>,
    /// Index of the instance the current try goes to, in `upstream.instances`.
    pub instance: Option<usize>,
    /// The consistent-hash key, when the upstream hashes and the request has one.
    pub hash_key: Option<u64>,
    pub in_flight: Option<InFlight>,
    pub admission: Option<Admission>,
    /// The breaker's state when it let the request through (or refused it).
    pub breaker: Option<BreakerState>,
    pub retries: u32,
    /// The client's `Upgrade` value, when the route passes WebSocket upgrades through.
    pub upgrade: Option<HeaderValue>,
}

// ---------------------------------------------------------------------------------------------
// Upstreams as one config version sees them.

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
        result.map(|ticket| {
            Some(Admission {
                breaker: breaker.clone(),
                ticket: Some(ticket),
            })
        })
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
                seed: state.seed,
            })
            .collect()
    }

    /// The consistent-hash key of a request, when the upstream hashes and the request has one.
    pub fn hash_key(&self, cx: &RequestContext) -> Option<u64> {
        match &self.config.resilience.load_balancing {
            LoadBalancing::ConsistentHash(HashOn::Header(name)) => cx
                .parts
                .headers
                .get(name)
                .map(|v| balance::hash_bytes(v.as_bytes())),
            LoadBalancing::ConsistentHash(HashOn::Subject) => cx
                .identity
                .as_ref()
                .map(|i| balance::hash_bytes(i.subject.as_bytes())),
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
        let now = self.now();
        if let Some(mut admission) = admission {
            if let Some(ticket) = admission.ticket.take() {
                if outcome == Outcome::Neutral {
                    admission.breaker.release(ticket);
                } else if let Some(state) =
                    admission
                        .breaker
                        .record(now, ticket, outcome == Outcome::Success)
                {
                    self.count_transition(state);
                }
            }
        }
        let Some(config) = &self.config.resilience.outlier else {
            return;
        };
        let instance = &self.instances[i];
        let tripped = lock(&instance.passive).observe(outcome, config);
        if !tripped {
            return;
        }
        let _one_at_a_time = lock(&self.ejecting);
        let ejected = self.instances.iter().filter(|s| s.ejected(now)).count();
        if instance.ejected(now) || ejected >= config.max_ejected(self.instances.len()) {
            return;
        }
        let until = lock(&instance.passive).eject(now, config);
        instance.ejected_until.store(until, Ordering::Relaxed);
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
                let until = state.ejected_until.load(Ordering::Relaxed);
                json!({
                    "address": state.address.to_string(),
                    "weight": config.weight,
                    "available": state.available(now),
                    "healthy": state.healthy(),
                    "ejected": state.ejected(now),
                    "ejected_for_ms": until.saturating_sub(now) / 1_000_000,
                    "ejections": lock(&state.passive).ejections(),
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
    upstreams: HashMap<Arc<str>, Arc<BoundUpstream>>,
}

impl Binding {
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

// ---------------------------------------------------------------------------------------------
// The registry.

/// The live state of every upstream, across config versions.
pub struct Registry {
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// Where probers and drain watchers run (captured at start, so a reload from any thread
    /// can spawn them).
    tasks: Option<tokio::runtime::Handle>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<Arc<str>, Pool>,
    next_pool_id: u64,
    breakers: HashMap<Arc<str>, Arc<Breaker>>,
    budgets: HashMap<Arc<str>, Arc<RetryBudget>>,
    instances: HashMap<(Arc<str>, SocketAddr), Arc<InstanceState>>,
    checkers: HashMap<(Arc<str>, SocketAddr), Checker>,
    stopped: bool,
}

/// An upstream's pooled client and the settings it was built with.
struct Pool {
    id: u64,
    connect_timeout: Duration,
    scheme: http::uri::Scheme,
    client: UpstreamClient,
}

impl Pool {
    /// Whether `config` may keep using this pool. A TLS upstream always takes the client compiled
    /// with the new config, so a reload applies rotated CA and client-certificate files.
    fn fits(&self, config: &Upstream) -> bool {
        self.connect_timeout == config.connect_timeout
            && self.scheme == config.scheme
            && config.scheme == http::uri::Scheme::HTTP
    }
}

/// A running prober; dropping it stops it.
struct Checker {
    config: HealthCheck,
    pool: u64,
    task: tokio::task::AbortHandle,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registry {
    pub fn new(clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        Self {
            clock,
            metrics,
            tasks: tokio::runtime::Handle::try_current().ok(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Binds `runtime`'s upstreams to live state — reusing what the last bound runtime had for
    /// every name (and setting) it keeps — starts and stops health probers, and lets instances
    /// the new config dropped drain. Call it with the runtime about to become active.
    pub fn bind(&self, runtime: &mut Runtime, version: u64) {
        let mut inner = lock(&self.inner);
        let mut old = std::mem::take(&mut *inner);
        inner.stopped = old.stopped;
        inner.next_pool_id = old.next_pool_id;
        let mut upstreams = HashMap::new();
        for (name, config) in &runtime.upstreams {
            let pool = match old.clients.remove(name) {
                Some(pool) if pool.fits(config) => pool,
                _ => {
                    inner.next_pool_id += 1;
                    Pool {
                        id: inner.next_pool_id,
                        connect_timeout: config.connect_timeout,
                        scheme: config.scheme.clone(),
                        client: config.client.clone(),
                    }
                }
            };
            let (client, pool_id) = (pool.client.clone(), pool.id);
            inner.clients.insert(name.clone(), pool);
            let resilience = &config.resilience;
            let breaker = resilience.breaker.as_ref().map(|wanted| {
                let breaker = match old.breakers.remove(name) {
                    Some(b) if b.config() == wanted => b,
                    _ => Arc::new(Breaker::new(wanted.clone())),
                };
                inner.breakers.insert(name.clone(), breaker.clone());
                breaker
            });
            let budget = resilience.retries.as_ref().map(|retries| {
                let budget = match old.budgets.remove(name) {
                    Some(b) if *b.config() == retries.budget => b,
                    _ => Arc::new(RetryBudget::new(retries.budget.clone())),
                };
                inner.budgets.insert(name.clone(), budget.clone());
                budget
            });
            let mut instances = Vec::with_capacity(config.instances.len());
            for instance in &config.instances {
                let key = (name.clone(), instance.address);
                let state = match inner.instances.get(&key) {
                    Some(state) => state.clone(),
                    None => old.instances.remove(&key).unwrap_or_else(|| {
                        Arc::new(InstanceState::new(name.clone(), instance.address))
                    }),
                };
                inner.instances.insert(key.clone(), state.clone());
                match &resilience.health_check {
                    Some(check) if !inner.checkers.contains_key(&key) => {
                        let checker = match old.checkers.remove(&key) {
                            Some(c) if c.config == *check && c.pool == pool_id => Some(c),
                            _ => self.spawn_checker(
                                &state,
                                check,
                                (&client, pool_id, &config.scheme),
                                inner.stopped,
                            ),
                        };
                        if let Some(checker) = checker {
                            inner.checkers.insert(key, checker);
                        }
                    }
                    Some(_) => {}
                    None => state.forget_active(),
                }
                instances.push(state);
            }
            let weights: Vec<u32> = config.instances.iter().map(|i| i.weight).collect();
            upstreams.insert(
                name.clone(),
                Arc::new(BoundUpstream {
                    config: config.clone(),
                    client,
                    breaker,
                    budget,
                    instances,
                    schedule: balance::schedule(&weights),
                    cursor: AtomicUsize::new(fastrand::usize(..)),
                    ejecting: Mutex::new(()),
                    clock: self.clock.clone(),
                    metrics: self.metrics.clone(),
                }),
            );
        }
        // Left in `old`: what the new config dropped. Probers stop as `old` drops; instances
        // with requests in flight finish them on their own connections.
        let drain = runtime.limits.drain_timeout;
        for ((upstream, address), state) in old.instances {
            if state.outstanding() == 0 {
                continue;
            }
            tracing::info!(%upstream, instance = %address, in_flight = state.outstanding(), "instance removed by reload; draining");
            if let Some(tasks) = &self.tasks {
                tasks.spawn(async move {
                    if state.wait_drained(drain).await {
                        tracing::info!(%upstream, instance = %address, "removed instance drained");
                    } else {
                        tracing::warn!(
                            %upstream,
                            instance = %address,
                            in_flight = state.outstanding(),
                            "removed instance still has requests in flight after the drain timeout"
                        );
                    }
                });
            }
        }
        runtime.bound = Binding { version, upstreams };
        self.metrics.resilience.config_version.set(version as i64);
    }

    fn spawn_checker(
        &self,
        state: &Arc<InstanceState>,
        check: &HealthCheck,
        (client, pool, scheme): (&UpstreamClient, u64, &http::uri::Scheme),
        stopped: bool,
    ) -> Option<Checker> {
        if stopped {
            return None;
        }
        let tasks = self.tasks.as_ref()?;
        let task = tasks
            .spawn(health::run_checker(
                state.clone(),
                check.clone(),
                client.clone(),
                scheme.clone(),
            ))
            .abort_handle();
        Some(Checker {
            config: check.clone(),
            pool,
            task,
        })
    }

    /// Stops every health prober (the gateway is shutting down).
    pub fn stop(&self) {
        let mut inner = lock(&self.inner);
        inner.stopped = true;
        inner.checkers.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The `route` stage's part.

/// Picks the instance for a request to `upstream`: stops it with 503 `circuit-open` when the
/// breaker is open (the upstream is not touched) or `no-healthy-instance` when no instance is in
/// rotation; otherwise notes the instance, the breaker's permission and the in-flight guard.
pub fn choose(cx: &mut RequestContext, upstream: &Upstream) -> StageResult {
    let Some(bound) = cx.runtime.bound.get(&upstream.name).cloned() else {
        return Err(no_healthy_instance());
    };
    let now = bound.now();
    let admission = match bound.admit(now) {
        Ok(admission) => admission,
        Err(refused) => {
            cx.resilience.breaker = Some(BreakerState::Open);
            return Err(circuit_open(refused));
        }
    };
    cx.resilience.breaker = admission.as_ref().and_then(Admission::state);
    let key = bound.hash_key(cx);
    let Some(i) = bound.pick(now, key, &[]) else {
        return Err(no_healthy_instance());
    };
    cx.upstream_instance = Some((bound.name().clone(), bound.instances[i].address));
    cx.resilience.in_flight = Some(bound.begin(i));
    cx.resilience.instance = Some(i);
    cx.resilience.hash_key = key;
    cx.resilience.admission = admission;
    cx.resilience.upstream = Some(bound);
    Ok(())
}

pub fn no_healthy_instance() -> Rejection {
    Rejection::new(
        StageId::Route,
        StatusCode::SERVICE_UNAVAILABLE,
        "no-healthy-instance",
        "no instance of the upstream is available",
    )
}

fn circuit_open(refused: Refused) -> Rejection {
    // Whole seconds, never 0 (the convention `Retry-After` follows everywhere in the gateway).
    let secs = refused.retry_after.as_secs() + u64::from(refused.retry_after.subsec_nanos() > 0);
    Rejection::new(
        StageId::Route,
        StatusCode::SERVICE_UNAVAILABLE,
        "circuit-open",
        "the upstream is failing; the gateway is not sending it requests for a while",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))
}
