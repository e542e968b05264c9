//! Batched Redis decisions against a real `redis-server`: concurrent requests share script calls
//! (the `gatehouse_ratelimit_redis_batch_requests` histogram shows it), yet admit exactly the
//! quota across gateways, decide as sequential calls would, charge nothing for a refusal, and
//! fail one by one — each request its own `on_store_error` — when Redis fails the call.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::memory::MemoryStore;
use gateway::ratelimit::store::redis::{RedisStore, StoreError};
use gateway::ratelimit::store::{Check, RedisConfig};
use gateway::ratelimit::{Algorithm, AnyLimiter, Quota};
use prometheus_client::registry::Registry;

use super::ratelimit_support::*;
use super::util::*;

/// 2024-01-01 in ticks (microseconds).
const EPOCH: u64 = 1_704_067_200_000_000;

fn config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        url,
        cluster_nodes: Vec::new(),
        key_prefix: prefix.to_string(),
        timeout: Duration::from_secs(2),
        breaker_failures: 1_000,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: 64,
    }
}

/// Rate-limit metrics whose batch histogram the test can read back.
struct Counted {
    registry: Registry,
    metrics: RateLimitMetrics,
}

impl Counted {
    fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = RateLimitMetrics::register(&mut registry);
        Self { registry, metrics }
    }

    /// Requests decided by script calls, and the calls.
    fn batches(&self) -> (f64, f64) {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        (
            metric(&text, "ratelimit_redis_batch_requests_sum"),
            metric(&text, "ratelimit_redis_batch_requests_count"),
        )
    }
}

fn store(config: &RedisConfig, metrics: &RateLimitMetrics) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(config, metrics.clone()).expect("store"))
}

fn check<'a>(policy: &'a str, limiter: &'a AnyLimiter, cost: u64) -> Check<'a> {
    Check {
        policy,
        subject: "s",
        limiter,
        cost,
    }
}

/// Two gateways' stores, 300 requests in flight on each, one key, at one instant: every
/// algorithm admits exactly its quota (37), in calls of more than one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_key_admit_exactly_the_quota_in_shared_calls() {
    let redis = RedisServer::start();
    let rl = Counted::new();
    let a = store(&config(redis.url(), "exact:"), &rl.metrics);
    let b = store(&config(redis.url(), "exact:"), &rl.metrics);
    let quota = Quota::new(37, 3_600_000_000).with_burst(37);
    let mut admitted = Vec::new();
    for algorithm in Algorithm::ALL {
        let limiter = Arc::new(AnyLimiter::new(algorithm, quota));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..600u64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let policy = algorithm.as_str();
                let answer = store
                    .decide_all(&[check(policy, &limiter, 1)], EPOCH + 1_000, 0)
                    .await;
                answer.map(|d| d[0].allowed)
            });
        }
        let mut allowed = 0;
        while let Some(answer) = tasks.join_next().await {
            allowed += u32::from(answer.expect("task").expect("redis answers"));
        }
        admitted.push((algorithm.as_str(), allowed));
    }
    let (requests, calls) = rl.batches();
    drop(redis);
    assert_eq!(
        admitted,
        Algorithm::ALL.map(|a| (a.as_str(), 37)),
        "exactly the quota"
    );
    assert_eq!(requests, 3_000.0, "every request went to Redis once");
    assert!(
        requests / calls > 1.0,
        "{requests} requests in {calls} calls: none shared"
    );
}

