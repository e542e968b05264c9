//! `route`: the request's route was looked up before the pipeline ran (authz and ratelimit need
//! its rules); this stage is where a request without one stops (404), where a catch-all answers,
//! where a declared body size is checked against the route's limit, and where an instance of the
//! upstream is picked.

pub mod normalize;
pub mod pattern;
pub mod table;

use std::sync::atomic::Ordering;

use http::{StatusCode, header};

use crate::config::RouteAction;
use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;

const STAGE: StageId = StageId::Route;

pub fn run(cx: &mut RequestContext) -> StageResult {
    if let Some(error) = &cx.path_error {
        return Err(Rejection::new(
            STAGE,
            StatusCode::BAD_REQUEST,
            "bad-path",
            format!("the request path cannot be routed: {error}"),
        ));
    }
    let Some(route) = cx.route.clone() else {
        return Err(Rejection::new(
            STAGE,
            StatusCode::NOT_FOUND,
            "no-route",
            "no route serves this path",
        ));
    };
    let upstream = match &route.action {
        RouteAction::Respond { status, detail } => {
            return Err(Rejection::new(
                STAGE,
                *status,
                "catch-all",
                detail.to_string(),
            ));
        }
        RouteAction::Forward { upstream } => upstream,
    };
    if let Some(declared) = content_length(&cx.parts.headers) {
        if declared > route.max_body_bytes {
            return Err(body_too_large(STAGE, route.max_body_bytes));
        }
    }
    if upstream.instances.is_empty() {
        return Err(Rejection::new(
            STAGE,
            StatusCode::SERVICE_UNAVAILABLE,
            "no-healthy-instance",
            "no instance of the upstream is available",
        ));
    }
    // Round robin; weights, health and breakers arrive with the resilience issue.
    let turn = upstream.next_instance.fetch_add(1, Ordering::Relaxed);
    let instance = &upstream.instances[turn % upstream.instances.len()];
    cx.upstream_instance = Some((upstream.name.clone(), instance.address));
    Ok(())
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
