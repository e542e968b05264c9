//! The eight stages, the per-request context they share, and the driver that runs them in order.
//!
//! A stage either passes (possibly enriching the context) or stops the request with a typed
//! [`Rejection`]. The driver times every stage, and whatever happens the request leaves one
//! [`RequestRecord`](crate::record::RequestRecord).

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize, Serializer};

use http::{HeaderValue, header};

use crate::body::{PendingRecord, ResponseBody};
use crate::clock::Nanos;
use crate::config::{CompiledRoute, Runtime};
use crate::record::{RequestRecord, StageTimings};
use crate::rejection::{PROBLEM_JSON, Rejection};
use crate::stage;
use crate::stage::mutate_request::{
    TRACEPARENT, TraceContext, X_REQUEST_ID, new_request_id, well_formed_request_id,
};

/// The stable identifier of a stage: module name, config key, metric label, scenario `stopped_at`
/// value and TUI label are all this one snake_case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageId {
    Tls,
    Authn,
    Authz,
    Ratelimit,
    Route,
    MutateRequest,
    Forward,
    MutateResponse,
}

impl StageId {
    pub const ALL: [StageId; 8] = [
        StageId::Tls,
        StageId::Authn,
        StageId::Authz,
        StageId::Ratelimit,
        StageId::Route,
        StageId::MutateRequest,
        StageId::Forward,
        StageId::MutateResponse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StageId::Tls => "tls",
            StageId::Authn => "authn",
            StageId::Authz => "authz",
            StageId::Ratelimit => "ratelimit",
            StageId::Route => "route",
            StageId::MutateRequest => "mutate_request",
            StageId::Forward => "forward",
            StageId::MutateResponse => "mutate_response",
        }
    }

    pub fn parse(name: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StageId::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown stage `{name}`, expected one of: tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response"
            ))
        })
    }
}

/// Who made the request, as established by `authn`. Never holds a secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The id of the API key or of the signing key that vouched for this identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Whether the client reached us over TLS; decides X-Forwarded-Proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What one stage decided about the limit, kept for the record and the response headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitDecision {
    pub policy: String,
    pub subject: String,
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// The store could not answer; the policy's `on_store_error` decided (remaining unknown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_fallback: bool,
}

/// The state one request carries through the pipeline.
pub struct RequestContext {
    /// The configuration this request started under; a reload never changes it mid-request.
    pub runtime: Arc<Runtime>,
    pub request_id: String,
    pub trace: TraceContext,
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// Monotonic time the request arrived, from the gateway's clock.
    pub arrived: Nanos,
    pub unix_millis: u64,
    /// The request head; the body travels separately so it can stream.
    pub parts: Parts,
    pub body: Option<Incoming>,
    /// Request body bytes seen so far, shared with the streaming body.
    pub bytes_in: Arc<std::sync::atomic::AtomicU64>,
    /// The path after normalization: what routing matched and what the upstream sees unless rewritten.
    pub normalized_path: String,
    /// Set before the pipeline runs so authz and ratelimit can read the route's rules; `route`
    /// is the stage that stops a request with no route.
    pub route: Option<Arc<CompiledRoute>>,
    /// Why the path could not be normalized; `route` turns it into a 400.
    pub path_error: Option<crate::stage::route::normalize::PathError>,
    pub identity: Option<Arc<Identity>>,
    pub limit: Option<LimitDecision>,
    /// `RateLimit-Policy`, `RateLimit` (and legacy) fields `ratelimit` chose; added to the
    /// answer, admitted or refused, after `mutate_response`.
    pub limit_headers: Vec<(http::HeaderName, HeaderValue)>,
    /// The upstream instance `route` picked, as `name@address`.
    pub upstream_instance: Option<(Arc<str>, SocketAddr)>,
    /// The path sent upstream, after rewriting.
    pub upstream_path: Option<String>,
    /// The connection's TLS (SNI, client certificate); `None` on plaintext.
    pub tls: Option<Arc<crate::identity::tls::TlsInfo>>,
    /// The upstream's live state as `route` and `forward` used it: instance, breaker permission,
    /// retries, the in-flight guard (crate::resilience).
    pub resilience: crate::resilience::RequestResilience,
}

impl RequestContext {
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref().map(|r| r.name.as_ref())
    }
}

/// The outcome of the driver: where the request stopped, if anywhere.
pub type StageResult = Result<(), Rejection>;

/// What the connection knows about a request that the request itself does not say.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// What the TLS handshake established (SNI, client certificate); `None` on plaintext.
    pub tls: Option<Arc<crate::identity::tls::TlsInfo>>,
}

