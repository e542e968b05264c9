//! The driver: runs one request through the eight stages in their fixed order, times each, turns
//! the first stop into its RFC 9457 answer (or, for a gRPC call, its trailers-only gRPC status),
//! and attaches the request's record to the response body, which emits it when the body ends —
//! with, for a recorded request, the head as it arrived (`record::recording`).
//!
//! The route is *looked up* before `authn` (authz and ratelimit need the route's rules) but a
//! request without one is *stopped* by `route`, in pipeline order.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use hyper::body::Incoming;

use crate::body::{PendingRecord, RequestBodyMeter, ResponseBody};
use crate::clock::{Clock, Nanos};
use crate::record::recording::RuntimeView;
use crate::record::{RequestRecord, StageTimings};
use crate::routing::authority::request_authority;
use crate::routing::normalize::PathOptions;
use crate::stage;
use crate::stage::context::{ConnectionInfo, GrpcCall, RequestContext, RequestFacts, RouteMatch};
use crate::state::GatewayState;
use crate::vocab::fields;
use crate::vocab::grpc::{self, GrpcCode};
use crate::vocab::rejection::PROBLEM_JSON;
use crate::vocab::trace::{RequestId, TRACEPARENT, TraceContext, X_REQUEST_ID};
use crate::vocab::{Rejection, StageId};

/// The record's `reason` for a CORS preflight the gateway answered itself (not a stop).
pub const CORS_PREFLIGHT: &str = "cors-preflight";

/// Runs one request through the eight stages and returns the response; the request's record is
/// emitted when the response body ends.
///
/// The body is `Incoming` for real traffic; a caller with no connection (the pipeline bench)
/// passes `Option<Incoming>`, where `None` is a request without a body.
pub async fn handle<B: Into<Option<Incoming>>>(
    state: &GatewayState,
    connection: Arc<ConnectionInfo>,
    request: http::Request<B>,
) -> http::Response<ResponseBody> {
    let clock = &state.clock;
    let arrived = clock.now();
    let (parts, body) = request.into_parts();
    let active = state.active.load_full();
    // A sampled request's head is kept as it arrived, before any stage changes it.
    let mut capture = state
        .recorder
        .as_ref()
        .filter(|recorder| recorder.sampled())
        .map(|recorder| {
            let view: Arc<dyn RuntimeView> = active.clone();
            recorder.capture(
                &parts,
                connection.id,
                connection.tls.as_ref(),
                connection.alpn.as_ref(),
                view,
            )
        });
    let bytes_in = Arc::new(match (&capture, &state.recorder) {
        (Some(_), Some(recorder)) => RequestBodyMeter::keeping(recorder.max_body_bytes()),
        _ => RequestBodyMeter::counting(),
    });
    let grpc = GrpcCall::detect(&parts);
    let cx = RequestContext {
        active,
        facts: facts(&parts, connection, arrived, clock.unix_millis()),
        parts,
        body: body.into(),
        bytes_in,
        route: RouteMatch::NotLooked,
        identity: None,
        limit: None,
        target: None,
        breaker: None,
        retries: 0,
        upstream_path: None,
        upgrade: None,
        close_connection: false,
        grpc,
        admitted: Default::default(),
    };

    let laps = Laps {
        clock: clock.as_ref(),
        last: arrived,
        timings: StageTimings::default(),
    };
    let mut exchange = Exchange {
        state,
        cx,
        laps,
        answered: false,
    };
    let outcome = drive(state, &mut exchange.cx, &mut exchange.laps).await;
    let Exchange {
        cx, laps, answered, ..
    } = &mut exchange;

    let mut grpc_status = None;
    let (mut response, stop) = match outcome {
        Ok(Outcome::Upstream(response)) => {
            let mut response = response.map(ResponseBody::upstream);
            if let Some(target) = &cx.target {
                response
                    .body_mut()
                    .idle_after(target.upstream.config.idle_timeout);
            }
            if let Some(call) = &cx.grpc {
                // A trailers-only answer carries its status in the head; trailers fill it later.
                grpc_status = grpc::status_of(response.headers());
                if let Some(deadline) = call.deadline {
                    let left = deadline.saturating_sub(clock.now());
                    response
                        .body_mut()
                        .end_after(Duration::from_nanos(left), deadline_trailers());
                }
            }
            (response, None)
        }
        Ok(Outcome::Answered(response)) => (response, Some((None, CORS_PREFLIGHT))),
        Err(rejection) => {
            cx.close_connection = rejection.close_connection;
            let response = if cx.grpc.is_some() {
                grpc_status = Some(rejection.reason.grpc_code().as_u16());
                grpc_rejection_response(&rejection)
            } else {
                rejection_response(&rejection, cx.facts.request_id.as_str())
            };
            (
                response,
                Some((Some(rejection.stage), rejection.reason.as_str())),
            )
        }
    };
    let preflight = matches!(stop, Some((None, _)));
    stage::mutate_response::run(state, cx, preflight, &mut response).await;
    laps.lap(StageId::MutateResponse);

    if let Some(capture) = &mut capture {
        capture.response_head(response.status(), response.headers());
    }
    let (stopped_at, reason) = stop.unzip();
    let route_metrics = cx
        .route
        .route()
        .and_then(|r| cx.active.metrics_of(r))
        .cloned();
    // From here the answer's body emits the record.
    *answered = true;
    let whole = capture.is_some() || state.sinks.reads_records();
    let mut record = record(
        cx,
        std::mem::take(&mut laps.timings),
        response.status().as_u16(),
        stopped_at.flatten(),
        reason,
        whole,
    );
    record.grpc_status = grpc_status;
    response.body_mut().attach_record(Box::new(PendingRecord {
        record,
        arrived,
        bytes_in: Some(cx.bytes_in.clone()),
        clock: clock.clone(),
        sinks: state.sinks.clone(),
        in_flight: cx.target.take().map(|t| t.in_flight),
        route_metrics,
        recording: capture,
        grpc: cx.grpc.is_some(),
        admitted: std::mem::take(&mut cx.admitted),
        whole,
    }));
    response
}

