//! The rate-limit section's compiler as a table of YAML cases: what compiles, to what, and
//! each problem at its field.

use super::*;
use crate::ratelimit::Limiter;

fn compile_yaml(yaml: &str, routes: &[&str]) -> Result<CompiledRateLimits, Vec<Problem>> {
    let raw: RawRateLimits = serde_yaml_ng::from_str(yaml).expect("schema");
    let mut problems = Vec::new();
    let api_key_tiers = BTreeSet::from(["paid".to_string()]);
    let compiled = compile(&raw, routes, &api_key_tiers, &mut problems);
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(problems)
    }
}

#[test]
fn the_paid_tier_is_one_token_bucket_with_honest_header_numbers() {
    let c = compile_yaml(
        "policies:\n  - {id: paid, algorithm: token-bucket, limit: 1000, period: 1m, burst: 100, key: api_key, tiers: [paid]}\n",
        &["users"],
    )
    .expect("valid");
    let p = &c.policies[0];
    assert_eq!(p.quota, Quota::per_minute(1_000).with_burst(100));
    assert_eq!(
        p.limiter.quota().period_nanos,
        60_000_000,
        "ticks are microseconds"
    );
    // 100 at once, refilled in 100 × 60 ms = 6 s.
    assert_eq!(
        p.policy_item.as_ref().and_then(|v| v.to_str().ok()),
        Some("\"paid\";q=100;w=6")
    );
    assert!(p.applies_to_tier(Some("paid")));
    assert!(!p.applies_to_tier(Some("free")));
    assert!(!p.applies_to_tier(None));
    assert_eq!(c.policies_for(Some("users")).len(), 1);
    assert_eq!(c.policies_for(None).len(), 1);
}

#[test]
fn route_filters_select_policies_per_route() {
    let c = compile_yaml(
        "policies:\n  - {id: a, algorithm: fixed-window, limit: 5, period: 1s, key: client_ip, routes: [users]}\n  - {id: b, algorithm: gcra, limit: 5, period: 1s, key: [tenant, route]}\n",
        &["users", "admin"],
    )
    .expect("valid");
    let ids = |r| {
        c.policies_for(r)
            .iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(Some("users")), ["a", "b"]);
    assert_eq!(ids(Some("admin")), ["b"]);
    assert_eq!(ids(None), ["b"]);
    assert_eq!(c.policies[1].key, [KeyPart::Tenant, KeyPart::Route]);
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let problems = compile_yaml(
        "store: redis\ntrusted_proxies: [10.0.0.0/33]\npolicies:\n  - {id: a, algorithm: fixed-window, limit: 0, period: 0s, burst: 5, key: [nope], routes: [ghost], cost: 0}\n  - {id: a, algorithm: gcra, limit: 1, period: 1s, key: header:x-api-key}\n",
        &["users"],
    )
    .expect_err("invalid");
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rate_limits.trusted_proxies[0]",
            "rate_limits.policies[0].limit",
            "rate_limits.policies[0].burst",
            "rate_limits.policies[0].period",
            "rate_limits.policies[0].cost",
            "rate_limits.policies[0].on_store_error",
            "rate_limits.policies[0].store",
            "rate_limits.policies[0].key[0]",
            "rate_limits.policies[0].routes[0]",
            "rate_limits.policies[1].id",
            "rate_limits.policies[1].on_store_error",
            "rate_limits.policies[1].store",
        ]
    );
}

#[test]
fn an_algorithm_typo_does_not_hide_the_key_typo_after_it() {
    let problems = compile_yaml(
        "policies:\n  - {id: a, algorithm: token-buckt, limit: 5, period: 1s, burst: 2, key: [api_kye]}\n",
        &[],
    )
    .expect_err("invalid");
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rate_limits.policies[0].algorithm",
            "rate_limits.policies[0].key[0]"
        ]
    );
    assert!(
        problems[0].1.contains("did you mean `token-bucket`?"),
        "{}",
        problems[0].1
    );
}

