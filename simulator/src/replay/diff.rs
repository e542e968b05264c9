//! Two runs of one recording compared request by request: the config review of `--against`.
//! Pure functions over the runs' outcomes; the engine runs the recording twice and hands both
//! runs here, and the report, the JUnit file and the HTML page render the [`ConfigDiff`].

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::{Decision, ExchangeOutcome, Pairing, RequestRef};

/// The flags of `replay` that compare two configs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    /// Replay the recording through this config too and compare it, request by request, with
    /// the run through `--config`.
    #[arg(long, value_name = "NEW.yaml")]
    pub against: Option<PathBuf>,
    /// The share of changed requests (0 to 1) above which the replay exits 4.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub max_changed: f64,
    /// Write every changed request as JSON here.
    #[arg(long, value_name = "FILE")]
    pub changed: Option<PathBuf>,
    /// The transition groups the review must find, exactly, with their counts (docs/replay.md);
    /// any difference exits 4, whatever `--max-changed` allows.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Write the transition groups the review found as an expectations file, to read and commit.
    #[arg(long, value_name = "FILE")]
    pub write_expect: Option<PathBuf>,
}

/// How many example requests each transition group keeps.
pub const EXAMPLES: usize = 5;

/// Where a request ended up, as the summary groups it: its route and where (and why) it stopped;
/// both `None` for one that went all the way through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Transition {
    pub route: Option<String>,
    pub stopped_at: Option<String>,
    pub reason: Option<String>,
}

impl fmt::Display for Transition {
    /// `orders: passed`, `orders: ratelimit/quota-exceeded`, `(no route): route/no-route`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = self.route.as_deref().unwrap_or("(no route)");
        match (&self.stopped_at, &self.reason) {
            (None, None) => write!(f, "{route}: passed"),
            (Some(stage), Some(reason)) => write!(f, "{route}: {stage}/{reason}"),
            (Some(stage), None) => write!(f, "{route}: {stage}"),
            (None, Some(reason)) => write!(f, "{route}: {reason}"),
        }
    }
}

/// The rate-limit decision as a config review compares it: which policy spoke for the request
/// and whether it refused. `remaining`, the retry wait and the subject are left out: they move
/// with the traffic on their own, not with the config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LimitVerdict {
    pub policy: String,
    pub refused: bool,
}

impl fmt::Display for LimitVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.refused { "refused" } else { "admitted" };
        write!(f, "{verb} by {}", self.policy)
    }
}

/// What one run decided for one request, the fields compared. A run that could not see the
/// gateway's records knows only the status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_path: Option<String>,
    /// Absent when the request failed without a status (then `error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// False when the run had no gateway record for the request (only the status is known).
    pub recorded: bool,
}

impl DecisionView {
    pub fn of(outcome: &ExchangeOutcome) -> Self {
        match &outcome.decision {
            Some(Decision {
                route,
                upstream,
                upstream_path,
                status,
                stopped_at,
                reason,
                limit,
            }) => DecisionView {
                route: route.clone(),
                upstream: upstream.clone(),
                upstream_path: upstream_path.clone(),
                status: Some(*status),
                stopped_at: stopped_at.clone(),
                reason: reason.clone(),
                limit: limit.as_ref().map(|l| LimitVerdict {
                    policy: l.policy.to_string(),
                    // The gateway states a wait only when it refused.
                    refused: l.retry_after_secs.is_some(),
                }),
                error: outcome.error.clone(),
                recorded: true,
            },
            None => DecisionView {
                status: outcome.status,
                error: outcome.error.clone(),
                ..DecisionView::default()
            },
        }
    }

