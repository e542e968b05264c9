//! Upstream resilience and route lifecycle configuration: how an upstream's instances are picked
//! (`load_balancing`), kept out of rotation (`health_check`, `outlier_ejection`), protected
//! (`circuit_breaker`), retried (`retries`, `total_timeout`); and a route's `deprecation` headers.
//! Raw (serde) types, their compilation and their compiled forms live together here; the state
//! they configure lives in [`crate::resilience`], outside the compiled config, so it survives a
//! reload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::problem::Problem;
pub use crate::resilience::settings::*;

// ---------------------------------------------------------------------------------------------
// Raw: as written under `upstreams.<name>` and `routes[i]`.

/// `load_balancing:` — which instance gets the next request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancing {
    #[serde(default)]
    pub policy: RawPolicy,
    /// For `consistent_hash`: `subject` (the authenticated identity) or `header:<name>`.
    #[serde(default)]
    pub hash_on: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawPolicy {
    #[default]
    RoundRobin,
    LeastOutstanding,
    ConsistentHash,
}

/// `health_check:` — active checks, one prober per instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: String,
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "two")]
    pub healthy_threshold: u32,
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
    /// Statuses that count as healthy; empty means any 2xx.
    #[serde(default)]
    pub expected_status: Vec<u16>,
}

/// `outlier_ejection:` — passive health: instances that keep failing real requests are taken out
/// of rotation for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutlierEjection {
    /// 5xx answers, resets and timeouts in a row; 0 turns this trigger off.
    pub consecutive_5xx: u32,
    /// Connections refused or not accepted in time, in a row; 0 turns this trigger off.
    pub consecutive_connect_failures: u32,
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    pub max_ejected_percent: u32,
}

impl Default for RawOutlierEjection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_connect_failures: 3,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// `circuit_breaker:` — one per upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCircuitBreaker {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub failure_ratio: f64,
    pub min_requests: u32,
    /// Failures in a row that open the breaker whatever the ratio; 0 turns this trigger off.
    pub consecutive_failures: u32,
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    pub half_open_probes: u32,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            failure_ratio: 0.5,
            min_requests: 20,
            consecutive_failures: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 3,
        }
    }
}

/// `retries:` — present means on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetries {
    /// Tries after the first one.
    pub attempts: u32,
    /// Methods that may be retried; the idempotent ones unless listed.
    pub methods: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    pub budget: RawRetryBudget,
}

impl Default for RawRetries {
    fn default() -> Self {
        Self {
            attempts: 1,
            methods: None,
            backoff: Duration::from_millis(25),
            budget: RawRetryBudget::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetryBudget {
    /// Retries may add at most this share of the requests seen in the window ...
    pub ratio: f64,
    /// ... plus this many per second, so a quiet upstream can still be retried.
    pub min_per_second: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RawRetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 5.0,
            window: Duration::from_secs(10),
        }
    }
}

/// `routes[i].deprecation:` — RFC 9745 `Deprecation`, RFC 8594 `Sunset`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeprecation {
    /// When the route was (or will be) deprecated: `2025-01-31` or `2025-01-31T12:00:00Z`.
    pub date: String,
    /// When it stops answering, same formats.
    #[serde(default)]
    pub sunset: Option<String>,
    /// Where to read about it: sent as `Link: <...>; rel="deprecation"`.
    #[serde(default)]
    pub link: Option<String>,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}

fn two() -> u32 {
    2
}

fn three() -> u32 {
    3
}

// ---------------------------------------------------------------------------------------------
// Compiled.

/// The headers a deprecated route's responses carry, built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// `@<unix seconds>` (RFC 9745 §2.1, a structured-field Date).
    pub deprecation: HeaderValue,
    /// An IMF-fixdate (RFC 8594 §3).
    pub sunset: Option<HeaderValue>,
    /// `<uri>; rel="deprecation"; type="text/html"` (RFC 9745 §3).
    pub link: Option<HeaderValue>,
}

pub static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
pub static SUNSET: HeaderName = HeaderName::from_static("sunset");

