//! Response diffs: each response a replay got compared with the recorded one (status, chosen
//! headers, body hash), ignoring the fields that vary on their own. Those are a default set
//! ([`DEFAULT_NOISY_HEADERS`]), the `--ignore`d ones, and the ones learned as Twitter's Diffy
//! does: replay the baseline more than once, and a field that differs between two baseline runs
//! of the same request is noise ([`learn_noise`]). Pure functions over the runs' outcomes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::str::FromStr;

use gateway::record::recording::format::RecordedResponse;
use serde::{Deserialize, Serialize};

use super::model::{Exchange, ExchangeOutcome, Pairing, RequestRef};
use super::run::RunResult;

/// The flags of `replay` that compare responses with the recorded ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResponseDiffArgs {
    /// Compare each response with the recorded one (status, `--diff-header`s, body hash).
    #[arg(long)]
    pub diff_responses: bool,
    /// A response header compared too (repeatable); `*` compares every header but the noisy
    /// ones. `date`, `x-request-id` and the like are never compared unless named.
    #[arg(long = "diff-header", value_name = "NAME")]
    pub diff_headers: Vec<String>,
    /// A response field never compared (repeatable): `header:NAME`, `status` or `body`.
    #[arg(long = "ignore", value_name = "FIELD")]
    pub ignore: Vec<String>,
    /// Replay this many times against the baseline first to learn which fields vary on their own.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        requires = "diff_responses"
    )]
    pub noise_runs: u32,
}

/// Headers that differ between two answers to the same request on their own: times, ids,
/// tracing, cookies, caching validators, and the rate-limit counters (the quota's `remaining`
/// and reset move with the traffic). `--diff-header *` skips them; naming one compares it.
/// `etag` is here because a server may tag per instance; the body hash already compares the
/// content.
pub const DEFAULT_NOISY_HEADERS: &[&str] = &[
    "age",
    "date",
    "etag",
    "expires",
    "last-modified",
    "ratelimit",
    "retry-after",
    "server-timing",
    "set-cookie",
    "traceparent",
    "tracestate",
    "x-amzn-trace-id",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-request-id",
    "x-trace-id",
];

/// `--diff-header *`: every header.
pub const EVERY_HEADER: &str = "*";

/// How many example requests each group keeps.
pub const EXAMPLES: usize = 5;

/// One compared part of a response, spelled as `--ignore` takes it: `status`, `header:NAME`
/// (lowercase) or `body` (the body's hash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResponseField {
    Status,
    Header(String),
    Body,
}

impl fmt::Display for ResponseField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseField::Status => f.write_str("status"),
            ResponseField::Header(name) => write!(f, "header:{name}"),
            ResponseField::Body => f.write_str("body"),
        }
    }
}

impl FromStr for ResponseField {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "status" => Ok(ResponseField::Status),
            "body" => Ok(ResponseField::Body),
            other => match other.split_once(':') {
                Some(("header", name)) if valid_header_name(name) => {
                    Ok(ResponseField::Header(name.to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "`{text}` is not a response field: write `status`, `body` or `header:NAME`"
                )),
            },
        }
    }
}

