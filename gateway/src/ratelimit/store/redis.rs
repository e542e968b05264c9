//! The Redis store: counters shared by every gateway process that points at the same Redis.
//!
//! One request is one round trip: `EVALSHA` of `ratelimit.lua`, which decides every Redis policy
//! of the request atomically (Redis runs a script alone), all-or-nothing, and sets TTLs so idle
//! keys expire by themselves once their quota is restored. The script is loaded when the store is
//! made and again whenever Redis answers `NOSCRIPT` (a restarted or flushed Redis).
//!
//! The connection is redis-rs's `ConnectionManager`: it reconnects by itself, and concurrent
//! requests share (pipeline on) one multiplexed connection. Around it, a [`Breaker`]: once Redis
//! has failed `breaker_failures` times in a row, decisions take their policy's `on_store_error`
//! without asking for `breaker_cooldown`; then one request probes, and the first success resumes
//! normal service.
//!
//! Keys: `<key_prefix>{<policy>:<fingerprint>|<subject>}` (and `…:log` for the sliding log), the
//! braces a Redis Cluster hash tag that keeps one check's two keys in one slot. Several checks of
//! one request are one script call, so on a Cluster they would have to share a slot: this store
//! supports a single Redis (or a primary behind Sentinel/a proxy), not Cluster.

mod lease;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};

use super::Check;
use super::breaker::{Admit, Breaker};
use crate::clock::Nanos;
use crate::ratelimit::metrics::{RateLimitMetrics, StoreErrorLabels};
use crate::ratelimit::{Algorithm, Decision, Limiter, NEVER};

pub use lease::{LEASE_SCRIPT, LeaseAsk};

/// The script, shared by every store.
pub const SCRIPT: &str = include_str!("ratelimit.lua");

/// Kept past a key's full restoration before Redis drops it, for clock skew between gateways.
pub const TTL_MARGIN_MS: u64 = 1_000;

/// Why a decision could not be had from Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the Redis breaker is open")]
    BreakerOpen,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Redis: {0}")]
    Connection(String),
    #[error("Redis refused the script: {0}")]
    Script(String),
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::BreakerOpen => "breaker_open",
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Script(_) => "script",
        }
    }
}

pub struct RedisStore {
    pub config: RedisConfig,
    conn: ConnectionManager,
    script: Arc<Script>,
    pub breaker: Breaker,
    metrics: RateLimitMetrics,
}

impl RedisStore {
    /// Makes the store without waiting for Redis (the gateway starts whether or not Redis is up)
    /// and loads the script in the background. Must run inside a Tokio runtime.
    pub fn new(config: &RedisConfig, metrics: RateLimitMetrics) -> Result<Self, RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        let script = Arc::new(Script::new(SCRIPT));
        let store = Self {
            config: config.clone(),
            conn,
            script,
            breaker: Breaker::new(
                config.breaker_failures,
                u64::try_from(config.breaker_cooldown.as_nanos()).unwrap_or(u64::MAX),
            ),
            metrics,
        };
        let (mut conn, script) = (store.conn.clone(), store.script.clone());
        tokio::spawn(async move {
            if let Err(error) = script.load_async(&mut conn).await {
                tracing::warn!(%error, "rate limits: cannot load the script into Redis yet");
            }
        });
        Ok(store)
    }

    /// Decides `checks` at `now` (ticks) in one round trip; decisions are in ticks. `mono` is the
    /// monotonic time for the breaker.
    pub async fn decide_all(
        &self,
        checks: &[Check<'_>],
        now: u64,
        mono: Nanos,
    ) -> Result<Vec<Decision>, StoreError> {
        let admit = self.breaker.admit(mono);
        if admit == Admit::Refuse {
            return Err(self.failed(StoreError::BreakerOpen, mono, false));
        }
        let mut invocation = self.script.prepare_invoke();
        for c in checks {
            let key = key(&self.config.key_prefix, c);
            invocation.key(&key).key(format!("{key}:log"));
        }
        invocation.arg(now).arg(TTL_MARGIN_MS);
        for c in checks {
            let quota = c.limiter.quota();
            invocation
                .arg(code(c.limiter.algorithm()))
                .arg(quota.limit)
                .arg(quota.period())
                .arg(quota.burst)
                .arg(c.cost);
        }
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async::<Vec<i64>>(&mut conn),
        )
        .await;
        let result = match answer {
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(values)) if values.len() == checks.len() * 4 => Ok(values
                .chunks_exact(4)
                .map(|v| Decision {
                    allowed: v[0] == 1,
                    remaining: u64::try_from(v[1]).unwrap_or(0),
                    retry_after_nanos: u64::try_from(v[2]).unwrap_or(NEVER),
                    reset_nanos: u64::try_from(v[3]).unwrap_or(0),
                })
                .collect()),
            Ok(Ok(values)) => Err(StoreError::Script(format!(
                "{} values for {} checks",
                values.len(),
                checks.len()
            ))),
        };
        match result {
            Ok(decisions) => {
                if self.breaker.success() {
                    tracing::info!("rate limits: Redis answers again; breaker closed");
                    self.metrics.breaker_open.set(0);
                }
                Ok(decisions)
            }
            Err(e) => Err(self.failed(e, mono, admit == Admit::Probe)),
        }
    }

    fn failed(&self, error: StoreError, mono: Nanos, probe: bool) -> StoreError {
        self.metrics
            .store_errors
            .get_or_create(&StoreErrorLabels {
                store: "redis",
                kind: error.kind(),
            })
            .inc();
        if error != StoreError::BreakerOpen && self.breaker.failure(mono, probe) {
            tracing::warn!(%error, cooldown = ?self.config.breaker_cooldown, "rate limits: Redis failing; breaker open, policies take their on_store_error");
            self.metrics.breaker_open.set(1);
        }
        error
    }
}

/// The state key of one check (the sliding log's set is this plus `:log`).
pub fn key(prefix: &str, check: &Check<'_>) -> String {
    format!("{prefix}{{{}|{}}}", check.policy, check.subject)
}

/// The script's name for an algorithm.
pub const fn code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::TokenBucket => "tb",
        Algorithm::Gcra => "gcra",
        Algorithm::FixedWindow => "fw",
        Algorithm::SlidingLog => "sl",
        Algorithm::SlidingWindowCounter => "swc",
    }
}

fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(Duration::ZERO)
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreError::Connection(e.to_string())
    } else if matches!(e.kind(), ErrorKind::Server(_)) {
        StoreError::Script(e.to_string())
    } else {
        StoreError::Connection(e.to_string())
    }
}

/// Where the shared counters live and how the store treats it; compiled from
/// `rate_limits.store.redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}