impl Deprecation {
    /// Adds the headers to a response on the route; the gateway's config is authoritative over
    /// what an upstream sent for the first two, and a `Link` is added beside the upstream's.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(DEPRECATION.clone(), self.deprecation.clone());
        if let Some(sunset) = &self.sunset {
            headers.insert(SUNSET.clone(), sunset.clone());
        }
        if let Some(link) = &self.link {
            headers.append(http::header::LINK, link.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation.

/// Compiles the resilience fields of `upstreams.<name>` (`path`); problems are pushed, and the
/// value returned is only meaningful when none were.
/// The fields of `upstreams.<name>` that configure resilience, as written; the compiler of the
/// whole upstream hands them over, so this file never needs the upstream's raw type.
#[derive(Debug, Clone, Copy)]
pub struct RawUpstreamResilience<'a> {
    pub load_balancing: Option<&'a RawLoadBalancing>,
    pub health_check: Option<&'a RawHealthCheck>,
    pub outlier_ejection: Option<&'a RawOutlierEjection>,
    pub circuit_breaker: Option<&'a RawCircuitBreaker>,
    pub retries: Option<&'a RawRetries>,
    pub total_timeout: Option<Duration>,
}

pub fn compile_upstream(
    raw: RawUpstreamResilience<'_>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> UpstreamResilience {
    let at = |field: &str| format!("{path}.{field}");
    let load_balancing = compile_load_balancing(raw.load_balancing, &at, problems);

    let health_check = raw.health_check.map(|h| {
        if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
            problems.push((
                at("health_check.path"),
                format!(
                    "`{}` is not a request path (it must start with `/`)",
                    h.path
                ),
            ));
        }
        positive(h.interval, &at("health_check.interval"), problems);
        positive(h.timeout, &at("health_check.timeout"), problems);
        at_least_one(
            h.healthy_threshold,
            &at("health_check.healthy_threshold"),
            problems,
        );
        at_least_one(
            h.unhealthy_threshold,
            &at("health_check.unhealthy_threshold"),
            problems,
        );
        for (i, status) in h.expected_status.iter().enumerate() {
            if !(100..=599).contains(status) {
                problems.push((
                    at(&format!("health_check.expected_status[{i}]")),
                    format!("`{status}` is not an HTTP status (100 to 599)"),
                ));
            }
        }
        HealthCheck {
            path: h.path.clone(),
            interval: h.interval,
            timeout: h.timeout,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            expected_status: h.expected_status.clone(),
        }
    });

    let outlier = raw.outlier_ejection.map(|o| {
        if o.consecutive_5xx == 0 && o.consecutive_connect_failures == 0 {
            problems.push((
                at("outlier_ejection"),
                "both `consecutive_5xx` and `consecutive_connect_failures` are 0: nothing would ever be ejected; leave the section out instead".into(),
            ));
        }
        positive(
            o.base_ejection_time,
            &at("outlier_ejection.base_ejection_time"),
            problems,
        );
        if o.max_ejection_time < o.base_ejection_time {
            problems.push((
                at("outlier_ejection.max_ejection_time"),
                "must not be shorter than `base_ejection_time`".into(),
            ));
        }
        if o.max_ejected_percent > 100 {
            problems.push((
                at("outlier_ejection.max_ejected_percent"),
                format!("`{}` is not a percentage (0 to 100)", o.max_ejected_percent),
            ));
        }
        OutlierEjection {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_connect_failures: o.consecutive_connect_failures,
            base_ejection_time: o.base_ejection_time,
            max_ejection_time: o.max_ejection_time,
            max_ejected_percent: o.max_ejected_percent,
        }
    });

    let breaker = raw.circuit_breaker.map(|b| {
        positive(b.window, &at("circuit_breaker.window"), problems);
        positive(b.open_for, &at("circuit_breaker.open_for"), problems);
        if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
            problems.push((
                at("circuit_breaker.failure_ratio"),
                format!("`{}` is not a ratio above 0 and at most 1", b.failure_ratio),
            ));
        }
        at_least_one(
            b.min_requests,
            &at("circuit_breaker.min_requests"),
            problems,
        );
        at_least_one(
            b.half_open_probes,
            &at("circuit_breaker.half_open_probes"),
            problems,
        );
        BreakerConfig {
            window: b.window,
            failure_ratio: b.failure_ratio,
            min_requests: b.min_requests,
            consecutive_failures: b.consecutive_failures,
            open_for: b.open_for,
            half_open_probes: b.half_open_probes,
        }
    });

