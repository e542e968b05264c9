//! Where a policy's numbers get their meaning: each field checked (every problem reported with
//! its path, none stopping the rest), the quota converted to store ticks, Redis policies held to
//! Lua's exact-integer range, and a fingerprint that keeps counters across reloads only while the
//! definition is unchanged. Apart from the types so that they read as the schema.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use http::HeaderName;

use super::raw::{RawKey, RawLease, RawLeaseSize, RawPolicy, RawRateLimits};
use super::{
    Cidr, CompiledPolicy, CompiledRateLimits, KeyPart, OnStoreError, StoreKind, WhenMissing, Word,
};
use crate::config::problem::Problem;
use crate::config::yaml::suggest::is_typo_of;
use crate::ratelimit::lease::{LeaseRule, LeaseSettings, LeaseSize};
use crate::ratelimit::store::{MAX_EXACT, RedisConfig, TICK_NANOS};
use crate::ratelimit::{Algorithm, AnyLimiter, Quota};

/// Compiles the section; `routes` are the route names the config declares, `api_key_tiers` the
/// tiers its API keys carry.
pub fn compile(
    raw: &RawRateLimits,
    routes: &[&str],
    api_key_tiers: &BTreeSet<String>,
    problems: &mut Vec<Problem>,
) -> CompiledRateLimits {
    let at = |field: &str| format!("rate_limits.{field}");
    if let Some(written) = &raw.store {
        word::<StoreKind>(written, &at("store"), problems);
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match Cidr::parse(text) {
            Some(c) => trusted_proxies.push(c),
            None => problems.push((
                at(&format!("trusted_proxies[{i}]")),
                format!("`{text}` is not an address or CIDR block (`10.0.0.0/8`, `::1`)"),
            )),
        }
    }
    let client_ip_header =
        match HeaderName::from_bytes(raw.client_ip_header.to_ascii_lowercase().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                problems.push((
                    at("client_ip_header"),
                    format!("`{}` is not a valid header name", raw.client_ip_header),
                ));
                None
            }
        };
    if raw.ipv6_prefix == 0 || raw.ipv6_prefix > 128 {
        problems.push((at("ipv6_prefix"), "must be between 1 and 128".into()));
    }
    if raw.memory.max_keys == 0 {
        problems.push((at("memory.max_keys"), "must be at least 1".into()));
    }
    let redis = raw.redis.as_ref().and_then(|r| {
        let before = problems.len();
        match (&r.url, &r.cluster_nodes) {
            (Some(url), None) => {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    problems.push((
                        at("redis.url"),
                        format!("`{url}` is not a Redis URL: {e}"),
                    ));
                }
            }
            (None, Some(nodes)) => compile_cluster(nodes, &r.key_prefix, &at, problems),
            (Some(_), Some(_)) => problems.push((
                at("redis"),
                "`url` (one Redis) and `cluster_nodes` (a Redis Cluster) exclude each other: keep one".into(),
            )),
            (None, None) => problems.push((
                at("redis"),
                "needs `url` (one Redis) or `cluster_nodes` (a Redis Cluster's seed nodes)".into(),
            )),
        }
        if r.timeout.is_zero() {
            problems.push((at("redis.timeout"), "must be above 0".into()));
        }
        if r.breaker_failures == 0 {
            problems.push((at("redis.breaker_failures"), "must be at least 1".into()));
        }
        let most = crate::ratelimit::store::batch::MAX_BATCH_LIMIT;
        if !(1..=most).contains(&r.max_batch) {
            problems.push((
                at("redis.max_batch"),
                format!("must be between 1 (a script call per request) and {most}"),
            ));
        }
        (problems.len() == before).then(|| RedisConfig {
            url: r.url.clone().unwrap_or_default(),
            cluster_nodes: r.cluster_nodes.clone().unwrap_or_default(),
            key_prefix: r.key_prefix.clone(),
            timeout: r.timeout,
            breaker_failures: r.breaker_failures,
            breaker_cooldown: r.breaker_cooldown,
            max_batch: r.max_batch,
        })
    });

    let known_routes: HashSet<&str> = routes.iter().copied().collect();
    // A tier is known when something can give a request that tier: an API key, the default, or
    // a declaration (for tiers that only tokens carry). Another policy naming it is no evidence:
    // two policies can share one typo.
    let known_tiers: BTreeSet<&str> = raw
        .tiers
        .iter()
        .chain(api_key_tiers)
        .chain(&raw.default_tier)
        .map(String::as_str)
        .collect();
    let mut ids = HashMap::new();
    let mut policies = Vec::new();
    for (i, p) in raw.policies.iter().enumerate() {
        if let Some(first) = ids.insert(p.id.as_str(), i) {
            problems.push((
                at(&format!("policies[{i}].id")),
                format!(
                    "duplicate policy id `{}` (first used by rate_limits.policies[{first}])",
                    p.id
                ),
            ));
        }
        if let Some(policy) = compile_policy(i, p, raw, &known_routes, &known_tiers, problems) {
            policies.push(Arc::new(policy));
        }
    }

    let unrouted: Box<[_]> = policies
        .iter()
        .filter(|p| raw_routes(raw, &p.id).is_empty())
        .cloned()
        .collect();
    let mut by_route = HashMap::default();
    for route in routes {
        let list: Box<[_]> = policies
            .iter()
            .filter(|p| {
                let r = raw_routes(raw, &p.id);
                r.is_empty() || r.iter().any(|x| x == route)
            })
            .cloned()
            .collect();
        by_route.insert(Arc::from(*route), list);
    }
    CompiledRateLimits {
        policies,
        by_route,
        unrouted,
        trusted_proxies,
        client_ip_header,
        ipv6_prefix: raw.ipv6_prefix,
        default_tier: raw.default_tier.clone(),
        legacy_headers: raw.legacy_headers,
        max_keys: raw.memory.max_keys.max(1),
        redis,
    }
}

