//! `route`: the request's route was looked up before the pipeline ran (authz and ratelimit need
//! its rules); this stage is where a request without one stops (404), where a catch-all answers,
//! where a declared body size is checked against the route's limit, where a gRPC call's
//! `grpc-timeout` becomes its deadline, and where an instance of the upstream is picked — the
//! breaker first, then the balancer among instances in rotation.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri, header};

use super::context::{RequestContext, RouteMatch, Target};
use crate::clock::Nanos;
use crate::config::{CompiledRoute, RouteAction, Runtime, Upstream};
use crate::resilience::breaker::Refused;
use crate::resilience::{Admission, BreakerState};
use crate::routing::normalize::{
    NormalizedPath, PathOptions, normalize_request_path, push_escaped_invisible,
};
use crate::routing::table::RouteQuery;
use crate::state::GatewayState;
use crate::vocab::{Reason, Rejection, StageId};
use crate::vocab::{fields, grpc};

const STAGE: StageId = StageId::Route;

/// Finds the route for a request: normalizes the path under the listener's `paths` options,
/// then asks the table with the request's one authority (`RequestFacts::host`). The pipeline
/// calls this before its stages run; `gateway routes --test` calls it offline.
pub fn resolve(
    runtime: &Runtime,
    method: &Method,
    uri: &Uri,
    host: Option<&HeaderValue>,
    headers: &HeaderMap,
    paths: &PathOptions,
) -> RouteMatch {
    let path = match normalize_request_path(uri.path(), paths) {
        Ok(NormalizedPath::Route(path)) => path.into_owned(),
        Ok(NormalizedPath::Redirect(mut location)) => {
            if let Some(query) = uri.query() {
                location.push('?');
                push_escaped_invisible(&mut location, query);
            }
            return RouteMatch::Redirect { location };
        }
        Err(error) => return RouteMatch::BadPath(error),
    };
    let host = host.and_then(|h| h.to_str().ok());
    let query = RouteQuery {
        method,
        host,
        path: &path,
        headers,
        query: uri.query(),
    };
    match runtime.routes.lookup(&query) {
        Some(route) => RouteMatch::Matched {
            route: route.clone(),
            path,
        },
        None => RouteMatch::Unmatched { path },
    }
}

/// The routing verdict for a resolved request: the route and the upstream to forward to, or the
/// stop.
pub fn verdict(route: &RouteMatch) -> Result<(&Arc<CompiledRoute>, &Arc<Upstream>), Rejection> {
    match route {
        RouteMatch::BadPath(error) if error.is_ambiguous() => Err(Rejection::new(
            STAGE,
            Reason::AmbiguousPath,
            format!("the request path is ambiguous: {error}"),
        )),
        RouteMatch::BadPath(error) => Err(Rejection::new(
            STAGE,
            Reason::BadPath,
            format!("the request path cannot be routed: {error}"),
        )),
        // 307, as Envoy answers: the method and body are kept, and nothing caches a redirect
        // that a config reload may take back.
        RouteMatch::Redirect { location } => Err(Rejection::new(
            STAGE,
            Reason::AmbiguousPath,
            "the path had encoded slashes or backslashes; ask again at the unescaped path",
        )
        .with_status(http::StatusCode::TEMPORARY_REDIRECT)
        .with_header(
            header::LOCATION,
            HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
        )),
        RouteMatch::Unmatched { .. } | RouteMatch::NotLooked => Err(Rejection::new(
            STAGE,
            Reason::NoRoute,
            "no route serves this path",
        )),
        RouteMatch::Matched { route, .. } => match &route.action {
            RouteAction::Respond { status, detail } => {
                Err(Rejection::new(STAGE, Reason::CatchAll, detail.to_string())
                    .with_status(*status))
            }
            RouteAction::Forward { upstream } => Ok((route, upstream)),
        },
    }
}

/// Passes with the upstream instance the request goes to, which `forward` consumes.
pub async fn run(state: &GatewayState, cx: &mut RequestContext) -> Result<Target, Rejection> {
    let (route, upstream) = verdict(&cx.route)?;
    if let Some(max) = route.max_concurrent_requests {
        let gate = state.sinks.metrics.concurrency.route(&route.name);
        cx.admitted.route = Some(
            gate.try_enter(max)
                .ok_or_else(|| overloaded(STAGE, "route"))?,
        );
    }
    if let Some(declared) = content_length(&cx.parts.headers) {
        if declared > route.max_body_bytes {
            return Err(body_too_large(STAGE, route.max_body_bytes));
        }
    }
    if let Some(call) = &mut cx.grpc {
        call.deadline = grpc_deadline(&cx.parts.headers, cx.facts.arrived)?;
    }
    let upstream = upstream.clone();
    choose(cx, &upstream)
}

/// Picks the instance for a request to `upstream`: stops it with 503 `circuit-open` when the
/// breaker is open (the upstream is not touched) or `no-healthy-instance` when no instance is in
/// rotation.
fn choose(cx: &mut RequestContext, upstream: &Upstream) -> Result<Target, Rejection> {
    let Some(bound) = cx.active.upstreams.get(&upstream.name).cloned() else {
        return Err(no_healthy_instance());
    };
    let now = bound.now();
    let admission = match bound.admit(now) {
        Ok(admission) => admission,
        Err(refused) => {
            cx.breaker = Some(BreakerState::Open);
            return Err(circuit_open(refused));
        }
    };
    cx.breaker = admission.as_ref().and_then(Admission::state);
    let hash_key = bound.hash_key(&cx.parts.headers, cx.identity.as_deref());
    let Some(instance) = bound.pick(now, hash_key, &[]) else {
        return Err(no_healthy_instance());
    };
    Ok(Target {
        in_flight: bound.begin(instance),
        upstream: bound,
        instance,
        admission,
        hash_key,
    })
}

pub fn body_too_large(stage: StageId, limit: u64) -> Rejection {
    Rejection::new(
        stage,
        Reason::BodyTooLarge,
        format!("the request body exceeds this route's limit of {limit} bytes"),
    )
}

/// 503 `overloaded`: the listener's or the route's `max_concurrent_requests` are all in flight.
/// Refused at once, never queued; `Retry-After: 1`, since a place frees as soon as any request
/// in flight ends.
pub fn overloaded(stage: StageId, what: &'static str) -> Rejection {
    Rejection::new(
        stage,
        Reason::Overloaded,
        format!("this {what} is serving as many requests as it allows; retry shortly"),
    )
    .with_header(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    )
}

fn no_healthy_instance() -> Rejection {
    Rejection::new(
        STAGE,
        Reason::NoHealthyInstance,
        "no instance of the upstream is available",
    )
}

fn circuit_open(refused: Refused) -> Rejection {
    // Whole seconds, never 0 (the convention `Retry-After` follows everywhere in the gateway).
    let secs = refused.retry_after.as_secs() + u64::from(refused.retry_after.subsec_nanos() > 0);
    Rejection::new(
        STAGE,
        Reason::CircuitOpen,
        "the upstream is failing; the gateway is not sending it requests for a while",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))
}

/// A gRPC call's deadline: its arrival plus the client's `grpc-timeout`, when it sent one.
fn grpc_deadline(headers: &HeaderMap, arrived: Nanos) -> Result<Option<Nanos>, Rejection> {
    let Some(value) = headers.get(&grpc::GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let timeout = grpc::parse_timeout(value.as_bytes())
        .map_err(|e| Rejection::new(STAGE, Reason::InvalidGrpcTimeout, e.to_string()))?;
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    Ok(Some(arrived.saturating_add(nanos)))
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    fields::first(headers, &header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
