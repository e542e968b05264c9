//! `mutate_response`: shapes what the client sees, for upstream answers and stops alike —
//! connection-specific and internal headers, `Server` and `X-Powered-By` removed; gRPC's
//! trailers named for an HTTP/1.1 client that takes them; CORS answered at the gateway
//! (preflights never reach an upstream; exact origin match; never `*` with credentials;
//! `Vary: Origin` whenever the answer depends on the origin).

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::Body as _;

use crate::body::ResponseBody;
use crate::config::compiled::CorsPolicy;
use crate::stage::context::RequestContext;
use crate::stage::mutate_request::remove_hop_by_hop;
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::trace::X_REQUEST_ID;
use crate::vocab::{Reason, Rejection};
use crate::vocab::{fields, grpc};

const STAGE: StageId = StageId::MutateResponse;

/// Runs on every answer, stops included. `preflight` marks the gateway's own preflight answer,
/// whose CORS headers are already final. Writes the gateway's own final fields last, so nothing
/// an upstream sent can override them: the rate-limit fields, `Connection: close` after a stop
/// that cannot trust the framing, and `X-Request-Id`.
pub async fn run(
    _state: &GatewayState,
    cx: &RequestContext,
    preflight: bool,
    response: &mut Response<ResponseBody>,
) {
    let origin = cx.facts.origin.as_ref();
    let switched = crate::stage::forward::websocket::switching(cx, response);
    let headers = response.headers_mut();
    remove_hop_by_hop(headers);
    if let Some(upgrade) = switched {
        // A WebSocket upgrade the route allows: the 101 needs its hop-by-hop headers back.
        crate::stage::forward::websocket::restore_response(headers, upgrade);
    }
    if cx.grpc.as_ref().is_some_and(|call| call.h1_trailers) && !response.body().is_end_stream() {
        declare_grpc_trailers(response.headers_mut());
    }
    let headers = response.headers_mut();
    if let Some(deprecation) = cx.route.route().and_then(|r| r.deprecation.as_ref()) {
        deprecation.apply(headers);
    }
    // The upstream's software fields and the internal headers: one walk, one list.
    fields::remove_named(headers, &cx.active.config.response_fields_removed);
    if let Some(cors) = cx.active.config.cors.as_ref().filter(|_| !preflight) {
        apply_cors(cors, origin, headers);
    }
    if let Some(limit) = &cx.limit {
        for (name, value) in &limit.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    if cx.close_connection {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(X_REQUEST_ID.clone(), cx.facts.request_id.header_value());
}

/// Names `grpc-status` and `grpc-message` in `Trailer`: an HTTP/1.1 client gets only the trailers
/// the response names (an HTTP/2 upstream names none), and without them no gRPC call ends.
/// Trailing metadata of other names reaches HTTP/1.1 clients only when the upstream named it.
fn declare_grpc_trailers(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in [&grpc::GRPC_STATUS, &grpc::GRPC_MESSAGE] {
        if !named.contains(name) {
            headers.append(header::TRAILER, HeaderValue::from_name(name.clone()));
        }
    }
}

fn origin_allowed<'a>(cors: &CorsPolicy, origin: &'a HeaderValue) -> Option<&'a HeaderValue> {
    let text = origin.to_str().ok()?;
    (cors.any_origin || cors.allowed_origins.iter().any(|o| o == text)).then_some(origin)
}

fn apply_cors(cors: &CorsPolicy, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    // Upstreams do not get to set CORS: the gateway's policy is the only one, added once.
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        headers.remove(name);
    }
    let Some(origin) = origin else { return };
    add_vary_origin(headers);
    let Some(origin) = origin_allowed(cors, origin) else {
        return;
    };
    allow_origin(cors, origin, headers);
    if let Some(expose) = &cors.expose_headers {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
    }
}

fn allow_origin(cors: &CorsPolicy, origin: &HeaderValue, headers: &mut HeaderMap) {
    if cors.any_origin && !cors.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    if cors.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

fn add_vary_origin(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*");
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight at the gateway: 204 with the policy, or a 403 stop when the origin or the
/// requested method is not allowed. Without a CORS policy, preflights travel like any request.
pub fn answer_preflight(
    cors: &CorsPolicy,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, Rejection> {
    let denied = |detail: &'static str| Rejection::new(STAGE, Reason::CorsRejected, detail);
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| origin_allowed(cors, o))
        .ok_or_else(|| denied("this origin may not call the API from a browser"))?;
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    let method_allowed = cors
        .allowed_methods
        .to_str()
        .unwrap_or_default()
        .split(',')
        .any(|m| m.trim() == requested);
    if !method_allowed {
        return Err(denied("this method is not allowed from a browser"));
    }
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    add_vary_origin(h);
    allow_origin(cors, origin, h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        cors.allowed_methods.clone(),
    );
    if let Some(allowed) = &cors.allowed_headers {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
    }
    if let Some(max_age) = &cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    Ok(response)
}
