//! The live state of every upstream across config versions, and binding a new runtime to it:
//! whatever a reload did not change keeps its pool, breaker, budget, instance health and prober.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::bound::{Binding, BoundUpstream};
use super::pool::{UpstreamClient, new_client};
use super::probe;
use crate::clock::SharedClock;
use crate::config::{Runtime, Upstream};
use crate::record::metrics::Metrics;
use crate::resilience::breaker::Breaker;
use crate::resilience::budget::RetryBudget;
use crate::resilience::instance::InstanceState;
use crate::resilience::settings::HealthCheck;
use crate::state::Active;

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
    protocol: crate::config::UpstreamProtocol,
    http2: crate::config::raw::RawHttp2,
    client: UpstreamClient,
}

impl Pool {
    /// Whether `config` may keep using this pool. A TLS upstream always takes the client compiled
    /// with the new config, so a reload applies rotated CA and client-certificate files.
    fn fits(&self, config: &Upstream) -> bool {
        self.connect_timeout == config.connect_timeout
            && self.protocol == config.protocol
            && self.http2 == config.http2
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
    /// the new config dropped drain. Call it with the config about to become active.
    pub fn bind(&self, config: Runtime, version: u64) -> Active {
        let runtime = &config;
        let mut inner = self.inner.lock();
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
                        protocol: config.protocol,
                        http2: config.http2.clone(),
                        client: new_client(config),
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
            upstreams.insert(
                name.clone(),
                Arc::new(BoundUpstream::new(
                    config.clone(),
                    client,
                    breaker,
                    budget,
                    instances,
                    self.clock.clone(),
                    self.metrics.clone(),
                )),
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
        self.metrics.resilience.config_version.set(version as i64);
        Active::new(config, Binding::new(version, upstreams), &self.metrics)
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
            .spawn(probe::run_checker(
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
        let mut inner = self.inner.lock();
        inner.stopped = true;
        inner.checkers.clear();
    }
}
