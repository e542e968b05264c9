//! An issuer's signing keys: fetched from its JWKS URL with the gateway's own hyper-util client,
//! cached with a TTL and refreshed in the background; refetched once on an unknown `kid`, single
//! flight, with a cooldown; the last good keys kept when a fetch fails, times out or returns
//! garbage, for at most `max_stale` after they were fetched.
//!
//! The cache outlives config reloads (it sits in the gateway state),
//! and reads time only through the injected [`Clock`](crate::clock::Clock).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::issuer::IssuerConfig;
use super::metrics::IdentityMetrics;
use crate::clock::{Nanos, SharedClock};

/// A JWKS larger than this is garbage, not a key set.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// One verification key from the JWKS.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// What this key may verify: the JWK's `alg` when it names one, else every algorithm its key
    /// type and curve can serve. Never an HMAC: symmetric (`oct`) keys are skipped.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
    /// The JWK as fetched, to keep the same `Arc` across refreshes that do not change the key
    /// (cached tokens stay valid exactly as long as their key is published).
    jwk: String,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl VerifyKey {
    /// A verification key from one JWK, or `None` for keys that cannot or must not verify
    /// tokens (symmetric, encryption-only, unknown type or curve, malformed).
    pub fn from_jwk(jwk: &Value) -> Option<VerifyKey> {
        let obj = jwk.as_object()?;
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        if text("use").is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = obj.get("key_ops") {
            let ops = ops.as_array()?;
            if !ops.iter().any(|o| o.as_str() == Some("verify")) {
                return None;
            }
        }
        let named: Option<Algorithm> = match text("alg") {
            Some(alg) => Some(alg.parse().ok()?),
            None => None,
        };
        let (key, family): (DecodingKey, Vec<Algorithm>) = match text("kty")? {
            "RSA" => (
                DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?,
                RSA_ALGORITHMS.to_vec(),
            ),
            "EC" => {
                let alg = match text("crv")? {
                    "P-256" => Algorithm::ES256,
                    "P-384" => Algorithm::ES384,
                    _ => return None,
                };
                (
                    DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
                    vec![alg],
                )
            }
            "OKP" if text("crv")? == "Ed25519" => (
                DecodingKey::from_ed_components(text("x")?).ok()?,
                vec![Algorithm::EdDSA],
            ),
            // `oct` above all: an HMAC secret published as a "public" key is no key at all.
            _ => return None,
        };
        let algorithms = match named {
            Some(alg) if family.contains(&alg) => vec![alg],
            Some(_) => return None,
            None => family,
        };
        Some(VerifyKey {
            kid: text("kid").map(String::from),
            algorithms,
            key,
            jwk: serde_json::to_string(jwk).ok()?,
        })
    }
}

/// The keys of one successful fetch.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyKey>>,
    /// Clock time of the fetch.
    pub fetched_at: Nanos,
    /// Which fetch this is: a request that found no key for its `kid` in this set passes it to
    /// [`JwksCache::refetch_for_unknown_kid`], which fetches only if nothing newer arrived.
    pub generation: u64,
}

impl KeySet {
    /// The key a token names. A token without `kid` is accepted only when the set has a
    /// single key.
    pub fn find(&self, kid: Option<&str>) -> Option<&Arc<VerifyKey>> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn contains(&self, key: &Arc<VerifyKey>) -> bool {
        self.keys.iter().any(|k| Arc::ptr_eq(k, key))
    }
}

/// How the keys are kept fresh; updated from the config on reload.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl: Duration,
    pub refetch_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub max_stale: Duration,
}

impl Timing {
    pub fn of(issuer: &IssuerConfig) -> Self {
        Self {
            ttl: issuer.jwks.ttl,
            refetch_cooldown: issuer.jwks.refetch_cooldown,
            fetch_timeout: issuer.jwks.fetch_timeout,
            max_stale: issuer.jwks.max_stale,
        }
    }
}

type FetchClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The outcome of asking for keys again because a token named an unknown `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// New keys arrived (fetched now, or by a fetch this request waited for).
    Refreshed,
    /// Within the cooldown of the previous unknown-`kid` refetch: nothing was fetched.
    Suppressed,
    /// The fetch failed; the previous keys stay.
    Failed,
}

/// One issuer's keys.
pub struct JwksCache {
    /// The issuer's name: the metric label.
    pub issuer: Arc<str>,
    url: http::Uri,
    timing: ArcSwap<Timing>,
    keys: ArcSwapOption<KeySet>,
    client: FetchClient,
    /// Single flight: one fetch at a time; a request that finds one running waits for it.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Bumped by every successful fetch.
    generation: AtomicU64,
    /// When the last fetch for an unknown `kid` started; its cooldown counts from it.
    last_unknown_kid: Mutex<Option<Nanos>>,
    /// When the last fetch for a request that found no usable keys started. Kept apart from
    /// the unknown-kid slot so a request during start-up cannot delay the fetch a key rotation
    /// needs.
    last_no_keys: Mutex<Option<Nanos>>,
    failures: AtomicU32,
    clock: SharedClock,
    metrics: IdentityMetrics,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("url", &self.url)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot reach the issuer: {0}")]
    Unreachable(String),
    #[error("the issuer answered {0}")]
    Status(http::StatusCode),
    #[error("the JWKS could not be read: {0}")]
    Body(String),
    #[error("the JWKS is not usable: {0}")]
    Invalid(&'static str),
}

impl FetchError {
    fn label(&self) -> &'static str {
        match self {
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Status(_) => "bad-status",
            FetchError::Body(_) | FetchError::Invalid(_) => "invalid",
        }
    }
}

impl JwksCache {
    pub fn new(issuer: &IssuerConfig, clock: SharedClock, metrics: IdentityMetrics) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(issuer.jwks.fetch_timeout));
        let tls = match &issuer.jwks.tls {
            Some(config) => Some(config.clone()),
            None if issuer.jwks_url.scheme_str() == Some("https") => {
                crate::identity::tls::client_config(crate::identity::tls::platform_roots(), None)
                    .ok()
            }
            None => None,
        };
        let connector = crate::identity::tls::https_connector(http, tls, None);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            issuer: issuer.name.clone(),
            url: issuer.jwks_url.clone(),
            timing: ArcSwap::from_pointee(Timing::of(issuer)),
            keys: ArcSwapOption::empty(),
            client,
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            last_unknown_kid: Mutex::new(None),
            last_no_keys: Mutex::new(None),
            failures: AtomicU32::new(0),
            clock,
            metrics,
        }
    }

    pub fn set_timing(&self, timing: Timing) {
        self.timing.store(Arc::new(timing));
    }

    fn timing(&self) -> Timing {
        **self.timing.load()
    }

    /// The keys to verify with now: the last good set, unless it is older than `max_stale`.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let keys = self.keys.load_full()?;
        let age = self.clock.now().saturating_sub(keys.fetched_at);
        (age <= nanos(self.timing().max_stale)).then_some(keys)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Claims an on-demand fetch slot unless the cooldown since its last use still runs.
    fn claim(&self, slot: &Mutex<Option<Nanos>>) -> bool {
        let now = self.clock.now();
        let cooldown = nanos(self.timing().refetch_cooldown);
        let mut last = slot.lock();
        match *last {
            Some(at) if now.saturating_sub(at) < cooldown => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    fn suppressed(&self) {
        self.metrics.jwks_refetches_suppressed(&self.issuer).inc();
    }

    /// A token named a `kid` the cached keys lack: fetch once, single flight, unless the
    /// cooldown since the last such fetch still runs. A request that finds a fetch in flight
    /// waits for it (bounded by the fetch timeout) instead of starting another, so a key
    /// rotation costs one fetch and no false rejections.
    pub async fn refetch_for_unknown_kid(&self, seen: u64) -> Refetch {
        if self.generation() != seen {
            return Refetch::Refreshed;
        }
        match self.fetch_lock.try_lock() {
            Ok(_guard) => {
                if self.generation() != seen {
                    return Refetch::Refreshed;
                }
                if !self.claim(&self.last_unknown_kid) {
                    self.suppressed();
                    return Refetch::Suppressed;
                }
                if self.fetch_and_store("unknown-kid").await {
                    Refetch::Refreshed
                } else {
                    Refetch::Failed
                }
            }
            Err(_) => {
                let wait = self.timing().fetch_timeout;
                let _ = tokio::time::timeout(wait, self.fetch_lock.lock()).await;
                if self.generation() != seen {
                    Refetch::Refreshed
                } else {
                    Refetch::Failed
                }
            }
        }
    }

    /// No usable keys (never fetched, or older than `max_stale`): start a fetch in the
    /// background unless one runs or the cooldown forbids, and return at once — a request never
    /// waits for an issuer that may be down.
    pub fn kick(self: &Arc<Self>) {
        if self.fetch_lock.try_lock().is_err() {
            return;
        }
        if !self.claim(&self.last_no_keys) {
            self.suppressed();
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let _guard = cache.fetch_lock.lock().await;
            cache.fetch_and_store("no-keys").await;
        });
    }

    /// Fetches now (waiting for a fetch in flight first); true when keys were stored.
    pub async fn refresh(&self, cause: &'static str) -> bool {
        let before = self.generation();
        let _guard = self.fetch_lock.lock().await;
        if self.generation() != before {
            return true; // someone else just fetched
        }
        self.fetch_and_store(cause).await
    }

    /// One fetch, with the lock held by the caller.
    async fn fetch_and_store(&self, cause: &'static str) -> bool {
        let timeout = self.timing().fetch_timeout;
        let outcome = match tokio::time::timeout(timeout, self.fetch()).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(e)) => Err((e.label(), e.to_string())),
            Err(_) => Err(("timeout", "the issuer did not answer in time".to_string())),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err((label, _)) => label,
        };
        self.metrics.jwks_fetch(&self.issuer, cause, label).inc();
        match outcome {
            Ok(fetched) => {
                let previous = self.keys.load_full();
                let keys: Vec<Arc<VerifyKey>> = fetched
                    .into_iter()
                    .map(|k| {
                        previous
                            .as_ref()
                            .and_then(|p| p.keys.iter().find(|old| old.jwk == k.jwk).cloned())
                            .unwrap_or_else(|| Arc::new(k))
                    })
                    .collect();
                self.metrics
                    .jwks_keys(&self.issuer)
                    .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
                let generation = self.generation.load(Ordering::Acquire) + 1;
                self.keys.store(Some(Arc::new(KeySet {
                    keys,
                    fetched_at: self.clock.now(),
                    generation,
                })));
                self.generation.store(generation, Ordering::Release);
                self.failures.store(0, Ordering::Relaxed);
                true
            }
            Err((_, error)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    issuer = %self.issuer,
                    cause,
                    %error,
                    kept = self.keys.load().is_some(),
                    "JWKS fetch failed; serving the last good keys, if any"
                );
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, FetchError> {
        let request = http::Request::get(self.url.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Empty::<Bytes>::new())
            .map_err(|_| FetchError::Invalid("the JWKS URL cannot be requested"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?
            .to_bytes();
        let document: Value =
            serde_json::from_slice(&body).map_err(|_| FetchError::Invalid("not JSON"))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(FetchError::Invalid("no `keys` array"))?;
        let usable: Vec<VerifyKey> = keys.iter().filter_map(VerifyKey::from_jwk).collect();
        if usable.is_empty() {
            return Err(FetchError::Invalid("no usable signing key"));
        }
        Ok(usable)
    }

    /// Keeps the keys fresh for as long as the cache is alive: a fetch at once, then one every
    /// `ttl` (counted from the last successful fetch, whoever made it); after a failure, retries
    /// back off from the cooldown up to the TTL.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<JwksCache> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut cause = "start";
            loop {
                {
                    let Some(cache) = weak.upgrade() else { return };
                    cache.refresh(cause).await;
                }
                cause = "refresh";
                loop {
                    let wait = {
                        let Some(cache) = weak.upgrade() else { return };
                        cache.next_refresh_in()
                    };
                    tokio::time::sleep(wait).await;
                    // An unknown kid may have fetched meanwhile: then its TTL counts.
                    let due = {
                        let Some(cache) = weak.upgrade() else { return };
                        cache.next_refresh_in().is_zero()
                            || cache.failures.load(Ordering::Relaxed) > 0
                    };
                    if due {
                        break;
                    }
                }
            }
        });
    }

    /// Time until the next background fetch is due.
    fn next_refresh_in(&self) -> Duration {
        let timing = self.timing();
        let failures = self.failures.load(Ordering::Relaxed);
        if failures > 0 {
            let base = timing.refetch_cooldown.max(Duration::from_millis(100));
            let backoff = base.saturating_mul(1 << failures.min(16).saturating_sub(1));
            return backoff.min(timing.ttl);
        }
        match self.keys.load().as_ref() {
            Some(keys) => {
                let age = Duration::from_nanos(self.clock.now().saturating_sub(keys.fetched_at));
                timing.ttl.saturating_sub(age)
            }
            None => Duration::ZERO,
        }
    }
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_signing_keys_of_known_asymmetric_types_are_kept() {
        let rsa_n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let cases = [
            (json!({"kty":"RSA","kid":"r","n":rsa_n,"e":"AQAB"}), Some(6)),
            (
                json!({"kty":"RSA","kid":"r","alg":"PS256","n":rsa_n,"e":"AQAB"}),
                Some(1),
            ),
            (
                json!({"kty":"RSA","alg":"ES256","n":rsa_n,"e":"AQAB"}),
                None,
            ),
            (json!({"kty":"RSA","use":"enc","n":rsa_n,"e":"AQAB"}), None),
            (
                json!({"kty":"RSA","key_ops":["encrypt"],"n":rsa_n,"e":"AQAB"}),
                None,
            ),
            (json!({"kty":"oct","k":"c2VjcmV0","alg":"HS256"}), None),
            (json!({"kty":"OKP","crv":"X25519","x":"AAAA"}), None),
            (json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}), None),
            (json!({"kty":"RSA"}), None),
            (json!("garbage"), None),
        ];
        for (jwk, want) in cases {
            let got = VerifyKey::from_jwk(&jwk).map(|k| k.algorithms.len());
            assert_eq!(got, want, "{jwk}");
        }
    }
}