impl Serialize for ResponseField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResponseField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn valid_header_name(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// Checks the flags before any run: every `--ignore` is a field, every `--diff-header` a header
/// name (or `*`). The message names the flag and the value.
pub fn check_args(args: &ResponseDiffArgs) -> Result<(), String> {
    for field in &args.ignore {
        field
            .parse::<ResponseField>()
            .map_err(|e| format!("--ignore: {e}"))?;
    }
    for name in &args.diff_headers {
        if name != EVERY_HEADER && !valid_header_name(name) {
            return Err(format!(
                "--diff-header: `{name}` is not a header name (or `*` for every header)"
            ));
        }
    }
    Ok(())
}

/// Where noise is learned for status and body: a route's answers share their quirks (one that
/// puts a timestamp in its body does so for every request), so they are learned per endpoint —
/// the method and the route, or the path when the run could not see the gateway's records.
/// Headers are learned across the whole recording: a header that varies on its own somewhere
/// (`date`) varies everywhere.
pub fn endpoint(outcome: &ExchangeOutcome) -> String {
    match outcome.decision.as_ref().and_then(|d| d.route.as_deref()) {
        Some(route) => format!("{} {route}", outcome.method),
        None => format!("{} {}", outcome.method, outcome.path),
    }
}

/// The recorded responses as the baseline of `run`, outcome for outcome (same ids, so a `--loop`
/// pass is compared with the recording too): a Gatehouse recording's own outcome, or — for a HAR
/// entry or a GoReplay record, which hold no gateway record — one built from the exchange and
/// its `response`. An exchange without a recorded response gives an outcome without one, which
/// [`diff_responses`] counts as `without_recorded_response`.
pub fn recorded_responses(exchanges: &[Exchange], run: &RunResult) -> Vec<ExchangeOutcome> {
    run.outcomes
        .iter()
        .zip(&run.indices)
        .filter_map(|(outcome, &index)| {
            let exchange = exchanges.get(index)?;
            let mut baseline =
                ExchangeOutcome::recorded(exchange).unwrap_or_else(|| ExchangeOutcome {
                    id: exchange.id.clone(),
                    position: exchange.position,
                    method: exchange.method.clone(),
                    path: exchange
                        .target
                        .split_once('?')
                        .map_or(exchange.target.as_str(), |(path, _)| path)
                        .to_owned(),
                    status: exchange.response.as_ref().map(|r| r.status),
                    error: None,
                    decision: None,
                    response: exchange.response.clone(),
                    scheduled_ns: 0,
                    sent_ns: 0,
                    latency_ns: 0,
                });
            baseline.id = outcome.id.clone();
            Some(baseline)
        })
        .collect()
}

/// What varied between baseline runs of the same request, counted in request pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noise {
    /// The runs it was learned from.
    pub runs: usize,
    /// Request pairs (a later run's request and the first run's) with a response on both sides.
    pub compared: u64,
    /// Header name → pairs in which its values differed (or one side lacked it).
    pub headers: BTreeMap<String, u64>,
    /// Endpoint → pairs in which the status differed.
    pub status: BTreeMap<String, u64>,
    /// Endpoint → pairs in which the body hash differed.
    pub body: BTreeMap<String, u64>,
}

impl Noise {
    /// True when `field` varied on its own for `endpoint` (headers: anywhere).
    pub fn is_noise(&self, field: &ResponseField, endpoint: &str) -> bool {
        match field {
            ResponseField::Status => self.status.contains_key(endpoint),
            ResponseField::Header(name) => self.headers.contains_key(name),
            ResponseField::Body => self.body.contains_key(endpoint),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.status.is_empty() && self.body.is_empty()
    }

    /// One line per noisy field: how often it varied between baseline runs.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "noise: {} baseline runs, {} request pairs compared",
            self.runs, self.compared
        );
        if self.is_empty() {
            out.push_str(", nothing varied on its own\n");
            return out;
        }
        out.push('\n');
        for (name, n) in &self.headers {
            let _ = writeln!(out, "  header:{name} varied in {n} pairs");
        }
        for (endpoint, n) in &self.status {
            let _ = writeln!(out, "  status of {endpoint} varied in {n} pairs");
        }
        for (endpoint, n) in &self.body {
            let _ = writeln!(out, "  body of {endpoint} varied in {n} pairs");
        }
        out
    }
}

/// The values of one header, in order (a repeated header is one list).
fn header_values<'r>(response: &'r RecordedResponse, name: &str) -> Vec<&'r str> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn header_names(response: &RecordedResponse) -> impl Iterator<Item = String> + '_ {
    response.headers.iter().map(|(n, _)| n.to_ascii_lowercase())
}

/// The body hashes differ; unknown when either side was not hashed.
fn bodies_differ(a: &RecordedResponse, b: &RecordedResponse) -> Option<bool> {
    match (&a.body_sha256, &b.body_sha256) {
        (Some(x), Some(y)) => Some(!x.eq_ignore_ascii_case(y) || a.body_len != b.body_len),
        _ => None,
    }
}

