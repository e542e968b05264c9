//! One request's tries at the upstream: the first to the instance `route` picked, then — when the
//! upstream's `retries` policy allows it — more, each to an instance this request has not tried.
//!
//! A try is retried only when all of these hold:
//! - its failure was a refused connection, a reset before the response head, or a 502/503 answer
//!   (never a timeout: a hanging upstream is not helped by more requests);
//! - the method is in the policy's `methods` (the idempotent ones by default);
//! - the request has **no body**. A streamed body cannot be sent twice and the gateway never
//!   buffers bodies whole, so a request with a body is tried once, whatever the policy says;
//! - retries left (`attempts`), time left (`total_timeout`), the retry budget has room, the
//!   breaker lets the try through, and an instance is in rotation.
//!
//! Every try's outcome feeds the breaker and outlier ejection; the record counts the retries.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::{STAGE, build_request, classify, internal};
use crate::body::UpstreamRequestBody;
use crate::config::compiled::Upstream;
use crate::pipeline::RequestContext;
use crate::rejection::Rejection;
use crate::resilience::health::Outcome;
use crate::resilience::{BoundUpstream, BreakerState};

/// What a retry copies from the first try: everything but the body (there is none) and the
/// instance.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Template {
    fn build(
        &self,
        authority: &http::uri::Authority,
    ) -> Result<Request<UpstreamRequestBody>, Rejection> {
        let mut parts = self.uri.clone().into_parts();
        parts.authority = Some(authority.clone());
        let uri = Uri::from_parts(parts).map_err(|_| internal("the retry target is not a URI"))?;
        let mut request = Request::new(UpstreamRequestBody::new(
            None,
            0,
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
        ));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn timed_out() -> Rejection {
    Rejection::new(
        STAGE,
        StatusCode::GATEWAY_TIMEOUT,
        "upstream-timeout",
        "the upstream did not answer in time",
    )
}

pub(super) async fn run(
    cx: &mut RequestContext,
    upstream: Arc<Upstream>,
    address: std::net::SocketAddr,
) -> Result<Response<Incoming>, Rejection> {
    let (Some(bound), Some(mut current)) = (cx.resilience.upstream.clone(), cx.resilience.instance)
    else {
        return Err(internal("no upstream instance was picked"));
    };
    let started = bound.now();
    let limit = cx.route.as_ref().map_or(u64::MAX, |r| r.max_body_bytes);
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

    let request = build_request(cx, &upstream, address)?;
    let (parts, body) = request.into_parts();
    let template = (attempts > 0).then(|| Template {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
    });
    let mut first = Some(Request::from_parts(
        parts,
        UpstreamRequestBody::new(body, limit, cx.bytes_in.clone()),
    ));
    let mut tried = vec![current];
    loop {
        let request = match (first.take(), &template) {
            (Some(request), _) => request,
            (None, Some(template)) => template.build(&upstream.instances[current].authority)?,
            (None, None) => return Err(internal("a retry without a template")),
        };
        let per_try = match deadline {
            Some(deadline) => upstream
                .request_timeout
                .min(Duration::from_nanos(deadline.saturating_sub(bound.now()))),
            None => upstream.request_timeout,
        };
        let result = tokio::time::timeout(per_try, bound.client.request(request)).await;
        let (outcome, retryable, answer) = match result {
            Ok(Ok(response)) => {
                let status = response.status();
                let outcome = if status.is_server_error() {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                let retryable =
                    status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE;
                (outcome, retryable, Ok(response))
            }
            Ok(Err(error)) => {
                let rejection = classify(&error, limit);
                let (outcome, retryable) = match rejection.reason {
                    "upstream-unreachable" => (Outcome::ConnectFailure, true),
                    "upstream-reset" => (Outcome::Failure, true),
                    _ => (Outcome::Neutral, false),
                };
                (outcome, retryable, Err(rejection))
            }
            Err(_) => (Outcome::Failure, false, Err(timed_out())),
        };
        bound.report(current, outcome, cx.resilience.admission.take());
        let retries_so_far = tried.len() as u32 - 1;
        if !retryable || retries_so_far >= attempts {
            return finish(cx, answer);
        }
        let Some(next) = next_try(
            cx,
            &bound,
            &tried,
            deadline,
            policy.map(|p| p.backoff),
            retries_so_far,
        )
        .await
        else {
            return finish(cx, answer);
        };
        // The failed answer (a 502/503 from the upstream) is dropped unread.
        drop(answer);
        tried.push(next);
        current = next;
    }
}

/// Sets up the next try, or says there is none: breaker, instance, budget, time — in that order,
/// so the budget is only spent on a retry that goes out.
async fn next_try(
    cx: &mut RequestContext,
    bound: &Arc<BoundUpstream>,
    tried: &[usize],
    deadline: Option<u64>,
    backoff: Option<Duration>,
    retries_so_far: u32,
) -> Option<usize> {
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
            cx.resilience.breaker = Some(BreakerState::Open);
            return None;
        }
    };
    let next = bound.pick(now, cx.resilience.hash_key, tried)?;
    if !bound.take_retry(now) {
        return None;
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    cx.resilience.admission = admission;
    cx.resilience.in_flight = Some(bound.begin(next));
    cx.resilience.instance = Some(next);
    cx.resilience.retries += 1;
    cx.upstream_instance = Some((bound.name().clone(), bound.instances[next].address));
    Some(next)
}

/// The last try's answer, with a switch of protocols handed to the WebSocket relay.
fn finish(
    cx: &mut RequestContext,
    answer: Result<Response<Incoming>, Rejection>,
) -> Result<Response<Incoming>, Rejection> {
    let mut response = answer?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if cx.resilience.upgrade.is_none() {
            // Only a request the gateway passed an `Upgrade` for may switch protocols.
            return Err(Rejection::new(
                STAGE,
                StatusCode::BAD_GATEWAY,
                "upstream-bad-upgrade",
                "the upstream switched protocols without being asked to",
            ));
        }
        super::websocket::relay(cx, &mut response);
    }
    Ok(response)
}
