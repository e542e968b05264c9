//! The lab against reality: the config's own rate-limit policies run in virtual time on the
//! requests of a replay, at the times they were sent, next to what the real gateway decided
//! (`replay --predict`; docs/replay.md, "Fixtures and prediction").
//!
//! Nothing here re-implements a limit. The counters are the gateway's own memory store
//! (`gateway::ratelimit::store::memory::MemoryStore`) holding the compiled policies' own limiters
//! over store ticks, asked all-or-nothing per request as the `ratelimit` stage asks it; the
//! policies that select a request, and the subject each counts it under, come from the stage's
//! own `stage::ratelimit::select`.
//! What this module adds is the request's facts as the stage would have seen them:
//!
//! - it counts only requests that **reached** the `ratelimit` stage — the outcome's decision did
//!   not stop at `tls`, `authn` or `authz` (a bad token, a missing scope); a request without a
//!   decision (a `--target` run without a record stream) is not counted either;
//! - the **route** is the outcome's decision's route;
//! - the **identity** (subject, tenant, tier, API key id) is the exchange's first valid credential
//!   reference, when the route has `auth` (a public route authenticates no one);
//! - **actual** is the outcome's `decision.limit`: refused by policy P when the gateway answered
//!   429 `quota-exceeded` naming P; admitted by P otherwise, among the requests P selects.
//!
//! Redis policies are predicted with the same algorithms as if their store always answered.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use gateway::config::Runtime;
use gateway::config::ratelimit::{CompiledPolicy, StoreKind};
use gateway::ratelimit::Decision as LimitVerdict;
use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::memory::MemoryStore;
use gateway::ratelimit::store::{Check, TICK_NANOS, to_nanos};
use gateway::stage::ratelimit::select;
use gateway::vocab::{Identity, StageId};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::model::{Decision, Exchange, ExchangeOutcome};
use gateway::record::recording::format::CredentialKind;

/// One policy: what the lab predicted and what the gateway did, over the requests it selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyPrediction {
    pub id: String,
    pub algorithm: String,
    pub predicted_admitted: u64,
    pub predicted_refused: u64,
    pub actual_admitted: u64,
    pub actual_refused: u64,
    /// `|predicted_refused − actual_refused|` as a share of the requests the policy selected
    /// (0 when it selected none): 0.01 is 1 %.
    pub difference: f64,
    /// Requests whose fate under this policy the lab got wrong, one by one (the difference can
    /// hide errors that cancel out).
    pub disagreements: u64,
}

/// Every policy of the config, in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub policies: Vec<PolicyPrediction>,
    /// Requests that reached the `ratelimit` stage: what both sides counted.
    pub counted: u64,
    /// Requests the gateway stopped before it (authn, authz, tls): counted by neither.
    pub stopped_before: u64,
    /// Outcomes without a gateway decision (no record stream) or without their exchange.
    pub unknown: u64,
}

impl Prediction {
    /// The largest difference over the policies (0 with none).
    pub fn worst_difference(&self) -> f64 {
        self.policies
            .iter()
            .map(|p| p.difference)
            .fold(0.0, f64::max)
    }

    /// The table `replay --predict` prints.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "prediction: the lab's rate limits in virtual time against the gateway ({} requests reached ratelimit, {} stopped before, {} unknown)",
            self.counted, self.stopped_before, self.unknown
        );
        let width = self
            .policies
            .iter()
            .map(|p| p.id.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<width$}  {:<22}  {:>9} {:>9}  {:>9} {:>9}  {:>10}",
            "policy", "algorithm", "predicted", "refused", "actual", "refused", "difference"
        );
        for p in &self.policies {
            let _ = writeln!(
                out,
                "{:<width$}  {:<22}  {:>9} {:>9}  {:>9} {:>9}  {:>9.2}%",
                p.id,
                p.algorithm,
                p.predicted_admitted,
                p.predicted_refused,
                p.actual_admitted,
                p.actual_refused,
                p.difference * 100.0
            );
        }
        out
    }
}

