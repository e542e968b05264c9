//! `forward`: sends the request to the instance `route` picked, through the upstream's pooled
//! keep-alive client, streaming the body both ways. Refused or reset connections are a 502, a
//! response head that does not arrive within the upstream's request timeout is a 504, a body over
//! the route's limit discovered while streaming is a 413, a body that stalls or trickles
//! (`limits.body_read_timeout`, `limits.min_body_rate`) a 408 with the client connection
//! closed, a malformed chunked body a 400, a response head the pool's strict checks refuse a
//! 502 `upstream-bad-response`. Retries and the total timeout are in
//! `attempt.rs`, WebSocket pass-through in `websocket.rs`.

use http::{Request, Response, Version};
use hyper::body::Incoming;

use super::context::{RequestContext, Target};
use crate::body::{BodyRefusal, UpstreamBody};
use crate::state::GatewayState;
use crate::state::upstreams::{PoolError, PoolErrorKind};
use crate::vocab::{Reason, Rejection, StageId};

mod attempt;
pub mod websocket;

const STAGE: StageId = StageId::Forward;

/// Sends the request to `target` (and, when retries allow, to others), leaving the instance of
/// the last try in the context for the record.
pub async fn run(
    state: &GatewayState,
    cx: &mut RequestContext,
    target: Target,
) -> Result<Response<UpstreamBody>, Rejection> {
    // Per-try and total timeouts, retries, outcomes fed to breaker and ejection: attempt.rs.
    // The request body's pace rule reads the gateway's clock.
    attempt::run(cx, target, state.clock.clone()).await
}

fn build_request(
    cx: &mut RequestContext,
    target: &Target,
) -> Result<Request<Option<Incoming>>, Rejection> {
    let upstream = &target.upstream.config;
    let instance = &upstream.instances[target.instance];
    let path = cx
        .upstream_path
        .as_deref()
        .or(cx.route.path())
        .unwrap_or("/");
    // Most requests go upstream with the path they came with: its parsed form is reused (a
    // clone shares the bytes) rather than spelled out again and parsed a second time.
    let path_and_query = match cx.parts.uri.path_and_query() {
        Some(unchanged) if unchanged.path() == path => unchanged.clone(),
        _ => {
            let mut spelled = String::with_capacity(path.len() + 64);
            spelled.push_str(path);
            if let Some(query) = cx.parts.uri.query() {
                spelled.push('?');
                spelled.push_str(query);
            }
            http::uri::PathAndQuery::try_from(spelled).map_err(|_| bad_target())?
        }
    };
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(upstream.scheme.clone());
    uri.authority = Some(instance.authority.clone());
    uri.path_and_query = Some(path_and_query);
    let uri = http::Uri::from_parts(uri).map_err(|_| bad_target())?;

    // `Host` is the request's one authority, set by `mutate_request` (an HTTP/2 client's
    // `:authority` included); without one the pool names the instance.
    let headers = std::mem::take(&mut cx.parts.headers);
    let mut request = Request::new(cx.body.take());
    *request.method_mut() = cx.parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}

fn bad_target() -> Rejection {
    Rejection::new(
        STAGE,
        Reason::BadPath,
        "the rewritten path is not a valid request target",
    )
}

/// Why a try failed before a response head arrived; decides the retry and the breaker's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryFailure {
    /// Refused or not accepted in time: the upstream never saw the request.
    Unreachable,
    /// Closed before answering.
    Reset,
    /// An HTTP/2 stream the upstream refused or will not process (GOAWAY): never processed.
    Refused,
    /// The client's streamed body grew past the route's limit: the client's fault.
    BodyTooLarge,
    /// The response head's framing was ambiguous or malformed; the connection is closed.
    BadResponse,
    /// The client's chunked body was malformed: the client's fault, never the upstream's.
    MalformedBody,
    /// The client's streamed body stalled or came too slowly: the client's fault.
    BodyTimeout,
}

impl TryFailure {
    fn of(error: &PoolError) -> Self {
        match error.kind {
            PoolErrorKind::Unreachable => TryFailure::Unreachable,
            PoolErrorKind::Refused => TryFailure::Refused,
            PoolErrorKind::Reset => TryFailure::Reset,
            PoolErrorKind::BodyTooLarge => TryFailure::BodyTooLarge,
            PoolErrorKind::BadResponse => TryFailure::BadResponse,
            PoolErrorKind::MalformedBody => TryFailure::MalformedBody,
            PoolErrorKind::BodyTimeout => TryFailure::BodyTimeout,
        }
    }

    /// The gateway's own verdict on the client's body, when it ended the body: it wins over the
    /// error the pool saw, which for HTTP/2 is only the stream's reset.
    fn of_body(refusal: Option<BodyRefusal>) -> Option<Self> {
        refusal.map(|r| match r {
            BodyRefusal::TooLarge => TryFailure::BodyTooLarge,
            BodyRefusal::Stalled => TryFailure::BodyTimeout,
        })
    }

    fn rejection(self, limit: u64) -> Rejection {
        match self {
            TryFailure::BodyTooLarge => crate::stage::route::body_too_large(STAGE, limit),
            // The upstream saw a body that never ended; the connection cannot be read further.
            TryFailure::MalformedBody => Rejection::new(
                STAGE,
                Reason::MalformedBody,
                "the request body is not valid chunked encoding",
            ),
            // What is left of the body is unread on the client's connection: it cannot carry
            // another request.
            TryFailure::BodyTimeout => Rejection::new(
                STAGE,
                Reason::RequestBodyTimeout,
                "the request body stopped arriving, or arrived too slowly",
            )
            .closing_connection(),
            TryFailure::Unreachable => Rejection::new(
                STAGE,
                Reason::UpstreamUnreachable,
                "the upstream refused or did not accept the connection",
            ),
            TryFailure::Reset => Rejection::new(
                STAGE,
                Reason::UpstreamReset,
                "the upstream closed the connection before answering",
            ),
            TryFailure::Refused => Rejection::new(
                STAGE,
                Reason::UpstreamReset,
                "the upstream refused the stream and no retry was left",
            ),
            TryFailure::BadResponse => Rejection::new(
                STAGE,
                Reason::UpstreamBadResponse,
                "the upstream's response was malformed or its framing ambiguous",
            ),
        }
    }
}
