//! One request's tries at the upstream: the first to the instance `route` picked, then — when the
//! upstream's `retries` policy allows it — more, each to an instance this request has not tried.
//!
//! A try is retried only when all of these hold:
//! - its failure was a refused connection, a reset before the response head, a response head the
//!   strict checks refused (`upstream-bad-response`), or a 502/503 answer
//!   (never a timeout: a hanging upstream is not helped by more requests);
//! - the method is in the policy's `methods` (the idempotent ones by default);
//! - the request has **no body**. A streamed body cannot be sent twice and the gateway never
//!   buffers bodies whole, so a request with a body is tried once, whatever the policy says;
//! - retries left (`attempts`), time left (`total_timeout`), the retry budget has room, the
//!   breaker lets the try through, and an instance is in rotation.
//!
//! One failure is retried apart from the policy: a stream the upstream refused (`REFUSED_STREAM`,
//! or past a GOAWAY's last stream) was never processed, so a request without a body is sent
//! again — on a new connection, to any instance including the same one — even with no `retries`
//! policy and whatever its method, up to [`REFUSED_RETRIES`] times.
//!
//! Every try's outcome feeds the breaker and outlier ejection; the record counts the retries.
//!
//! A gRPC call's deadline (`grpc-timeout`, read by `route`) bounds the wait for the response head
//! as well, and what is left of it is sent upstream as `grpc-timeout`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use super::{STAGE, TryFailure, build_request};
use crate::body::{BodyPace, UpstreamBody, UpstreamRequestBody};
use crate::clock::SharedClock;
use crate::resilience::BreakerState;
use crate::resilience::health::Outcome;
use crate::stage::context::{RequestContext, Target};
use crate::vocab::grpc;
use crate::vocab::{Reason, Rejection};