/// Learns which fields vary on their own from repeated runs of the baseline: every later run is
/// compared with the first, request by request; every header name, and per endpoint the status
/// and the body hash, that differed in a pair is noise. One run (or none) learns nothing.
pub fn learn_noise(runs: &[Vec<ExchangeOutcome>]) -> Noise {
    let mut noise = Noise {
        runs: runs.len(),
        ..Noise::default()
    };
    let Some((first, later)) = runs.split_first() else {
        return noise;
    };
    for run in later {
        for (a, b) in Pairing::by_id(first, run).pairs {
            let (Some(ra), Some(rb)) = (&a.response, &b.response) else {
                continue;
            };
            noise.compared += 1;
            let endpoint = endpoint(a);
            if ra.status != rb.status {
                *noise.status.entry(endpoint.clone()).or_default() += 1;
            }
            if bodies_differ(ra, rb) == Some(true) {
                *noise.body.entry(endpoint).or_default() += 1;
            }
            let names: BTreeSet<String> = header_names(ra).chain(header_names(rb)).collect();
            for name in names {
                if header_values(ra, &name) != header_values(rb, &name) {
                    *noise.headers.entry(name).or_default() += 1;
                }
            }
        }
    }
    noise
}

/// One field that differs: the recorded value and the replay's (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: ResponseField,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One request whose response differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedResponse {
    pub id: String,
    pub method: String,
    pub path: String,
    pub before_status: u16,
    /// Absent when the replay got no response (then `error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub changes: Vec<FieldChange>,
}

impl ChangedResponse {
    pub fn fields(&self) -> Vec<ResponseField> {
        self.changes.iter().map(|c| c.field.clone()).collect()
    }
}

/// Changed responses with the same statuses and the same changed fields, counted, with the
/// first examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseGroup {
    pub before_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_status: Option<u16>,
    pub fields: Vec<ResponseField>,
    pub count: u64,
    pub examples: Vec<RequestRef>,
}

impl ResponseGroup {
    /// `200 → 503 [status, body]`, `200 → no response [status]`.
    pub fn title(&self) -> String {
        let after = self
            .after_status
            .map_or_else(|| "no response".to_owned(), |s| s.to_string());
        let fields: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
        format!("{} → {after} [{}]", self.before_status, fields.join(", "))
    }
}

/// The replay's responses compared with the recorded ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseDiff {
    /// Requests with a recorded response and an outcome in the replay.
    pub compared: u64,
    pub changed: u64,
    /// Requests the recording kept no response for: nothing to compare with.
    pub without_recorded_response: u64,
    /// Requests with a recorded response the replay has no outcome for.
    pub missing: Vec<RequestRef>,
    /// Field → comparisons skipped because the field was learned as noise there.
    pub skipped_as_noise: BTreeMap<String, u64>,
    /// Most requests first; ties in a fixed order.
    pub groups: Vec<ResponseGroup>,
    /// Every changed response, in the baseline's order.
    pub requests: Vec<ChangedResponse>,
}

/// What is compared for one request, after the flags and the noise had their say.
struct Comparison<'a> {
    ignored: BTreeSet<ResponseField>,
    every_header: bool,
    named: BTreeSet<String>,
    noise: &'a Noise,
}

impl Comparison<'_> {
    fn headers(&self, a: &RecordedResponse, b: &RecordedResponse) -> BTreeSet<String> {
        let mut names = self.named.clone();
        if self.every_header {
            names.extend(
                header_names(a)
                    .chain(header_names(b))
                    .filter(|n| !DEFAULT_NOISY_HEADERS.contains(&n.as_str())),
            );
        }
        names
    }
}