/// How the replay met the gateway: what the lab needs beyond the requests to stand where the
/// gateway stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    /// The wall time of the run's start (`sent_ns` 0), in microseconds since the Unix epoch:
    /// the gateway's store ticks, so fixed and sliding-counter windows line up as the gateway's
    /// did. 0 lines windows up with the run's start instead.
    pub origin_unix_micros: u64,
    /// The address the gateway saw the replay's requests come from.
    pub peer: IpAddr,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            origin_unix_micros: 0,
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// [`predict_with`] with windows lined up with the run's start and a loopback peer.
pub fn predict(
    runtime: &Runtime,
    exchanges: &[Exchange],
    outcomes: &[ExchangeOutcome],
) -> Prediction {
    predict_with(runtime, exchanges, outcomes, &PredictOptions::default())
}

/// Whether a request the gateway decided reached the `ratelimit` stage.
pub fn reached_ratelimit(decision: &Decision) -> bool {
    match decision.stopped_at.as_deref().map(StageId::parse) {
        None => true,
        Some(Some(stage)) => stage >= StageId::Ratelimit,
        // A stage this simulator does not know: not a stop before ratelimit that it can name.
        Some(None) => true,
    }
}

/// The identity `authn` established for `exchange` on `route`: the first valid credential
/// reference's, when the route has `auth`; none on a public route or without a route.
pub fn identity_on_route<'e>(
    runtime: &Runtime,
    route: Option<&str>,
    exchange: &'e Exchange,
) -> Option<&'e Identity> {
    let route = runtime
        .routes
        .routes()
        .iter()
        .find(|r| Some(&*r.name) == route)?;
    runtime.auth.route(route.declaration_index)?;
    valid_identity(exchange)
}

/// The identity of the exchange's first credential the gateway accepted (bearer or API key).
pub fn valid_identity(exchange: &Exchange) -> Option<&Identity> {
    exchange
        .credentials
        .iter()
        .filter(|c| matches!(c.kind, CredentialKind::Bearer | CredentialKind::ApiKey))
        .find(|c| c.invalid.is_none())
        .and_then(|c| c.identity.as_ref())
}

/// The exchange's headers as the gateway would have read them (unreadable ones left out).
pub fn header_map(exchange: &Exchange) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &exchange.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// Decides one request's selected policies in the lab's store at `now_ticks`, as the stage
/// does: the Redis group first, the memory group only if it admitted; all-or-nothing within a
/// group. Returns the index (into `selected`) of the policy the gateway would name in a refusal.
pub fn decide(
    store: &MemoryStore,
    selected: &[(&Arc<CompiledPolicy>, String)],
    now_ticks: u64,
) -> Option<usize> {
    let mut verdicts: Vec<(usize, LimitVerdict)> = Vec::with_capacity(selected.len());
    for kind in [StoreKind::Redis, StoreKind::Memory] {
        let group: Vec<usize> = (0..selected.len())
            .filter(|&i| selected[i].0.store == kind)
            .collect();
        if group.is_empty() {
            continue;
        }
        let checks: Vec<Check<'_>> = group
            .iter()
            .map(|&i| Check {
                policy: &selected[i].0.store_key,
                subject: &selected[i].1,
                limiter: &selected[i].0.limiter,
                cost: selected[i].0.cost,
            })
            .collect();
        let decisions = store.decide_all(&checks, now_ticks);
        verdicts.extend(group.into_iter().zip(decisions.into_iter().map(to_nanos)));
        if verdicts.iter().any(|(_, d)| !d.allowed) {
            break;
        }
    }
    named_refusal(&verdicts)
}

/// The refusal a 429 names: the gateway's own rule ([`gateway::ratelimit::tightest`]) over the
/// store's verdicts (prediction knows no store failure, so no fallback).
fn named_refusal(verdicts: &[(usize, LimitVerdict)]) -> Option<usize> {
    gateway::ratelimit::tightest(verdicts.iter().map(|(_, d)| (d, false)))
        .filter(|&i| !verdicts[i].1.allowed)
        .map(|i| verdicts[i].0)
}

