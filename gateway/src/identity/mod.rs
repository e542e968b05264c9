//! Identity machinery the `tls`, `authn` and `authz` stages use: TLS configs and the TLS edge
//! ([`tls`]), JWT checks ([`jwt`]), issuers' key caches ([`jwks`]), the verified-token cache
//! ([`token_cache`]), API keys ([`api_key`]) and their metrics.
//!
//! [`IdentityState`] is the part that must survive a config reload — the JWKS cache of each
//! issuer and the verified-token cache — so it lives in
//! [`GatewayState`](crate::server::GatewayState), not in the swapped
//! [`Runtime`](crate::config::Runtime).

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod tls;
pub mod token_cache;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpStream;

use crate::clock::SharedClock;
use crate::config::Runtime;
use crate::config::identity::IssuerConfig;
use crate::metrics::Metrics;
use crate::pipeline::{ConnectionInfo, Scheme};
use crate::server::GatewayState;
use jwks::{JwksCache, Timing};
use token_cache::TokenCache;

/// What identity keeps across reloads.
pub struct IdentityState {
    /// One cache per issuer, keyed by [`IssuerConfig::jwks_cache_key`].
    jwks: ArcSwap<HashMap<String, Arc<JwksCache>>>,
    /// Serializes cache creation so two requests never start two caches for one issuer.
    create: Mutex<()>,
    pub tokens: TokenCache,
    clock: SharedClock,
    metrics: Arc<Metrics>,
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
    pub fn new(runtime: &Runtime, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        Self {
            jwks: ArcSwap::from_pointee(HashMap::new()),
            create: Mutex::new(()),
            tokens: TokenCache::new(runtime.auth.token_cache_entries),
            clock,
            metrics,
        }
    }

    /// Brings the caches in line with `runtime`: a cache (and its background refresher) for
    /// every issuer, new timings for existing ones, caches of issuers no longer configured
    /// dropped. Called at start, and by a reload after it swapped the runtime; requests create a
    /// missing cache themselves too, so a reload that forgets this only loses the eager fetch.
    /// Must run inside a Tokio runtime.
    pub fn sync(&self, runtime: &Runtime) {
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.jwks.load_full();
        let mut next = HashMap::new();
        for issuer in &runtime.auth.issuers {
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
        self.tokens.set_capacity(runtime.auth.token_cache_entries);
    }

    /// The cache for `issuer`, created (and its first fetch started) when missing.
    pub fn jwks_for(&self, issuer: &IssuerConfig) -> Arc<JwksCache> {
        let key = issuer.jwks_cache_key();
        if let Some(cache) = self.jwks.load().get(&key) {
            return cache.clone();
        }
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
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

/// Accepts a client connection on listener `index`: the TLS handshake when the listener has
/// TLS (with the certificates of the runtime in force now), bounded by the header-read timeout.
/// A failed handshake is counted and logged and the connection dropped: it never reaches a
/// stage.
pub async fn accept_connection(
    state: &GatewayState,
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(tls::EdgeStream, ConnectionInfo)> {
    let _ = stream.set_nodelay(true);
    let runtime = state.runtime.load();
    let listener = runtime.listeners.get(index);
    let listener_tls = listener.and_then(|l| l.tls.clone());
    let name = listener.map_or_else(|| format!("#{index}"), |l| l.name.clone());
    let timeout = runtime.limits.header_read_timeout;
    drop(runtime);
    let is_tls = listener_tls.is_some();
    match tls::accept(stream, listener_tls, timeout).await {
        Ok((io, tls)) => {
            if is_tls {
                state.sinks.metrics.identity.handshake(&name);
            }
            Some((
                io,
                ConnectionInfo {
                    peer,
                    scheme: if is_tls { Scheme::Https } else { Scheme::Http },
                    tls,
                },
            ))
        }
        Err(failure) => {
            state
                .sinks
                .metrics
                .identity
                .handshake_failed(&name, failure.reason);
            tracing::info!(%peer, listener = %name, reason = failure.reason, error = %failure.error, "TLS handshake failed");
            None
        }
    }
}
