//! `ratelimit`: admits or refuses a request against every policy that selects it (by route and
//! tier), each counting per its key (API key, subject, tenant, client IP, route, a header).
//!
//! All selected policies must admit the request, and they are decided all-or-nothing per store:
//! when one refuses, the others are not charged. Redis policies are decided first (one round
//! trip for all of them; two on a Redis Cluster when their subjects span slots); memory policies
//! only if Redis admitted. The tightest policy — the
//! refusing one with the longest wait, else the one with the least remaining — sets the
//! `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11) that every
//! answer carries, admitted or refused, and the record's `limit`. A refusal is a 429
//! `quota-exceeded` with `Retry-After` in whole seconds, rounded up, never 0.
//!
//! A Redis policy with a `lease` is decided from this node's slice of its counter
//! (`ratelimit::lease`, `store::lease`): a round trip only when the slice is spent or stale.
//!
//! When Redis cannot answer, each Redis policy takes its `on_store_error`: `allow` admits
//! (counted in `gatehouse_ratelimit_fallback_decisions`), `deny` refuses with a 503
//! `limit-store-unavailable` — the quota is unknown, not exceeded.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use smallvec::SmallVec;

use crate::config::ratelimit::{
    CompiledPolicy, CompiledRateLimits, KeyPart, OnStoreError, StoreKind, WhenMissing, mask,
};
use crate::ratelimit::store::lease::Leased;
use crate::ratelimit::store::redis::RedisStore;
use crate::ratelimit::store::{Check, Stores, to_nanos};
use crate::ratelimit::{Decision, reset_secs, retry_after_secs};
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::limit::LimitFields;
use crate::vocab::{Identity, LimitDecision, LimitOutcome, StageId};
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Ratelimit;

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Subjects longer than this are replaced by a digest, which bounds each key's memory.
const MAX_SUBJECT: usize = 128;

/// One policy's verdict on this request, borrowing the policy from the request's config.
/// The policies that apply to a request, each with its subject: inline for one or two, as most
/// requests have (a heap allocation each before).
pub type Selected<'l> = SmallVec<[(&'l Arc<CompiledPolicy>, String); 2]>;

type Verdicts<'s> = SmallVec<[Verdict<'s>; 2]>;

struct Verdict<'s> {
    policy: &'s Arc<CompiledPolicy>,
    /// Where the policy and its subject are in the selection (verdicts come grouped by store).
    selected: usize,
    /// In nanoseconds.
    decision: Decision,
    /// Taken by `on_store_error`, not by the store.
    fallback: bool,
}

pub async fn run(state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    let limits = &cx.active.config.rate_limits;
    let mut selected = select(
        limits,
        cx.route_name(),
        cx.identity.as_deref(),
        &cx.parts.headers,
        cx.facts.connection.peer.ip(),
    );
    if selected.is_empty() {
        return Ok(());
    }
    let verdicts = decide(&state.ratelimit, limits, &selected).await;
    for v in &verdicts {
        match cx.active.policy_metrics(v.policy) {
            Some(counters) => counters.count(v.decision.allowed, v.fallback),
            None => state
                .ratelimit
                .metrics
                .for_policy(&v.policy.id)
                .count(v.decision.allowed, v.fallback),
        }
    }
    let Some(tightest) = tightest(&verdicts) else {
        return Ok(());
    };
    let v = &verdicts[tightest];
    let (at, decision, fallback) = (v.selected, v.decision, v.fallback);
    drop(verdicts);
    let policy = selected[at].0;
    cx.limit = Some(LimitOutcome {
        decision: LimitDecision {
            policy: policy.id.clone(),
            // The selection is done with: its subject moves into the record, uncopied.
            subject: std::mem::take(&mut selected[at].1),
            remaining: decision.remaining,
            retry_after_secs: (!decision.allowed).then(|| retry_after_secs(&decision)),
            store_fallback: fallback,
        },
        headers: if fallback {
            LimitFields::new()
        } else {
            headers(policy, &decision, limits.legacy_headers)
        },
    });
    if decision.allowed {
        return Ok(());
    }
    let retry = HeaderValue::from(retry_after_secs(&decision));
    let rejection = if fallback {
        Rejection::new(
            STAGE,
            Reason::LimitStoreUnavailable,
            format!(
                "the rate-limit store for policy `{}` cannot answer and the policy refuses requests meanwhile",
                policy.id
            ),
        )
    } else {
        Rejection::new(
            STAGE,
            Reason::QuotaExceeded,
            format!(
                "policy `{}` admits {} requests per {} s; retry in {} s",
                policy.id,
                policy.header_quota,
                policy.header_window_secs,
                retry_after_secs(&decision)
            ),
        )
    };
    Err(rejection.with_header(header::RETRY_AFTER, retry))
}

