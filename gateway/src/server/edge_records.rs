//! The records of requests refused at the edge, before the pipeline knows of them: a head the
//! stream guard refused (HTTP/1.1), and a stream h2 refused by itself (HTTP/2). Both are
//! stopped at `tls`, through the same sinks and metrics as a stop in the pipeline.

use crate::record::RequestRecord;
use crate::stage::context::ConnectionInfo;
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::trace::TraceContext;
use crate::wire::GuardReport;

/// The one record of a head the stream guard refused: the same record and sinks as a stop in
/// the pipeline (stage `tls`, its reason), counted by the same metrics; method and path as far
/// as the request line could be read, escaped.
pub(super) fn record_refusal(
    state: &GatewayState,
    connection: &ConnectionInfo,
    refused: crate::wire::guard::Refused,
    report: &GuardReport,
) {
    let method = refused
        .head
        .method
        .as_deref()
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok());
    let path = refused
        .head
        .target
        .as_deref()
        .map(|t| t.split('?').next().unwrap_or(t).to_owned())
        .unwrap_or_default();
    let target = refused
        .head
        .target
        .as_deref()
        .map(|t| {
            let active = state.active.load();
            crate::record::redact_query_tokens(t, |name| {
                active.config.auth.is_token_query_param(name)
            })
        })
        .unwrap_or_default();
    let record = edge_record(
        state,
        connection,
        EdgeStop {
            request_id: refused.request_id,
            method,
            host: refused
                .head
                .host
                .as_deref()
                .and_then(|h| http::HeaderValue::from_str(h).ok()),
            path,
            target,
            status: refused.rejection.status.as_u16(),
            reason: refused.rejection.reason,
            bytes_out: report.answer_bytes(),
            completed: report.answered(),
        },
    );
    state.sinks.emit(record, None);
}

/// The one record of an HTTP/2 request h2 refused by itself (`crate::wire::h2_frames`): its
/// header block was never decoded by the gateway, so method, host and path are unknown. The
/// status is h2's own 431 when it sent one, else the reason's (the client got a reset), and
/// `completed` says whether a status reached the client.
pub(super) fn record_stream_refusal(
    state: &GatewayState,
    connection: &ConnectionInfo,
    refusal: crate::wire::h2_frames::StreamRefusal,
) {
    let record = edge_record(
        state,
        connection,
        EdgeStop {
            request_id: crate::vocab::trace::new_request_id(),
            method: None,
            host: None,
            path: String::new(),
            target: String::new(),
            status: refusal
                .answered_status
                .unwrap_or_else(|| refusal.reason.status().as_u16()),
            reason: refusal.reason,
            bytes_out: 0,
            completed: refusal.answered_status.is_some(),
        },
    );
    state.sinks.emit(record, None);
}

/// What a refusal before the pipeline knows of its request.
struct EdgeStop {
    request_id: String,
    /// `None` when not even the method could be read: `-`, as access logs write it.
    method: Option<http::Method>,
    host: Option<http::HeaderValue>,
    path: String,
    target: String,
    status: u16,
    reason: crate::vocab::Reason,
    bytes_out: u64,
    completed: bool,
}

fn edge_record(state: &GatewayState, connection: &ConnectionInfo, stop: EdgeStop) -> RequestRecord {
    let mut stage_ns = crate::record::StageTimings::default();
    stage_ns.set(StageId::Tls, 0);
    RequestRecord {
        request_id: stop.request_id,
        trace_id: TraceContext::continue_or_start(None).trace_id_hex(),
        unix_millis: state.clock.unix_millis(),
        peer: connection.peer,
        method: stop
            .method
            .unwrap_or_else(|| http::Method::from_bytes(b"-").unwrap_or_default()),
        host: stop.host,
        path: stop.path,
        target: stop.target,
        route: None,
        route_template: None,
        status: stop.status,
        grpc_status: None,
        stopped_at: Some(StageId::Tls),
        reason: Some(std::borrow::Cow::Borrowed(stop.reason.as_str())),
        stage_ns,
        duration_ns: 0,
        identity: None,
        limit: None,
        upstream: None,
        upstream_instance: None,
        upstream_path: None,
        retries: 0,
        breaker: None,
        bytes_in: 0,
        bytes_out: stop.bytes_out,
        completed: stop.completed,
    }
}