#[test]
fn typos_in_store_when_missing_and_on_store_error_are_all_reported_at_once() {
    let problems = compile_yaml(
        "store: memroy\npolicies:\n  - {id: a, algorithm: gcra, limit: 5, period: 1s, key: [api_kye], when_missing: skp, store: redis, on_store_error: dney}\n",
        &[],
    )
    .expect_err("invalid");
    let found: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    for want in [
        "rate_limits.store: `memroy` is not one of memory, redis — did you mean `memory`?",
        "rate_limits.policies[0].key[0]: ",
        "rate_limits.policies[0].when_missing: `skp` is not one of client_ip, skip — did you mean `skip`?",
        "rate_limits.policies[0].on_store_error: `dney` is not one of allow, deny — did you mean `deny`?",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "want {want}\ngot {found:#?}"
        );
    }
}

#[test]
fn a_policy_tier_must_be_given_by_a_key_the_default_or_a_declaration() {
    let policies = "policies:\n  - {id: a, algorithm: gcra, limit: 5, period: 1s, key: subject, tiers: [paid, free, gold, piad]}\n";
    let problems = compile_yaml(&format!("default_tier: free\n{policies}"), &[])
        .expect_err("gold and piad are given by nothing");
    let found: Vec<(&str, bool)> = problems
        .iter()
        .map(|(f, m)| (f.as_str(), m.contains("did you mean `paid`?")))
        .collect();
    assert_eq!(
        found,
        [
            ("rate_limits.policies[0].tiers[2]", false),
            ("rate_limits.policies[0].tiers[3]", true)
        ]
    );
    compile_yaml(
        &format!("default_tier: free\ntiers: [gold, piad]\n{policies}"),
        &[],
    )
    .expect("declared tiers are known");
}

#[test]
fn a_changed_definition_gets_a_new_counter_namespace_and_an_unchanged_one_keeps_it() {
    let key = |yaml: &str| {
        compile_yaml(yaml, &[]).expect("valid").policies[0]
            .store_key
            .to_string()
    };
    let a = key("policies: [{id: p, algorithm: gcra, limit: 5, period: 1s, key: client_ip}]");
    let same = key(
        "policies: [{id: p, algorithm: gcra, limit: 5, period: 1s, key: client_ip, tiers: [paid]}]",
    );
    let changed = key("policies: [{id: p, algorithm: gcra, limit: 6, period: 1s, key: client_ip}]");
    assert_eq!(
        a, same,
        "tiers and routes select requests; they do not change counters"
    );
    assert_ne!(a, changed);
    assert!(a.starts_with("p:"));
}

#[test]
fn a_cluster_is_named_by_its_seed_nodes_and_each_problem_is_located() {
    let ok = compile_yaml(
        "redis: {cluster_nodes: [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]}",
        &[],
    )
    .expect("valid");
    let redis = ok.redis.expect("redis");
    assert_eq!(redis.cluster_nodes.len(), 2);
    assert_eq!(redis.url, "");
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "redis: {cluster_nodes: [\"redis://127.0.0.1:7000\", \"nope\", \"redis://127.0.0.1:7002/3\", \"redis+unix:///tmp/r.sock\"], key_prefix: \"rl:{x}:\"}",
            &[
                (
                    "rate_limits.redis.cluster_nodes[1]",
                    "`nope` is not a Redis URL",
                ),
                ("rate_limits.redis.cluster_nodes[2]", "only database 0"),
                ("rate_limits.redis.cluster_nodes[3]", "over TCP"),
                ("rate_limits.redis.key_prefix", "must hold no `{` or `}`"),
            ],
        ),
        (
            "redis: {cluster_nodes: []}",
            &[("rate_limits.redis.cluster_nodes", "at least one node")],
        ),
        (
            "redis: {url: \"redis://127.0.0.1:1\", cluster_nodes: [\"redis://127.0.0.1:7000\"]}",
            &[("rate_limits.redis", "exclude each other")],
        ),
        (
            "redis: {key_prefix: x}",
            &[("rate_limits.redis", "needs `url`")],
        ),
    ];
    for (yaml, want) in cases {
        let problems = compile_yaml(yaml, &[]).expect_err(yaml);
        assert_eq!(problems.len(), want.len(), "{yaml}: {problems:?}");
        for ((at, text), (want_at, want_text)) in problems.iter().zip(*want) {
            assert_eq!(at, want_at, "{yaml}");
            assert!(text.contains(want_text), "{yaml}: {text}");
        }
    }
}