/// Decides the selected policies: leased Redis policies first (from this node's slices), then
/// the other Redis policies (one round trip for all), then memory, each group only if the ones
/// before admitted. A later refusal puts the units the leased policies took back into their
/// slices, so a refused request costs a leased policy nothing.
async fn decide<'s>(
    stores: &Stores,
    limits: &CompiledRateLimits,
    selected: &'s [(&'s Arc<CompiledPolicy>, String)],
) -> Verdicts<'s> {
    let now = stores.ticks.now();
    // The common case, one policy counted in memory: decided alone, without the lists that
    // group several policies by store (three allocations a request).
    if let [(policy, subject)] = selected {
        if policy.store == StoreKind::Memory && policy.lease.is_none() {
            let check = Check {
                policy: &policy.store_key,
                subject,
                limiter: &policy.limiter,
                cost: policy.cost,
            };
            let decision = stores.memory.decide(&check, now);
            return smallvec::smallvec![verdict(selected, 0, to_nanos(decision), false)];
        }
    }
    let mut verdicts = Verdicts::new();
    let checks = |store: StoreKind, leased: bool| -> Vec<(usize, Check<'_>)> {
        selected
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| p.store == store && p.lease.is_some() == leased)
            .map(|(i, (p, s))| {
                (
                    i,
                    Check {
                        policy: &p.store_key,
                        subject: s,
                        limiter: &p.limiter,
                        cost: p.cost,
                    },
                )
            })
            .collect()
    };
    let store = || limits.redis.as_ref().and_then(|c| stores.redis(c));
    let leased: Vec<(usize, Leased<'_>)> = checks(StoreKind::Redis, true)
        .into_iter()
        .filter_map(|(i, check)| {
            let rule = selected[i].0.lease.as_ref()?;
            Some((i, Leased { check, rule }))
        })
        .collect();
    if !leased.is_empty() {
        let list: Vec<Leased<'_>> = leased.iter().map(|(_, l)| *l).collect();
        let store = store();
        let answers = stores
            .leases
            .decide_all(store.as_deref(), &list, now, stores.ticks.mono())
            .await;
        for ((i, _), answer) in leased.iter().zip(answers) {
            let v = match answer {
                Ok(d) => verdict(selected, *i, to_nanos(d), false),
                Err(_) => fallback(selected, *i, store.as_deref(), stores),
            };
            verdicts.push(v);
        }
        if verdicts.iter().any(|v| !v.decision.allowed) {
            give_back(stores, &leased, &verdicts).await;
            return verdicts;
        }
    }
    let redis = checks(StoreKind::Redis, false);
    if !redis.is_empty() {
        let list: Vec<Check<'_>> = redis.iter().map(|(_, c)| *c).collect();
        let store = store();
        let answer = match &store {
            Some(store) => store.decide_all(&list, now, stores.ticks.mono()).await,
            None => Err(crate::ratelimit::store::redis::StoreError::Connection(
                "no Redis store".into(),
            )),
        };
        match answer {
            Ok(decisions) => {
                for ((i, _), d) in redis.iter().zip(decisions) {
                    verdicts.push(verdict(selected, *i, to_nanos(d), false));
                }
            }
            Err(_) => {
                for (i, _) in &redis {
                    verdicts.push(fallback(selected, *i, store.as_deref(), stores));
                }
            }
        }
        if verdicts.iter().any(|v| !v.decision.allowed) {
            give_back(stores, &leased, &verdicts).await;
            return verdicts;
        }
    }
    let memory = checks(StoreKind::Memory, false);
    if !memory.is_empty() {
        let list: Vec<Check<'_>> = memory.iter().map(|(_, c)| *c).collect();
        let decisions = stores.memory.decide_all(&list, now);
        for ((i, _), d) in memory.iter().zip(decisions) {
            verdicts.push(verdict(selected, *i, to_nanos(d), false));
        }
        if verdicts.iter().any(|v| !v.decision.allowed) {
            give_back(stores, &leased, &verdicts).await;
        }
    }
    verdicts
}

