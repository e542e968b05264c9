//! Long-lived streams and HTTP/2 from clients: a server-sent-events stream longer than the idle
//! timeout completes over HTTP/1.1 and HTTP/2 and leaves its connection open; the stream
//! duration limit cuts a stream (an HTTP/2 stream reset, an HTTP/1.1 connection closed) and the
//! record says so; the same requests over HTTP/1.1, h2c and TLS h2 get the same answers and
//! records, oversized header blocks included; an extended CONNECT (RFC 8441) WebSocket over
//! HTTP/2 reaches an HTTP/1.1 WebSocket upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::clock::{ManualClock, SharedClock};
use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use gateway::{GatewayHandle, StartOptions};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::identity_support::{ClientCert, Pki, tls_client};
use super::resilience_util::Fake;
use super::util::*;

type Body = BoxBody<Bytes, std::io::Error>;

/// The idle timeout of these tests' gateways: short, so a stream can outlast it several times.
const IDLE: Duration = Duration::from_millis(500);
/// The event upstream's pace.
const EVENT_EVERY: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// Upstreams.

/// A real HTTP/1.1 upstream. `/events/<n>` answers `text/event-stream` with n events,
/// `EVENT_EVERY` apart; `/forever` sends one every `EVENT_EVERY` without end; any other path reads
/// the request body and answers 200 `upstream ok`.
async fn event_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(events))
                    .await;
            });
        }
    });
    address
}

async fn events(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let _ = request.into_body().collect().await;
    let count = match path.strip_prefix("/events/") {
        Some(n) => Some(n.parse::<u32>().unwrap_or(1)),
        None if path == "/forever" => None,
        None => return Ok(Response::new(full("upstream ok"))),
    };
    let frames = futures_util::stream::unfold(0u32, move |i| async move {
        if count.is_some_and(|n| i >= n) {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(EVENT_EVERY).await;
        }
        let event = Bytes::from(format!("data: event {i}\n\n"));
        Some((Ok::<_, std::io::Error>(Frame::data(event)), i + 1))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("value"));
    Ok(response)
}

/// What the WebSocket upstream saw of a handshake.
#[derive(Debug, Clone)]
struct Handshake {
    method: String,
    headers: HeaderMap,
}

/// A real WebSocket server (tungstenite) on HTTP/1.1 that echoes every message.
async fn websocket_upstream() -> (SocketAddr, Arc<Mutex<Vec<Handshake>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // the signature tungstenite's callback has
                let callback =
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        recorded.lock().expect("seen").push(Handshake {
                            method: request.method().to_string(),
                            headers: request.headers().clone(),
                        });
                        Ok(response)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (address, seen)
}

// ---------------------------------------------------------------------------------------------
// Clients: one connection each, over the wire the test names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// HTTP/1.1 in plaintext.
    H1,
    /// HTTP/2 with prior knowledge, in plaintext.
    H2c,
    /// HTTP/2 negotiated by ALPN over TLS.
    H2Tls,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

struct Connection {
    sender: Sender,
    /// `scheme://host:port` for HTTP/2's absolute targets; HTTP/1.1 sends the host as Host.
    origin: String,
    authority: String,
}

impl Connection {
    async fn open(wire: Wire, address: SocketAddr, pki: Option<&Pki>) -> Connection {
        let tcp = TcpStream::connect(address).await.expect("connect");
        let authority = format!("localhost:{}", address.port());
        match wire {
            Wire::H1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .expect("h1 handshake");
                tokio::spawn(conn);
                Connection {
                    sender: Sender::H1(sender),
                    origin: format!("http://{authority}"),
                    authority,
                }
            }
            Wire::H2c => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await
                        .expect("h2c handshake");
                tokio::spawn(conn);
                Connection {
                    sender: Sender::H2(sender),
                    origin: format!("http://{authority}"),
                    authority,
                }
            }
            Wire::H2Tls => {
                let pki = pki.expect("TLS needs the PKI");
                let connector = tls_client(pki, ClientCert::None, &[b"h2", b"http/1.1"]);
                let name = ServerName::try_from("localhost").expect("name");
                let tls = connector.connect(name, tcp).await.expect("TLS handshake");
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(b"h2".as_slice()),
                    "ALPN chose h2"
                );
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .expect("h2 handshake");
                tokio::spawn(conn);
                Connection {
                    sender: Sender::H2(sender),
                    origin: format!("https://{authority}"),
                    authority,
                }
            }
        }
    }

    /// A request for `path` in the form this connection's protocol writes it.
    fn request(&self, method: &str, path: &str) -> http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.authority),
            Sender::H2(_) => Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.origin)),
        }
    }

    async fn send(&mut self, request: Request<Body>) -> Result<Response<Incoming>, hyper::Error> {
        let sent = async {
            match &mut self.sender {
                Sender::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await
                }
                Sender::H2(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .expect("an answer within 10 s")
    }

    async fn get(&mut self, path: &str) -> Reply {
        let request = self.request("GET", path).body(empty()).expect("request");
        Reply::read(self.send(request).await.expect("answered")).await
    }

    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }
}

