//! `forward`: sends the request to the instance `route` picked, through the upstream's pooled
//! keep-alive client, streaming the body both ways. Refused or reset connections are a 502, a
//! response head that does not arrive within the upstream's request timeout is a 504, a body over
//! the route's limit discovered while streaming is a 413. Retries and the total timeout are in
//! `attempt.rs`, WebSocket pass-through in `websocket.rs`.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyTooLarge, UpstreamRequestBody};
use crate::config::RouteAction;
use crate::config::compiled::Upstream;
use crate::pipeline::{RequestContext, StageId};
use crate::rejection::Rejection;

mod attempt;
pub mod websocket;

const STAGE: StageId = StageId::Forward;

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamRequestBody>;

/// One pooled client per upstream, so each keeps its own connect timeout and its own pool.
/// With `tls`, connections are TLS (verified against the upstream's CA, with its client
/// certificate if configured); the request URI's scheme (`Upstream::scheme`) selects it.
pub fn new_client(
    connect_timeout: std::time::Duration,
    tls: Option<crate::config::identity::UpstreamTls>,
) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The https connector wraps this one; it refuses `http` URIs only when asked to.
    http.enforce_http(false);
    let connector = match tls {
        Some(tls) => crate::identity::tls::https_connector(http, Some(tls.config), tls.server_name),
        None => crate::identity::tls::https_connector(http, None, None),
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

pub async fn run(cx: &mut RequestContext) -> Result<Response<Incoming>, Rejection> {
    let (upstream, address) = match (&cx.route, &cx.upstream_instance) {
        (Some(route), Some((_, address))) => match &route.action {
            RouteAction::Forward { upstream } => (upstream.clone(), *address),
            RouteAction::Respond { .. } => return Err(internal("the route does not forward")),
        },
        _ => return Err(internal("no upstream instance was picked")),
    };
    // Per-try and total timeouts, retries, outcomes fed to breaker and ejection: attempt.rs.
    attempt::run(cx, upstream, address).await
}

fn build_request(
    cx: &mut RequestContext,
    upstream: &Arc<Upstream>,
    address: std::net::SocketAddr,
) -> Result<Request<Option<Incoming>>, Rejection> {
    let instance = upstream
        .instances
        .iter()
        .find(|i| i.address == address)
        .ok_or_else(|| internal("the picked instance is gone"))?;
    let path = cx.upstream_path.as_deref().unwrap_or(&cx.normalized_path);
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
                StatusCode::BAD_REQUEST,
                "bad-path",
                "the rewritten path is not a valid request target",
            )
        })?;

    let mut headers = std::mem::take(&mut cx.parts.headers);
    // An HTTP/2 client names the host in :authority; the HTTP/1.1 upstream needs it as Host.
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = cx.parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
    }
    let mut request = Request::new(cx.body.take());
    *request.method_mut() = cx.parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}

fn classify(error: &hyper_util::client::legacy::Error, limit: u64) -> Rejection {
    let mut source = error.source();
    while let Some(e) = source {
        if e.downcast_ref::<BodyTooLarge>().is_some() {
            return crate::stage::route::body_too_large(STAGE, limit);
        }
        source = e.source();
    }
    if error.is_connect() {
        Rejection::new(
            STAGE,
            StatusCode::BAD_GATEWAY,
            "upstream-unreachable",
            "the upstream refused or did not accept the connection",
        )
    } else {
        Rejection::new(
            STAGE,
            StatusCode::BAD_GATEWAY,
            "upstream-reset",
            "the upstream closed the connection before answering",
        )
    }
}

fn internal(detail: &'static str) -> Rejection {
    Rejection::new(STAGE, StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
}

/// The counter `forward` shares with the request body so the record can report bytes in.
pub fn bytes_in_counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}