/// What never changes after arrival: the client's request id when well formed (else a new one),
/// the trace continued or started, and the method, host and origin as the client sent them.
fn facts(
    parts: &http::request::Parts,
    connection: Arc<ConnectionInfo>,
    arrived: Nanos,
    unix_millis: u64,
) -> RequestFacts {
    let request_id = fields::first(&parts.headers, &X_REQUEST_ID)
        .and_then(RequestId::from_client)
        .unwrap_or_default();
    let authority = request_authority(parts.version, &parts.uri, &parts.headers);
    RequestFacts {
        request_id,
        trace: TraceContext::continue_or_start(fields::first(&parts.headers, &TRACEPARENT)),
        connection,
        arrived,
        unix_millis,
        method: parts.method.clone(),
        host: authority.value,
        host_problem: authority.problem,
        target: parts.uri.clone(),
        origin: fields::first(&parts.headers, &header::ORIGIN).cloned(),
    }
}

/// The request's record, from what the stages left in its context. Not `whole`: for the metrics
/// alone, without what only a reader of records needs (the request id's and the trace id's text,
/// the target as sent: three strings a request).
fn record(
    cx: &mut RequestContext,
    timings: StageTimings,
    status: u16,
    stopped_at: Option<StageId>,
    reason: Option<&'static str>,
    whole: bool,
) -> RequestRecord {
    let target = cx.target.as_ref();
    RequestRecord {
        request_id: if whole {
            cx.facts.request_id.as_str().to_owned()
        } else {
            String::new()
        },
        trace_id: if whole {
            cx.facts.trace.trace_id_hex()
        } else {
            String::new()
        },
        unix_millis: cx.facts.unix_millis,
        peer: cx.facts.connection.peer,
        method: cx.facts.method.clone(),
        host: cx.facts.host.clone(),
        path: match &mut cx.route {
            RouteMatch::Matched { path, .. } | RouteMatch::Unmatched { path } => {
                std::mem::take(path)
            }
            RouteMatch::NotLooked | RouteMatch::BadPath(_) | RouteMatch::Redirect { .. } => {
                cx.parts.uri.path().to_string()
            }
        },
        target: if whole {
            crate::record::raw_target(&cx.facts.target, cx.parts.version, |name| {
                cx.active.config.auth.is_token_query_param(name)
            })
        } else {
            String::new()
        },
        route: cx.route.route().map(|r| r.name.clone()),
        route_template: cx.route.route().map(|r| r.template.clone()),
        status,
        grpc_status: None,
        stopped_at,
        reason: reason.map(std::borrow::Cow::Borrowed),
        stage_ns: timings,
        duration_ns: 0,
        identity: cx.identity.take(),
        limit: cx.limit.take().map(|l| l.decision),
        upstream: target.map(|t| t.upstream.name().clone()),
        upstream_instance: target.map(|t| t.address()),
        upstream_path: cx.upstream_path.take(),
        retries: cx.retries,
        breaker: cx.breaker,
        bytes_in: 0,
        bytes_out: 0,
        completed: false,
    }
}

/// A request on its way through the stages. hyper drops a request's future when its client
/// goes away before the answer's head — the connection closed, or its HTTP/2 stream reset (by
/// the client, or by h2 for a body that broke its framing) — and then no response body will
/// ever emit the record: this does, on drop. Status 499, as nginx logs a client that closed
/// the request; `completed` false; the stages that ran are timed; no stop reason, since no
/// stage stopped it.
struct Exchange<'s> {
    state: &'s GatewayState,
    cx: RequestContext,
    laps: Laps<'s>,
    answered: bool,
}

/// The status of a request whose client went away before its answer (nginx's).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let route_metrics = self
            .cx
            .route
            .route()
            .and_then(|r| self.cx.active.metrics_of(r))
            .cloned();
        let whole = self.state.sinks.reads_records();
        let mut record = record(
            &mut self.cx,
            std::mem::take(&mut self.laps.timings),
            CLIENT_CLOSED_REQUEST,
            None,
            None,
            whole,
        );
        record.bytes_in = self.cx.bytes_in.seen();
        record.duration_ns = self.state.clock.now().saturating_sub(self.cx.facts.arrived);
        if whole {
            self.state.sinks.emit(record, route_metrics.as_deref());
        } else {
            self.state.sinks.count(&record, route_metrics.as_deref());
        }
    }
}