    pub fn transition(&self) -> Transition {
        Transition {
            route: self.route.clone(),
            stopped_at: self.stopped_at.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// A compared field, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Route,
    Upstream,
    UpstreamPath,
    Status,
    StoppedAt,
    Reason,
    Limit,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::Route,
        Field::Upstream,
        Field::UpstreamPath,
        Field::Status,
        Field::StoppedAt,
        Field::Reason,
        Field::Limit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Route => "route",
            Field::Upstream => "upstream",
            Field::UpstreamPath => "upstream_path",
            Field::Status => "status",
            Field::StoppedAt => "stopped_at",
            Field::Reason => "reason",
            Field::Limit => "limit",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields that differ between two views. When either run lacks the gateway's record only
/// the status is compared: the other fields are unknown there, not changed.
pub fn changed_fields(before: &DecisionView, after: &DecisionView) -> Vec<Field> {
    let both_recorded = before.recorded && after.recorded;
    Field::ALL
        .into_iter()
        .filter(|field| both_recorded || *field == Field::Status)
        .filter(|field| match field {
            Field::Route => before.route != after.route,
            Field::Upstream => before.upstream != after.upstream,
            Field::UpstreamPath => before.upstream_path != after.upstream_path,
            Field::Status => before.status != after.status,
            Field::StoppedAt => before.stopped_at != after.stopped_at,
            Field::Reason => before.reason != after.reason,
            Field::Limit => before.limit != after.limit,
        })
        .collect()
}

/// One request the two configs decided differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedRequest {
    pub id: String,
    pub method: String,
    pub path: String,
    pub before: DecisionView,
    pub after: DecisionView,
    pub fields: Vec<Field>,
}

/// Every changed request that went from one place to another, counted, with its first examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionGroup {
    pub before: Transition,
    pub after: Transition,
    pub count: u64,
    /// The fields that changed in any of its requests, in pipeline order.
    pub fields: Vec<Field>,
    /// The first [`EXAMPLES`] requests, in the baseline's order.
    pub examples: Vec<RequestRef>,
}

impl TransitionGroup {
    /// `orders: passed → orders: ratelimit/quota-exceeded`.
    pub fn title(&self) -> String {
        format!("{} → {}", self.before, self.after)
    }
}

/// Which run a request is missing from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Run {
    Baseline,
    Candidate,
}

impl Run {
    pub fn as_str(self) -> &'static str {
        match self {
            Run::Baseline => "baseline",
            Run::Candidate => "candidate",
        }
    }
}

/// A request only one run has an outcome for (the other was interrupted, or never sent it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRequest {
    #[serde(flatten)]
    pub request: RequestRef,
    pub only_in: Run,
}

/// Two runs of one recording compared request by request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// Requests both runs have an outcome for.
    pub compared: u64,
    /// Of those, the ones decided differently.
    pub changed: u64,
    pub missing: Vec<MissingRequest>,
    /// Most requests first; ties by transition, so the order is the same on every run.
    pub groups: Vec<TransitionGroup>,
    /// Every changed request, in the baseline's order.
    pub requests: Vec<ChangedRequest>,
}

/// Compares the candidate config's run with the baseline's, matching requests by id.
pub fn diff_decisions(baseline: &[ExchangeOutcome], candidate: &[ExchangeOutcome]) -> ConfigDiff {
    let pairing = Pairing::by_id(baseline, candidate);
    let mut requests = Vec::new();
    for (before, after) in &pairing.pairs {
        let (before_view, after_view) = (DecisionView::of(before), DecisionView::of(after));
        let fields = changed_fields(&before_view, &after_view);
        if !fields.is_empty() {
            requests.push(ChangedRequest {
                id: before.id.clone(),
                method: before.method.clone(),
                path: before.path.clone(),
                before: before_view,
                after: after_view,
                fields,
            });
        }
    }
    let missing = pairing
        .only_baseline
        .iter()
        .map(|o| (o, Run::Baseline))
        .chain(pairing.only_candidate.iter().map(|o| (o, Run::Candidate)))
        .map(|(outcome, only_in)| MissingRequest {
            request: RequestRef::from(*outcome),
            only_in,
        })
        .collect();
    ConfigDiff {
        compared: pairing.pairs.len() as u64,
        changed: requests.len() as u64,
        missing,
        groups: group(&requests),
        requests,
    }
}

fn group(requests: &[ChangedRequest]) -> Vec<TransitionGroup> {
    let mut groups: BTreeMap<(Transition, Transition), TransitionGroup> = BTreeMap::new();
    for request in requests {
        let (before, after) = (request.before.transition(), request.after.transition());
        let group = groups
            .entry((before.clone(), after.clone()))
            .or_insert_with(|| TransitionGroup {
                before,
                after,
                count: 0,
                fields: Vec::new(),
                examples: Vec::new(),
            });
        group.count += 1;
        for field in &request.fields {
            if !group.fields.contains(field) {
                group.fields.push(*field);
            }
        }
        if group.examples.len() < EXAMPLES {
            group.examples.push(RequestRef {
                id: request.id.clone(),
                method: request.method.clone(),
                path: request.path.clone(),
            });
        }
    }
    let mut groups: Vec<TransitionGroup> = groups.into_values().collect();
    for group in &mut groups {
        group.fields.sort();
    }
    // The map's order breaks ties between equal counts; the sort is stable.
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    groups
}

