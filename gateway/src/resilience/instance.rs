//! One upstream instance's live state — requests outstanding, the active checks' verdict,
//! outlier ejection — and the guard that counts a request in flight to it. Survives reloads that
//! keep the instance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::balance;
use super::health::{ActiveHealth, Outcome, Passive};
use super::settings::{HealthCheck, OutlierEjection};
use crate::clock::Nanos;

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
    pub fn new(upstream: Arc<str>, address: SocketAddr) -> Self {
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

    /// A stable per-instance seed for rendezvous hashing.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Monotonic nanos until which ejection keeps it out; 0 when never ejected.
    pub fn ejected_until(&self) -> Nanos {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// How many times outlier ejection has taken it out recently.
    pub fn ejections(&self) -> u32 {
        self.passive.lock().ejections()
    }

    /// Counts one real request's outcome; true when it trips ejection.
    pub fn observe_passive(&self, outcome: Outcome, config: &OutlierEjection) -> bool {
        self.passive.lock().observe(outcome, config)
    }

    /// Takes it out of rotation for its next ejection period; returns until when.
    pub fn eject(&self, now: Nanos, config: &OutlierEjection) -> Nanos {
        let until = self.passive.lock().eject(now, config);
        self.ejected_until.store(until, Ordering::Relaxed);
        until
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

    pub fn observe_active(&self, passed: bool, config: &HealthCheck) -> Option<bool> {
        let changed = self.active.lock().observe(passed, config);
        if let Some(healthy) = changed {
            self.healthy.store(healthy, Ordering::Relaxed);
        }
        changed
    }

    /// Without active checks an instance is healthy: forget an old verdict.
    pub fn forget_active(&self) {
        *self.active.lock() = ActiveHealth::default();
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// Waits until no request is in flight to this instance, at most `timeout`; true if drained.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
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
    /// What else the exchange holds until it ends: the upstream connection (or HTTP/2 stream) the
    /// pool lent it, given back when this guard drops.
    lease: Option<Box<dyn Send + Sync>>,
}

impl InFlight {
    pub fn new(instance: Arc<InstanceState>) -> Self {
        instance.outstanding.fetch_add(1, Ordering::Relaxed);
        Self {
            instance,
            lease: None,
        }
    }

    /// Keeps `lease` until the exchange ends (replacing one an earlier try held).
    pub fn hold(&mut self, lease: impl Send + Sync + 'static) {
        self.lease = Some(Box::new(lease));
    }

    /// Lets go of what an earlier try held, for a try whose exchange holds nothing here.
    pub fn release(&mut self) {
        self.lease = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.instance.outstanding.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.instance.drained.notify_waiters();
        }
    }
}