/// The leased policies' units back into their slices: the request was refused elsewhere.
/// `verdicts` begins with the leased policies' own, in the same order.
async fn give_back(stores: &Stores, leased: &[(usize, Leased<'_>)], verdicts: &[Verdict<'_>]) {
    for ((_, l), v) in leased.iter().zip(verdicts) {
        if v.decision.allowed && !v.fallback {
            stores.leases.give_back(l).await;
        }
    }
}

/// A Redis policy's `on_store_error` while its store cannot answer: `deny` asks for a wait of
/// the breaker's cooldown left (at least 1 ns), or a second with no store at all.
fn fallback<'s>(
    selected: &'s [(&'s Arc<CompiledPolicy>, String)],
    i: usize,
    store: Option<&RedisStore>,
    stores: &Stores,
) -> Verdict<'s> {
    let wait = store.map_or(1_000_000_000, |s| {
        s.breaker.cooldown_left(stores.ticks.mono()).max(1)
    });
    let d = match selected[i].0.on_store_error {
        OnStoreError::Allow => Decision {
            allowed: true,
            remaining: 0,
            retry_after_nanos: 0,
            reset_nanos: 0,
        },
        OnStoreError::Deny => Decision {
            allowed: false,
            remaining: 0,
            retry_after_nanos: wait,
            reset_nanos: 0,
        },
    };
    verdict(selected, i, d, true)
}

fn verdict<'s>(
    selected: &'s [(&'s Arc<CompiledPolicy>, String)],
    i: usize,
    decision: Decision,
    fallback: bool,
) -> Verdict<'s> {
    Verdict {
        policy: selected[i].0,
        selected: i,
        decision,
        fallback,
    }
}

/// The verdict that speaks for the request ([`crate::ratelimit::tightest`]).
fn tightest(verdicts: &[Verdict]) -> Option<usize> {
    crate::ratelimit::tightest(verdicts.iter().map(|v| (&v.decision, v.fallback)))
}

/// `RateLimit-Policy` and `RateLimit` (and the legacy trio when asked) for one policy's decision.
pub fn headers(policy: &CompiledPolicy, decision: &Decision, legacy: bool) -> LimitFields {
    let reset = reset_secs(decision);
    let mut out = LimitFields::new();
    if let Some(item) = &policy.policy_item {
        out.push((RATELIMIT_POLICY.clone(), item.clone()));
    }
    // Written piece by piece, numbers with `itoa`: `format!` and `to_string` cost every limited
    // request over a thousand instructions here (docs/PERFORMANCE.md).
    let mut digits = itoa::Buffer::new();
    let mut push = |name: &HeaderName, value: String| {
        if let Ok(v) = HeaderValue::try_from(value) {
            out.push((name.clone(), v));
        }
    };
    // Made to its exact length: a value made from a string with room to spare copies it.
    let mut reset_digits = itoa::Buffer::new();
    let (r, t) = (
        digits.format(decision.remaining),
        reset_digits.format(reset),
    );
    let mut current = String::with_capacity(policy.id.len() + r.len() + t.len() + 8);
    current.push('"');
    current.push_str(&policy.id);
    current.push_str("\";r=");
    current.push_str(r);
    current.push_str(";t=");
    current.push_str(t);
    push(&RATELIMIT, current);
    if legacy {
        push(
            &X_RATELIMIT_LIMIT,
            digits.format(policy.header_quota).to_owned(),
        );
        push(
            &X_RATELIMIT_REMAINING,
            digits.format(decision.remaining).to_owned(),
        );
        push(&X_RATELIMIT_RESET, digits.format(reset).to_owned());
    }
    out
}