/// Reads a body to its end, or to its error: the events received and how it ended.
async fn read_events(response: Response<Incoming>) -> (Vec<String>, Result<(), hyper::Error>) {
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let ended = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream went on for 15 s: {} bytes",
            text.len()
        );
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Err(_) => panic!("the stream stalled for 10 s"),
            Ok(None) => break Ok(()),
            Ok(Some(Err(error))) => break Err(error),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    text.push_str(&String::from_utf8_lossy(data));
                }
            }
        }
    };
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    (events, ended)
}

// ---------------------------------------------------------------------------------------------
// Gateways.

/// A gateway on a plaintext listener and, when `pki` is given, a TLS one (`listeners[1]`),
/// both handed in on port 0.
async fn gateway(
    config: &str,
    pki: Option<&Pki>,
    clock: SharedClock,
) -> (TestGateway, Vec<SocketAddr>) {
    let runtime = gateway::config::load_str("<test>", config).unwrap_or_else(|d| {
        panic!(
            "test config invalid:\n{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let mut listeners = vec![TcpListener::bind("127.0.0.1:0").await.expect("bind")];
    if pki.is_some() {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let handle: GatewayHandle = gateway::start(
        runtime,
        StartOptions {
            listeners: Some(listeners),
            admin_listener: None,
            clock,
        },
    )
    .await
    .expect("start gateway");
    let addresses = handle.addresses().to_vec();
    let records = handle.subscribe();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    (
        TestGateway {
            handle,
            records,
            client,
        },
        addresses,
    )
}

fn stream_config(upstream: SocketAddr, extra_limits: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
limits:
  idle_timeout: {idle}ms
{extra_limits}
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: events, match: {{ path: /* }}, upstream: svc }}
"#,
        idle = IDLE.as_millis()
    )
}

// ---------------------------------------------------------------------------------------------
// Streams are not idle.

/// A stream of nine events, 1.6 s in all — more than three idle timeouts — arrives whole over
/// `wire`, the record says it completed, and the connection is still open for the next request.
async fn a_stream_longer_than_the_idle_timeout_completes(wire: Wire) {
    let upstream = event_upstream().await;
    let (mut gw, addresses) = gateway(
        &stream_config(upstream, ""),
        None,
        gateway::clock::SystemClock::shared(),
    )
    .await;
    let mut conn = Connection::open(wire, addresses[0], None).await;
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    let request = conn
        .request("GET", "/events/9")
        .body(empty())
        .expect("request");
    let response = conn.send(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    let (events, ended) = read_events(response).await;
    assert!(
        ended.is_ok(),
        "{wire:?}: the stream ended cleanly: {ended:?}"
    );
    assert_eq!(events.len(), 9, "{wire:?}: every event arrived: {events:?}");
    assert!(
        started.elapsed() > IDLE * 3,
        "the stream outlasted three idle timeouts"
    );
    let record = gw.record().await;
    assert_eq!(record.status, 200);
    assert!(
        record.completed,
        "{wire:?}: the record says the stream completed"
    );
    assert_eq!(record.reason, None);
    assert!(record.duration_ns > (IDLE * 3).as_nanos() as u64);
    // No GOAWAY, no close while it streamed: the same connection takes the next request.
    assert!(!conn.is_closed(), "{wire:?}: the connection is still open");
    assert_eq!(conn.get("/plain").await.status, 200);
}

#[tokio::test]
async fn an_event_stream_longer_than_the_idle_timeout_completes_over_http1() {
    a_stream_longer_than_the_idle_timeout_completes(Wire::H1).await;
}

#[tokio::test]
async fn an_event_stream_longer_than_the_idle_timeout_completes_over_http2() {
    a_stream_longer_than_the_idle_timeout_completes(Wire::H2c).await;
}

#[tokio::test]
async fn a_connection_with_nothing_running_is_still_closed_after_the_idle_timeout() {
    let upstream = event_upstream().await;
    let (_gw, addresses) = gateway(
        &stream_config(upstream, ""),
        None,
        gateway::clock::SystemClock::shared(),
    )
    .await;
    for wire in [Wire::H1, Wire::H2c] {
        let mut conn = Connection::open(wire, addresses[0], None).await;
        assert_eq!(conn.get("/plain").await.status, 200);
        eventually(
            &format!("{wire:?}: the idle connection is closed"),
            Duration::from_secs(5),
            async || {
                if conn.is_closed() {
                    Ok(())
                } else {
                    Err("open")
                }
            },
        )
        .await;
    }
}

/// An endless stream on a gateway whose streams may last 700 ms: cut, with the record saying so.
/// Returns the gateway (dropping it would stop it), the connection and how the body ended.
async fn endless_stream_is_cut(wire: Wire) -> (TestGateway, Connection, Result<(), hyper::Error>) {
    let upstream = event_upstream().await;
    let config = stream_config(upstream, "  max_stream_duration: 700ms");
    let (mut gw, addresses) = gateway(&config, None, gateway::clock::SystemClock::shared()).await;
    let mut conn = Connection::open(wire, addresses[0], None).await;
    let request = conn
        .request("GET", "/forever")
        .body(empty())
        .expect("request");
    let response = conn.send(request).await.expect("answered");
    assert_eq!(response.status(), 200, "the head went out before the cut");
    let (events, ended) = read_events(response).await;
    assert!(
        (2..=6).contains(&events.len()),
        "{wire:?}: events flowed until the cut: {events:?}"
    );
    let record = gw.record().await;
    assert_eq!(
        record.status, 200,
        "the record keeps the status that was sent"
    );
    assert!(!record.completed, "{wire:?}: a cut stream did not complete");
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("stream-duration-exceeded"));
    assert!(record.bytes_out > 0);
    (gw, conn, ended)
}

#[tokio::test]
async fn the_stream_duration_limit_closes_an_http1_connection_mid_stream() {
    let (_gw, conn, ended) = endless_stream_is_cut(Wire::H1).await;
    assert!(
        ended.is_err(),
        "the client sees the body end early: {ended:?}"
    );
    eventually(
        "the connection is closed",
        Duration::from_secs(5),
        async || {
            if conn.is_closed() {
                Ok(())
            } else {
                Err("open")
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_stream_duration_limit_resets_only_that_http2_stream() {
    let (_gw, mut conn, ended) = endless_stream_is_cut(Wire::H2c).await;
    let error = ended.expect_err("the client sees the stream reset");
    let mut source = std::error::Error::source(&error);
    let mut reason = None;
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            reason = h2.reason();
        }
        source = e.source();
    }
    assert_eq!(reason, Some(h2::Reason::CANCEL), "{error:?}");
    // The connection and its other streams are untouched.
    assert_eq!(conn.get("/plain").await.status, 200);
}

#[tokio::test]
async fn a_stream_duration_of_zero_is_a_config_problem() {
    let Err(problems) = gateway::config::load_str(
        "gateway.yaml",
        &stream_config(
            "127.0.0.1:1".parse().expect("address"),
            "  max_stream_duration: 0s",
        ),
    ) else {
        panic!("a zero stream duration is refused");
    };
    let text = problems
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("limits.max_stream_duration"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 from clients: the same answers and records as HTTP/1.1.

fn parity_config(pki: &Pki, upstream: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - {{ name: plain, address: "127.0.0.1:0" }}
  - name: tls
    address: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert_file: "{cert}", key_file: "{key}", hosts: [localhost] }}
access_log: off
auth:
  api_keys:
    keys:
      - {{ id: partner, key: secret-1, subject: partner-app }}
rate_limits:
  policies:
    - {{ id: one-per-client, algorithm: fixed-window, limit: 1, period: 1h, key: "header:x-client", routes: [limited] }}
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: open, match: {{ path: /open/* }}, upstream: svc, max_body_bytes: 100 }}
  - {{ name: private, match: {{ path: /private/* }}, upstream: svc, auth: {{ credentials: [api_key] }} }}
  - {{ name: limited, match: {{ path: /limited/* }}, upstream: svc }}
  - {{ name: not-found, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#,
        cert = pki.path_str("server.pem"),
        key = pki.path_str("server.key"),
    )
}

/// The stage and reason a request is expected to stop at, if any.
type Stop = Option<(&'static str, &'static str)>;

/// What must be equal across protocols: the answer and the record, without what differs by
/// nature (ids, times, ports).
#[derive(Debug, PartialEq)]
struct Seen {
    status: StatusCode,
    /// The problem body without its request id.
    problem: Option<serde_json::Value>,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    record: serde_json::Value,
}

fn seen(reply: &Reply, record: &RequestRecord) -> Seen {
    let problem = (reply.header("content-type") == Some("application/problem+json")).then(|| {
        let mut problem = reply.problem();
        problem
            .as_object_mut()
            .expect("object")
            .remove("request_id");
        problem
    });
    let mut record = serde_json::to_value(record).expect("record JSON");
    let fields = record.as_object_mut().expect("object");
    for varies in [
        "request_id",
        "trace_id",
        "unix_millis",
        "stage_ns",
        "duration_ns",
    ] {
        fields.remove(varies);
    }
    // The client's port differs by connection, the listener's between the plaintext and the TLS
    // one: the hosts themselves must not.
    for with_port in ["peer", "host"] {
        if let Some(serde_json::Value::String(text)) = fields.get_mut(with_port) {
            if let Some((host, _port)) = text.rsplit_once(':') {
                *text = host.to_string();
            }
        }
    }
    if let Some(limit) = fields.get_mut("limit").and_then(|l| l.as_object_mut()) {
        // A digest of the x-client value, which differs per protocol on purpose.
        limit.remove("subject");
    }
    Seen {
        status: reply.status,
        problem,
        www_authenticate: reply.header("www-authenticate").map(str::to_string),
        retry_after: reply.header("retry-after").map(str::to_string),
        record,
    }
}

/// A body with no declared length: sent chunked over HTTP/1.1, without content-length over
/// HTTP/2.
fn streamed(bytes: usize) -> Body {
    let frames =
        futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![
            b'x';
            bytes
        ])))]);
    BodyExt::boxed(StreamBody::new(frames))
}

/// The same requests, each with the answer and record it got.
async fn the_requests(
    wire: Wire,
    gw: &mut TestGateway,
    address: SocketAddr,
    pki: &Pki,
) -> Vec<(&'static str, Seen)> {
    let mut conn = Connection::open(wire, address, Some(pki)).await;
    let client = format!("{wire:?}");
    let requests: Vec<(&'static str, Request<Body>)> = vec![
        (
            "proxied",
            conn.request("GET", "/open/users/7")
                .body(empty())
                .expect("request"),
        ),
        (
            "proxied with a body",
            conn.request("POST", "/open/users")
                .body(full("hello"))
                .expect("request"),
        ),
        (
            "authn stop",
            conn.request("GET", "/private/x")
                .body(empty())
                .expect("request"),
        ),
        (
            "authenticated",
            conn.request("GET", "/private/x")
                .header("x-api-key", "secret-1")
                .body(empty())
                .expect("request"),
        ),
        (
            "admitted",
            conn.request("GET", "/limited/x")
                .header("x-client", &client)
                .body(empty())
                .expect("request"),
        ),
        (
            "ratelimit stop",
            conn.request("GET", "/limited/x")
                .header("x-client", &client)
                .body(empty())
                .expect("request"),
        ),
        (
            "no route",
            conn.request("GET", "/nothing/here")
                .body(empty())
                .expect("request"),
        ),
        (
            "oversized headers",
            conn.request("GET", "/open/users/7")
                .header("x-big", "b".repeat(20_000))
                .body(empty())
                .expect("request"),
        ),
        (
            "declared body too large",
            conn.request("POST", "/open/users")
                .body(full(vec![b'x'; 200]))
                .expect("request"),
        ),
        (
            "streamed body too large",
            conn.request("POST", "/open/users")
                .body(streamed(200))
                .expect("request"),
        ),
    ];
    let mut out = Vec::new();
    for (what, request) in requests {
        let response = conn
            .send(request)
            .await
            .unwrap_or_else(|e| panic!("{wire:?} {what}: {e}"));
        let reply = Reply::read(response).await;
        let record = gw.record().await;
        out.push((what, seen(&reply, &record)));
        if conn.is_closed() {
            // A stop that cannot trust the rest of an HTTP/1.1 stream closes its connection.
            conn = Connection::open(wire, address, Some(pki)).await;
        }
    }
    out
}

#[tokio::test]
async fn http2_requests_get_the_same_stages_limits_answers_and_records_as_http1() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (mut gw, addresses) =
        gateway(&parity_config(&pki, upstream.address), Some(&pki), clock).await;
    let h1 = the_requests(Wire::H1, &mut gw, addresses[0], &pki).await;

    // What HTTP/1.1 got, spelled out, so that equal results cannot be equally wrong.
    let expected: [(&str, u16, Stop); 10] = [
        ("proxied", 200, None),
        ("proxied with a body", 200, None),
        ("authn stop", 401, Some(("authn", "missing-credentials"))),
        ("authenticated", 200, None),
        ("admitted", 200, None),
        ("ratelimit stop", 429, Some(("ratelimit", "quota-exceeded"))),
        ("no route", 404, Some(("route", "catch-all"))),
        ("oversized headers", 431, Some(("tls", "headers-too-large"))),
        (
            "declared body too large",
            413,
            Some(("route", "body-too-large")),
        ),
        (
            "streamed body too large",
            413,
            Some(("forward", "body-too-large")),
        ),
    ];
    for ((what, seen), (name, status, stop)) in h1.iter().zip(expected) {
        assert_eq!(*what, name);
        assert_eq!(seen.status.as_u16(), status, "{what}: {seen:?}");
        let problem = seen.problem.as_ref();
        match stop {
            Some((stage, reason)) => {
                let problem = problem.unwrap_or_else(|| panic!("{what}: a problem body"));
                assert_eq!(problem["stage"], stage, "{what}");
                assert_eq!(
                    problem["type"],
                    format!("urn:gatehouse:problem:{reason}"),
                    "{what}"
                );
                assert_eq!(seen.record["stopped_at"], stage, "{what}");
                assert_eq!(seen.record["reason"], reason, "{what}");
            }
            None => {
                assert_eq!(problem, None, "{what}");
                assert!(
                    seen.record["completed"].as_bool().expect("completed"),
                    "{what}"
                );
            }
        }
    }
    assert_eq!(h1[3].1.record["identity"]["subject"], "partner-app");
    assert_eq!(h1[0].1.record["host"], "localhost");
    assert_eq!(h1[0].1.record["peer"], "127.0.0.1");
    assert!(h1[2].1.www_authenticate.is_some());
    assert!(h1[5].1.retry_after.is_some());

    for (wire, address) in [(Wire::H2c, addresses[0]), (Wire::H2Tls, addresses[1])] {
        let h2 = the_requests(wire, &mut gw, address, &pki).await;
        for ((what, h1), (_, h2)) in h1.iter().zip(&h2) {
            assert_eq!(
                h1, h2,
                "{what}: HTTP/1.1 (left) and {wire:?} (right) differ"
            );
        }
    }
}

#[tokio::test]
async fn the_http2_header_list_limit_is_answered_by_the_gateway_with_a_record() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let config = parity_config(&pki, upstream.address).replace(
        "access_log: off",
        "access_log: off\nlimits: { http2_max_header_list_bytes: 4096 }",
    );
    let (mut gw, addresses) = gateway(&config, None, gateway::clock::SystemClock::shared()).await;
    // 40 fields of 90 bytes: 3,800 bytes as HTTP/1.1 counts them, 4,840 with HTTP/2's 32 each.
    let many = |conn: &Connection| {
        let mut request = conn.request("GET", "/open/users/7");
        for i in 0..40 {
            request = request.header(format!("x-field-{i:02}"), "v".repeat(80));
        }
        request.body(empty()).expect("request")
    };
    let mut h1 = Connection::open(Wire::H1, addresses[0], None).await;
    let request = many(&h1);
    let reply = Reply::read(h1.send(request).await.expect("answered")).await;
    assert_eq!(reply.status, 200, "the HTTP/2 measure is not HTTP/1.1's");
    gw.record().await;

    let mut h2 = Connection::open(Wire::H2c, addresses[0], None).await;
    let request = many(&h2);
    let reply = Reply::read(h2.send(request).await.expect("answered")).await;
    assert_eq!(reply.status, 431);
    let problem = reply.problem();
    assert_eq!(problem["type"], "urn:gatehouse:problem:headers-too-large");
    assert_eq!(problem["stage"], "tls");
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("headers-too-large"));
    assert_eq!(record.stopped_at, Some(StageId::Tls));
}

// ---------------------------------------------------------------------------------------------
// WebSocket over HTTP/2 (RFC 8441) to an HTTP/1.1 upstream.

fn websocket_config(upstream: SocketAddr) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
limits:
  idle_timeout: {idle}ms
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: chat, match: {{ path: /ws/* }}, upstream: svc, websocket: true }}
  - {{ name: plain, match: {{ path: /plain/* }}, upstream: svc }}
  - {{ name: not-found, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#,
        idle = IDLE.as_millis()
    )
}

/// An extended CONNECT for `/ws/chat` on an HTTP/2 connection.
fn extended_connect(conn: &Connection) -> Request<Body> {
    let mut request = conn
        .request("CONNECT", "/ws/chat")
        .header("sec-websocket-version", "13")
        .body(empty())
        .expect("request");
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    request
}

#[tokio::test]
async fn an_http2_websocket_reaches_an_http1_websocket_upstream_and_messages_flow_both_ways() {
    let (upstream, handshakes) = websocket_upstream().await;
    let (mut gw, addresses) = gateway(
        &websocket_config(upstream),
        None,
        gateway::clock::SystemClock::shared(),
    )
    .await;
    let mut conn = Connection::open(Wire::H2c, addresses[0], None).await;
    // The server's SETTINGS (with SETTINGS_ENABLE_CONNECT_PROTOCOL) arrive with the first answer.
    assert_eq!(conn.get("/nothing").await.status, 404);
    gw.record().await;

    let request = extended_connect(&conn);
    let response = conn.send(request).await.expect("answered");
    assert_eq!(response.status(), 200, "RFC 8441: a 2xx opens the stream");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(response)
        .await
        .expect("the stream is a tunnel");
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;

    let handshake = handshakes
        .lock()
        .expect("seen")
        .first()
        .cloned()
        .expect("a handshake");
    assert_eq!(
        handshake.method, "GET",
        "the upstream got RFC 6455's handshake"
    );
    assert_eq!(handshake.headers["upgrade"], "websocket");
    assert!(handshake.headers.contains_key("sec-websocket-key"));
    let record = gw.record().await;
    assert_eq!(record.status, 200);
    assert_eq!(record.route.as_deref(), Some("chat"));
    assert_eq!(record.method, http::Method::CONNECT);
    assert_eq!(record.reason, None);

    // Messages both ways, for longer than the idle timeout: the relay keeps the connection busy.
    for i in 0..4 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo within 5 s")
            .expect("a message")
            .expect("a good message");
        assert_eq!(echoed, Message::text(text));
        tokio::time::sleep(IDLE / 2).await;
    }
    assert!(!conn.is_closed(), "no GOAWAY while the WebSocket is open");
    assert_eq!(
        conn.get("/nothing").await.status,
        404,
        "the connection takes more streams"
    );
    gw.record().await;
    ws.close(None).await.expect("close");
}

#[tokio::test]
async fn an_upstream_that_does_not_prove_the_handshake_is_a_502_to_an_http2_websocket() {
    // This fake answers 101 to any upgrade but without Sec-WebSocket-Accept.
    let fake = Fake::start("svc").await;
    let (mut gw, addresses) = gateway(
        &websocket_config(fake.address),
        None,
        gateway::clock::SystemClock::shared(),
    )
    .await;
    let mut conn = Connection::open(Wire::H2c, addresses[0], None).await;
    assert_eq!(conn.get("/nothing").await.status, 404);
    gw.record().await;
    let request = extended_connect(&conn);
    let reply = Reply::read(conn.send(request).await.expect("answered")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.problem()["type"],
        "urn:gatehouse:problem:upstream-bad-upgrade"
    );
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("upstream-bad-upgrade"));
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(fake.upgrades(), ["websocket"]);
}

#[tokio::test]
async fn an_http2_websocket_on_a_route_that_does_not_allow_it_never_opens() {
    let (upstream, handshakes) = websocket_upstream().await;
    let (mut gw, addresses) = gateway(
        &websocket_config(upstream),
        None,
        gateway::clock::SystemClock::shared(),
    )
    .await;
    let mut conn = Connection::open(Wire::H2c, addresses[0], None).await;
    assert_eq!(conn.get("/nothing").await.status, 404);
    gw.record().await;
    let mut request = extended_connect(&conn);
    *request.uri_mut() = format!("{}/plain/x", conn.origin).parse().expect("uri");
    let response = conn.send(request).await.expect("answered");
    assert!(
        !response.status().is_success(),
        "a CONNECT the route does not pass as a WebSocket is not a tunnel: {}",
        response.status()
    );
    assert!(handshakes.lock().expect("seen").is_empty());
}
