//! `forward`: sends the request to the instance `route` picked, through the upstream's pooled
//! keep-alive client, streaming the body both ways. Refused or reset connections are a 502, a
//! response head that does not arrive within the upstream's request timeout is a 504, a body over
//! the route's limit discovered while streaming is a 413. Retries and the total timeout are in
//! `attempt.rs`, WebSocket pass-through in `websocket.rs`.

use http::{Request, Response, Version};
use hyper::body::Incoming;

use super::context::{RequestContext, Target};
use crate::state::GatewayState;
use crate::state::upstreams::{PoolError, PoolErrorKind};
use crate::vocab::{Reason, Rejection, StageId};

mod attempt;
pub mod websocket;

const STAGE: StageId = StageId::Forward;

/// Sends the request to `target` (and, when retries allow, to others), leaving the instance of
/// the last try in the context for the record.
pub async fn run(
    _state: &GatewayState,
    cx: &mut RequestContext,
    target: Target,
) -> Result<Response<Incoming>, Rejection> {
    // Per-try and total timeouts, retries, outcomes fed to breaker and ejection: attempt.rs.
    attempt::run(cx, target).await
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
    let mut path_and_query = String::with_capacity(path.len() + 64);
    path_and_query.push_str(path);
    if let Some(query) = cx.parts.uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let uri = http::Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(instance.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| {
            Rejection::new(
                STAGE,
                Reason::BadPath,
                "the rewritten path is not a valid request target",
            )
        })?;

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
}

impl TryFailure {
    fn of(error: &PoolError) -> Self {
        match error.kind {
            PoolErrorKind::Unreachable => TryFailure::Unreachable,
            PoolErrorKind::Refused => TryFailure::Refused,
            PoolErrorKind::Reset => TryFailure::Reset,
            PoolErrorKind::BodyTooLarge => TryFailure::BodyTooLarge,
        }
    }

    fn rejection(self, limit: u64) -> Rejection {
        match self {
            TryFailure::BodyTooLarge => crate::stage::route::body_too_large(STAGE, limit),
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
        }
    }
}
