//! `ratelimit` with the Redis store on a real three-master Redis Cluster started by the test: the
//! store decides as the memory store does whatever slots a request's checks land in, follows a
//! slot moved under it, reloads a flushed script per node; gateways sharing the cluster share
//! every subject's quota; lease fetches spanning slots grant what the lease rule grants; and a
//! master killed under load costs only its policies'
//! `on_store_error` until its replica takes over, when decisions come from Redis again.

use std::time::{Duration, Instant};

use gateway::ratelimit::lease;
use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::memory::MemoryStore;
use gateway::ratelimit::store::redis::{LeaseAsk, RedisStore, SCRIPT};
use gateway::ratelimit::store::{Check, RedisConfig};
use gateway::ratelimit::{Algorithm, AnyLimiter, AnyState, Quota};
use proptest::prelude::*;

use super::cluster_support::{RedisCluster, command};
use super::ratelimit_support::*;
use super::util::*;

fn cluster_config(nodes: Vec<String>, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: String::new(),
        cluster_nodes: nodes,
        key_prefix: prefix.to_string(),
        timeout: Duration::from_secs(2),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: gateway::ratelimit::store::batch::DEFAULT_MAX_BATCH,
    }
}

/// A policy of a generated case (algorithm, limit, period in ticks, burst), and per step, for
/// each of three policies, whether the request carries it and with which subject and cost.
fn policy() -> impl Strategy<Value = (usize, u64, u64, u64)> {
    (0usize..5, 1u64..12, 1_000u64..3_000_000, 1u64..12)
}

fn step() -> impl Strategy<Value = (u64, Vec<Option<(usize, u64)>>)> {
    (
        0u64..800_000,
        prop::collection::vec(prop::option::weighted(0.7, (0usize..12, 0u64..14)), 3),
    )
}