/// Compares the candidate run's responses with the baseline's (the recorded responses, or a
/// baseline run), request by request: the status, the `--diff-header`s and the body hash,
/// leaving out the `--ignore`d fields and those `noise` learned. Flags that do not parse are left
/// out too: [`check_args`] refuses them before the run.
pub fn diff_responses(
    baseline: &[ExchangeOutcome],
    candidate: &[ExchangeOutcome],
    args: &ResponseDiffArgs,
    noise: &Noise,
) -> ResponseDiff {
    let rules = Comparison {
        ignored: args.ignore.iter().filter_map(|f| f.parse().ok()).collect(),
        every_header: args.diff_headers.iter().any(|h| h == EVERY_HEADER),
        named: args
            .diff_headers
            .iter()
            .filter(|h| *h != EVERY_HEADER && valid_header_name(h))
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        noise,
    };
    let pairing = Pairing::by_id(baseline, candidate);
    let mut diff = ResponseDiff {
        compared: 0,
        changed: 0,
        without_recorded_response: 0,
        missing: Vec::new(),
        skipped_as_noise: BTreeMap::new(),
        groups: Vec::new(),
        requests: Vec::new(),
    };
    for before in &pairing.only_baseline {
        match before.response {
            Some(_) => diff.missing.push(RequestRef::from(*before)),
            None => diff.without_recorded_response += 1,
        }
    }
    for (before, after) in &pairing.pairs {
        let Some(expected) = &before.response else {
            diff.without_recorded_response += 1;
            continue;
        };
        diff.compared += 1;
        let changes = match &after.response {
            None if rules.ignored.contains(&ResponseField::Status) => Vec::new(),
            None => vec![FieldChange {
                field: ResponseField::Status,
                before: Some(expected.status.to_string()),
                after: None,
            }],
            // A recorded baseline without a gateway record names its endpoint by path, a run
            // that saw records by route: noise learned under either applies.
            Some(actual) => compare(
                expected,
                actual,
                &[endpoint(before), endpoint(after)],
                &rules,
                &mut diff,
            ),
        };
        if !changes.is_empty() {
            diff.requests.push(ChangedResponse {
                id: before.id.clone(),
                method: before.method.clone(),
                path: before.path.clone(),
                before_status: expected.status,
                after_status: after.response.as_ref().map(|r| r.status),
                error: after.error.clone(),
                changes,
            });
        }
    }
    diff.changed = diff.requests.len() as u64;
    diff.groups = group(&diff.requests);
    diff
}

fn compare(
    expected: &RecordedResponse,
    actual: &RecordedResponse,
    endpoints: &[String],
    rules: &Comparison,
    diff: &mut ResponseDiff,
) -> Vec<FieldChange> {
    let mut fields = vec![ResponseField::Status];
    fields.extend(
        rules
            .headers(expected, actual)
            .into_iter()
            .map(ResponseField::Header),
    );
    fields.push(ResponseField::Body);
    let mut changes = Vec::new();
    for field in fields {
        if rules.ignored.contains(&field) {
            continue;
        }
        let (before, after) = match &field {
            ResponseField::Status => {
                if expected.status == actual.status {
                    continue;
                }
                (
                    Some(expected.status.to_string()),
                    Some(actual.status.to_string()),
                )
            }
            ResponseField::Header(name) => {
                let (a, b) = (header_values(expected, name), header_values(actual, name));
                if a == b {
                    continue;
                }
                let joined = |v: Vec<&str>| (!v.is_empty()).then(|| v.join(", "));
                (joined(a), joined(b))
            }
            ResponseField::Body => {
                if bodies_differ(expected, actual) != Some(true) {
                    continue;
                }
                let body = |r: &RecordedResponse| {
                    r.body_sha256
                        .as_ref()
                        .map(|h| format!("{} bytes, sha256 {h}", r.body_len))
                };
                (body(expected), body(actual))
            }
        };
        // A field that differs and is known to vary on its own is not a change, but it is
        // counted, so the report says what noise hid.
        if endpoints.iter().any(|e| rules.noise.is_noise(&field, e)) {
            *diff.skipped_as_noise.entry(field.to_string()).or_default() += 1;
            continue;
        }
        changes.push(FieldChange {
            field,
            before,
            after,
        });
    }
    changes
}