/// `rate_limits.redis.cluster_nodes`: at least one seed, each a TCP Redis URL, all with one
/// set of credentials (the Cluster client's rule), and a key prefix that leaves the hash tag to
/// the gateway.
fn compile_cluster(
    nodes: &[String],
    key_prefix: &str,
    at: &impl Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) {
    let before = problems.len();
    if nodes.is_empty() {
        problems.push((
            at("redis.cluster_nodes"),
            "name at least one node of the Cluster (`redis://host:port`)".into(),
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        let problem = match redis::Client::open(node.as_str()) {
            Err(e) => Some(format!("`{node}` is not a Redis URL: {e}")),
            Ok(client) => match client.get_connection_info().addr() {
                redis::ConnectionAddr::Unix(_) => Some(format!(
                    "`{node}`: a Cluster node is reached over TCP (`redis://host:port`)"
                )),
                _ if client.get_connection_info().redis_settings().db() != 0 => {
                    Some(format!("`{node}`: a Redis Cluster has only database 0"))
                }
                _ => None,
            },
        };
        if let Some(problem) = problem {
            problems.push((at(&format!("redis.cluster_nodes[{i}]")), problem));
        }
    }
    if problems.len() == before
        && let Err(e) = redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str))
    {
        problems.push((at("redis.cluster_nodes"), e.to_string()));
    }
    if key_prefix.contains(['{', '}']) {
        problems.push((
            at("redis.key_prefix"),
            format!("`{key_prefix}`: on a Redis Cluster the prefix must hold no `{{` or `}}`: the hash tag is the gateway's (it keeps each request's counters in one slot)"),
        ));
    }
}

fn raw_routes<'a>(raw: &'a RawRateLimits, id: &str) -> &'a [String] {
    raw.policies
        .iter()
        .find(|p| p.id == id)
        .map_or(&[], |p| p.routes.as_slice())
}

