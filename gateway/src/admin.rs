//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process answers), `/readyz`
//! (ready for traffic: issuers' keys fetched, not stopping), `/config` (the active config's
//! source, hash and version, and the last refused reload), `/upstreams` (breakers and instances:
//! health, ejection, requests in flight) and `/records` — a stream of request records as JSON
//! lines, so a TUI can attach to a running gateway.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::state::GatewayState;

type AdminBody = BoxBody<Bytes, Infallible>;

pub async fn serve(
    listener: TcpListener,
    state: Arc<GatewayState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        let shutdown = shutdown.clone();
                        async move { Ok::<_, Infallible>(route(&state, req, shutdown)) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn route(
    state: &GatewayState,
    req: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Response<AdminBody> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Breaker states and instances in rotation are read at scrape time.
            state
                .active
                .load()
                .upstreams
                .refresh_gauges(&state.sinks.metrics.resilience, state.clock.now());
            let mut r = text(StatusCode::OK, state.sinks.metrics.encode());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readiness(state, &shutdown),
        "/config" => {
            let active = state.active.load();
            let config = &active.config;
            let body = serde_json::json!({
                "source": config.source,
                "hash": config.hash,
                "version": active.upstreams.version,
                "routes": config.routes.routes().len(),
                "upstreams": config.upstreams.len(),
                // What a watching TUI's algorithm lab starts from: each policy's quota.
                "rate_limits": config.rate_limits.policies.iter().map(|p| serde_json::json!({
                    "id": &*p.id,
                    "algorithm": p.algorithm.as_str(),
                    "limit": p.quota.limit,
                    "period_nanos": p.quota.period_nanos,
                    "burst": p.quota.burst,
                })).collect::<Vec<_>>(),
                "last_reload_failure": state.reload.last_failure(),
            });
            json(body)
        }
        "/upstreams" => {
            let active = state.active.load();
            let now = state.clock.now();
            let upstreams: Vec<serde_json::Value> = active
                .upstreams
                .upstreams()
                .iter()
                .map(|u| u.snapshot(now))
                .collect();
            json(serde_json::json!({
                "version": active.upstreams.version,
                "upstreams": upstreams,
            }))
        }
        "/records" => record_stream(state.sinks.subscribe(), shutdown),
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown admin path; try /metrics /healthz /readyz /config /upstreams /records\n"
                .into(),
        ),
    }
}

/// Ready to take traffic: the listeners are bound (the admin listener only serves once they
/// are), every issuer's first key fetch has succeeded, and the gateway is not stopping. A load
/// balancer or a benchmark waits on it; `/healthz` only says the process answers.
fn readiness(state: &GatewayState, shutdown: &watch::Receiver<bool>) -> Response<AdminBody> {
    if *shutdown.borrow() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: stopping\n".into(),
        );
    }
    let waiting = state.identity.issuers_without_keys();
    if !waiting.is_empty() {
        let names = waiting.iter().map(|n| &**n).collect::<Vec<_>>().join(", ");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no signing keys fetched yet from issuer {names}\n"),
        );
    }
    text(StatusCode::OK, "ready\n".into())
}

fn json(body: serde_json::Value) -> Response<AdminBody> {
    let mut r = text(StatusCode::OK, format!("{body}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: String) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r
}

/// JSON lines, one per record, until the client leaves or the gateway shuts down. A subscriber
/// that falls behind gets a `{"lagged": n}` line instead of the records it missed.
fn record_stream(
    receiver: broadcast::Receiver<Arc<crate::record::RequestRecord>>,
    shutdown: watch::Receiver<bool>,
) -> Response<AdminBody> {
    let stream = futures_stream(receiver, shutdown);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

fn futures_stream(
    receiver: broadcast::Receiver<Arc<crate::record::RequestRecord>>,
    shutdown: watch::Receiver<bool>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures_util::stream::unfold(
        (receiver, shutdown),
        |(mut receiver, mut shutdown)| async move {
            let line = tokio::select! {
                received = receiver.recv() => match received {
                    Ok(record) => serde_json::to_vec(&*record).ok().map(|mut v| { v.push(b'\n'); v }),
                    Err(broadcast::error::RecvError::Lagged(n)) => Some(format!("{{\"lagged\":{n}}}\n").into_bytes()),
                    Err(broadcast::error::RecvError::Closed) => None,
                },
                _ = shutdown.changed() => None,
            }?;
            Some((Ok(Frame::data(Bytes::from(line))), (receiver, shutdown)))
        },
    )
}