#[test]
fn a_lease_resolves_its_share_to_units_and_each_problem_is_located() {
    let redis = "redis: {url: redis://127.0.0.1:1}\n";
    let c = compile_yaml(
        &format!("{redis}policies:\n  - {{id: p, algorithm: token-bucket, limit: 1000, period: 1m, burst: 200, key: client_ip, store: redis, on_store_error: allow, lease: {{size: 5%, sync_interval: 250ms}}}}\n  - {{id: q, algorithm: fixed-window, limit: 50, period: 1s, key: client_ip, store: redis, on_store_error: deny, lease: {{}}}}\n"),
        &[],
    )
    .expect("valid");
    let rule = c.policies[0].lease.expect("leased");
    assert_eq!(rule.settings.size, 10, "5% of the burst");
    assert_eq!(rule.settings.sync_interval, 250_000, "in ticks");
    let rule = c.policies[1].lease.expect("leased");
    assert_eq!(
        (rule.settings.size, rule.settings.sync_interval),
        (5, 100_000),
        "the defaults"
    );
    assert_eq!(
        c.policies[0].store_key,
        compile_yaml(&format!("{redis}policies: [{{id: p, algorithm: token-bucket, limit: 1000, period: 1m, burst: 200, key: client_ip, store: redis, on_store_error: allow}}]"), &[])
            .expect("valid").policies[0].store_key,
        "a lease does not change what is counted"
    );

    let problems = compile_yaml(
        &format!("{redis}policies:\n  - {{id: a, algorithm: gcra, limit: 10, period: 1s, key: client_ip, lease: {{size: 11, sync_interval: 2s}}}}\n  - {{id: b, algorithm: sliding-log, limit: 10, period: 1s, key: client_ip, store: redis, on_store_error: deny, lease: {{size: ten}}}}\n  - {{id: c, algorithm: gcra, limit: 10, period: 1s, key: client_ip, cost: 3, store: redis, on_store_error: deny, lease: {{size: 2, sync_interval: 0s}}}}\n"),
        &[],
    )
    .expect_err("invalid");
    let found: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rate_limits.policies[0].lease",
            "rate_limits.policies[0].lease.size",
            "rate_limits.policies[0].lease.sync_interval",
            "rate_limits.policies[1].lease",
            "rate_limits.policies[1].lease.size",
            "rate_limits.policies[2].lease.size",
            "rate_limits.policies[2].lease.sync_interval",
        ],
        "{found:#?}"
    );
    assert!(
        found[1].ends_with("11 is more than the policy admits at once (10)"),
        "{}",
        found[1]
    );
    assert!(
        found[3].contains("`sliding-log` is the exact limit"),
        "{}",
        found[3]
    );
    assert!(
        found[5].contains("less than one request's cost (3)"),
        "{}",
        found[5]
    );
}

#[test]
fn max_batch_defaults_to_batching_and_stays_within_its_bounds() {
    let redis = |yaml: &str| compile_yaml(yaml, &[]).map(|c| c.redis.expect("redis"));
    let default = redis("redis: {url: redis://127.0.0.1:1}").expect("valid");
    assert_eq!(default.max_batch, 64);
    let off = redis("redis: {url: redis://127.0.0.1:1, max_batch: 1}").expect("valid");
    assert_eq!(off.max_batch, 1);
    for bad in [0, 1_025] {
        let problems = redis(&format!(
            "redis: {{url: redis://127.0.0.1:1, max_batch: {bad}}}"
        ))
        .expect_err("out of bounds");
        assert_eq!(problems[0].0, "rate_limits.redis.max_batch", "{problems:?}");
        assert!(problems[0].1.contains("between 1"), "{problems:?}");
    }
}

#[test]
fn redis_policies_must_fit_exact_lua_arithmetic() {
    let problems = compile_yaml(
        "redis: {url: redis://127.0.0.1:1}\npolicies: [{id: p, algorithm: sliding-window-counter, limit: 100000000, period: 365d, key: client_ip, store: redis, on_store_error: allow}]",
        &[],
    )
    .expect_err("too large");
    assert_eq!(problems[0].0, "rate_limits.policies[0].limit");
}