/// What a retry copies from the first try: everything but the body (there is none) and the
/// instance.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Template {
    fn build(&self, authority: &http::uri::Authority) -> Request<UpstreamRequestBody> {
        let mut parts = self.uri.clone().into_parts();
        parts.authority = Some(authority.clone());
        // Only the authority changes, to another instance's valid one: the URI stays valid.
        let uri = Uri::from_parts(parts).unwrap_or_else(|_| self.uri.clone());
        let mut request = Request::new(UpstreamRequestBody::new(
            None,
            0,
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
        ));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Extra tries for refused streams, on top of the policy's.
const REFUSED_RETRIES: u32 = 2;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn timed_out() -> Rejection {
    Rejection::new(
        STAGE,
        Reason::UpstreamTimeout,
        "the upstream did not answer in time",
    )
}

/// A gRPC call whose own deadline, shorter than the upstream's timeouts, passed first.
fn deadline_passed(sent: bool) -> Rejection {
    let detail = if sent {
        "the call's deadline (grpc-timeout) passed before the upstream answered"
    } else {
        "the call's deadline (grpc-timeout) passed before the request could be sent"
    };
    Rejection::new(STAGE, Reason::UpstreamTimeout, detail)
}

pub(super) async fn run(
    cx: &mut RequestContext,
    mut target: Target,
    clock: SharedClock,
) -> Result<Response<UpstreamBody>, Rejection> {
    let bound = target.upstream.clone();
    let upstream = &bound.config;
    let started = bound.now();
    let limit = cx.route.route().map_or(u64::MAX, |r| r.max_body_bytes);
    let policy = upstream.resilience.retries.as_ref();
    let bodiless = cx.body.as_ref().is_none_or(http_body::Body::is_end_stream);
    let attempts = match policy {
        Some(p) if bodiless && p.methods.contains(&cx.parts.method) => p.attempts,
        _ => 0,
    };
    if let Some(budget) = &bound.budget {
        budget.record_request(started);
    }
    let deadline = upstream
        .resilience
        .total_timeout
        .map(|t| started.saturating_add(nanos(t)));
    // A gRPC call's own deadline: the response head must come before it too.
    let call_deadline = cx.grpc.as_ref().and_then(|call| call.deadline);
    if call_deadline.is_some_and(|d| d <= started) {
        // Nothing was sent: the upstream's health is not in question.
        bound.report(target.instance, Outcome::Neutral, target.admission.take());
        return finish(cx, target, Err(deadline_passed(false)));
    }

    let request = build_request(cx, &target)?;
    let (mut parts, body) = request.into_parts();
    if let Some(call_deadline) = call_deadline {
        // What is left of the deadline, for the upstream to stop working when the caller stops
        // waiting (as a gRPC server passes a deadline on to the calls it makes).
        let left = Duration::from_nanos(call_deadline.saturating_sub(bound.now()));
        match grpc::format_timeout(left) {
            Some(value) => parts.headers.insert(grpc::GRPC_TIMEOUT.clone(), value),
            None => parts.headers.remove(&grpc::GRPC_TIMEOUT),
        };
    }
    // Only HTTP/2 refuses streams: an HTTP/1.1 upstream without a retry policy copies nothing.
    let refusable = bodiless && upstream.protocol != crate::config::UpstreamProtocol::Http1;
    let template = (attempts > 0 || refusable).then(|| Template {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
    });
    let pace = BodyPace::of(&cx.active.config.limits);
    let mut request = Request::from_parts(
        parts,
        UpstreamRequestBody::new(body, limit, cx.bytes_in.clone()).paced(pace, clock),
    );
    // The instances tried so far, filled only once a retry needs the list (most requests take
    // one try, and the list was a heap allocation on each of them).
    let mut tried: Vec<usize> = Vec::new();
    let mut refused_retries = 0;
    // The first try starts at `started`: only the request's head was built since.
    let mut now = started;
    loop {
        let left = |deadline: u64| Duration::from_nanos(deadline.saturating_sub(now));
        let per_try = match deadline {
            Some(deadline) => upstream.request_timeout.min(left(deadline)),
            None => upstream.request_timeout,
        };
        // When the call's deadline is the nearer one, timing out says nothing about the
        // upstream: a caller's short deadline must not trip its breaker or eject it.
        let call_left = call_deadline.map(left).filter(|&l| l < per_try);
        let per_try = call_left.unwrap_or(per_try);
        let address = upstream.instances[target.instance].address;
        let timers = &cx.facts.connection.upstream_timer;
        let mut timer = timers.start(per_try);
        let result = tokio::select! {
            biased;
            sent = bound.client.request(address, request) => Ok(sent),
            () = &mut timer => Err(()),
        };
        timers.give_back(timer);
        let mut refused = false;
        let (outcome, retryable, answer) = match result {
            Ok(Ok((response, lease))) => {
                // Not boxed into the guard when it holds nothing (our own client's exchange).
                if lease.holds_anything() {
                    target.in_flight.hold(lease);
                } else {
                    target.in_flight.release();
                }
                let status = response.status();
                // A gRPC server refuses in a trailers-only answer: HTTP 200, the status in the
                // head. Its server failures count like a 5xx (a status in the trailers of a
                // stream comes too late for this verdict).
                let grpc_failed = cx.grpc.is_some()
                    && grpc::status_of(response.headers()).is_some_and(grpc::is_server_failure);
                let outcome = if status.is_server_error() || grpc_failed {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                let retryable =
                    status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE;
                (outcome, retryable, Ok(response))
            }
            Ok(Err(error)) => {
                let failure = TryFailure::of_body(cx.bytes_in.refusal())
                    .unwrap_or_else(|| TryFailure::of(&error));
                refused = failure == TryFailure::Refused;
                let (outcome, retryable) = match failure {
                    TryFailure::Unreachable => (Outcome::ConnectFailure, true),
                    // Not processed: no verdict on the instance's health.
                    TryFailure::Refused => (Outcome::Neutral, true),
                    TryFailure::Reset => (Outcome::Failure, true),
                    // A broken server, like a 5xx: a failure for breaker and ejection, and like
                    // a reset before any response byte reached the client, retried under the
                    // policy (idempotent, bodiless) on another instance.
                    TryFailure::BadResponse => (Outcome::Failure, true),
                    TryFailure::BodyTooLarge
                    | TryFailure::MalformedBody
                    | TryFailure::BodyTimeout => (Outcome::Neutral, false),
                };
                (outcome, retryable, Err(failure.rejection(limit)))
            }
            Err(_) if call_left.is_some() => (Outcome::Neutral, false, Err(deadline_passed(true))),
            Err(_) => (Outcome::Failure, false, Err(timed_out())),
        };
        bound.report(target.instance, outcome, target.admission.take());
        let retries_so_far = (tried.len() as u32).saturating_sub(1) - refused_retries;
        let again_refused = refused && refusable && refused_retries < REFUSED_RETRIES;
        // A template exists whenever a retry is possible.
        let (true, Some(template)) = (
            again_refused || (retryable && retries_so_far < attempts),
            &template,
        ) else {
            break finish(cx, target, answer);
        };
        if tried.is_empty() {
            tried.push(target.instance);
        }
        let next = if again_refused {
            refused_retries += 1;
            // Any instance, the same one included: a new stream, likely on a new connection.
            next_try(cx, &target, &[], deadline, None, 0).await
        } else {
            next_try(
                cx,
                &target,
                &tried,
                deadline,
                policy.map(|p| p.backoff),
                retries_so_far,
            )
            .await
        };
        let Some(next) = next else {
            break finish(cx, target, answer);
        };
        // The failed answer (a 502/503 from the upstream) is dropped unread.
        drop(answer);
        tried.push(next.instance);
        request = template.build(&upstream.instances[next.instance].authority);
        target = next;
        now = bound.now();
    }
}

/// Sets up the next try, or says there is none: breaker, instance, budget, time — in that order,
/// so the budget is only spent on a retry that goes out.
async fn next_try(
    cx: &mut RequestContext,
    current: &Target,
    tried: &[usize],
    deadline: Option<u64>,
    backoff: Option<Duration>,
    retries_so_far: u32,
) -> Option<Target> {
    let bound = &current.upstream;
    let backoff = backoff.unwrap_or_default();
    // Exponential, capped at ten times the base, with jitter so retries do not synchronize.
    let wait = backoff
        .saturating_mul(1 << retries_so_far.min(10))
        .min(backoff.saturating_mul(10))
        .mul_f64(0.5 + fastrand::f64() / 2.0);
    let now = bound.now();
    if deadline.is_some_and(|d| now.saturating_add(nanos(wait)) >= d) {
        return None;
    }
    let admission = match bound.admit(now) {
        Ok(admission) => admission,
        Err(_) => {
            cx.breaker = Some(BreakerState::Open);
            return None;
        }
    };
    let next = bound.pick(now, current.hash_key, tried)?;
    if !bound.take_retry(now) {
        return None;
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    cx.retries += 1;
    Some(Target {
        upstream: bound.clone(),
        instance: next,
        admission,
        in_flight: bound.begin(next),
        hash_key: current.hash_key,
    })
}

/// The last try's answer, with a switch of protocols handed to the WebSocket relay.
/// Leaves the last try's target in the context for the record.
fn finish(
    cx: &mut RequestContext,
    target: Target,
    answer: Result<Response<UpstreamBody>, Rejection>,
) -> Result<Response<UpstreamBody>, Rejection> {
    cx.target = Some(target);
    let mut response = answer?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS && cx.upgrade.is_none() {
        // Only a request the gateway passed an `Upgrade` for may switch protocols.
        return Err(Rejection::new(
            STAGE,
            Reason::UpstreamBadUpgrade,
            "the upstream switched protocols without being asked to",
        ));
    }
    if cx.upgrade.is_some() {
        super::websocket::relay(cx, &mut response)?;
    }
    Ok(response)
}
