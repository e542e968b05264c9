//! The one HTTP/1.1 client shape the simulator talks to gateways with — scenario steps, load
//! phases, the demo's clients, attaching to an admin record stream — kept below both the
//! scenario runner and the TUI so neither borrows it from the other.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Pooled, plain HTTP/1.1 (everything it talks to is on loopback).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn new() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

/// Sends one request; returns the status and headers, or why it failed at the transport.
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(u16, HeaderMap), String> {
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "no response within 30 s".to_string())?
        .map_err(|e| format!("transport error: {e}"))?;
    let (parts, body) = response.into_parts();
    // Read the body so the record (emitted at end of body) is complete and the connection reusable.
    let _ = body.collect().await;
    Ok((parts.status.as_u16(), parts.headers))
}
