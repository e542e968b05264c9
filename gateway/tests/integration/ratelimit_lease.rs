//! Local leases against a real `redis-server`: the Lua fetch grants exactly what the rule's
//! `take` grants, several gateways sharing one counter stay within the documented over-admission
//! bound, concurrent requests on one key fetch once, and a slice outlives a dead Redis only until
//! it lapses — then the policy's `on_store_error` answers.

use std::time::Duration;

use gateway::ratelimit::lease::{self, Grant};
use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::redis::{LeaseAsk, RedisStore};
use gateway::ratelimit::store::{Check, RedisConfig};
use gateway::ratelimit::{Algorithm, AnyLimiter, AnyState, Quota};
use proptest::prelude::*;

use super::ratelimit_support::*;
use super::util::*;

/// `calls` of `EVALSHA` so far (each fetch is one).
fn evalsha_calls(redis: &RedisServer) -> u64 {
    let info = redis.command("INFO commandstats\r\n").expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_lua_fetch_grants_exactly_what_the_rules_take_grants() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = {
        let _guard = rt.enter();
        let config = RedisConfig {
            url: redis.url(),
            cluster_nodes: Vec::new(),
            key_prefix: "take:".into(),
            max_batch: gateway::ratelimit::store::batch::DEFAULT_MAX_BATCH,
            timeout: Duration::from_secs(2),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
        };
        RedisStore::new(&config, RateLimitMetrics::default()).expect("store")
    };
    let leasing = [
        Algorithm::TokenBucket,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindowCounter,
    ];
    let case = std::cell::Cell::new(0u32);
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        alg in 0usize..4,
        limit in 1u64..20,
        period in 1_000u64..3_000_000,
        burst in 1u64..20,
        steps in prop::collection::vec((0u64..400_000, 1u64..4, 1u64..12), 1..30),
    )| {
        case.set(case.get() + 1);
        let limiter = AnyLimiter::new(leasing[alg], Quota { limit, period_nanos: period, burst });
        let name = format!("c{}", case.get());
        let mut shared = AnyState::default();
        let mut now = 1_704_067_200_000_000u64;
        for &(dt, cost, want) in &steps {
            now += dt;
            let check = Check { policy: &name, subject: "s", limiter: &limiter, cost };
            let want: Grant = lease::take(&limiter, &mut shared, now, cost, want.max(cost));
            let got = rt
                .block_on(store.take_leases(&[LeaseAsk { check, want: want.units.max(cost) }], now, 0))
                .expect("redis answers");
            prop_assert_eq!(got[0].units, want.units, "at {}", now);
            prop_assert_eq!(got[0].decision, want.decision, "at {}", now);
        }
    });
}

/// The config of the multi-node test: a token bucket of 100 per 10 s (T = 100 ms, burst 100),
/// leased 10 units at a time for at most 1 s.
fn leased_bucket(redis: &RedisServer, prefix: &str, on_store_error: &str) -> String {
    format!(
        "  store: redis
  redis: {{url: \"{}\", key_prefix: \"{prefix}\", breaker_failures: 100}}
  policies:
    - {{id: shared, algorithm: token-bucket, limit: 100, period: 10s, key: route, on_store_error: {on_store_error}, lease: {{size: 10, sync_interval: 1s}}}}
",
        redis.url()
    )
}

#[tokio::test]
async fn three_gateways_on_leases_admit_within_the_documented_bound_in_far_fewer_round_trips() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let config = config_with_limits(upstream.address, &leased_bucket(&redis, "three:", "deny"));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_on_manual_clock(&config).await);
    }
    let step = |ms: u64| {
        for (_, clock) in &nodes {
            clock.advance(Duration::from_millis(ms));
        }
    };
    // Under the limit: 100 requests in 2 s, one every 20 ms, round robin (the bucket alone
    // would admit all of them: 100 at once plus 20 earned).
    let before = evalsha_calls(&redis);
    let mut admitted_under = 0u64;
    for i in 0..100 {
        let (gw, _) = &nodes[i % 3];
        admitted_under += u64::from(gw.get("/api/x").await.status == 200);
        step(20);
    }
    let fetches = evalsha_calls(&redis) - before;
    // Each node fetches a slice of 10 per 10 of its requests, and again when a slice lapses.
    assert!(fetches <= 20, "{fetches} round trips for 100 requests");
    // Slices lapse with units unspent (at most 3 × 10 at the 1 s mark): never below 90.
    assert!(admitted_under >= 90, "{admitted_under} of 100 admitted");

    // Far over the limit: 600 more requests in 6 s, one every 10 ms.
    let mut admitted = admitted_under;
    for i in 0..600 {
        let (gw, _) = &nodes[i % 3];
        let reply = gw.get("/api/x").await;
        assert!(
            matches!(reply.status.as_u16(), 200 | 429),
            "{}",
            reply.status
        );
        admitted += u64::from(reply.status == 200);
        step(10);
    }
    // Arrivals span [0, 7.99 s]: the bucket alone admits at most B + ⌊t / T⌋ = 100 + 79.
    let own = 100 + 79;
    // E = min(N · size, ⌈sync_interval / T⌉) = min(30, 10).
    let extra = 10;
    assert!(
        admitted <= own + extra,
        "{admitted} admitted, bound {}",
        own + extra
    );
    // Less than the bucket alone by the slices that lapsed unspent under the limit and those
    // still held at the end: at most 2 × N × size.
    assert!(
        admitted >= own - 60,
        "{admitted} admitted, bucket alone {own}"
    );
}

#[tokio::test]
async fn concurrent_requests_on_one_key_share_one_fetch() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let limits = format!(
        "  store: redis
  redis: {{url: \"{}\", key_prefix: \"flight:\"}}
  policies:
    - {{id: shared, algorithm: gcra, limit: 1000, period: 1s, key: route, on_store_error: deny, lease: {{size: 50, sync_interval: 100ms}}}}
",
        redis.url()
    );
    let (gw, _clock) = start_on_manual_clock(&config_with_limits(upstream.address, &limits)).await;
    // Once on another key (the policy counts per route), so that loading the script is not
    // counted; the burst is then the first slice of its own key, which asks for the full size.
    assert_eq!(gw.get("/other/warm").await.status, 200);
    let before = evalsha_calls(&redis);
    let paths: Vec<String> = (0..20).map(|i| format!("/api/{i}")).collect();
    let replies = futures_util::future::join_all(paths.iter().map(|p| gw.get(p))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        evalsha_calls(&redis) - before,
        1,
        "one fetch for 20 requests"
    );
}

#[tokio::test]
async fn a_slice_outlives_a_dead_redis_until_it_lapses_then_on_store_error_answers() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let config = config_with_limits(upstream.address, &leased_bucket(&redis, "dead:", "deny"));
    let (gw, clock) = start_on_manual_clock(&config).await;
    assert_eq!(gw.get("/api/a").await.status, 200);
    redis.kill();
    // Nine units left in the slice: spent without Redis.
    for _ in 0..9 {
        let reply = gw.get("/api/a").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.header("ratelimit").is_some(),
            "a decision, not a fallback"
        );
    }
    // Spent: the next fetch fails, and the policy refuses meanwhile.
    let refused = gw.get("/api/a").await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.problem()["type"],
        "urn:gatehouse:problem:limit-store-unavailable"
    );
    // A new slice after a restart.
    redis.restart();
    clock.advance(Duration::from_secs(2));
    eventually(
        "a fetch succeeds again",
        Duration::from_secs(5),
        async || match gw.get("/api/a").await.status.as_u16() {
            200 => Ok(()),
            other => Err(format!("{other}")),
        },
    )
    .await;
}