    let retries = raw.retries.map(|r| {
        if r.attempts > MAX_RETRY_ATTEMPTS {
            problems.push((
                at("retries.attempts"),
                format!(
                    "`{}` retries per request is more than {MAX_RETRY_ATTEMPTS}: retries that many only multiply an outage",
                    r.attempts
                ),
            ));
        }
        let methods = match &r.methods {
            None => IDEMPOTENT.to_vec(),
            Some(listed) => listed
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let upper = m.to_ascii_uppercase();
                    let known = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];
                    match Method::from_bytes(upper.as_bytes()) {
                        Ok(method) if known.contains(&upper.as_str()) => Some(method),
                        _ => {
                            problems.push((
                                at(&format!("retries.methods[{i}]")),
                                format!("`{m}` is not an HTTP method (one of {})", known.join(", ")),
                            ));
                            None
                        }
                    }
                })
                .collect(),
        };
        let b = &r.budget;
        if !(b.ratio >= 0.0 && b.ratio.is_finite()) {
            problems.push((
                at("retries.budget.ratio"),
                format!("`{}` is not a ratio of 0 or more", b.ratio),
            ));
        }
        if !(b.min_per_second >= 0.0 && b.min_per_second.is_finite()) {
            problems.push((
                at("retries.budget.min_per_second"),
                format!("`{}` is not a rate of 0 or more", b.min_per_second),
            ));
        }
        positive(b.window, &at("retries.budget.window"), problems);
        RetryPolicy {
            attempts: r.attempts,
            methods,
            backoff: r.backoff,
            budget: BudgetConfig {
                ratio: b.ratio,
                min_per_second: b.min_per_second,
                window: b.window,
            },
        }
    });

    if let Some(total) = raw.total_timeout {
        positive(total, &at("total_timeout"), problems);
    }

    UpstreamResilience {
        load_balancing,
        health_check,
        outlier,
        breaker,
        retries,
        total_timeout: raw.total_timeout,
    }
}

fn compile_load_balancing(
    raw: Option<&RawLoadBalancing>,
    at: &dyn Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) -> LoadBalancing {
    let Some(raw) = raw else {
        return LoadBalancing::RoundRobin;
    };
    match (raw.policy, raw.hash_on.as_deref()) {
        (RawPolicy::RoundRobin, None) => LoadBalancing::RoundRobin,
        (RawPolicy::LeastOutstanding, None) => LoadBalancing::LeastOutstanding,
        (RawPolicy::ConsistentHash, None) => {
            problems.push((
                at("load_balancing.policy"),
                "`consistent_hash` needs `hash_on`: `subject` or `header:<name>`".into(),
            ));
            LoadBalancing::RoundRobin
        }
        (RawPolicy::ConsistentHash, Some(on)) => {
            match parse_hash_on(on) {
                Some(on) => LoadBalancing::ConsistentHash(on),
                None => {
                    problems.push((
                    at("load_balancing.hash_on"),
                    format!("`{on}` is neither `subject` nor `header:<name>` with a valid header name"),
                ));
                    LoadBalancing::RoundRobin
                }
            }
        }
        (_, Some(_)) => {
            problems.push((
                at("load_balancing.hash_on"),
                "`hash_on` only applies to `policy: consistent_hash`".into(),
            ));
            LoadBalancing::RoundRobin
        }
    }
}

fn parse_hash_on(text: &str) -> Option<HashOn> {
    if text == "subject" {
        return Some(HashOn::Subject);
    }
    let name = text.strip_prefix("header:")?.trim();
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .ok()
        .map(HashOn::Header)
}

fn positive(d: Duration, path: &str, problems: &mut Vec<Problem>) {
    if d.is_zero() {
        problems.push((path.to_string(), "must be longer than zero".into()));
    }
}

fn at_least_one(n: u32, path: &str, problems: &mut Vec<Problem>) {
    if n == 0 {
        problems.push((path.to_string(), "must be at least 1".into()));
    }
}

