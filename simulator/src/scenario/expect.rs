//! Expectations: each unmet one becomes a line saying what was expected and what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderMap;

use super::model::{CountRule, Expect, ExpectMessages, GrpcStatus, HttpVersion, StoppedAt};
use super::outcome::{PhaseOutcome, QUANTILES, RequestOutcome};
use crate::http_client::Exchange;
use gateway::vocab::grpc::{GrpcCode, decode_message};

pub fn check_request(expect: &Expect, outcome: &RequestOutcome) -> Vec<String> {
    let mut failures = Vec::new();
    let (status, headers) = match &outcome.response {
        Ok(exchange) => (Some(exchange.status), Some(&exchange.headers)),
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
    if let Ok(exchange) = &outcome.response {
        check_grpc(expect, exchange, &mut failures);
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
            if let Some(want) = up.version {
                let got = HttpVersion::show(received.version);
                if got != want.as_str() {
                    failures.push(format!(
                        "upstream version: expected HTTP/{}, got HTTP/{got}",
                        want.as_str()
                    ));
                }
            }
            if let Some(want) = up.messages {
                match received.grpc_messages {
                    None => failures.push(format!(
                        "upstream messages: expected {want}, but it received no gRPC request (content-type: {})",
                        received
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none")
                    )),
                    Some(got) if got != want => {
                        failures.push(format!("upstream messages: expected {want}, got {got}"))
                    }
                    _ => {}
                }
            }
        }
    }
    failures
}

/// gRPC's part of an answer: its status and message (from the trailers, or the head of a
/// trailers-only answer), the trailers, and the messages' count and timing.
fn check_grpc(expect: &Expect, exchange: &Exchange, failures: &mut Vec<String>) {
    let cut = exchange
        .body_error
        .as_deref()
        .map_or(String::new(), |e| format!("; {e}"));
    let expects_end = expect.grpc_status.is_some()
        || expect.grpc_message.is_some()
        || !expect.trailers.is_empty();
    if expects_end && exchange.body_error.is_some() {
        failures.push(format!(
            "the answer did not end cleanly{cut}, after {:?}",
            exchange.end_after
        ));
    }
    if let Some(GrpcStatus(want)) = expect.grpc_status {
        let number = want.as_u16();
        match exchange.final_field("grpc-status") {
            None => failures.push(format!(
                "grpc_status: expected {number} ({want}), got none: no grpc-status in the {} (HTTP {}, content-type {})",
                if exchange.trailers.is_some() { "trailers" } else { "head, and no trailers" },
                exchange.status,
                exchange
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none"),
            )),
            Some(got) if got.trim().parse::<u16>().ok() != Some(number) => {
                let name = match got.trim().parse::<u16>() {
                    Ok(n) => GrpcCode::from_u16(n).map_or("not a gRPC code", GrpcCode::name),
                    Err(_) => "not a number",
                };
                let message = exchange
                    .final_field("grpc-message")
                    .map_or(String::new(), |m| {
                        format!(", grpc-message: {}", decode_message(m.as_bytes()))
                    });
                failures.push(format!(
                    "grpc_status: expected {number} ({want}), got {got} ({name}{message})"
                ));
            }
            _ => {}
        }
    }
    if let Some(want) = &expect.grpc_message {
        match exchange
            .final_field("grpc-message")
            .map(|m| decode_message(m.as_bytes()))
        {
            None => failures.push(format!("grpc_message: expected {want:?}, it was absent")),
            Some(got) if &got != want => {
                failures.push(format!("grpc_message: expected {want:?}, got {got:?}"))
            }
            _ => {}
        }
    }
    if !expect.trailers.is_empty() || !expect.absent_trailers.is_empty() {
        match &exchange.trailers {
            Some(trailers) => check_headers(
                "trailer",
                &expect.trailers,
                &expect.absent_trailers,
                trailers,
                failures,
            ),
            None if !expect.trailers.is_empty() => failures.push(format!(
                "trailers: expected {}, the answer had none{cut}",
                expect
                    .trailers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => {}
        }
    }
    if let Some(want) = &expect.messages {
        check_messages(want, exchange, &cut, failures);
    }
}

fn check_messages(
    want: &ExpectMessages,
    exchange: &Exchange,
    cut: &str,
    failures: &mut Vec<String>,
) {
    let Some(messages) = &exchange.messages else {
        failures.push(format!(
            "messages: expected gRPC messages, the answer is not gRPC (HTTP {}, content-type {})",
            exchange.status,
            exchange
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
        ));
        return;
    };
    let arrivals = || {
        messages
            .iter()
            .map(|m| format!("{:?}", m.at))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let got = messages.len() as u64;
    if let Some(rule) = &want.count {
        if !count_ok(rule, got, got) {
            let partial = if exchange.partial_message_bytes > 0 {
                format!(
                    " and {} bytes of an unfinished one",
                    exchange.partial_message_bytes
                )
            } else {
                String::new()
            };
            failures.push(format!(
                "messages: expected {}, got {got}{partial}{cut}",
                describe(rule)
            ));
        }
    }
    if let Some(within) = want.first_within {
        match messages.first() {
            None => failures.push(format!(
                "messages: expected the first within {within:?}, none arrived{cut}"
            )),
            Some(first) if first.at > within => failures.push(format!(
                "messages: expected the first within {within:?}, it arrived after {:?} (head after {:?})",
                first.at, exchange.head_after
            )),
            _ => {}
        }
    }
    if let Some(range) = &want.gap {
        if messages.len() < 2 {
            failures.push(format!(
                "messages: expected gaps between messages, but {got} arrived, so there are none{cut}"
            ));
        }
        for (i, pair) in messages.windows(2).enumerate() {
            let gap = pair[1].at.saturating_sub(pair[0].at);
            let short = range.min.is_some_and(|min| gap < min);
            let long = range.max.is_some_and(|max| gap > max);
            if short || long {
                failures.push(format!(
                    "messages: expected each gap {}, the gap before message {} was {gap:?} (arrivals: {}; end after {:?})",
                    show_range(range.min, range.max),
                    i + 2,
                    arrivals(),
                    exchange.end_after
                ));
            }
        }
    }
}

fn show_range(min: Option<Duration>, max: Option<Duration>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("between {min:?} and {max:?}"),
        (Some(min), None) => format!("at least {min:?}"),
        (None, Some(max)) => format!("at most {max:?}"),
        (None, None) => "of any length".into(),
    }
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

fn count_ok(rule: &CountRule, got: u64, total: u64) -> bool {
    match rule {
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
    }
}

fn describe(rule: &CountRule) -> String {
    match rule {
        CountRule::Exact(n) => format!("exactly {n}"),
        CountRule::Range { min, max } => format!(
            "between {} and {}",
            min.map_or("0".into(), |m| m.to_string()),
            max.map_or("∞".into(), |m| m.to_string())
        ),
        CountRule::Ratio { ratio } => format!("a share between {} and {}", ratio[0], ratio[1]),
    }
}

fn check_count(what: &str, rule: &CountRule, got: u64, total: u64, failures: &mut Vec<String>) {
    if !count_ok(rule, got, total) {
        failures.push(format!(
            "{what}: expected {}, got {got} of {total}",
            describe(rule)
        ));
    }
}

pub fn check_issuer_fetches(rule: &CountRule, fetched: u64, failures: &mut Vec<String>) {
    check_count("issuer fetches", rule, fetched, fetched, failures);
}
