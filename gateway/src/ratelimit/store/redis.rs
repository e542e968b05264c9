//! The Redis store: counters shared by every gateway process that points at the same Redis, or
//! at the same Redis Cluster.
//!
//! One request is one round trip: `EVALSHA` of `ratelimit.lua`, which decides every Redis policy
//! of the request atomically (Redis runs a script alone), all-or-nothing, and sets TTLs so idle
//! keys expire by themselves once their quota is restored. On one Redis, concurrent requests
//! share that call ([`batch`](super::batch): up to `max_batch` requests per call, each decided
//! on its own, in arrival order); on a Cluster each request keeps calls of its own (below). The
//! script is loaded when the store is made; a node that answers `NOSCRIPT` (restarted, flushed, or a replica promoted since) gets the
//! same call as `EVAL` with the script's text, which runs it and caches it on that node — no
//! all-nodes `SCRIPT LOAD`, which a Cluster with one node down would refuse.
//!
//! The connection is redis-rs's `ConnectionManager` for one Redis (it reconnects by itself, and
//! concurrent requests share — pipeline on — one multiplexed connection), or its async
//! `ClusterConnection` for a Cluster (one multiplexed connection per node; it routes each call by
//! its first key's slot, follows `MOVED` and `ASK`, refreshes its slot map on `MOVED`, and while a
//! master is unreachable sends its slots' calls to the shard's replica, which answers them itself
//! once promoted). Around either, a [`Breaker`]: once Redis has failed `breaker_failures` times in
//! a row, decisions take their policy's `on_store_error` without asking for `breaker_cooldown`;
//! then one request probes, and the first success resumes normal service. One breaker per store:
//! on a Cluster, a dead master opens it for every slot, as a dead single Redis would.
//!
//! Keys. One Redis: `<key_prefix>{<policy>:<fingerprint>|<subject>}` (and `…:log` for the sliding
//! log). On a Cluster: `<key_prefix>{<subject>}|<policy>:<fingerprint>` — the hash tag (the part
//! in braces, which alone decides the slot) is the request's subject, so a counter's key depends
//! only on its own policy and subject (never on the other policies of the request), its two keys
//! share a slot, and the policies of one request that count the same subject (per-second and
//! per-minute limits of one API key, say) share a slot and stay one atomic script call. A subject
//! that holds a brace, or is empty, is tagged by a digest instead, so the tag is always what the
//! braces hold.
//!
//! Checks of one request that land in different slots (policies keyed by different things: the
//! API key and the route) cannot share a script on a Cluster. They are decided all-or-nothing by
//! peek-then-charge, two round trips, each one call per slot sent concurrently: first a `dry` call
//! per slot (decides, charges nothing); if every slot admits, a charging call per slot. Without
//! concurrent traffic on the same counters that equals the one-script decision. The race: between
//! the two rounds another request may spend the quota of one slot; that slot's charging call then
//! refuses while the others have charged, so a refused request was counted by the policies that
//! admitted it. Over-admission cannot come of it (every charge is its slot's atomic decision);
//! only over-charging, bounded by the requests racing in that window. If a round fails, the
//! request takes `on_store_error` (and any slot already charged stays charged).
//!
//! Why a Cluster does not batch: one call must keep to one slot, and the subjects of concurrent
//! requests almost never share one of the 16,384 (only requests of one subject would), so
//! batching by slot would send calls of one through an extra queue. A Cluster spreads the script
//! work over its masters instead, which is its way to scale.

pub(in crate::ratelimit::store) mod call;
pub(in crate::ratelimit::store) mod keys;
mod lease;
pub(in crate::ratelimit::store) mod link;
pub(in crate::ratelimit::store) mod resp;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_routing::Slot;
use redis::{Cmd, RedisError, Script};

use super::Check;
use super::batch::{Batcher, Params};
use super::breaker::{Admit, Breaker};
use crate::clock::Nanos;
use crate::ratelimit::metrics::{RateLimitMetrics, StoreErrorLabels};
use crate::ratelimit::{Algorithm, Decision, Limiter};

pub(in crate::ratelimit::store) use call::{Conn, decisions};
pub use call::{SCRIPT, StoreError, TTL_MARGIN_MS};
pub use keys::{cluster_key, key, log_key};
pub use lease::{LEASE_SCRIPT, LeaseAsk};

pub struct RedisStore {
    pub config: RedisConfig,
    conn: Conn,
    script: Arc<Script>,
    /// One Redis with `max_batch` above 1: concurrent requests share script calls.
    batch: Option<Batcher>,
    pub breaker: Breaker,
    metrics: RateLimitMetrics,
}