/// One call carrying requests of two policies (a roomy window, a one-request bucket) and of one
/// alone: a request the bucket refuses leaves the window uncharged, and every answer equals the
/// in-memory store's deciding the same requests one after the other.
#[tokio::test]
async fn a_batch_decides_as_sequential_calls_and_a_refused_request_charges_nothing() {
    let redis = RedisServer::start();
    let rl = Counted::new();
    let store = store(&config(redis.url(), "seq:"), &rl.metrics);
    let window = AnyLimiter::new(
        Algorithm::FixedWindow,
        Quota::new(10, 3_600_000_000).with_burst(10),
    );
    let bucket = AnyLimiter::new(Algorithm::Gcra, Quota::new(1, 3_600_000_000).with_burst(1));
    let log = AnyLimiter::new(
        Algorithm::SlidingLog,
        Quota::new(4, 3_600_000_000).with_burst(4),
    );
    // Warm: the connection and the script, outside the batch under test.
    store
        .decide_all(&[check("warm", &window, 1)], EPOCH, 0)
        .await
        .expect("redis answers");
    let (w, b, l) = (&window, &bucket, &log);
    let requests: Vec<Vec<Check<'_>>> = vec![
        vec![check("w", w, 1), check("b", b, 1)],
        vec![check("w", w, 1), check("b", b, 1)],
        vec![check("w", w, 2), check("b", b, 1), check("l", l, 1)],
        vec![check("w", w, 1)],
        vec![check("l", l, 3), check("w", w, 1)],
        vec![check("l", l, 2), check("w", w, 1)],
        vec![check("w", w, 20)],
        vec![check("w", w, 1), check("l", l, 0)],
    ];
    let (_, before) = rl.batches();
    let got: Vec<_> = join_all(
        requests
            .iter()
            .enumerate()
            .map(|(i, checks)| store.decide_all(checks, EPOCH + 10 + i as u64, 0)),
    )
    .await;
    let calls = rl.batches().1 - before;
    drop(redis);
    let got: Vec<_> = got.into_iter().map(|r| r.expect("redis answers")).collect();
    let memory = MemoryStore::new(100, RateLimitMetrics::default());
    let want: Vec<_> = requests
        .iter()
        .enumerate()
        .map(|(i, checks)| memory.decide_all(checks, EPOCH + 10 + i as u64))
        .collect();
    assert_eq!(calls, 1.0, "the eight requests went in one call");
    assert_eq!(got, want);
    let allowed: Vec<bool> = got.iter().map(|d| d.iter().all(|d| d.allowed)).collect();
    assert_eq!(
        allowed,
        [true, false, false, true, true, false, false, true]
    );
    // The window counted only admitted requests: 1 (first) + 1 (fourth) + 1 (fifth) + 1 (last).
    assert_eq!(got[7][0].remaining, 6, "{got:?}");
}

/// Redis refuses the call (out of memory): every request of the batch gets the same error, and
/// through a gateway each takes its own policy's `on_store_error`.
#[tokio::test]
async fn a_failed_batch_fails_each_request_and_each_takes_its_on_store_error() {
    let redis = RedisServer::start();
    let rl = Counted::new();
    let store = store(&config(redis.url(), "oom:"), &rl.metrics);
    let limiter = AnyLimiter::new(Algorithm::Gcra, Quota::new(100, 1_000_000).with_burst(100));
    store
        .decide_all(&[check("warm", &limiter, 1)], EPOCH, 0)
        .await
        .expect("redis answers");
    let upstream = Upstream::start().await;
    let limits = format!(
        "  store: redis
  redis: {{url: \"{}\", key_prefix: \"oom:\", breaker_failures: 1000}}
  policies:
    - {{id: open, algorithm: gcra, limit: 100, period: 1s, key: client_ip, routes: [api], on_store_error: allow}}
    - {{id: closed, algorithm: fixed-window, limit: 100, period: 1s, key: client_ip, routes: [other], on_store_error: deny}}
",
        redis.url()
    );
    let (gw, _clock) = start_on_manual_clock(&config_with_limits(upstream.address, &limits)).await;
    assert_eq!(gw.get("/api/warm").await.status, 200);
    let oom = redis.command("CONFIG SET maxmemory 1\r\n");

    let (_, before) = rl.batches();
    let checks: Vec<Vec<Check<'_>>> = (0..6).map(|_| vec![check("p", &limiter, 1)]).collect();
    let answers = join_all(checks.iter().map(|c| store.decide_all(c, EPOCH + 5, 0))).await;
    let calls = rl.batches().1 - before;
    let replies = join_all((0..20).map(|i| {
        let path = if i % 2 == 0 { "/api/x" } else { "/other/x" };
        gw.get(path)
    }))
    .await;
    let text = metrics(&gw).await;
    drop(redis);

    assert_eq!(oom.as_deref(), Some("+OK\r\n"));
    assert_eq!(calls, 1.0, "the six requests went in one call");
    match &answers[0] {
        Err(StoreError::Connection(e) | StoreError::Script(e)) if e.contains("OOM") => {}
        other => panic!("Redis refused the call: {other:?}"),
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "each request fails as the call did: {answers:?}"
    );
    let statuses: Vec<(u16, bool)> = replies
        .iter()
        .map(|r| (r.status.as_u16(), r.header("ratelimit").is_some()))
        .collect();
    let want: Vec<(u16, bool)> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                (200, false)
            } else {
                (503, false)
            }
        })
        .collect();
    assert_eq!(
        statuses, want,
        "allow admits, deny refuses: each on its own"
    );
    for (policy, outcome) in [("open", "allowed"), ("closed", "denied")] {
        let line = format!(
            "gatehouse_ratelimit_fallback_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(metric(&text, &line), 10.0, "{line}");
    }
    // Every request was asked of Redis (the breaker stayed closed), one script call each or
    // several to a call.
    assert_eq!(
        metric(&text, "gatehouse_ratelimit_redis_batch_requests_sum"),
        21.0
    );
}
