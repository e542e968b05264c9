//! Reload bookkeeping kept in the gateway state: the active config's version, one reload at a
//! time, and the last refused reload the admin endpoint reports.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use super::Active;
use super::upstreams::Registry;
use crate::config::Runtime;

/// Reload bookkeeping in the gateway state.
#[derive(Debug)]
pub struct ReloadState {
    /// One reload at a time, so versions and bindings follow each other in order.
    one_at_a_time: Mutex<()>,
    version: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
}

impl Default for ReloadState {
    fn default() -> Self {
        Self {
            one_at_a_time: Mutex::new(()),
            version: AtomicU64::new(1),
            last_failure: Mutex::new(None),
        }
    }
}

impl ReloadState {
    /// Binds the config the gateway starts with: version 1.
    pub fn first(&self, registry: &Registry, config: Runtime) -> Active {
        registry.bind(config, self.version.load(Ordering::Relaxed))
    }

    /// Holds off every other reload while the guard lives, so versions and bindings follow each
    /// other in order.
    pub fn one_at_a_time(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.one_at_a_time.lock()
    }

    /// The version the next installed config gets.
    pub fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last reload that was refused, if the last reload was refused.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure.lock().clone()
    }

    /// Remembers a refused reload, or forgets the last one when a reload succeeded.
    pub fn set_last_failure(&self, failure: Option<Failure>) {
        *self.last_failure.lock() = failure;
    }
}

/// A refused reload, as the admin endpoint reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub source: String,
    /// Every problem, `file:line:column: field: message`.
    pub problems: Vec<String>,
    pub unix_millis: u64,
}