/// The policies of `limits` that apply to a request on `route` from `identity` — its tier (or
/// the default tier), then its key parts (`when_missing`) — each with the subject its counter is
/// kept under. The stage decides on these; the simulator's prediction selects with this same
/// rule, so the two can only differ in the decision, never in what is counted.
pub fn select<'l>(
    limits: &'l CompiledRateLimits,
    route: Option<&str>,
    identity: Option<&Identity>,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Selected<'l> {
    let candidates = limits.policies_for(route);
    let tier = identity
        .and_then(|i| i.tier.as_deref())
        .or(limits.default_tier.as_deref());
    let request = KeyFacts {
        route,
        identity,
        headers,
        peer,
        limits,
    };
    let mut selected = Selected::new();
    let mut client_ip = None;
    for policy in candidates.iter().filter(|p| p.applies_to_tier(tier)) {
        if let Some(subject) = subject_of(policy, &request, &mut client_ip) {
            selected.push((policy, subject));
        }
    }
    selected
}

/// What a policy's key parts read of a request.
struct KeyFacts<'r> {
    route: Option<&'r str>,
    identity: Option<&'r Identity>,
    headers: &'r HeaderMap,
    peer: IpAddr,
    limits: &'r CompiledRateLimits,
}

/// The counter's subject for `policy`, or `None` when the policy does not apply (a key part is
/// missing and the policy says `skip`).
fn subject_of(
    policy: &CompiledPolicy,
    request: &KeyFacts<'_>,
    client_ip: &mut Option<IpAddr>,
) -> Option<String> {
    // Room for a typical key, so that building it does not grow the string.
    let mut out = String::with_capacity(48);
    let mut ip = |out: &mut String| {
        let addr = *client_ip
            .get_or_insert_with(|| client_ip_of(request.peer, request.headers, request.limits));
        let _ = write!(out, "ip:{addr}");
    };
    for part in &policy.key {
        if !out.is_empty() {
            out.push(',');
        }
        let identity = request.identity;
        // Pushed as text, not through `write!`: the formatting machinery cost more than the key.
        let mut tagged = |tag: &str, text: &str| {
            out.push_str(tag);
            out.push_str(text);
        };
        let found = match part {
            KeyPart::ApiKey => identity
                .and_then(|i| i.api_key_id.as_deref())
                .map(|k| tagged("key:", k)),
            KeyPart::Subject => identity
                .map(|i| i.subject.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| tagged("sub:", s)),
            KeyPart::Tenant => identity
                .and_then(|i| i.tenant.as_deref())
                .map(|t| tagged("tenant:", t)),
            KeyPart::ClientIp => {
                ip(&mut out);
                Some(())
            }
            KeyPart::Route => request.route.map(|r| tagged("route:", r)),
            // Header values may be secrets: only their digest is kept, stored or logged.
            KeyPart::Header(name) => request
                .headers
                .get(name)
                .map(|v| tagged("h:", &digest(v.as_bytes()))),
        };
        if found.is_none() {
            match policy.when_missing {
                WhenMissing::Skip => return None,
                WhenMissing::ClientIp => ip(&mut out),
            }
        }
    }
    if out.len() > MAX_SUBJECT {
        out = format!("sha256:{}", digest(out.as_bytes()));
    }
    Some(out)
}