fn compile_policy(
    i: usize,
    p: &RawPolicy,
    raw: &RawRateLimits,
    routes: &HashSet<&str>,
    tiers: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) -> Option<CompiledPolicy> {
    let at = |field: &str| format!("rate_limits.policies[{i}].{field}");
    let before = problems.len();
    if p.id.is_empty()
        || !p
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.push((
            at("id"),
            format!(
                "`{}` must be a non-empty word of letters, digits, `-`, `_` or `.`",
                p.id
            ),
        ));
    }
    if p.limit == 0 {
        problems.push((at("limit"), "must be at least 1".into()));
    }
    let algorithm = Algorithm::parse(&p.algorithm);
    if algorithm.is_none() {
        problems.push((at("algorithm"), unknown_algorithm(&p.algorithm)));
    }
    // With the algorithm unknown, burst and cost are judged as a bucket would judge them: the
    // algorithm's own problem is already reported, and no second one should echo it.
    let bucket = algorithm.is_none_or(|a| matches!(a, Algorithm::TokenBucket | Algorithm::Gcra));
    match p.burst {
        Some(0) => problems.push((at("burst"), "must be at least 1".into())),
        Some(_) if !bucket => problems.push((
            at("burst"),
            format!(
                "`{}` ignores burst: only token-bucket and gcra admit bursts; leave it out",
                p.algorithm
            ),
        )),
        _ => {}
    }
    let period_nanos = u64::try_from(p.period.as_nanos()).unwrap_or(u64::MAX);
    if period_nanos < 1_000_000 || period_nanos % TICK_NANOS != 0 {
        problems.push((
            at("period"),
            "must be at least 1ms, in whole microseconds".into(),
        ));
    }
    let capacity = if bucket {
        p.burst.unwrap_or(p.limit)
    } else {
        p.limit
    };
    if p.cost == 0 {
        problems.push((at("cost"), "must be at least 1".into()));
    } else if p.cost > capacity && capacity > 0 {
        problems.push((
            at("cost"),
            format!("{} is more than the policy ever admits at once ({capacity}): every request would be refused", p.cost),
        ));
    }
    let store = match &p.store {
        Some(written) => word(written, &at("store"), problems).unwrap_or_default(),
        // The section's own `store` is reported once, by `compile`.
        None => raw
            .store
            .as_deref()
            .and_then(lookup::<StoreKind>)
            .unwrap_or_default(),
    };
    let on_store_error = p
        .on_store_error
        .as_deref()
        .and_then(|w| word::<OnStoreError>(w, &at("on_store_error"), problems));
    let when_missing = p
        .when_missing
        .as_deref()
        .and_then(|w| word::<WhenMissing>(w, &at("when_missing"), problems))
        .unwrap_or_default();
    let on_store_error = match (store, on_store_error) {
        (_, Some(o)) => o,
        (StoreKind::Memory, None) => OnStoreError::Allow,
        (StoreKind::Redis, None) => {
            problems.push((
                at("on_store_error"),
                "a Redis-backed policy must say what happens while Redis cannot answer: `allow` or `deny`".into(),
            ));
            OnStoreError::Allow
        }
    };
    if store == StoreKind::Redis && raw.redis.is_none() {
        problems.push((
            at("store"),
            "this policy uses Redis but `rate_limits.redis` is not configured".into(),
        ));
    }
    let mut key = Vec::new();
    for (j, part) in p.key.parts().into_iter().enumerate() {
        let field = match &p.key {
            RawKey::One(_) => at("key"),
            RawKey::Many(_) => at(&format!("key[{j}]")),
        };
        let parsed = match part {
            "api_key" => Some(KeyPart::ApiKey),
            "subject" => Some(KeyPart::Subject),
            "tenant" => Some(KeyPart::Tenant),
            "client_ip" => Some(KeyPart::ClientIp),
            "route" => Some(KeyPart::Route),
            other => other.strip_prefix("header:").and_then(|h| {
                HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes())
                    .ok()
                    .map(KeyPart::Header)
            }),
        };
        match parsed {
            Some(k) if !key.contains(&k) => key.push(k),
            Some(_) => problems.push((field, format!("`{part}` is listed twice"))),
            None => problems.push((
                field,
                format!(
                    "`{part}` is not a key: expected api_key, subject, tenant, client_ip, route or header:<name>"
                ),
            )),
        }
    }
    if matches!(&p.key, RawKey::Many(v) if v.is_empty()) {
        problems.push((at("key"), "list at least one key part".into()));
    }
    for (j, r) in p.routes.iter().enumerate() {
        if !routes.contains(r.as_str()) {
            let mut known: Vec<&str> = routes.iter().copied().collect();
            known.sort_unstable();
            problems.push((
                at(&format!("routes[{j}]")),
                format!("unknown route `{r}` (known: {})", known.join(", ")),
            ));
        }
    }

    for (j, tier) in p.tiers.iter().enumerate() {
        if !tiers.contains(tier.as_str()) {
            problems.push((at(&format!("tiers[{j}]")), unknown_tier(tier, tiers)));
        }
    }

    let burst = if bucket {
        p.burst.unwrap_or(p.limit)
    } else {
        p.limit
    };
    let quota = Quota {
        limit: p.limit,
        period_nanos,
        burst,
    };
    let ticks = Quota {
        limit: p.limit,
        period_nanos: period_nanos / TICK_NANOS,
        burst,
    };
    if store == StoreKind::Redis && problems.len() == before {
        // Redis runs the algorithms in Lua, whose numbers are doubles: every product the
        // algorithms form must stay an exact integer.
        let t = ticks.emission_interval_nanos();
        let spans = [
            u128::from(ticks.limit) * u128::from(ticks.period_nanos),
            u128::from(ticks.burst) * u128::from(t),
            u128::from(p.cost) * u128::from(t),
        ];
        if spans.iter().any(|&s| s > u128::from(MAX_EXACT)) {
            problems.push((
                at("limit"),
                "too large for the Redis store: limit × period (in microseconds) must stay below 2^50; use a shorter period or the memory store".into(),
            ));
        }
    }
    let lease = p.lease.as_ref().and_then(|l| {
        compile_lease(
            l,
            &at,
            store,
            algorithm,
            capacity,
            p.cost,
            period_nanos,
            problems,
        )
    });
    // Any problem above (an unknown algorithm among them) means no policy.
    let algorithm = algorithm.filter(|_| problems.len() == before)?;
    let limiter = AnyLimiter::new(algorithm, ticks);
    let lease = lease.and_then(|settings| LeaseRule::new(&limiter, settings));
    let (header_quota, window_nanos) = if bucket {
        // What a bucket really grants: `burst` at once, refilled in `burst · T`.
        (burst, burst.saturating_mul(quota.emission_interval_nanos()))
    } else {
        (p.limit, period_nanos)
    };
    let header_window_secs = window_nanos.div_ceil(1_000_000_000).max(1);
    let fingerprint = fingerprint(&format!(
        "{}|{}|{}|{}|{:?}",
        algorithm, p.limit, period_nanos, burst, key
    ));
    Some(CompiledPolicy {
        id: Arc::from(p.id.as_str()),
        store_key: Arc::from(format!("{}:{fingerprint:08x}", p.id)),
        algorithm,
        quota,
        limiter,
        key,
        tiers: p.tiers.clone(),
        when_missing,
        cost: p.cost,
        store,
        on_store_error,
        lease,
        header_quota,
        header_window_secs,
        policy_item: http::HeaderValue::try_from(format!(
            "\"{}\";q={header_quota};w={header_window_secs}",
            p.id
        ))
        .ok(),
    })
}

