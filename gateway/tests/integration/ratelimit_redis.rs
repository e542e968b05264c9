//! `ratelimit` with the Redis store against a real `redis-server` started by the test: the Lua
//! ports decide exactly as the Rust algorithms do, gateways share counters, and a dead Redis
//! costs no per-request timeout once detected and is recovered from by itself.

use std::time::{Duration, Instant};

use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::Check;
use gateway::ratelimit::store::RedisConfig;
use gateway::ratelimit::store::memory::MemoryStore;
use gateway::ratelimit::store::redis::RedisStore;
use gateway::ratelimit::{Algorithm, AnyLimiter, Quota};
use proptest::prelude::*;

use super::ratelimit_support::*;
use super::util::*;

fn redis_config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        url,
        cluster_nodes: Vec::new(),
        key_prefix: prefix.to_string(),
        timeout: Duration::from_secs(2),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: gateway::ratelimit::store::batch::DEFAULT_MAX_BATCH,
    }
}

/// One policy of a generated case: algorithm, limit, period (ticks), burst.
fn policy() -> impl Strategy<Value = (usize, u64, u64, u64)> {
    (0usize..5, 1u64..12, 1_000u64..3_000_000, 1u64..12)
}

#[test]
fn redis_and_memory_stores_decide_identically() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The batched store (the default) and one script call per request: both forms of the script.
    let (store, single) = {
        let _guard = rt.enter();
        let batched = redis_config(redis.url(), "prop:");
        let single = RedisConfig {
            key_prefix: "prop1:".into(),
            max_batch: 1,
            ..batched.clone()
        };
        let make =
            |c: &RedisConfig| RedisStore::new(c, RateLimitMetrics::default()).expect("store");
        (make(&batched), make(&single))
    };
    let case = std::cell::Cell::new(0u32);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        policies in prop::collection::vec(policy(), 1..=3),
        steps in prop::collection::vec((0u64..800_000, prop::collection::vec(0u64..14, 3)), 1..40),
    )| {
        case.set(case.get() + 1);
        let memory = MemoryStore::new(10_000, RateLimitMetrics::default());
        let limiters: Vec<AnyLimiter> = policies
            .iter()
            .map(|&(alg, limit, period, burst)| {
                AnyLimiter::new(Algorithm::ALL[alg], Quota { limit, period_nanos: period, burst })
            })
            .collect();
        let names: Vec<String> = (0..limiters.len()).map(|i| format!("c{}p{i}", case.get())).collect();
        // 2024 in ticks: the magnitudes the gateway sends.
        let mut now = 1_704_067_200_000_000u64;
        for (dt, costs) in &steps {
            now += dt;
            let checks: Vec<Check<'_>> = limiters
                .iter()
                .zip(&names)
                .zip(costs)
                .map(|((limiter, name), &cost)| Check { policy: name, subject: "s", limiter, cost })
                .collect();
            let want = memory.decide_all(&checks, now);
            let got = rt
                .block_on(store.decide_all(&checks, now, 0))
                .expect("redis answers");
            prop_assert_eq!(&got, &want, "at {} with {:?}", now, policies);
            let got = rt
                .block_on(single.decide_all(&checks, now, 0))
                .expect("redis answers");
            prop_assert_eq!(got, want, "one call per request, at {} with {:?}", now, policies);
        }
    });
}

