//! Expectations: each unmet one becomes a line saying what was expected and what happened.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::model::{CountRule, Expect, StoppedAt};
use super::outcome::{PhaseOutcome, QUANTILES, RequestOutcome};

pub fn check_request(expect: &Expect, outcome: &RequestOutcome) -> Vec<String> {
    let mut failures = Vec::new();
    let (status, headers) = match &outcome.response {
        Ok((status, headers)) => (Some(*status), Some(headers)),
        Err(e) => {
            failures.push(format!("no response: {e}"));
            (None, None)
        }
    };
    if let Some(want) = expect.status {
        if status != Some(want) {
            failures.push(format!("status: expected {want}, got {}", show(status)));
        }
    }
    let record = outcome.record.as_ref();
    if record.is_none() && (expect.stopped_at.is_some() || expect.reason.is_some()) {
        failures.push("no record arrived for this request within 5 s".into());
    }
    if let (Some(want), Some(record)) = (&expect.stopped_at, record) {
        let got = record
            .stopped_at
            .map_or("none".to_string(), |s| s.to_string());
        let wanted = match want {
            StoppedAt::None => "none".to_string(),
            StoppedAt::Stage(s) => s.to_string(),
        };
        if got != wanted {
            failures.push(format!(
                "stopped_at: expected {wanted}, got {got} (reason: {})",
                record.reason.as_deref().unwrap_or("none")
            ));
        }
    }
    if let (Some(want), Some(record)) = (&expect.reason, record) {
        if record.reason.as_deref() != Some(want.as_str()) {
            failures.push(format!(
                "reason: expected {want}, got {}",
                record.reason.as_deref().unwrap_or("none")
            ));
        }
    }
    if let Some(headers) = headers {
        check_headers(
            "client header",
            &expect.headers,
            &expect.absent_headers,
            headers,
            &mut failures,
        );
    }
    if let Some(up) = &expect.upstream {
        match (&up.name, outcome.received.first()) {
            (Some(name), None) if name != "none" => failures.push(format!(
                "upstream: expected {name} to receive the request, none did"
            )),
            (Some(name), Some((got, _))) if name == "none" => failures.push(format!(
                "upstream: expected none to receive the request, {got} did"
            )),
            (Some(name), Some((got, _))) if name != got => {
                failures.push(format!("upstream: expected {name}, got {got}"))
            }
            (None, None) => failures
                .push("upstream: expected the request to reach an upstream, none did".into()),
            _ => {}
        }
        if let Some((_, received)) = outcome.received.first() {
            if let Some(path) = &up.path {
                let got = received.target.split('?').next().unwrap_or_default();
                if got != path {
                    failures.push(format!("upstream path: expected {path}, got {got}"));
                }
            }
            check_headers(
                "upstream header",
                &up.headers,
                &up.absent_headers,
                &received.headers,
                &mut failures,
            );
        }
    }
    failures
}

fn check_headers(
    what: &str,
    want: &BTreeMap<String, String>,
    absent: &[String],
    got: &HeaderMap,
    failures: &mut Vec<String>,
) {
    for (name, value) in want {
        match got.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            None => failures.push(format!("{what} {name}: expected {value}, it was absent")),
            Some(v) if value != "*" && v != value => {
                failures.push(format!("{what} {name}: expected {value}, got {v}"))
            }
            _ => {}
        }
    }
    for name in absent {
        if let Some(v) = got.get(name.as_str()) {
            failures.push(format!(
                "{what} {name}: expected absent, got {}",
                v.to_str().unwrap_or("<binary>")
            ));
        }
    }
}

fn show(status: Option<u16>) -> String {
    status.map_or("no response".into(), |s| s.to_string())
}

pub fn check_phase(expect: &Expect, phase: &PhaseOutcome) -> Vec<String> {
    let mut failures = Vec::new();
    if phase.sent == 0 {
        failures.push("the phase sent no requests".into());
    }
    for (key, rule) in &expect.status_counts {
        check_count(
            &format!("status {key}"),
            rule,
            status_count(phase, key),
            phase.sent,
            &mut failures,
        );
    }
    for (key, rule) in &expect.stopped_counts {
        let got = phase.stopped_at.get(key).copied().unwrap_or(0);
        check_count(
            &format!("stopped_at {key}"),
            rule,
            got,
            phase.sent,
            &mut failures,
        );
    }
    for (key, rule) in &expect.upstream_hits {
        match phase.upstream_hits.get(key) {
            Some(got) => check_count(
                &format!("upstream {key} hits"),
                rule,
                *got,
                phase.sent,
                &mut failures,
            ),
            None => failures.push(format!("upstream_hits: no fake upstream named {key}")),
        }
    }
    for (quantile, rule) in &expect.latency {
        match phase.latency_us.get(quantile) {
            Some(us) => {
                if *us > rule.max.as_micros() as u64 {
                    failures.push(format!(
                        "latency {quantile}: expected at most {:?}, got {:?}",
                        rule.max,
                        std::time::Duration::from_micros(*us)
                    ));
                }
            }
            None => failures.push(format!(
                "latency: unknown quantile {quantile} (use {})",
                QUANTILES.map(|q| q.0).join(", ")
            )),
        }
    }
    failures
}

/// Responses with this status (`429`) or in this class (`4xx`).
fn status_count(phase: &PhaseOutcome, key: &str) -> u64 {
    if let Some(class) = key.strip_suffix("xx") {
        phase
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with(class) && s.len() == 3)
            .map(|(_, n)| n)
            .sum()
    } else {
        phase.statuses.get(key).copied().unwrap_or(0)
    }
}

fn check_count(what: &str, rule: &CountRule, got: u64, total: u64, failures: &mut Vec<String>) {
    let ok = match rule {
        CountRule::Exact(n) => got == *n,
        CountRule::Range { min, max } => {
            min.is_none_or(|m| got >= m) && max.is_none_or(|m| got <= m)
        }
        CountRule::Ratio { ratio } => {
            let share = if total == 0 {
                0.0
            } else {
                got as f64 / total as f64
            };
            share >= ratio[0] && share <= ratio[1]
        }
    };
    if !ok {
        let wanted = match rule {
            CountRule::Exact(n) => format!("exactly {n}"),
            CountRule::Range { min, max } => format!(
                "between {} and {}",
                min.map_or("0".into(), |m| m.to_string()),
                max.map_or("∞".into(), |m| m.to_string())
            ),
            CountRule::Ratio { ratio } => format!("a share between {} and {}", ratio[0], ratio[1]),
        };
        failures.push(format!("{what}: expected {wanted}, got {got} of {total}"));
    }
}

pub fn check_issuer_fetches(rule: &CountRule, fetched: u64, failures: &mut Vec<String>) {
    check_count("issuer fetches", rule, fetched, fetched, failures);
}