impl RedisStore {
    /// Makes the store without waiting for Redis (the gateway starts whether or not Redis is up)
    /// and loads the script in the background. Must run inside a Tokio runtime.
    pub fn new(config: &RedisConfig, metrics: RateLimitMetrics) -> Result<Self, RedisError> {
        let mut endpoint = None;
        let conn = if config.cluster_nodes.is_empty() {
            let client = redis::Client::open(config.url.as_str())?;
            endpoint = link::Endpoint::from_info(client.get_connection_info());
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(500));
            Conn::Single(ConnectionManager::new_lazy_with_config(client, manager)?)
        } else {
            // Retries stay within one decision's `timeout` (which bounds the whole call): a few
            // quick ones, enough for a redirect or two and a refreshed slot map.
            let client = ClusterClient::builder(config.cluster_nodes.iter().map(String::as_str))
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(3)
                .min_retry_wait(5)
                .max_retry_wait(50)
                .build()?;
            Conn::Cluster(
                client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(config.timeout)
                        .set_response_timeout(config.timeout),
                ),
            )
        };
        let script = Arc::new(Script::new(SCRIPT));
        // Batches go over the driver's own connection; an address it does not speak keeps one
        // call per request on redis-rs.
        let batch = endpoint.filter(|_| config.max_batch > 1).map(|endpoint| {
            Batcher::spawn(
                endpoint,
                script.get_hash().to_owned(),
                config.max_batch,
                config.timeout,
                metrics.redis_batch.clone(),
            )
        });
        let store = Self {
            config: config.clone(),
            conn,
            script,
            batch,
            breaker: Breaker::new(
                config.breaker_failures,
                u64::try_from(config.breaker_cooldown.as_nanos()).unwrap_or(u64::MAX),
            ),
            metrics,
        };
        let conn = store.conn.clone();
        tokio::spawn(async move {
            // On a Cluster, SCRIPT LOAD goes to every node; a node that misses it loads the
            // script on first use (NOSCRIPT, then EVAL).
            if let Err(error) = conn
                .query::<String>(redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT))
                .await
            {
                tracing::warn!(%error, "rate limits: cannot load the script into Redis yet");
            }
        });
        Ok(store)
    }

    /// Decides `checks` at `now` (ticks) in one round trip (two on a Cluster when the checks span
    /// slots: see the module doc); decisions are in ticks. `mono` is the monotonic time for the
    /// breaker.
    pub async fn decide_all(
        &self,
        checks: &[Check<'_>],
        now: u64,
        mono: Nanos,
    ) -> Result<Vec<Decision>, StoreError> {
        self.guarded(mono, self.ask(checks, now)).await
    }

    /// A round trip under the breaker and the store's timeout: refused while the breaker is
    /// open, and its outcome counted (a success closes the breaker, a failure counts toward
    /// opening it).
    pub(super) async fn guarded<T>(
        &self,
        mono: Nanos,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let admit = self.breaker.admit(mono);
        if admit == Admit::Refuse {
            return Err(self.failed(StoreError::BreakerOpen, mono, false));
        }
        let result = match tokio::time::timeout(self.config.timeout, call).await {
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
            Ok(result) => result,
        };
        match result {
            Ok(answer) => {
                if self.breaker.success() {
                    tracing::info!("rate limits: Redis answers again; breaker closed");
                    self.metrics.breaker_open.set(0);
                }
                Ok(answer)
            }
            Err(e) => Err(self.failed(e, mono, admit == Admit::Probe)),
        }
    }

    async fn ask(&self, checks: &[Check<'_>], now: u64) -> Result<Vec<Decision>, StoreError> {
        let prefix = &self.config.key_prefix;
        if matches!(self.conn, Conn::Single(_)) {
            let keys: Vec<String> = checks.iter().map(|c| key(prefix, c)).collect();
            if let Some(batch) = &self.batch {
                return batch
                    .decide(now, keys, checks.iter().map(params).collect())
                    .await;
            }
            let all: Vec<usize> = (0..checks.len()).collect();
            return self.call(&keys, checks, &all, now, false).await;
        }
        let keys: Vec<String> = checks.iter().map(|c| cluster_key(prefix, c)).collect();
        let groups = by_slot(&keys);
        if let [only] = groups.as_slice() {
            return self.call(&keys, checks, only, now, false).await;
        }
        // Back in check order; every check is in exactly one group.
        let scatter = |answers: Vec<Vec<Decision>>| {
            let mut out = vec![None; checks.len()];
            for (group, decisions) in groups.iter().zip(answers) {
                for (&i, d) in group.iter().zip(decisions) {
                    out[i] = Some(d);
                }
            }
            out.into_iter()
                .map(|d| d.ok_or_else(|| StoreError::Script("a check went unanswered".into())))
                .collect::<Result<Vec<_>, _>>()
        };
        let dry = scatter(
            try_join_all(
                groups
                    .iter()
                    .map(|g| self.call(&keys, checks, g, now, true)),
            )
            .await?,
        )?;
        if dry.iter().any(|d| !d.allowed) {
            return Ok(dry);
        }
        scatter(
            try_join_all(
                groups
                    .iter()
                    .map(|g| self.call(&keys, checks, g, now, false)),
            )
            .await?,
        )
    }

    /// One script call for the checks at `indices` (their keys share a slot).
    async fn call(
        &self,
        keys: &[String],
        checks: &[Check<'_>],
        indices: &[usize],
        now: u64,
        dry: bool,
    ) -> Result<Vec<Decision>, StoreError> {
        self.metrics.redis_batch.0.observe(1.0);
        let fill = |cmd: &mut Cmd| {
            cmd.arg(indices.len() * 2);
            for &i in indices {
                cmd.arg(&keys[i]).arg(log_key(&keys[i]));
            }
            cmd.arg(now).arg(TTL_MARGIN_MS);
            for &i in indices {
                let p = params(&checks[i]);
                cmd.arg(p.code)
                    .arg(p.limit)
                    .arg(p.period)
                    .arg(p.burst)
                    .arg(p.cost);
            }
            if dry {
                cmd.arg("dry");
            }
        };
        let values = self.conn.eval(self.script.get_hash(), SCRIPT, fill).await?;
        decisions(&values, indices.len())
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

/// What the script reads of one check.
fn params(c: &Check<'_>) -> Params {
    let quota = c.limiter.quota();
    Params {
        code: code(c.limiter.algorithm()),
        limit: quota.limit,
        period: quota.period(),
        burst: quota.burst,
        cost: c.cost,
    }
}

/// The checks grouped by their keys' slot, each group in check order, groups in order of first
/// appearance.
fn by_slot(keys: &[String]) -> Vec<Vec<usize>> {
    let mut slots: Vec<(Slot, Vec<usize>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let slot = Slot::for_key(key);
        match slots.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(i),
            None => slots.push((slot, vec![i])),
        }
    }
    slots.into_iter().map(|(_, group)| group).collect()
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

/// Where the shared counters live and how the store treats it; compiled from
/// `rate_limits.store.redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One Redis; unused when `cluster_nodes` names a Cluster.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); empty for one Redis.
    pub cluster_nodes: Vec<String>,
    pub key_prefix: String,
    pub timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Most requests decided in one script call (one Redis only; 1: a call per request).
    pub max_batch: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{AnyLimiter, Quota};

    fn check<'a>(policy: &'a str, subject: &'a str, limiter: &'a AnyLimiter) -> Check<'a> {
        Check {
            policy,
            subject,
            limiter,
            cost: 1,
        }
    }

    /// The keys do not depend on the algorithm: any one will do.
    fn any_limiter() -> AnyLimiter {
        AnyLimiter::new(
            Algorithm::Gcra,
            Quota {
                limit: 1,
                period_nanos: 1_000,
                burst: 1,
            },
        )
    }

    #[test]
    fn keys_keep_the_form_counters_already_in_redis_were_written_under() {
        let limiter = any_limiter();
        let state = key("rl:", &check("p:1", "sub:alice", &limiter));
        assert_eq!(state, "rl:{p:1|sub:alice}");
        assert_eq!(log_key(&state), "rl:{p:1|sub:alice}:log");
        assert_eq!(key("", &check("p", "", &limiter)), "{p|}");
    }

    #[test]
    fn a_cluster_key_is_tagged_by_its_subject_and_its_log_shares_its_slot() {
        let limiter = any_limiter();
        assert_eq!(
            cluster_key("rl:", &check("p:1", "key:k1", &limiter)),
            "rl:{key:k1}|p:1"
        );
        for subject in ["key:k1", "", "}x", "a{b}c", "{"] {
            let key = cluster_key("rl:", &check("p:1", subject, &limiter));
            let other = cluster_key("rl:", &check("q:2", subject, &limiter));
            assert_eq!(Slot::for_key(&key), Slot::for_key(log_key(&key)), "{key}");
            assert_eq!(Slot::for_key(&key), Slot::for_key(&other), "{key}");
        }
        assert_ne!(
            cluster_key("rl:", &check("p:1", "", &limiter)),
            cluster_key("rl:", &check("p:1", "{", &limiter))
        );
        // Same subject, one slot; the groups keep check order.
        let keys: Vec<String> = [("a", "s"), ("b", "t"), ("c", "s")]
            .iter()
            .map(|(p, s)| cluster_key("rl:", &check(p, s, &limiter)))
            .collect();
        assert_eq!(by_slot(&keys), [vec![0, 2], vec![1]]);
    }
}