/// Compiles `routes[i].deprecation` (`path` is `routes[i]`).
pub fn compile_deprecation(
    raw: Option<&RawDeprecation>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Deprecation> {
    let raw = raw?;
    let before = problems.len();
    let date = parse_date(&raw.date, &format!("{path}.deprecation.date"), problems);
    let sunset = raw
        .sunset
        .as_deref()
        .and_then(|s| parse_date(s, &format!("{path}.deprecation.sunset"), problems));
    if let (Some(date), Some(sunset)) = (date, sunset) {
        if sunset < date {
            problems.push((
                format!("{path}.deprecation.sunset"),
                "the sunset must not come before the deprecation date (RFC 9745 §2.1)".into(),
            ));
        }
    }
    let link = raw.link.as_deref().and_then(|l| {
        let uri: Option<http::Uri> = l.parse().ok();
        match uri.filter(|u| u.scheme().is_some() && u.authority().is_some()) {
            Some(_) => {
                HeaderValue::from_str(&format!("<{l}>; rel=\"deprecation\"; type=\"text/html\""))
                    .ok()
            }
            None => {
                problems.push((
                    format!("{path}.deprecation.link"),
                    format!("`{l}` is not an absolute URI such as `https://example.com/migrate`"),
                ));
                None
            }
        }
    });
    if problems.len() != before {
        return None;
    }
    Some(Deprecation {
        // `@` + seconds: the structured-field Date form; digits are always a valid value.
        deprecation: HeaderValue::from_str(&format!("@{}", date?)).ok()?,
        sunset: sunset.and_then(|s| HeaderValue::from_str(&http_date(s)).ok()),
        link,
    })
}

/// `2025-01-31` or `2025-01-31T12:00:00Z` (UTC) → seconds since the Unix epoch.
fn parse_date(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<u64> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    match humantime::parse_rfc3339(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    {
        Some(d) => Some(d.as_secs()),
        None => {
            problems.push((
                path.to_string(),
                format!(
                    "`{text}` is not a date such as `2025-01-31` or `2025-01-31T12:00:00Z` (UTC)"
                ),
            ));
            None
        }
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7): `Fri, 31 Jan 2025 00:00:00 GMT`.
fn http_date(unix_seconds: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn upstream(extra: &str) -> String {
        format!(
            "upstreams:\n  svc:\n    instances: [127.0.0.1:1, 127.0.0.1:2]\n{extra}routes:\n  - {{name: all, match: {{path: /*}}, upstream: svc}}\n"
        )
    }

    fn problems(yaml: &str) -> Vec<String> {
        match load_str("t.yaml", yaml) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_leave_everything_off_but_round_robin() {
        let runtime = load_str("t.yaml", &upstream("")).expect("valid");
        let svc = &runtime.upstreams["svc"];
        assert_eq!(svc.resilience, UpstreamResilience::default());
    }

    #[test]
    fn every_section_compiles_with_its_defaults() {
        let runtime = load_str(
            "t.yaml",
            &upstream(
                "    load_balancing: {policy: consistent_hash, hash_on: \"header:X-Session\"}\n    health_check: {path: /healthz}\n    outlier_ejection: {}\n    circuit_breaker: {}\n    retries: {}\n    total_timeout: 5s\n",
            ),
        )
        .expect("valid");
        let r = &runtime.upstreams["svc"].resilience;
        assert_eq!(
            r.load_balancing,
            LoadBalancing::ConsistentHash(HashOn::Header(HeaderName::from_static("x-session")))
        );
        let h = r.health_check.as_ref().expect("health");
        assert_eq!(
            (h.interval, h.healthy_threshold, h.unhealthy_threshold),
            (Duration::from_secs(5), 2, 3)
        );
        assert!(h.expects(204) && !h.expects(301));
        assert_eq!(r.outlier.as_ref().expect("outlier").max_ejected(2), 1);
        assert_eq!(r.breaker.as_ref().expect("breaker").half_open_probes, 3);
        let retries = r.retries.as_ref().expect("retries");
        assert_eq!(retries.attempts, 1);
        assert!(retries.methods.contains(&Method::PUT) && !retries.methods.contains(&Method::POST));
        assert_eq!(r.total_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn problems_name_their_field() {
        let got = problems(&upstream(
            "    load_balancing: {policy: consistent_hash}\n    health_check: {path: healthz, interval: 0s, expected_status: [42]}\n    outlier_ejection: {consecutive_5xx: 0, consecutive_connect_failures: 0, max_ejected_percent: 150}\n    circuit_breaker: {failure_ratio: 1.5, half_open_probes: 0}\n    retries: {attempts: 20, methods: [GET, FETCH]}\n",
        ));
        let want = [
            "upstreams.svc.load_balancing.policy: `consistent_hash` needs `hash_on`",
            "upstreams.svc.health_check.path: `healthz` is not a request path",
            "upstreams.svc.health_check.interval: must be longer than zero",
            "upstreams.svc.health_check.expected_status[0]: `42` is not an HTTP status",
            "upstreams.svc.outlier_ejection: both `consecutive_5xx`",
            "upstreams.svc.outlier_ejection.max_ejected_percent: `150` is not a percentage",
            "upstreams.svc.circuit_breaker.failure_ratio: `1.5` is not a ratio",
            "upstreams.svc.circuit_breaker.half_open_probes: must be at least 1",
            "upstreams.svc.retries.attempts: `20` retries per request",
            "upstreams.svc.retries.methods[1]: `FETCH` is not an HTTP method",
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for w in want {
            assert!(
                got.iter().any(|g| g.contains(w)),
                "missing `{w}` in {got:#?}"
            );
        }
        assert!(got.iter().all(|g| g.starts_with("t.yaml:")), "{got:#?}");
    }

    #[test]
    fn the_resilience_fixture_loads_with_every_field() {
        let runtime = load_str(
            "fixtures/resilience.yaml",
            include_str!("../../../fixtures/resilience.yaml"),
        )
        .unwrap_or_else(|d| panic!("{d:#?}"));
        let users = &runtime.upstreams["users-svc"].resilience;
        assert!(users.health_check.is_some() && users.outlier.is_some());
        assert!(users.breaker.is_some() && users.retries.is_some());
        assert_eq!(
            runtime.upstreams["sessions-svc"]
                .resilience
                .load_balancing
                .name(),
            "consistent_hash"
        );
        let routes = runtime.routes.routes();
        let route = |name: &str| routes.iter().find(|r| &*r.name == name).expect("route");
        assert!(route("users-v1").deprecation.is_some());
        assert!(route("chat").websocket);
    }

    #[test]
    fn unknown_fields_in_the_new_sections_are_reported() {
        let got = problems(&upstream("    circuit_breaker: {open_fro: 1s}\n"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("did you mean `open_for`?"), "{got:#?}");
    }

    #[test]
    fn deprecation_headers_use_the_rfc_formats() {
        let mut problems = Vec::new();
        let d = compile_deprecation(
            Some(&RawDeprecation {
                date: "2024-12-31T23:59:59Z".into(),
                sunset: Some("2025-06-30".into()),
                link: Some("https://developer.example.com/migrate".into()),
            }),
            "routes[0]",
            &mut problems,
        )
        .expect("compiles");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(d.deprecation, "@1735689599");
        assert_eq!(
            d.sunset.as_ref().expect("sunset"),
            "Mon, 30 Jun 2025 00:00:00 GMT"
        );
        assert_eq!(
            d.link.as_ref().expect("link"),
            "<https://developer.example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
        );
    }

    #[test]
    fn deprecation_problems_are_reported() {
        let mut problems = Vec::new();
        let d = compile_deprecation(
            Some(&RawDeprecation {
                date: "2025-07-01".into(),
                sunset: Some("2025-06-30".into()),
                link: Some("/relative".into()),
            }),
            "routes[3]",
            &mut problems,
        );
        assert!(d.is_none());
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["routes[3].deprecation.sunset", "routes[3].deprecation.link"]
        );
        let mut problems = Vec::new();
        compile_deprecation(
            Some(&RawDeprecation {
                date: "yesterday".into(),
                sunset: None,
                link: None,
            }),
            "routes[0]",
            &mut problems,
        );
        assert!(problems[0].1.contains("is not a date"), "{problems:?}");
    }
}