/// A policy's `lease:`, its size resolved to units and its interval to store ticks; every
/// problem at `lease.<field>`.
#[allow(clippy::too_many_arguments)]
fn compile_lease(
    l: &RawLease,
    at: &dyn Fn(&str) -> String,
    store: StoreKind,
    algorithm: Option<Algorithm>,
    capacity: u64,
    cost: u64,
    period_nanos: u64,
    problems: &mut Vec<Problem>,
) -> Option<LeaseSettings> {
    let before = problems.len();
    if store != StoreKind::Redis {
        problems.push((
            at("lease"),
            "a lease takes slices of a shared Redis counter; a `memory` policy already decides locally: use `store: redis` or leave `lease` out".into(),
        ));
    }
    if algorithm == Some(Algorithm::SlidingLog) {
        problems.push((
            at("lease"),
            "`sliding-log` is the exact limit and takes no lease (a unit charged before it is spent would leave the log while still in use); lease a `sliding-window-counter`, `fixed-window`, `token-bucket` or `gcra` policy instead".into(),
        ));
    }
    let size = match &l.size {
        RawLeaseSize::Units(0) => {
            problems.push((at("lease.size"), "must be at least 1".into()));
            None
        }
        RawLeaseSize::Units(n) => Some(*n),
        RawLeaseSize::Text(text) => match LeaseSize::parse(text) {
            Some(size) => Some(size.units(capacity)),
            None => {
                problems.push((
                    at("lease.size"),
                    format!("`{text}` is not a size: a number of units (`20`) or a share of what the policy admits at once, from `1%` to `100%`"),
                ));
                None
            }
        },
    };
    match size {
        Some(n) if n > capacity && capacity > 0 => problems.push((
            at("lease.size"),
            format!("{n} is more than the policy admits at once ({capacity})"),
        )),
        Some(n) if n < cost && matches!(l.size, RawLeaseSize::Units(_)) => problems.push((
            at("lease.size"),
            format!("{n} is less than one request's cost ({cost}): a slice must admit at least one request"),
        )),
        _ => {}
    }
    let interval = u64::try_from(l.sync_interval.as_nanos()).unwrap_or(u64::MAX);
    if interval < 1_000_000 || interval % TICK_NANOS != 0 {
        problems.push((
            at("lease.sync_interval"),
            "must be at least 1ms, in whole microseconds".into(),
        ));
    } else if interval > period_nanos {
        problems.push((
            at("lease.sync_interval"),
            format!(
                "{} is longer than the policy's period ({}): a slice must be renewed within one period",
                humantime::format_duration(l.sync_interval),
                humantime::format_duration(std::time::Duration::from_nanos(period_nanos))
            ),
        ));
    }
    (problems.len() == before).then(|| LeaseSettings {
        size: size.unwrap_or(1).max(cost),
        sync_interval: interval / TICK_NANOS,
    })
}