#[test]
fn cluster_and_memory_stores_decide_identically_across_slots_moved_slots_and_flushed_scripts() {
    let cluster = RedisCluster::start(3, false);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = {
        let _guard = rt.enter();
        RedisStore::new(
            &cluster_config(cluster.urls(), "prop:"),
            RateLimitMetrics::default(),
        )
        .expect("store")
    };
    let sha = redis::Script::new(SCRIPT).get_hash().to_string();
    let exists = |port: u16| command(port, &format!("SCRIPT EXISTS {sha}"));
    let limiter = AnyLimiter::new(
        Algorithm::Gcra,
        Quota {
            limit: 5,
            period_nanos: 1_000_000,
            burst: 5,
        },
    );
    let warm = Check {
        policy: "warm",
        subject: "w",
        limiter: &limiter,
        cost: 1,
    };
    rt.block_on(store.decide_all(&[warm], 1_704_067_200_000_000, 0))
        .expect("the cluster answers");
    // Every master forgets the script: each must load it again itself, on its first NOSCRIPT.
    for (port, _) in &masters {
        super::eventually::eventually_blocking(
            "the store loaded the script on every master",
            Duration::from_secs(5),
            || match exists(*port) {
                Some(r) if r.ends_with(":1\r\n") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(command(*port, "SCRIPT FLUSH").as_deref(), Some("+OK\r\n"));
    }

    let case = std::cell::Cell::new(0u32);
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        policies in prop::collection::vec(policy(), 3),
        steps in prop::collection::vec(step(), 1..30),
    )| {
        case.set(case.get() + 1);
        let memory = MemoryStore::new(10_000, RateLimitMetrics::default());
        let limiters: Vec<AnyLimiter> = policies
            .iter()
            .map(|&(alg, limit, period, burst)| {
                AnyLimiter::new(Algorithm::ALL[alg], Quota { limit, period_nanos: period, burst })
            })
            .collect();
        let names: Vec<String> = (0..3).map(|i| format!("c{}p{i}", case.get())).collect();
        let subjects: Vec<String> = (0..12).map(|i| format!("key:user-{i}")).collect();
        let mut now = 1_704_067_200_000_000u64;
        for (dt, carried) in &steps {
            now += dt;
            // Each policy at most once per request, as the stage sends them; subjects differ
            // between policies, so most requests span slots.
            let checks: Vec<Check<'_>> = carried
                .iter()
                .enumerate()
                .filter_map(|(p, c)| c.map(|(s, cost)| Check {
                    policy: &names[p],
                    subject: &subjects[s],
                    limiter: &limiters[p],
                    cost,
                }))
                .collect();
            if checks.is_empty() {
                continue;
            }
            let want = memory.decide_all(&checks, now);
            let got = rt
                .block_on(store.decide_all(&checks, now, 0))
                .expect("the cluster answers");
            prop_assert_eq!(got, want, "at {} with {:?}", now, policies);
        }
    });
    // The subjects spread over every master (written once more now, since the cases' keys
    // expire within seconds of real time).
    for i in 0..12 {
        let subject = format!("key:user-{i}");
        let check = Check {
            subject: &subject,
            ..warm
        };
        rt.block_on(store.decide_all(&[check], 1_704_067_300_000_000, 0))
            .expect("the cluster answers");
    }
    for (port, _) in &masters {
        let keys = command(*port, "DBSIZE").expect("DBSIZE");
        assert!(keys != ":0\r\n", "master {port} holds no counter: {keys}");
        assert!(
            exists(*port).is_some_and(|r| r.ends_with(":1\r\n")),
            "master {port} got the script back by EVAL"
        );
    }

    // A slot moves to another master behind the store's back (empty, so no keys to migrate):
    // the store's slot map is stale, the old owner answers MOVED, the store follows it.
    let subject = "key:moved";
    let from = cluster.owner_of(subject);
    let (to, to_id) = masters
        .iter()
        .find(|(port, _)| *port != from)
        .cloned()
        .expect("another master");
    let slot = command(from, &format!("CLUSTER KEYSLOT {subject}"))
        .and_then(|r| r.trim().trim_start_matches(':').parse::<u16>().ok())
        .expect("slot");
    for (port, _) in &masters {
        assert_eq!(
            command(*port, &format!("CLUSTER SETSLOT {slot} NODE {to_id}")).as_deref(),
            Some("+OK\r\n")
        );
    }
    super::eventually::eventually_blocking(
        "the moved slot is served by its new master",
        Duration::from_secs(5),
        || match cluster.owner_of(subject) {
            port if port == to => Ok(()),
            port => Err(format!("served by {port}")),
        },
    );
    let memory = MemoryStore::new(10, RateLimitMetrics::default());
    let check = Check {
        policy: "moved",
        subject,
        limiter: &limiter,
        cost: 1,
    };
    for i in 0..7 {
        let now = 1_704_067_300_000_000 + i;
        let got = rt
            .block_on(store.decide_all(&[check], now, 0))
            .expect("the store follows MOVED");
        assert_eq!(got, memory.decide_all(&[check], now), "decision {i}");
    }
    let key = gateway::ratelimit::store::redis::cluster_key("prop:", &check);
    assert_eq!(
        command(to, &format!("EXISTS {key}")).as_deref(),
        Some(":1\r\n")
    );
}

/// The same requests through a gateway, by value of `x-user`: (status, `RateLimit` field).
async fn user_get(gw: &TestGateway, path: &str, user: &str) -> (u16, Option<String>) {
    let reply = gw
        .send(
            request("GET", &gw.url(path))
                .header("x-user", user)
                .body(empty())
                .expect("request"),
        )
        .await;
    (
        reply.status.as_u16(),
        reply.header("ratelimit").map(str::to_owned),
    )
}

