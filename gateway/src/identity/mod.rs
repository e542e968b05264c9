//! Identity machinery the `tls`, `authn` and `authz` stages use: TLS configs and the TLS edge
//! ([`tls`]), JWT checks ([`jwt`]), issuers' key caches ([`jwks`]), the verified-token cache
//! ([`token_cache`]), API keys ([`api_key`]), client certificates as identities ([`client_cert`]),
//! what identity values may travel in headers ([`header_text`]) and their metrics.
//!
//! [`IdentityState`] is the part that must survive a config reload — the JWKS cache of each
//! issuer and the verified-token cache — so the gateway state holds it, not the swapped config.

pub mod api_key;
pub mod client_cert;
pub mod failure;
pub mod grants;
pub mod header_text;
pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod tls;
pub mod token_cache;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::clock::SharedClock;
use issuer::IssuerConfig;
use jwks::{JwksCache, Timing};
use metrics::IdentityMetrics;
use token_cache::TokenCache;

/// What identity keeps across reloads.
pub struct IdentityState {
    /// One cache per issuer, keyed by [`IssuerConfig::jwks_cache_key`].
    jwks: ArcSwap<HashMap<String, Arc<JwksCache>>>,
    /// Serializes cache creation so two requests never start two caches for one issuer.
    create: Mutex<()>,
    pub tokens: TokenCache,
    clock: SharedClock,
    metrics: IdentityMetrics,
}

impl std::fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityState")
            .field("jwks", &self.jwks.load().keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl IdentityState {
    pub fn new(token_cache_entries: usize, clock: SharedClock, metrics: IdentityMetrics) -> Self {
        Self {
            jwks: ArcSwap::from_pointee(HashMap::new()),
            create: Mutex::new(()),
            tokens: TokenCache::new(token_cache_entries),
            clock,
            metrics,
        }
    }

    /// Brings the caches in line with a config's `issuers`: a cache (and its background refresher) for
    /// every issuer, new timings for existing ones, caches of issuers no longer configured
    /// dropped. Called at start, and by a reload after it swapped the runtime; requests create a
    /// missing cache themselves too, so a reload that forgets this only loses the eager fetch.
    /// Must run inside a Tokio runtime.
    pub fn sync(&self, issuers: &[Arc<IssuerConfig>], token_cache_entries: usize) {
        let _guard = self.create.lock();
        let current = self.jwks.load_full();
        let mut next = HashMap::new();
        for issuer in issuers {
            let key = issuer.jwks_cache_key();
            let cache = match current.get(&key) {
                Some(cache) => {
                    cache.set_timing(Timing::of(issuer));
                    cache.clone()
                }
                None => self.start_cache(issuer),
            };
            next.insert(key, cache);
        }
        self.jwks.store(Arc::new(next));
        self.tokens.set_capacity(token_cache_entries);
    }

    /// Issuers (by name, sorted) whose keys have never been fetched: until they are, every
    /// token they sign is refused, so the gateway is not ready for protected routes.
    pub fn issuers_without_keys(&self) -> Vec<Arc<str>> {
        let mut waiting: Vec<Arc<str>> = self
            .jwks
            .load()
            .values()
            .filter(|cache| cache.generation() == 0)
            .map(|cache| cache.issuer.clone())
            .collect();
        waiting.sort();
        waiting
    }

    /// The cache for `issuer`, created (and its first fetch started) when missing.
    pub fn jwks_for(&self, issuer: &IssuerConfig) -> Arc<JwksCache> {
        let key = issuer.jwks_cache_key();
        if let Some(cache) = self.jwks.load().get(&key) {
            return cache.clone();
        }
        let _guard = self.create.lock();
        let current = self.jwks.load_full();
        if let Some(cache) = current.get(&key) {
            return cache.clone();
        }
        let cache = self.start_cache(issuer);
        let mut next = (*current).clone();
        next.insert(key, cache.clone());
        self.jwks.store(Arc::new(next));
        cache
    }

    fn start_cache(&self, issuer: &IssuerConfig) -> Arc<JwksCache> {
        let cache = Arc::new(JwksCache::new(
            issuer,
            self.clock.clone(),
            self.metrics.clone(),
        ));
        cache.spawn_refresher();
        cache
    }
}