fn lookup<T: Word>(written: &str) -> Option<T> {
    T::WORDS
        .iter()
        .find(|(w, _)| *w == written)
        .map(|&(_, v)| v)
}

/// `written` as one of `T`'s words, or a problem at `field` naming them (with "did you mean").
fn word<T: Word>(written: &str, field: &str, problems: &mut Vec<Problem>) -> Option<T> {
    let found = lookup::<T>(written);
    if found.is_none() {
        let names: Vec<&str> = T::WORDS.iter().map(|(w, _)| *w).collect();
        let hint = names
            .iter()
            .find(|name| is_typo_of(written, name))
            .map(|name| format!(" — did you mean `{name}`?"))
            .unwrap_or_default();
        problems.push((
            field.to_string(),
            format!("`{written}` is not one of {}{hint}", names.join(", ")),
        ));
    }
    found
}

fn unknown_algorithm(written: &str) -> String {
    let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    let hint = names
        .iter()
        .find(|name| is_typo_of(written, name))
        .map(|name| format!(" — did you mean `{name}`?"))
        .unwrap_or_default();
    format!(
        "`{written}` is not an algorithm{hint} (expected one of {})",
        names.join(", ")
    )
}

fn unknown_tier(written: &str, known: &BTreeSet<&str>) -> String {
    let hint = known
        .iter()
        .find(|name| is_typo_of(written, name))
        .map(|name| format!(" — did you mean `{name}`?"))
        .unwrap_or_default();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.iter().copied().collect::<Vec<_>>().join(", ")
    };
    format!(
        "unknown tier `{written}`{hint} (known: {known}); a tier must be an API key's `tier`, the `default_tier`, or listed in `rate_limits.tiers` (for tiers only tokens carry)"
    )
}

/// FNV-1a, folded to 32 bits: names a policy's definition inside its counters' keys.
fn fingerprint(text: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests;