#[tokio::test]
async fn two_gateways_on_one_redis_hold_one_limit_and_keys_expire() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let limits = format!(
        "  store: redis
  redis: {{url: \"{}\", key_prefix: \"two:\"}}
  policies:
    - {{id: shared, algorithm: sliding-log, limit: 5, period: 2s, key: route, on_store_error: deny}}
",
        redis.url()
    );
    let config = config_with_limits(upstream.address, &limits);
    let (a, clock_a) = start_on_manual_clock(&config).await;
    let (b, clock_b) = start_on_manual_clock(&config).await;
    clock_a.advance(Duration::from_millis(10));
    clock_b.advance(Duration::from_millis(10));
    let mut statuses = Vec::new();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        statuses.push(gw.get("/api/x").await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let refused = a.get("/api/x").await;
    assert_eq!(refused.header("ratelimit"), Some("\"shared\";r=0;t=2"));
    assert_eq!(refused.header("retry-after"), Some("2"));
    // Both keys of the policy carry a TTL: the log's restoration (2 s) plus the 1 s margin.
    let keys = redis.command("KEYS two:*\r\n").expect("keys");
    assert!(keys.contains("two:{shared:"), "{keys}");
    let key = keys
        .lines()
        .find(|l| l.starts_with("two:") && !l.ends_with(":log"))
        .expect("state key")
        .to_string();
    let pttl: i64 = redis
        .command(&format!("PTTL {key}\r\n"))
        .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
        .expect("pttl");
    assert!((1..=3_000).contains(&pttl), "pttl {pttl}");
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // measures real elapsed time, which is the point
async fn a_dead_redis_takes_the_fallback_without_waiting_and_service_resumes_by_itself() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let limits = format!(
        "  store: redis
  redis: {{url: \"{}\", key_prefix: \"dead:\", timeout: 2s, breaker_failures: 2, breaker_cooldown: 5s}}
  policies:
    - {{id: open, algorithm: gcra, limit: 100, period: 1s, key: client_ip, routes: [api], on_store_error: allow}}
    - {{id: closed, algorithm: fixed-window, limit: 100, period: 1s, key: client_ip, routes: [other], on_store_error: deny}}
",
        redis.url()
    );
    let (mut gw, clock) =
        start_on_manual_clock(&config_with_limits(upstream.address, &limits)).await;
    let ok = gw.get("/api/a").await;
    assert_eq!(ok.status, 200);
    assert!(ok.header("ratelimit").is_some());
    let _ = gw.record().await;

    redis.kill();
    // Until the breaker opens (two failures) each request asks Redis and fails fast (refused).
    for _ in 0..2 {
        let reply = gw.get("/api/a").await;
        assert_eq!(reply.status, 200, "fail open");
        assert_eq!(reply.header("ratelimit"), None, "no quota to report");
        let record = gw.record().await;
        assert!(record.limit.as_ref().expect("limit").store_fallback);
    }
    // Open: neither policy asks Redis; no request waits for the 2 s timeout.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(gw.get("/api/a").await.status, 200);
        let closed = gw.get("/other/b").await;
        assert_eq!(closed.status, 503);
        assert_eq!(
            closed.problem()["type"],
            "urn:gatehouse:problem:limit-store-unavailable"
        );
        assert_eq!(
            closed.header("retry-after"),
            Some("5"),
            "the breaker's cooldown"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "40 requests took {:?}",
        started.elapsed()
    );
    let text = metrics(&gw).await;
    assert_eq!(metric(&text, "gatehouse_ratelimit_breaker_open"), 1.0);
    assert!(
        metric(
            &text,
            "gatehouse_ratelimit_store_errors_total{store=\"redis\",kind=\"breaker_open\"}"
        ) >= 40.0
    );
    assert_eq!(
        metric(
            &text,
            "gatehouse_ratelimit_fallback_decisions_total{policy=\"closed\",outcome=\"denied\"}"
        ),
        20.0
    );

    // Redis returns (empty: the script must be loaded again). After the cooldown one request
    // probes; within a few cooldowns service is back without anyone touching the gateway.
    redis.restart();
    eventually(
        "the breaker closes once Redis answers",
        Duration::from_secs(5),
        async || {
            // Each try comes after a cooldown of the gateway's clock.
            clock.advance(Duration::from_secs(5));
            let reply = gw.get("/other/b").await;
            match (reply.status.as_u16(), reply.header("ratelimit")) {
                (200, Some(_)) => Ok(()),
                (status, header) => Err(format!("{status}, ratelimit {header:?}")),
            }
        },
    )
    .await;
    assert_eq!(
        metric(&metrics(&gw).await, "gatehouse_ratelimit_breaker_open"),
        0.0
    );
    assert_eq!(
        gw.get("/api/a")
            .await
            .header("ratelimit")
            .map(|h| h.starts_with("\"open\"")),
        Some(true)
    );
}