#[tokio::test]
async fn gateways_sharing_a_cluster_decide_as_one_memory_store_and_stay_all_or_nothing() {
    let cluster = RedisCluster::start(3, false);
    let upstream = Upstream::start().await;
    let policies = "  policies:
    - {id: per-user, algorithm: fixed-window, limit: 3, period: 1m, key: \"header:x-user\", on_store_error: deny}
    - {id: per-route, algorithm: sliding-log, limit: 10, period: 1m, key: route, routes: [other], on_store_error: deny}
";
    let on_cluster = format!(
        "  store: redis\n  redis: {{cluster_nodes: {}, key_prefix: \"gw:\"}}\n{policies}",
        cluster.nodes_yaml()
    );
    let (a, clock_a) =
        start_on_manual_clock(&config_with_limits(upstream.address, &on_cluster)).await;
    let (b, clock_b) =
        start_on_manual_clock(&config_with_limits(upstream.address, &on_cluster)).await;
    let (m, clock_m) = start_on_manual_clock(&config_with_limits(
        upstream.address,
        &format!("  store: memory\n{policies}"),
    ))
    .await;
    for clock in [&clock_a, &clock_b, &clock_m] {
        clock.advance(Duration::from_millis(10));
    }

    // 40 subjects over the slots, four requests each, alternating between the two gateways:
    // exactly three of each admitted, as one memory store decides.
    let mut shared = Vec::new();
    let mut alone = Vec::new();
    for round in 0..4 {
        for u in 0..40 {
            let user = format!("user-{u}");
            let gw = if (round + u) % 2 == 0 { &a } else { &b };
            shared.push(user_get(gw, "/api/x", &user).await);
            alone.push(user_get(&m, "/api/x", &user).await);
        }
    }
    assert_eq!(shared, alone);
    let admitted = shared.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(admitted, 120, "three per subject");
    for port in cluster.ports() {
        let keys = command(port, "DBSIZE").expect("DBSIZE");
        assert!(keys != ":0\r\n", "master {port} holds none of the counters");
    }

    // Two policies whose subjects (a user, the route) live in different slots: the route's 10
    // run out while users still have quota, and a request the route refuses charges no user.
    let (mut shared, mut alone) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for u in 0..6 {
            let user = format!("other-{u}");
            let gw = if round % 2 == 0 { &a } else { &b };
            shared.push(user_get(gw, "/other/x", &user).await);
            alone.push(user_get(&m, "/other/x", &user).await);
        }
    }
    assert_eq!(shared, alone);
    assert_eq!(shared.iter().filter(|(s, _)| *s == 200).count(), 10);
    // other-5 was admitted once and refused twice by the route: it has two left, not zero.
    let next = user_get(&a, "/api/x", "other-5").await;
    assert_eq!(next, user_get(&m, "/api/x", "other-5").await);
    assert_eq!(next.0, 200);
    assert!(
        next.1.as_deref().is_some_and(|h| h.contains(";r=1;")),
        "{next:?}"
    );
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // bounds the test's own running time
async fn a_master_killed_under_load_costs_only_on_store_error_until_its_replica_takes_over() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, true))
        .await
        .expect("cluster");
    let upstream = Upstream::start().await;
    let limits = format!(
        "  store: redis
  trusted_proxies: [127.0.0.1]
  redis: {{cluster_nodes: {}, key_prefix: \"fo:\", timeout: 200ms, breaker_failures: 2, breaker_cooldown: 300ms}}
  policies:
    - {{id: open, algorithm: gcra, limit: 100000, period: 1s, key: client_ip, routes: [api], on_store_error: allow}}
    - {{id: closed, algorithm: token-bucket, limit: 100000, period: 1s, key: client_ip, routes: [other], on_store_error: deny}}
",
        cluster.nodes_yaml()
    );
    let (gw, clock) = start_on_manual_clock(&config_with_limits(upstream.address, &limits)).await;
    let (victim, _) = cluster.masters()[0].clone();
    // Clients whose counters (tagged by their subject) live on the master about to die.
    let clients: Vec<String> = (1..=60).map(|n| format!("198.51.100.{n}")).collect();
    let doomed: Vec<&String> = clients
        .iter()
        .filter(|ip| cluster.owner_of(&format!("ip:{ip}")) == victim)
        .collect();
    assert!(!doomed.is_empty(), "some clients count on {victim}");
    let send = async |path: &str, ip: &str| {
        let reply = gw
            .send(
                request("GET", &gw.url(path))
                    .header("x-forwarded-for", ip)
                    .body(empty())
                    .expect("request"),
            )
            .await;
        let problem = (reply.status == 503).then(|| reply.problem()["type"].clone());
        (
            reply.status.as_u16(),
            reply.header("ratelimit").is_some(),
            problem,
        )
    };
    for ip in &clients {
        assert_eq!(send("/api/x", ip).await, (200, true, None), "{ip} before");
    }

    cluster.kill(victim);
    // Load: eight requests at a time, half to each route, half for doomed clients, until a
    // doomed client is decided by Redis again (its replica promoted) and then for 20 rounds more.
    let started = Instant::now();
    let (mut fallbacks, mut unexpected, mut recovered_at) = (0, Vec::new(), None);
    let mut late_fallbacks = 0;
    let mut round = 0usize;
    while recovered_at.is_none_or(|at| round < at + 20) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover within 30 s: {fallbacks} fallbacks, unexpected {unexpected:?}"
        );
        round += 1;
        let before = fallbacks;
        clock.advance(Duration::from_millis(50));
        let batch: Vec<(&str, &str)> = (0..8)
            .map(|k| {
                let ip = if k % 2 == 0 {
                    doomed[(round + k) % doomed.len()].as_str()
                } else {
                    clients[(round * 8 + k) % clients.len()].as_str()
                };
                (if k % 4 < 2 { "/api/x" } else { "/other/x" }, ip)
            })
            .collect();
        let answers =
            futures_util::future::join_all(batch.iter().map(|(path, ip)| send(path, ip))).await;
        for ((path, ip), answer) in batch.iter().zip(answers) {
            let urn = serde_json::json!("urn:gatehouse:problem:limit-store-unavailable");
            match (path.starts_with("/api"), &answer) {
                (_, (200, true, None)) => {
                    if recovered_at.is_none() && doomed.iter().any(|d| d == ip) {
                        recovered_at = Some(round);
                    }
                }
                // The gap: `allow` admits without a quota to report, `deny` refuses with 503.
                (true, (200, false, None)) => fallbacks += 1,
                (false, (503, false, Some(problem))) if *problem == urn => fallbacks += 1,
                _ => unexpected.push((round, path.to_string(), answer)),
            }
        }
        if recovered_at.is_some_and(|at| round > at) {
            late_fallbacks += fallbacks - before;
        }
    }
    assert!(
        unexpected.is_empty(),
        "only on_store_error answers: {unexpected:?}"
    );
    assert!(fallbacks > 0, "the gap took on_store_error");
    assert_eq!(
        late_fallbacks, 0,
        "once back, every decision comes from Redis"
    );
    let masters = tokio::task::spawn_blocking(move || {
        let masters = cluster.masters();
        drop(cluster);
        masters
    })
    .await
    .expect("masters");
    assert_eq!(masters.len(), 3, "a replica took over: {masters:?}");
    assert!(masters.iter().all(|(port, _)| *port != victim));
}