fn group(requests: &[ChangedResponse]) -> Vec<ResponseGroup> {
    type Key = (u16, Option<u16>, Vec<ResponseField>);
    let mut groups: BTreeMap<Key, ResponseGroup> = BTreeMap::new();
    for request in requests {
        let fields = request.fields();
        let group = groups
            .entry((request.before_status, request.after_status, fields.clone()))
            .or_insert_with(|| ResponseGroup {
                before_status: request.before_status,
                after_status: request.after_status,
                fields,
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(RequestRef {
                id: request.id.clone(),
                method: request.method.clone(),
                path: request.path.clone(),
            });
        }
    }
    let mut groups: Vec<ResponseGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    groups
}

impl ResponseDiff {
    /// The share of compared responses that changed, 0 to 1 (0 when nothing was compared).
    pub fn share(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.changed as f64 / self.compared as f64
        }
    }

    /// True when the share of changed responses is above `max_changed`: the replay exits 4.
    pub fn exceeds(&self, max_changed: f64) -> bool {
        self.share() > max_changed
    }

    /// The summary: a headline, each group with its count and examples, what noise hid.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut headline = format!("response diff: {} responses compared, ", self.compared);
        if self.changed == 0 {
            headline.push_str("none changed");
        } else {
            let _ = write!(
                headline,
                "{} changed ({})",
                self.changed,
                super::diff::percent(self.share())
            );
        }
        if !self.missing.is_empty() {
            let _ = write!(headline, ", {} not replayed", self.missing.len());
        }
        if self.without_recorded_response > 0 {
            let _ = write!(
                headline,
                ", {} without a recorded response",
                self.without_recorded_response
            );
        }
        let _ = writeln!(out, "{headline}");
        let width = self.groups.first().map_or(1, |g| g.count.to_string().len());
        for group in &self.groups {
            let _ = writeln!(out, "  {:>width$}  {}", group.count, group.title());
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
        if !self.skipped_as_noise.is_empty() {
            let hidden: Vec<String> = self
                .skipped_as_noise
                .iter()
                .map(|(field, n)| format!("{field} ({n})"))
                .collect();
            let _ = writeln!(
                out,
                "  differences left out as learned noise: {}",
                hidden.join(", ")
            );
        }
        out
    }

    /// Every changed response as JSON, with the counts.
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
mod tests {
    use super::*;
    use crate::replay::diff::tests::outcome;

    fn answered(id: &str, status: u16, headers: &[(&str, &str)], body: &str) -> ExchangeOutcome {
        let mut o = outcome(id, "/items", Some("items"), None);
        o.status = Some(status);
        o.response = Some(RecordedResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body_sha256: Some(body.to_owned()),
            body_len: body.len() as u64,
        });
        o
    }

    fn args(headers: &[&str], ignore: &[&str]) -> ResponseDiffArgs {
        ResponseDiffArgs {
            diff_responses: true,
            diff_headers: headers.iter().map(|s| (*s).to_owned()).collect(),
            ignore: ignore.iter().map(|s| (*s).to_owned()).collect(),
            noise_runs: 0,
        }
    }

    #[test]
    fn fields_parse_as_ignore_takes_them_and_bad_flags_are_refused() {
        assert_eq!("status".parse(), Ok(ResponseField::Status));
        assert_eq!("body".parse(), Ok(ResponseField::Body));
        assert_eq!(
            "header:X-Cache".parse(),
            Ok(ResponseField::Header("x-cache".into()))
        );
        assert!("headers:x".parse::<ResponseField>().is_err());
        assert!("header:".parse::<ResponseField>().is_err());
        assert_eq!(
            ResponseField::Header("etag".into()).to_string(),
            "header:etag"
        );
        assert!(check_args(&args(&["content-type", "*"], &["body", "header:date"])).is_ok());
        let bad = check_args(&args(&[], &["cookie"])).expect_err("refused");
        assert!(bad.starts_with("--ignore: `cookie`"), "{bad}");
        assert!(check_args(&args(&["bad name"], &[])).is_err());
    }

    #[test]
    fn noise_learning_flags_a_varying_header_and_not_a_stable_one() {
        let run = |date: &str, id: &str| {
            vec![
                answered(
                    "r1",
                    200,
                    &[("content-type", "json"), ("date", date), ("x-id", id)],
                    "h1",
                ),
                answered("r2", 200, &[("content-type", "json"), ("date", date)], "h2"),
            ]
        };
        let noise = learn_noise(&[run("Mon", "a"), run("Tue", "b")]);
        assert_eq!(noise.runs, 2);
        assert_eq!(noise.compared, 2);
        assert_eq!(
            noise.headers,
            BTreeMap::from([("date".to_owned(), 2), ("x-id".to_owned(), 1)])
        );
        assert!(noise.status.is_empty() && noise.body.is_empty());
        assert!(noise.is_noise(&ResponseField::Header("x-id".into()), "GET items"));
        assert!(!noise.is_noise(&ResponseField::Header("content-type".into()), "GET items"));
        assert!(
            noise
                .render_text()
                .contains("header:date varied in 2 pairs")
        );
        // One run learns nothing.
        assert!(learn_noise(&[run("Mon", "a")]).is_empty());
    }

    #[test]
    fn a_body_that_varies_on_its_own_is_noise_for_its_route_only() {
        let mut other = answered("r2", 200, &[], "same");
        other.decision.as_mut().expect("decision").route = Some("stable".into());
        let first = vec![answered("r1", 200, &[], "t=1"), other.clone()];
        let second = vec![answered("r1", 200, &[], "t=2"), other.clone()];
        let noise = learn_noise(&[first.clone(), second]);
        assert_eq!(noise.body, BTreeMap::from([("GET items".to_owned(), 1)]));

        let mut changed_other = other;
        changed_other
            .response
            .as_mut()
            .expect("response")
            .body_sha256 = Some("new".into());
        let candidate = vec![answered("r1", 200, &[], "t=3"), changed_other];
        let diff = diff_responses(&first, &candidate, &args(&[], &[]), &noise);
        let ids: Vec<&str> = diff.requests.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r2"], "r1's body is noise, r2's is a change");
        assert_eq!(
            diff.skipped_as_noise,
            BTreeMap::from([("body".to_owned(), 1)])
        );
        assert!(
            diff.render_text()
                .contains("left out as learned noise: body (1)")
        );
    }

    #[test]
    fn status_named_headers_and_body_are_compared_and_noisy_fields_are_not() {
        let recorded = vec![
            answered("r1", 200, &[("content-type", "json"), ("date", "Mon")], "a"),
            answered("r2", 200, &[("content-type", "json")], "b"),
            answered("r3", 200, &[("content-type", "json")], "c"),
            answered("r4", 200, &[("cache-control", "no-store")], "d"),
        ];
        let replayed = vec![
            answered("r1", 200, &[("content-type", "json"), ("date", "Tue")], "a"),
            answered("r2", 503, &[("content-type", "json")], "error"),
            answered("r3", 200, &[("content-type", "html")], "c"),
            answered("r4", 200, &[], "d"),
        ];
        let none = Noise::default();
        // Only the named header is compared; the date differs and is not.
        let diff = diff_responses(&recorded, &replayed, &args(&["Content-Type"], &[]), &none);
        assert_eq!((diff.compared, diff.changed), (4, 2));
        let titles: Vec<String> = diff.groups.iter().map(ResponseGroup::title).collect();
        assert_eq!(
            titles,
            [
                "200 → 200 [header:content-type]",
                "200 → 503 [status, body]"
            ]
        );
        let r3 = &diff.requests[1];
        assert_eq!(r3.changes[0].before.as_deref(), Some("json"));
        assert_eq!(r3.changes[0].after.as_deref(), Some("html"));

        // Every header: the default noisy set (date) stays out, the missing cache-control counts.
        let every = diff_responses(&recorded, &replayed, &args(&["*"], &[]), &none);
        let ids: Vec<&str> = every.requests.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r2", "r3", "r4"]);
        assert_eq!(every.requests[2].changes[0].after, None);
        // Naming the noisy header compares it.
        let dated = diff_responses(&recorded, &replayed, &args(&["*", "date"], &[]), &none);
        assert_eq!(dated.requests[0].id, "r1");

        // Ignored fields are not compared.
        let ignoring = diff_responses(
            &recorded,
            &replayed,
            &args(
                &["*"],
                &[
                    "status",
                    "body",
                    "header:content-type",
                    "header:cache-control",
                ],
            ),
            &none,
        );
        assert_eq!(ignoring.changed, 0, "{:?}", ignoring.requests);
        assert!(!ignoring.exceeds(0.0));
        assert!(every.exceeds(0.5) && !every.exceeds(0.75));
    }

    #[test]
    fn no_response_missing_requests_and_unrecorded_ones_are_told_apart() {
        let mut unrecorded = answered("r3", 200, &[], "x");
        unrecorded.response = None;
        let recorded = vec![
            answered("r1", 200, &[], "a"),
            answered("r2", 200, &[], "b"),
            unrecorded.clone(),
        ];
        let mut failed = answered("r1", 200, &[], "a");
        failed.response = None;
        failed.status = None;
        failed.error = Some("connection reset".into());
        let diff = diff_responses(
            &recorded,
            &[failed, unrecorded],
            &args(&[], &[]),
            &Noise::default(),
        );
        assert_eq!(diff.compared, 1);
        assert_eq!(diff.without_recorded_response, 1);
        assert_eq!(diff.missing.len(), 1);
        assert_eq!(diff.missing[0].id, "r2");
        assert_eq!(diff.groups[0].title(), "200 → no response [status]");
        assert_eq!(diff.requests[0].error.as_deref(), Some("connection reset"));
        let text = diff.render_text();
        assert!(
            text.starts_with("response diff: 1 responses compared, 1 changed (100%), 1 not replayed, 1 without a recorded response\n"),
            "{text}"
        );
        let json = diff.changed_json();
        assert_eq!(json["requests"][0]["changes"][0]["field"], "status");
        let back: ResponseDiff =
            serde_json::from_str(&serde_json::to_string(&diff).expect("json")).expect("read");
        assert_eq!(back, diff);
    }

    #[test]
    fn recorded_responses_come_from_har_and_gor_exchanges_too_and_noise_applies_by_path_or_route() {
        let exchange = |id: &str, response: Option<RecordedResponse>| Exchange {
            position: 1,
            id: id.into(),
            unix_nanos: 0,
            client: "-".into(),
            connection: None,
            method: "GET".into(),
            target: "/items?page=2".into(),
            version: "HTTP/1.1".into(),
            headers: Vec::new(),
            body: Vec::new(),
            body_truncated: false,
            tls: None,
            credentials: Vec::new(),
            recorded: None,
            response,
        };
        let recorded = answered("h1", 200, &[], "old").response;
        let exchanges = vec![exchange("h1", recorded), exchange("h2", None)];
        // The run saw the gateway's records: its outcomes name the route, and the second pass of
        // a loop carries its `~2` id.
        let run = RunResult {
            outcomes: vec![
                answered("h1", 200, &[], "new"),
                answered("h2", 200, &[], "x"),
                answered("h1~2", 200, &[], "new"),
            ],
            indices: vec![0, 1, 0],
            ..RunResult::default()
        };
        let baseline = recorded_responses(&exchanges, &run);
        let ids: Vec<&str> = baseline.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["h1", "h2", "h1~2"]);
        assert_eq!(baseline[0].path, "/items");
        assert_eq!(baseline[0].status, Some(200));
        assert!(baseline[0].decision.is_none() && baseline[1].response.is_none());

        let diff = diff_responses(&baseline, &run.outcomes, &args(&[], &[]), &Noise::default());
        assert_eq!((diff.compared, diff.changed), (2, 2));
        assert_eq!(diff.without_recorded_response, 1);
        // Body noise learned by route (the runs saw records) hides the change of a baseline that
        // names its endpoint by path.
        let noise = Noise {
            runs: 2,
            body: BTreeMap::from([("GET items".to_owned(), 1)]),
            ..Noise::default()
        };
        let quiet = diff_responses(&baseline, &run.outcomes, &args(&[], &[]), &noise);
        assert_eq!(quiet.changed, 0, "{:?}", quiet.requests);
        assert_eq!(quiet.skipped_as_noise.get("body"), Some(&2));
    }
}