/// Whether the gateway refused the request for `policy` (a 429 `quota-exceeded` naming it).
fn actually_refused_by(decision: &Decision, policy: &str) -> bool {
    let refused = decision.status == 429 || decision.reason.as_deref() == Some("quota-exceeded");
    refused
        && decision
            .limit
            .as_ref()
            .is_some_and(|l| &*l.policy == policy)
}

#[derive(Default)]
struct Tally {
    selected: u64,
    predicted_refused: u64,
    actual_refused: u64,
    disagreements: u64,
}

/// Runs the config's policies over the replay's requests at their sent times and sets them next
/// to the gateway's decisions. `outcomes` are matched to `exchanges` by position.
pub fn predict_with(
    runtime: &Runtime,
    exchanges: &[Exchange],
    outcomes: &[ExchangeOutcome],
    options: &PredictOptions,
) -> Prediction {
    let limits = &runtime.rate_limits;
    let by_position: HashMap<u64, &Exchange> = exchanges.iter().map(|e| (e.position, e)).collect();
    let mut order: Vec<&ExchangeOutcome> = outcomes.iter().collect();
    order.sort_by_key(|o| (o.sent_ns, o.position));
    let store = MemoryStore::new(limits.max_keys, RateLimitMetrics::default());
    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    let (mut counted, mut stopped_before, mut unknown) = (0u64, 0u64, 0u64);

    for outcome in order {
        let (Some(decision), Some(exchange)) = (
            outcome.decision.as_ref(),
            by_position.get(&outcome.position),
        ) else {
            unknown += 1;
            continue;
        };
        if !reached_ratelimit(decision) {
            stopped_before += 1;
            continue;
        }
        counted += 1;
        let route = decision.route.as_deref();
        let identity = identity_on_route(runtime, route, exchange);
        let headers = header_map(exchange);
        let selected = select(limits, route, identity, &headers, options.peer);
        if selected.is_empty() {
            continue;
        }
        let now = options.origin_unix_micros + outcome.sent_ns / TICK_NANOS;
        let named = decide(&store, &selected, now);
        for (i, (policy, _)) in selected.iter().enumerate() {
            let tally = tallies.entry(&policy.id).or_default();
            tally.selected += 1;
            let predicted = named == Some(i);
            let actual = actually_refused_by(decision, &policy.id);
            tally.predicted_refused += u64::from(predicted);
            tally.actual_refused += u64::from(actual);
            tally.disagreements += u64::from(predicted != actual);
        }
    }

    let policies = limits
        .policies
        .iter()
        .map(|p| {
            let t = tallies.remove(&*p.id).unwrap_or_default();
            let difference = if t.selected == 0 {
                0.0
            } else {
                t.predicted_refused.abs_diff(t.actual_refused) as f64 / t.selected as f64
            };
            PolicyPrediction {
                id: p.id.to_string(),
                algorithm: p.algorithm.as_str().to_owned(),
                predicted_admitted: t.selected - t.predicted_refused,
                predicted_refused: t.predicted_refused,
                actual_admitted: t.selected - t.actual_refused,
                actual_refused: t.actual_refused,
                difference,
                disagreements: t.disagreements,
            }
        })
        .collect();
    Prediction {
        policies,
        counted,
        stopped_before,
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use gateway::record::recording::format::{CredentialPlace, CredentialRef};
    use gateway::vocab::LimitDecision;

    use super::*;

    const CONFIG: &str = r#"
listeners: [{name: public, address: "127.0.0.1:8080"}]
auth:
  issuers:
    - name: main
      issuer: https://issuer.gatehouse.test/
      jwks_url: http://127.0.0.1:9200/.well-known/jwks.json
      audiences: [gatehouse-api]
rate_limits:
  tiers: [paid, free]
  policies:
    - {id: free-per-second, algorithm: fixed-window, limit: 3, period: 1s, key: subject, tiers: [free]}
    - {id: beta, algorithm: token-bucket, limit: 2, period: 1s, key: subject, routes: [beta]}
    - {id: per-ip, algorithm: sliding-log, limit: 100, period: 1s, key: client_ip}
upstreams:
  svc: {instances: ["127.0.0.1:9101"]}
routes:
  - {name: users, match: {path: /users/*}, upstream: svc, auth: {}}
  - {name: beta, match: {path: /beta/*}, upstream: svc, auth: {}}
  - {name: public, match: {path: /public/*}, upstream: svc}
"#;

    fn runtime() -> Runtime {
        match gateway::config::load_str("predict.yaml", CONFIG) {
            Ok(r) => r,
            Err(problems) => panic!("{problems:?}"),
        }
    }

    fn exchange(
        position: u64,
        path: &str,
        subject: &str,
        tier: &str,
        invalid: Option<&str>,
    ) -> Exchange {
        Exchange {
            position,
            id: format!("r-{position}"),
            unix_nanos: 0,
            client: subject.into(),
            connection: None,
            method: "GET".into(),
            target: path.into(),
            version: "HTTP/1.1".into(),
            headers: vec![("authorization".into(), "<redacted>".into())],
            body: Vec::new(),
            body_truncated: false,
            tls: None,
            credentials: vec![CredentialRef {
                kind: CredentialKind::Bearer,
                place: CredentialPlace::Header("authorization".into()),
                scheme: Some("Bearer".into()),
                identity: Some(Identity {
                    subject: subject.into(),
                    tier: Some(tier.into()),
                    ..Identity::default()
                }),
                issuer: None,
                audience: None,
                expires_in_s: None,
                invalid: invalid.map(str::to_owned),
            }],
            recorded: None,
            response: None,
        }
    }

    /// An outcome as the gateway decided it: `refused_by` names the policy of a 429.
    fn outcome(
        e: &Exchange,
        route: &str,
        sent_ms: u64,
        refused_by: Option<&str>,
        stopped: Option<&str>,
    ) -> ExchangeOutcome {
        let status = match (refused_by, stopped) {
            (Some(_), _) => 429,
            (None, Some(_)) => 401,
            (None, None) => 200,
        };
        ExchangeOutcome {
            id: e.id.clone(),
            position: e.position,
            method: e.method.clone(),
            path: e.target.clone(),
            status: Some(status),
            error: None,
            decision: Some(Decision {
                route: Some(route.into()),
                upstream: None,
                upstream_path: None,
                status,
                stopped_at: refused_by
                    .map(|_| "ratelimit".to_owned())
                    .or(stopped.map(str::to_owned)),
                reason: refused_by.map(|_| "quota-exceeded".to_owned()),
                limit: refused_by.map(|p| LimitDecision {
                    policy: p.into(),
                    subject: String::new(),
                    remaining: 0,
                    retry_after_secs: Some(1),
                    store_fallback: false,
                }),
            }),
            response: None,
            scheduled_ns: sent_ms * 1_000_000,
            sent_ns: sent_ms * 1_000_000,
            latency_ns: 0,
        }
    }

    fn policy<'p>(p: &'p Prediction, id: &str) -> &'p PolicyPrediction {
        p.policies.iter().find(|x| x.id == id).expect("the policy")
    }

    #[test]
    fn a_free_burst_is_predicted_exactly_as_the_gateway_refused_it() {
        let runtime = runtime();
        // Five requests in one second from one free user: the fixed window admits three.
        let exchanges: Vec<Exchange> = (1..=5)
            .map(|i| exchange(i, "/users/1", "f1", "free", None))
            .collect();
        let outcomes: Vec<ExchangeOutcome> = exchanges
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let refused = (i >= 3).then_some("free-per-second");
                outcome(e, "users", 100 + i as u64 * 10, refused, None)
            })
            .collect();
        let p = predict(&runtime, &exchanges, &outcomes);
        let free = policy(&p, "free-per-second");
        assert_eq!((free.predicted_admitted, free.predicted_refused), (3, 2));
        assert_eq!((free.actual_admitted, free.actual_refused), (3, 2));
        assert_eq!(free.difference, 0.0);
        assert_eq!(free.disagreements, 0);
        // The per-IP policy saw them all and refused none; beta selected none.
        let ip = policy(&p, "per-ip");
        assert_eq!((ip.predicted_admitted, ip.predicted_refused), (5, 0));
        assert_eq!(policy(&p, "beta").predicted_admitted, 0);
        assert_eq!(p.counted, 5);
    }

    #[test]
    fn requests_stopped_before_ratelimit_or_without_a_decision_are_not_counted() {
        let runtime = runtime();
        let exchanges = vec![
            exchange(1, "/users/1", "f1", "free", Some("token-expired")),
            exchange(2, "/users/1", "f1", "free", None),
        ];
        let mut outcomes = vec![
            outcome(&exchanges[0], "users", 0, None, Some("authn")),
            outcome(&exchanges[1], "users", 1, None, None),
        ];
        outcomes.push(ExchangeOutcome {
            decision: None,
            ..outcome(&exchanges[1], "users", 2, None, None)
        });
        let p = predict(&runtime, &exchanges, &outcomes);
        assert_eq!((p.counted, p.stopped_before, p.unknown), (1, 1, 1));
        assert_eq!(policy(&p, "free-per-second").predicted_admitted, 1);
    }

    #[test]
    fn a_public_route_authenticates_no_one_so_tier_policies_do_not_apply() {
        let runtime = runtime();
        let exchanges: Vec<Exchange> = (1..=5)
            .map(|i| exchange(i, "/public/1", "f1", "free", None))
            .collect();
        let outcomes: Vec<ExchangeOutcome> = exchanges
            .iter()
            .map(|e| outcome(e, "public", e.position, None, None))
            .collect();
        let p = predict(&runtime, &exchanges, &outcomes);
        assert_eq!(policy(&p, "free-per-second").predicted_admitted, 0);
        assert_eq!(policy(&p, "per-ip").predicted_admitted, 5);
    }

    #[test]
    fn a_refusal_is_named_for_the_longest_wait_and_a_wrong_guess_is_a_difference() {
        let runtime = runtime();
        // A free user on beta: the bucket (2 at once, one more every 500 ms) and the fixed
        // window (3 per second) both select it.
        let exchanges: Vec<Exchange> = (1..=4)
            .map(|i| exchange(i, "/beta/1", "f1", "free", None))
            .collect();
        // The gateway (say) refused the third for beta and admitted the fourth.
        let outcomes: Vec<ExchangeOutcome> = exchanges
            .iter()
            .enumerate()
            .map(|(i, e)| outcome(e, "beta", i as u64, (i == 2).then_some("beta"), None))
            .collect();
        let p = predict(&runtime, &exchanges, &outcomes);
        let beta = policy(&p, "beta");
        // The lab refuses the third and the fourth for beta (the bucket's wait is longer than
        // the window's, which never refused: nothing was charged for the third).
        assert_eq!(beta.predicted_refused, 2);
        assert_eq!(beta.actual_refused, 1);
        assert_eq!(beta.disagreements, 1);
        assert!((beta.difference - 0.25).abs() < 1e-9, "{}", beta.difference);
        assert!((p.worst_difference() - 0.25).abs() < 1e-9);
        let text = p.render_text();
        assert!(text.contains("beta"), "{text}");
        assert!(text.contains("25.00%"), "{text}");
        let back: Prediction =
            serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("reads back");
        assert_eq!(back, p);
    }

    #[test]
    fn the_named_refusal_is_the_longest_wait() {
        let d = |allowed, retry| LimitVerdict {
            allowed,
            remaining: 0,
            retry_after_nanos: retry,
            reset_nanos: 0,
        };
        assert_eq!(named_refusal(&[(0, d(true, 0)), (1, d(true, 0))]), None);
        assert_eq!(
            named_refusal(&[(0, d(false, 5)), (1, d(false, 9))]),
            Some(1)
        );
        assert_eq!(named_refusal(&[(0, d(false, 9)), (1, d(true, 0))]), Some(0));
    }
}