enum Outcome {
    /// The upstream answered; its response goes to `mutate_response`.
    Upstream(http::Response<crate::body::UpstreamBody>),
    /// The gateway answered on purpose without it being a stop (a CORS preflight).
    Answered(http::Response<ResponseBody>),
}

/// Each stage's time: one clock reading per stage, the time since the previous reading charged
/// to the stage that just ran.
struct Laps<'c> {
    clock: &'c dyn Clock,
    last: Nanos,
    timings: StageTimings,
}

impl Laps<'_> {
    /// Charges the time since the last reading to `stage`, which just ran.
    ///
    /// Called after each stage's `.await`, not as an `async fn timed(stage_future)` wrapper:
    /// rustc keeps a future passed to an async fn twice in the caller's state (the argument and
    /// the awaited copy), which made each request's future 12 KiB and memcpy a tenth of the
    /// gateway's instructions as hyper moved it.
    fn lap(&mut self, stage: StageId) {
        let now = self.clock.now();
        self.timings.add(stage, now.saturating_sub(self.last));
        self.last = now;
    }
}

/// Awaits one stage and charges its time to it; the value is the stage's result.
macro_rules! timed {
    ($laps:expr, $stage:expr, $run:expr) => {{
        let out = $run.await;
        $laps.lap($stage);
        out
    }};
}

/// The stages in their fixed order, each timed, the first stop ending the run.
async fn drive(
    state: &GatewayState,
    cx: &mut RequestContext,
    laps: &mut Laps<'_>,
) -> Result<Outcome, Rejection> {
    timed!(laps, StageId::Tls, stage::tls::run(state, cx))?;

    if let Some(cors) = &cx.active.config.cors {
        if stage::mutate_response::is_preflight(&cx.parts.method, &cx.parts.headers) {
            let response = stage::mutate_response::answer_preflight(cors, &cx.parts.headers)?;
            return Ok(Outcome::Answered(response));
        }
    }

    // The lookup is charged to `route`, whose rules authz and ratelimit read before it runs.
    let paths = cx
        .active
        .config
        .listeners
        .get(cx.facts.connection.listener)
        .map_or_else(PathOptions::default, |l| l.paths);
    cx.route = stage::route::resolve(
        &cx.active.config,
        &cx.parts.method,
        &cx.parts.uri,
        cx.facts.host.as_ref(),
        &cx.parts.headers,
        &paths,
    );
    laps.lap(StageId::Route);

    // A `grpc: true` route makes its requests gRPC calls, whatever their content type says.
    if cx.grpc.is_none() && cx.route.route().is_some_and(|r| r.grpc) {
        cx.grpc = Some(GrpcCall::of(&cx.parts));
    }

    timed!(laps, StageId::Authn, stage::authn::run(state, cx))?;
    timed!(laps, StageId::Authz, stage::authz::run(state, cx))?;
    timed!(laps, StageId::Ratelimit, stage::ratelimit::run(state, cx))?;
    let target = timed!(laps, StageId::Route, stage::route::run(state, cx))?;
    timed!(
        laps,
        StageId::MutateRequest,
        stage::mutate_request::run(state, cx)
    )?;
    let response = timed!(
        laps,
        StageId::Forward,
        stage::forward::run(state, cx, target)
    )?;
    Ok(Outcome::Upstream(response))
}

/// The trailers a gRPC call's response ends with when its deadline cuts the upstream's stream.
fn deadline_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert(
        grpc::GRPC_STATUS.clone(),
        GrpcCode::DeadlineExceeded.header_value(),
    );
    trailers.insert(
        grpc::GRPC_MESSAGE.clone(),
        grpc::encode_message("the call's deadline (grpc-timeout) passed"),
    );
    trailers
}

/// A stop as a gRPC client reads it: HTTP 200 and a trailers-only response (the head, with
/// `grpc-status` and `grpc-message`, ends the stream), the code from [`Reason::grpc_code`]. The
/// message starts with the reason token, which the problem body's `type` carries for HTTP
/// clients. The stop's own header fields (`WWW-Authenticate`, `Retry-After`) come along.
///
/// [`Reason::grpc_code`]: crate::vocab::Reason::grpc_code
pub fn grpc_rejection_response(rejection: &Rejection) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(ResponseBody::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(grpc::GRPC_CONTENT_TYPE),
    );
    headers.insert(
        grpc::GRPC_STATUS.clone(),
        rejection.reason.grpc_code().header_value(),
    );
    let message = format!("{}: {}", rejection.reason, rejection.detail);
    headers.insert(grpc::GRPC_MESSAGE.clone(), grpc::encode_message(&message));
    for (name, value) in &rejection.headers {
        headers.append(name.clone(), value.clone());
    }
    response
}

/// The one error format for HTTP clients: every stop answers with its RFC 9457 body (a gRPC
/// call's stops: [`grpc_rejection_response`]).
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
