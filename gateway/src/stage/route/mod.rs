//! `route`: the request's route was looked up before the pipeline ran (authz and ratelimit need
//! its rules); this stage is where a request without one stops (404), where a catch-all answers,
//! where a declared body size is checked against the route's limit, and where an instance of the
//! upstream is picked.

pub mod normalize;
pub mod pattern;
pub mod table;

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri, header};

use crate::config::{CompiledRoute, RouteAction, Runtime, Upstream};
use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;
use normalize::{PathError, normalize_path};
use table::RouteQuery;

const STAGE: StageId = StageId::Route;

/// Finds the route for a request: normalizes the path, then asks the table. The pipeline calls
/// this before its stages run; `gateway routes --test` calls it offline.
pub fn resolve(
    runtime: &Runtime,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, Option<Arc<CompiledRoute>>), PathError> {
    let path = normalize_path(uri.path())?.into_owned();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host());
    let query = RouteQuery {
        method,
        host,
        path: &path,
        headers,
        query: uri.query(),
    };
    let route = runtime.routes.lookup(&query).cloned();
    Ok((path, route))
}

/// The routing verdict for a resolved request: the upstream to forward to, or the stop.
pub fn verdict<'r>(
    path_error: Option<&PathError>,
    route: Option<&'r CompiledRoute>,
) -> Result<&'r Arc<Upstream>, Rejection> {
    if let Some(error) = path_error {
        return Err(Rejection::new(
            STAGE,
            StatusCode::BAD_REQUEST,
            "bad-path",
            format!("the request path cannot be routed: {error}"),
        ));
    }
    let Some(route) = route else {
        return Err(Rejection::new(
            STAGE,
            StatusCode::NOT_FOUND,
            "no-route",
            "no route serves this path",
        ));
    };
    match &route.action {
        RouteAction::Respond { status, detail } => Err(Rejection::new(
            STAGE,
            *status,
            "catch-all",
            detail.to_string(),
        )),
        RouteAction::Forward { upstream } => Ok(upstream),
    }
}

pub fn run(cx: &mut RequestContext) -> StageResult {
    let route = cx.route.clone();
    let upstream = verdict(cx.path_error.as_ref(), route.as_deref())?;
    let Some(route) = route.as_deref() else {
        return Ok(());
    };
    if let Some(declared) = content_length(&cx.parts.headers) {
        if declared > route.max_body_bytes {
            return Err(body_too_large(STAGE, route.max_body_bytes));
        }
    }
    // The breaker (503 `circuit-open`), then the balancer among instances in rotation
    // (503 `no-healthy-instance`): crate::resilience.
    crate::resilience::choose(cx, upstream)
}

pub fn body_too_large(stage: StageId, limit: u64) -> Rejection {
    Rejection::new(
        stage,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        format!("the request body exceeds this route's limit of {limit} bytes"),
    )
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