/// The first 16 hex digits of SHA-256: stable across gateway processes, one-way.
fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(16);
    for b in &hash[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The client's address: the socket peer, unless the peer is a trusted proxy — then the
/// right-most address of the forwarded header that is not itself a trusted proxy. IPv6 addresses
/// are cut to the configured prefix.
pub fn client_ip_of(peer: IpAddr, headers: &HeaderMap, limits: &CompiledRateLimits) -> IpAddr {
    let trusted = |ip: IpAddr| limits.trusted_proxies.iter().any(|c| c.contains(ip));
    let mut client = peer;
    if trusted(peer) {
        if let Some(name) = &limits.client_ip_header {
            let hops = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in hops.iter().rev() {
                match hop.parse::<IpAddr>() {
                    Ok(ip) => {
                        client = ip;
                        if !trusted(ip) {
                            break;
                        }
                    }
                    // An address we cannot read: trust stops at the last hop we could.
                    Err(_) => break,
                }
            }
        }
    }
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => mask(client, limits.ipv6_prefix),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ratelimit::{RawRateLimits, compile};
    use crate::ratelimit::NEVER;

    fn limits(yaml: &str) -> CompiledRateLimits {
        let raw: RawRateLimits = serde_yaml_ng::from_str(yaml).expect("schema");
        let mut problems = Vec::new();
        let c = compile(&raw, &[], &Default::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        c
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let l = limits(
            "legacy_headers: true\npolicies: [{id: free, algorithm: fixed-window, limit: 60, period: 1m, key: client_ip}]",
        );
        let d = Decision {
            allowed: true,
            remaining: 41,
            retry_after_nanos: 0,
            reset_nanos: 12_300_000_000,
        };
        let h = headers(&l.policies[0], &d, true);
        let text: Vec<String> = h
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("")))
            .collect();
        assert_eq!(
            text,
            [
                "ratelimit-policy: \"free\";q=60;w=60",
                "ratelimit: \"free\";r=41;t=13",
                "x-ratelimit-limit: 60",
                "x-ratelimit-remaining: 41",
                "x-ratelimit-reset: 13",
            ]
        );
    }

    #[test]
    fn the_client_ip_comes_from_the_forwarded_header_only_through_trusted_proxies() {
        let l = limits("trusted_proxies: [10.0.0.0/8]\n");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"),
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Through two trusted hops, the first untrusted address from the right.
        assert_eq!(client_ip_of(ip("10.1.1.1"), &h, &l), ip("1.2.3.4"));
        // From an untrusted peer the header is ignored.
        assert_eq!(client_ip_of(ip("8.8.8.8"), &h, &l), ip("8.8.8.8"));
        // IPv6 clients count per /64.
        assert_eq!(
            client_ip_of(ip("2001:db8::1:2:3:4"), &HeaderMap::new(), &l),
            ip("2001:db8::")
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.0.0.9"),
        );
        assert_eq!(client_ip_of(ip("10.1.1.1"), &h, &l), ip("10.0.0.9"));
    }

    #[test]
    fn the_tightest_is_the_longest_refusal_else_the_least_remaining() {
        let l = limits(
            "policies: [{id: a, algorithm: gcra, limit: 5, period: 1s, key: client_ip}, {id: b, algorithm: gcra, limit: 5, period: 1s, key: client_ip}]",
        );
        let v = |i: usize, allowed, remaining, retry| Verdict {
            policy: &l.policies[i],
            selected: i,
            decision: Decision {
                allowed,
                remaining,
                retry_after_nanos: retry,
                reset_nanos: 0,
            },
            fallback: false,
        };
        assert_eq!(tightest(&[v(0, true, 3, 0), v(1, true, 1, 0)]), Some(1));
        assert_eq!(tightest(&[v(0, false, 0, 5), v(1, true, 0, 0)]), Some(0));
        assert_eq!(tightest(&[v(0, false, 0, 5), v(1, false, 0, 9)]), Some(1));
        assert_eq!(tightest(&[v(0, false, 0, NEVER)]), Some(0));
    }
}