/// Runs one request through the eight stages and returns the response; the request's record is
/// emitted when the response body ends.
pub async fn handle(
    state: &crate::server::GatewayState,
    conn: ConnectionInfo,
    request: http::Request<Incoming>,
) -> http::Response<ResponseBody> {
    let clock = &state.clock;
    let arrived = clock.now();
    let runtime = state.runtime.load_full();
    let (parts, body) = request.into_parts();

    let request_id = parts
        .headers
        .get(&X_REQUEST_ID)
        .filter(|v| well_formed_request_id(v.as_bytes()))
        .and_then(|v| v.to_str().ok())
        .map_or_else(new_request_id, str::to_owned);
    let trace = TraceContext::continue_or_start(parts.headers.get(&TRACEPARENT));
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let mut cx = RequestContext {
        runtime,
        request_id,
        trace,
        peer: conn.peer,
        scheme: conn.scheme,
        arrived,
        unix_millis: clock.unix_millis(),
        normalized_path: String::new(),
        route: None,
        path_error: None,
        identity: None,
        limit: None,
        limit_headers: Vec::new(),
        upstream_instance: None,
        upstream_path: None,
        tls: conn.tls,
        resilience: Default::default(),
        bytes_in: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        body: Some(body),
        parts,
    };
    let method = cx.parts.method.to_string();
    let host = host_of(&cx.parts);

    let mut timings = StageTimings::default();
    let outcome = drive(state, &mut cx, &mut timings, clock.as_ref()).await;

    let started_response = clock.now();
    let mut close_connection = false;
    let (mut response, stop) = match outcome {
        Ok(Outcome::Upstream(response)) => (response.map(ResponseBody::upstream), None),
        Ok(Outcome::Answered(response, reason)) => (response, Some((None, reason))),
        Err(rejection) => {
            close_connection = rejection.close_connection;
            let response = rejection_response(&rejection, &cx.request_id);
            (response, Some((Some(rejection.stage), rejection.reason)))
        }
    };
    let preflight = matches!(stop, Some((None, _)));
    crate::stage::mutate_response::run(&cx, origin.as_ref(), preflight, &mut response);
    for (name, value) in &cx.limit_headers {
        // After mutate_response: the gateway's own fields replace whatever the upstream sent.
        response.headers_mut().insert(name.clone(), value.clone());
    }
    if close_connection {
        // After mutate_response, which strips connection-specific headers from everything else.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&cx.request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    timings.set(
        StageId::MutateResponse,
        clock.now().saturating_sub(started_response),
    );

    let (stopped_at, reason) = stop.unwrap_or((None, ""));
    let record = RequestRecord {
        request_id: cx.request_id,
        trace_id: cx.trace.trace_id_hex(),
        unix_millis: cx.unix_millis,
        peer: cx.peer,
        method,
        host,
        path: if cx.normalized_path.is_empty() {
            cx.parts.uri.path().to_string()
        } else {
            cx.normalized_path
        },
        route: cx.route.as_ref().map(|r| r.name.clone()),
        route_template: cx.route.as_ref().map(|r| r.template.clone()),
        status: response.status().as_u16(),
        stopped_at,
        reason: (!reason.is_empty()).then_some(std::borrow::Cow::Borrowed(reason)),
        stage_ns: timings,
        duration_ns: 0,
        identity: cx.identity,
        limit: cx.limit,
        upstream: cx.upstream_instance.as_ref().map(|(name, _)| name.clone()),
        upstream_instance: cx.upstream_instance.map(|(_, addr)| addr),
        upstream_path: cx.upstream_path,
        retries: cx.resilience.retries,
        breaker: cx.resilience.breaker,
        bytes_in: 0,
        bytes_out: 0,
        completed: false,
    };
    response.body_mut().attach_record(Box::new(PendingRecord {
        record,
        arrived,
        bytes_in: Some(cx.bytes_in),
        clock: clock.clone(),
        sinks: state.sinks.clone(),
        in_flight: cx.resilience.in_flight.take(),
    }));
    response
}

enum Outcome {
    /// The upstream answered; its response goes to `mutate_response`.
    Upstream(http::Response<Incoming>),
    /// The gateway answered on purpose without it being a stop (a CORS preflight).
    Answered(http::Response<ResponseBody>, &'static str),
}

/// The driver: the stages in their fixed order, each timed, the first stop ending the run.
async fn drive(
    state: &crate::server::GatewayState,
    cx: &mut RequestContext,
    timings: &mut StageTimings,
    clock: &dyn crate::clock::Clock,
) -> Result<Outcome, Rejection> {
    let mut last = cx.arrived;
    let mut lap = |stage: StageId, timings: &mut StageTimings, restart: bool| {
        let now = clock.now();
        if !restart {
            timings.set(stage, now.saturating_sub(last));
        }
        last = now;
    };

    let result = stage::tls::run(cx);
    lap(StageId::Tls, timings, false);
    result?;

    if let Some(cors) = &cx.runtime.cors {
        if stage::mutate_response::is_preflight(&cx.parts.method, &cx.parts.headers) {
            let response = stage::mutate_response::answer_preflight(cors, &cx.parts.headers)?;
            return Ok(Outcome::Answered(response, "cors-preflight"));
        }
    }

    // Resolve the route up front (timed as part of `route`): authz and ratelimit read its rules.
    let route_started = clock.now();
    resolve_route(cx);
    let lookup_nanos = clock.now().saturating_sub(route_started);
    lap(StageId::Route, timings, true);

    let result = stage::authn::run(state, cx).await;
    lap(StageId::Authn, timings, false);
    result?;
    let result = stage::authz::run(cx);
    lap(StageId::Authz, timings, false);
    result?;
    let result = stage::ratelimit::run(state, cx).await;
    lap(StageId::Ratelimit, timings, false);
    result?;
    let result = stage::route::run(cx);
    lap(StageId::Route, timings, false);
    timings.nanos[StageId::Route.index()] += lookup_nanos;
    result?;
    let result = stage::mutate_request::run(cx);
    lap(StageId::MutateRequest, timings, false);
    result?;
    let result = stage::forward::run(cx).await;
    lap(StageId::Forward, timings, false);
    Ok(Outcome::Upstream(result?))
}

fn resolve_route(cx: &mut RequestContext) {
    match stage::route::resolve(
        &cx.runtime,
        &cx.parts.method,
        &cx.parts.uri,
        &cx.parts.headers,
    ) {
        Ok((path, route)) => {
            cx.normalized_path = path;
            cx.route = route;
        }
        Err(error) => cx.path_error = Some(error),
    }
}

fn host_of(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .map(str::to_owned)
}

/// The one error format: every stop answers with its RFC 9457 body.
pub fn rejection_response(rejection: &Rejection, request_id: &str) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(ResponseBody::full(rejection.problem_body(request_id)));
    *response.status_mut() = rejection.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in &rejection.headers {
        headers.append(name.clone(), value.clone());
    }
    response
}