/// `12.5%`, `0.37%`, `0%`: a share as a percentage without float noise.
pub fn percent(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

impl ConfigDiff {
    /// The share of compared requests that changed, 0 to 1 (0 when nothing was compared).
    pub fn share(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.changed as f64 / self.compared as f64
        }
    }

    /// True when the share of changed requests is above `max_changed`: the replay exits 4.
    pub fn exceeds(&self, max_changed: f64) -> bool {
        self.share() > max_changed
    }

    /// The summary: a headline, then each transition group with its count, the fields that
    /// changed and its first examples, then the requests only one run has.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let missing = if self.missing.is_empty() {
            String::new()
        } else {
            format!(", {} in one run only", self.missing.len())
        };
        if self.changed == 0 {
            let _ = writeln!(
                out,
                "config diff: {} requests compared, none changed{missing}",
                self.compared
            );
        } else {
            let _ = writeln!(
                out,
                "config diff: {} requests compared, {} changed ({}){missing}",
                self.compared,
                self.changed,
                percent(self.share())
            );
        }
        let width = self.groups.first().map_or(1, |g| g.count.to_string().len());
        for group in &self.groups {
            let fields: Vec<&str> = group.fields.iter().map(|f| f.as_str()).collect();
            let _ = writeln!(
                out,
                "  {:>width$}  {}  [{}]",
                group.count,
                group.title(),
                fields.join(", ")
            );
            for example in &group.examples {
                let _ = writeln!(out, "  {:>width$}    {example}", "");
            }
            if group.count > group.examples.len() as u64 {
                let _ = writeln!(
                    out,
                    "  {:>width$}    … and {} more",
                    "",
                    group.count - group.examples.len() as u64
                );
            }
        }
        if !self.missing.is_empty() {
            let only = |run: Run| self.missing.iter().filter(|m| m.only_in == run).count();
            let _ = writeln!(
                out,
                "  in one run only: {} in the baseline's, {} in the candidate's",
                only(Run::Baseline),
                only(Run::Candidate)
            );
            for m in self.missing.iter().take(EXAMPLES) {
                let _ = writeln!(out, "      {}  ({} only)", m.request, m.only_in.as_str());
            }
            if self.missing.len() > EXAMPLES {
                let _ = writeln!(out, "      … and {} more", self.missing.len() - EXAMPLES);
            }
        }
        out
    }

    /// What `--changed FILE` holds: the counts, every changed request and the missing ones.
    pub fn changed_json(&self) -> serde_json::Value {
        serde_json::json!({
            "compared": self.compared,
            "changed": self.changed,
            "share": self.share(),
            "requests": self.requests,
            "missing": self.missing,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gateway::vocab::LimitDecision;

    /// An outcome the gateway forwarded on `route` (or stopped, when `stop` is given).
    pub(crate) fn outcome(
        id: &str,
        path: &str,
        route: Option<&str>,
        stop: Option<(&str, &str, u16)>,
    ) -> ExchangeOutcome {
        let status = stop.map_or(200, |(_, _, status)| status);
        ExchangeOutcome {
            id: id.to_owned(),
            position: 1,
            method: "GET".to_owned(),
            path: path.to_owned(),
            status: Some(status),
            error: None,
            decision: Some(Decision {
                route: route.map(str::to_owned),
                upstream: route.map(|_| "backend".to_owned()),
                upstream_path: route.map(|_| path.to_owned()),
                status,
                stopped_at: stop.map(|(stage, _, _)| stage.to_owned()),
                reason: stop.map(|(_, reason, _)| reason.to_owned()),
                limit: None,
            }),
            response: None,
            scheduled_ns: 0,
            sent_ns: 0,
            latency_ns: 1_000_000,
        }
    }

    pub(crate) fn limited(
        mut outcome: ExchangeOutcome,
        policy: &str,
        remaining: u64,
    ) -> ExchangeOutcome {
        let refused = outcome.status == Some(429);
        if let Some(decision) = &mut outcome.decision {
            decision.limit = Some(LimitDecision {
                policy: policy.into(),
                subject: "user-1".to_owned(),
                remaining,
                retry_after_secs: refused.then_some(3),
                store_fallback: false,
            });
        }
        outcome
    }

    const QUOTA: Option<(&str, &str, u16)> = Some(("ratelimit", "quota-exceeded", 429));
    const SCOPE: Option<(&str, &str, u16)> = Some(("authz", "insufficient-scope", 403));

    #[test]
    fn identical_runs_have_no_change_and_a_remaining_that_moves_is_not_one() {
        let before: Vec<_> = (0..5)
            .map(|i| {
                limited(
                    outcome(&format!("r{i}"), "/a", Some("a"), None),
                    "p",
                    10 - i,
                )
            })
            .collect();
        // The same decisions, the counter a little further along.
        let after: Vec<_> = (0..5)
            .map(|i| limited(outcome(&format!("r{i}"), "/a", Some("a"), None), "p", 3))
            .collect();
        let diff = diff_decisions(&before, &after);
        assert_eq!((diff.compared, diff.changed), (5, 0));
        assert!(diff.groups.is_empty() && diff.requests.is_empty() && diff.missing.is_empty());
        assert_eq!(diff.share(), 0.0);
        assert!(!diff.exceeds(0.0));
        assert_eq!(
            diff.render_text(),
            "config diff: 5 requests compared, none changed\n"
        );
    }

    #[test]
    fn a_changed_route_a_tightened_limit_and_a_new_scope_are_each_their_own_group() {
        let before = vec![
            outcome("r1", "/v1/users", Some("users"), None),
            outcome("r2", "/v1/users/7", Some("users"), None),
            limited(
                outcome("r3", "/orders", Some("orders"), None),
                "per-user",
                4,
            ),
            limited(
                outcome("r4", "/orders", Some("orders"), None),
                "per-user",
                3,
            ),
            limited(
                outcome("r5", "/orders", Some("orders"), None),
                "per-user",
                2,
            ),
            outcome("r6", "/admin", Some("admin"), None),
            outcome("r7", "/health", Some("health"), None),
        ];
        let after = vec![
            outcome("r1", "/v1/users", Some("users-v2"), None),
            outcome("r2", "/v1/users/7", Some("users-v2"), None),
            limited(
                outcome("r3", "/orders", Some("orders"), None),
                "per-user",
                0,
            ),
            limited(
                outcome("r4", "/orders", Some("orders"), QUOTA),
                "per-user",
                0,
            ),
            limited(
                outcome("r5", "/orders", Some("orders"), QUOTA),
                "per-user",
                0,
            ),
            outcome("r6", "/admin", Some("admin"), SCOPE),
            outcome("r7", "/health", Some("health"), None),
        ];
        let diff = diff_decisions(&before, &after);
        assert_eq!((diff.compared, diff.changed), (7, 5));
        let ids: Vec<&str> = diff.requests.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["r1", "r2", "r4", "r5", "r6"],
            "exactly the affected ones"
        );
        let titles: Vec<(String, u64)> = diff.groups.iter().map(|g| (g.title(), g.count)).collect();
        assert_eq!(
            titles,
            [
                (
                    "orders: passed → orders: ratelimit/quota-exceeded".to_owned(),
                    2
                ),
                ("users: passed → users-v2: passed".to_owned(), 2),
                (
                    "admin: passed → admin: authz/insufficient-scope".to_owned(),
                    1
                ),
            ]
        );
        assert_eq!(
            diff.groups[0].fields,
            [Field::Status, Field::StoppedAt, Field::Reason, Field::Limit]
        );
        assert_eq!(
            diff.requests[2].before.limit,
            Some(LimitVerdict {
                policy: "per-user".into(),
                refused: false
            })
        );
        assert_eq!(
            diff.requests[2].after.limit,
            Some(LimitVerdict {
                policy: "per-user".into(),
                refused: true
            })
        );
        assert_eq!(diff.groups[1].fields, [Field::Route]);
        assert_eq!(
            diff.groups[2].fields,
            [Field::Status, Field::StoppedAt, Field::Reason]
        );
        let examples: Vec<&str> = diff.groups[0]
            .examples
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(examples, ["r4", "r5"]);
        assert!((diff.share() - 5.0 / 7.0).abs() < 1e-12);
        assert!(diff.exceeds(0.0) && diff.exceeds(0.7) && !diff.exceeds(0.72));

        let text = diff.render_text();
        assert!(
            text.starts_with("config diff: 7 requests compared, 5 changed (71.43%)\n"),
            "{text}"
        );
        assert!(text.contains(
            "  2  orders: passed → orders: ratelimit/quota-exceeded  [status, stopped_at, reason, limit]\n       r4  GET /orders\n"
        ), "{text}");
    }

    #[test]
    fn ties_between_groups_are_broken_the_same_way_every_time() {
        let before: Vec<_> = ["c", "a", "b"]
            .iter()
            .map(|r| outcome(r, "/x", Some(r), None))
            .collect();
        let after: Vec<_> = ["c", "a", "b"]
            .iter()
            .map(|r| outcome(r, "/x", Some(r), SCOPE))
            .collect();
        let first = diff_decisions(&before, &after);
        let routes: Vec<_> = first
            .groups
            .iter()
            .map(|g| g.before.route.clone())
            .collect();
        assert_eq!(
            routes,
            [Some("a".into()), Some("b".into()), Some("c".into())]
        );
        let reversed: Vec<_> = after.iter().rev().cloned().collect();
        assert_eq!(diff_decisions(&before, &reversed).groups, first.groups);
    }

    #[test]
    fn requests_in_one_run_only_are_missing_not_changed() {
        let before = vec![
            outcome("r1", "/a", Some("a"), None),
            outcome("r2", "/a", Some("a"), None),
        ];
        let after = vec![
            outcome("r1", "/a", Some("a"), None),
            outcome("r3", "/b", Some("b"), None),
        ];
        let diff = diff_decisions(&before, &after);
        assert_eq!((diff.compared, diff.changed), (1, 0));
        let missing: Vec<(&str, Run)> = diff
            .missing
            .iter()
            .map(|m| (m.request.id.as_str(), m.only_in))
            .collect();
        assert_eq!(missing, [("r2", Run::Baseline), ("r3", Run::Candidate)]);
        let text = diff.render_text();
        assert!(text.contains("none changed, 2 in one run only"), "{text}");
        assert!(text.contains("r2  GET /a  (baseline only)"), "{text}");
        let json = diff.changed_json();
        assert_eq!(json["missing"][1]["id"], "r3");
        assert_eq!(json["missing"][1]["only_in"], "candidate");
    }

    #[test]
    fn without_a_gateway_record_only_the_status_is_compared() {
        let mut bare = outcome("r1", "/a", None, None);
        bare.decision = None;
        let recorded = outcome("r1", "/a", Some("a"), None);
        assert!(
            diff_decisions(std::slice::from_ref(&recorded), std::slice::from_ref(&bare))
                .requests
                .is_empty()
        );
        bare.status = None;
        bare.error = Some("connection refused".into());
        let diff = diff_decisions(&[recorded], &[bare]);
        assert_eq!(diff.requests[0].fields, [Field::Status]);
        assert_eq!(
            diff.requests[0].after.error.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn the_changed_json_holds_every_changed_request_and_reads_back() {
        let before: Vec<_> = (0..8)
            .map(|i| outcome(&format!("r{i}"), "/a", Some("a"), None))
            .collect();
        let after: Vec<_> = (0..8)
            .map(|i| outcome(&format!("r{i}"), "/a", Some("a"), QUOTA))
            .collect();
        let diff = diff_decisions(&before, &after);
        assert_eq!(diff.groups[0].examples.len(), EXAMPLES);
        assert!(diff.render_text().contains("… and 3 more"));
        let json = diff.changed_json();
        assert_eq!(json["changed"], 8);
        assert_eq!(json["share"], 1.0);
        let requests = json["requests"].as_array().expect("array");
        assert_eq!(requests.len(), 8);
        assert_eq!(requests[0]["before"]["route"], "a");
        assert_eq!(requests[0]["after"]["reason"], "quota-exceeded");
        assert_eq!(requests[0]["fields"][0], "status");
        let back: ConfigDiff =
            serde_json::from_str(&serde_json::to_string(&diff).expect("json")).expect("read");
        assert_eq!(back, diff);
    }

    #[test]
    fn percentages_have_no_float_noise() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.0037), "0.37%");
        assert_eq!(percent(1.0 / 3.0), "33.33%");
    }
}
