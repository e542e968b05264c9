//! Identity metrics: JWKS fetches by cause and outcome, suppressed refetches, keys held, TLS
//! handshakes and their failures, verified-token cache hits. Labels are bounded: issuer and
//! listener names come from the config, causes, outcomes and reasons are fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    pub issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub issuer: String,
    /// `start`, `refresh`, `unknown-kid`, `no-keys`.
    pub cause: &'static str,
    /// `ok`, `unreachable`, `bad-status`, `timeout`, `invalid`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeFailureLabels {
    pub listener: String,
    pub reason: &'static str,
}

/// Clones share the same families and counters (prometheus-client keeps them behind `Arc`s), so
/// each key cache holds its own handle.
#[derive(Debug, Default, Clone)]
pub struct IdentityMetrics {
    pub jwks_fetches: Family<FetchLabels, Counter>,
    pub jwks_refetches_suppressed: Family<IssuerLabels, Counter>,
    pub jwks_keys: Family<IssuerLabels, Gauge>,
    pub tls_handshakes: Family<ListenerLabels, Counter>,
    pub tls_handshake_failures: Family<HandshakeFailureLabels, Counter>,
    pub token_cache_hits: Counter,
    pub token_cache_misses: Counter,
}

impl IdentityMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetches by issuer, cause (start, refresh, unknown-kid, no-keys) and outcome (ok or why it failed)",
            m.jwks_fetches.clone(),
        );
        registry.register(
            "jwks_refetches_suppressed",
            "On-demand JWKS fetches not made because the refetch cooldown was running",
            m.jwks_refetches_suppressed.clone(),
        );
        registry.register(
            "jwks_keys",
            "Signing keys held per issuer after the last successful fetch",
            m.jwks_keys.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes by listener",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Failed TLS handshakes by listener and reason",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "token_cache_hits",
            "Bearer tokens answered from the verified-token cache",
            m.token_cache_hits.clone(),
        );
        registry.register(
            "token_cache_misses",
            "Bearer tokens that had to be verified",
            m.token_cache_misses.clone(),
        );
        m
    }

    pub fn jwks_fetch(&self, issuer: &str, cause: &'static str, outcome: &'static str) -> Counter {
        self.jwks_fetches
            .get_or_create(&FetchLabels {
                issuer: issuer.to_string(),
                cause,
                outcome,
            })
            .clone()
    }

    pub fn jwks_refetches_suppressed(&self, issuer: &str) -> Counter {
        self.jwks_refetches_suppressed
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_string(),
            })
            .clone()
    }

    pub fn jwks_keys(&self, issuer: &str) -> Gauge {
        self.jwks_keys
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_string(),
            })
            .clone()
    }

    pub fn handshake(&self, listener: &str) {
        self.tls_handshakes
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .inc();
    }

    pub fn handshake_failed(&self, listener: &str, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&HandshakeFailureLabels {
                listener: listener.to_string(),
                reason,
            })
            .inc();
    }
}