#[test]
fn lease_fetches_across_slots_grant_exactly_what_the_lease_rule_grants() {
    let cluster = RedisCluster::start(3, false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = {
        let _guard = rt.enter();
        RedisStore::new(
            &cluster_config(cluster.urls(), "lease:"),
            RateLimitMetrics::default(),
        )
        .expect("store")
    };
    let limiter = AnyLimiter::new(
        Algorithm::TokenBucket,
        Quota {
            limit: 10,
            period_nanos: 1_000_000,
            burst: 10,
        },
    );
    // Eight subjects (their keys spread over the three masters' slots), each asked for in every
    // call: one call per slot under the hood, each subject's grant its own.
    let subjects: Vec<String> = (0..8).map(|i| format!("user-{i}")).collect();
    let mut states: Vec<AnyState> = vec![AnyState::default(); subjects.len()];
    let mut now = 1_704_067_200_000_000u64;
    let mut granted = 0;
    for round in 0..12u64 {
        now += 37_000 * (round % 3);
        let want = 1 + round % 5;
        let asks: Vec<LeaseAsk<'_>> = subjects
            .iter()
            .map(|subject| LeaseAsk {
                check: Check {
                    policy: "p",
                    subject,
                    limiter: &limiter,
                    cost: 1,
                },
                want,
            })
            .collect();
        let got = rt
            .block_on(store.take_leases(&asks, now, 0))
            .expect("the cluster answers");
        for (i, grant) in got.iter().enumerate() {
            let expected = lease::take(&limiter, &mut states[i], now, 1, want);
            assert_eq!(
                grant.units, expected.units,
                "round {round}, {}",
                subjects[i]
            );
            assert_eq!(grant.decision, expected.decision, "round {round}");
            granted += grant.units;
        }
    }
    assert!(granted > 0, "slices were granted");
    assert!(
        states.iter().any(|s| *s != AnyState::default()),
        "the rule ran"
    );
}
