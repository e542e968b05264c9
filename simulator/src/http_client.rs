//! The HTTP client shapes the simulator talks to gateways with — scenario steps, load phases,
//! the demo's clients, attaching to an admin record stream — kept below both the scenario runner
//! and the TUI so neither borrows it from the other: pooled HTTP/1.1, pooled h2c (HTTP/2 with
//! prior knowledge, the way gRPC clients talk to a plaintext port), and [`exchange`], which reads
//! an answer frame by frame and notes when each part arrived, trailers and gRPC messages
//! included.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::fake::grpc;
use gateway::vocab::grpc::is_grpc_content_type;

/// Pooled, plaintext (everything it talks to is on loopback): HTTP/1.1 from [`new`], HTTP/2
/// from [`new_h2c`].
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long one exchange may take, head and body together, before it counts as failed.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

pub fn new() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

/// HTTP/2 with prior knowledge: one multiplexed connection per host, with `TCP_NODELAY` as
/// gRPC clients set it (HTTP/2 writes a request as several small frames).
pub fn new_h2c() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}

/// One client per protocol, as the scenario runner keeps them.
#[derive(Clone)]
pub struct Clients {
    pub http1: HttpClient,
    pub http2: HttpClient,
}

impl Clients {
    pub fn new() -> Clients {
        Clients {
            http1: new(),
            http2: new_h2c(),
        }
    }

    /// The client for a request: HTTP/2 when it says `HTTP/2.0`.
    pub fn for_request<B>(&self, request: &Request<B>) -> &HttpClient {
        if request.version() == Version::HTTP_2 {
            &self.http2
        } else {
            &self.http1
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

/// Sends one request; returns the status and headers, or why it failed at the transport.
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(u16, HeaderMap), String> {
    let response = tokio::time::timeout(EXCHANGE_LIMIT, client.request(request))
        .await
        .map_err(|_| "no response within 30 s".to_string())?
        .map_err(|e| format!("transport error: {e}"))?;
    let (parts, body) = response.into_parts();
    // Read the body so the record (emitted at end of body) is complete and the connection reusable.
    let _ = body.collect().await;
    Ok((parts.status.as_u16(), parts.headers))
}

/// A gRPC message as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrived {
    /// From sending the request to the message's last byte.
    pub at: Duration,
    pub bytes: usize,
    pub compressed: bool,
}

/// One answer read to its end.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    /// The trailers, when the answer ended with some.
    pub trailers: Option<HeaderMap>,
    pub body_bytes: u64,
    /// From sending the request to its response head.
    pub head_after: Duration,
    /// From sending the request to the end of the answer (or the error that cut it).
    pub end_after: Duration,
    /// Length-prefixed messages, when the answer is gRPC (`content-type: application/grpc…`).
    pub messages: Option<Vec<Arrived>>,
    /// Bytes after the last whole message: a gRPC body cut mid-message.
    pub partial_message_bytes: usize,
    /// Why the body ended early (a reset stream or connection, the 30 s limit).
    pub body_error: Option<String>,
}

impl Exchange {
    /// A header of the answer's end: its trailers, or its head when it has none (gRPC's
    /// trailers-only answer carries its status in the head).
    pub fn final_field(&self, name: &str) -> Option<&str> {
        let in_trailers = self
            .trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .and_then(|v| v.to_str().ok());
        in_trailers.or_else(|| {
            if self.trailers.is_some() {
                return None;
            }
            self.headers.get(name).and_then(|v| v.to_str().ok())
        })
    }
}

/// Sends one request and reads the whole answer, frame by frame; an error only when no head
/// arrived.
pub async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<Exchange, String> {
    let sent = Instant::now();
    let deadline = sent + EXCHANGE_LIMIT;
    let response = tokio::time::timeout_at(deadline, client.request(request))
        .await
        .map_err(|_| "no response within 30 s".to_string())?
        .map_err(|e| format!("transport error: {e}"))?;
    let head_after = sent.elapsed();
    let (parts, mut body) = response.into_parts();
    let is_grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(is_grpc_content_type);
    let mut deframer = grpc::Deframer::default();
    let mut messages = is_grpc.then(Vec::new);
    let mut trailers = None;
    let mut body_bytes = 0u64;
    let mut body_error = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                body_error = Some("the body did not end within 30 s".to_string());
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                body_error = Some(format!("the body was cut: {e}"));
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                body_bytes += data.len() as u64;
                if let Some(messages) = messages.as_mut() {
                    let at = sent.elapsed();
                    messages.extend(deframer.push(&data).into_iter().map(|m| Arrived {
                        at,
                        bytes: m.payload.len(),
                        compressed: m.compressed,
                    }));
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(fields) = frame.into_trailers() {
            trailers.get_or_insert_with(HeaderMap::new).extend(fields);
        }
    }
    Ok(Exchange {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        trailers,
        body_bytes,
        head_after,
        end_after: sent.elapsed(),
        messages,
        partial_message_bytes: deframer.leftover(),
        body_error,
    })
}
