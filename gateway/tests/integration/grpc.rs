//! gRPC through the gateway, with a real tonic server behind it (`protocol: h2c`) and a real
//! tonic client in front: unary with trailing metadata; server, client and bidirectional
//! streaming, message by message; an error status and its metadata passed through; deadlines
//! (`grpc-timeout`) ending calls with DEADLINE_EXCEEDED; gateway stops answered as gRPC statuses
//! while the record keeps the stop; HTTP/1.1 clients that sent `TE: trailers` getting the
//! trailers as chunked trailer fields.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gateway::vocab::StageId;
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tonic::codec::{ProstCodec, Streaming};
use tonic::codegen::{BoxFuture, BoxStream, Service};
use tonic::server::{
    ClientStreamingService, Grpc as GrpcServer, ServerStreamingService, StreamingService,
    UnaryService,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::forward::refused_address;
use super::util::*;

/// The one message every method speaks, written by hand instead of generated from a `.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
}

fn note(text: &str, seq: u32) -> Note {
    Note {
        text: text.to_string(),
        seq,
    }
}

// ---------------------------------------------------------------------------------------------
// The tonic server: service `echo.Echo`, dispatched by method name whatever the package and
// service (so `/echo.Private/Say` is `Say` too), the way generated code dispatches.

/// What the server and the test share.
struct Shared {
    /// What happened, in order, on both sides of the gateway: the server's sends and receipts,
    /// the client's.
    events: Mutex<Vec<String>>,
    /// `Count` takes a permit before each message after the first, so the test decides when the
    /// next one is sent.
    gate: Semaphore,
    /// The request head of the last call.
    last_head: Mutex<Option<HeaderMap>>,
}

impl Shared {
    fn log(&self, event: impl Into<String>) {
        self.events.lock().expect("events").push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().expect("events").clone()
    }

    fn last_head(&self) -> HeaderMap {
        self.last_head
            .lock()
            .expect("head")
            .clone()
            .expect("the server got a call")
    }
}

#[derive(Clone)]
struct Echo(Arc<Shared>);

struct EchoServer {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl EchoServer {
    async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            last_head: Mutex::new(None),
        });
        let echo = Echo(shared.clone());
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(echo, incoming));
        EchoServer { address, shared }
    }
}

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let echo = self.clone();
        *echo.0.last_head.lock().expect("head") = Some(request.headers().clone());
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        Box::pin(async move {
            let mut grpc = GrpcServer::new(ProstCodec::<Note, Note>::default());
            let response = match method.as_str() {
                "Say" => grpc
                    .unary(Say, request)
                    .await
                    .map(|body| tonic::body::Body::new(WithTrailer(body))),
                "Fail" => grpc.unary(Fail, request).await,
                "Down" => Status::unavailable("overloaded, try another").into_http(),
                "Stall" => grpc.unary(Stall, request).await,
                "Count" => grpc.server_streaming(Count(echo), request).await,
                "Drip" => grpc.server_streaming(Drip, request).await,
                "Sum" => grpc.client_streaming(Sum(echo), request).await,
                "Chat" => grpc.streaming(Chat, request).await,
                _ => Status::unimplemented("the server has no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// Adds trailing metadata to a unary answer: tonic sends only `grpc-status` after a successful
/// one, a server's middleware adds the rest (as grpc-go's `SetTrailer` does).
struct WithTrailer(tonic::body::Body);

impl http_body::Body for WithTrailer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    trailers.insert("x-trailing", "end-of-say".parse().expect("value"));
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

type Unary = BoxFuture<tonic::Response<Note>, Status>;
type Streamed = BoxFuture<tonic::Response<BoxStream<Note>>, Status>;

/// `Say`: the text back, with leading metadata (headers) and trailing metadata (trailers).
struct Say;

impl UnaryService<Note> for Say {
    type Response = Note;
    type Future = Unary;

    fn call(&mut self, request: tonic::Request<Note>) -> Unary {
        let said = request.into_inner();
        Box::pin(async move {
            let mut response = tonic::Response::new(note(&format!("said {}", said.text), said.seq));
            response
                .metadata_mut()
                .insert("x-leading", "start".parse().expect("value"));
            Ok(response)
        })
    }
}

/// `Fail`: an application error with a message that needs percent-encoding, and metadata.
struct Fail;

impl UnaryService<Note> for Fail {
    type Response = Note;
    type Future = Unary;

    fn call(&mut self, _request: tonic::Request<Note>) -> Unary {
        Box::pin(async move {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("x-why", "tested".parse().expect("value"));
            Err(Status::with_metadata(
                Code::FailedPrecondition,
                "note №7 is 100% gone",
                metadata,
            ))
        })
    }
}

/// `Stall`: answers after 5 s, far later than any test waits.
struct Stall;

impl UnaryService<Note> for Stall {
    type Response = Note;
    type Future = Unary;

    fn call(&mut self, _request: tonic::Request<Note>) -> Unary {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(tonic::Response::new(note("too late", 0)))
        })
    }
}

/// A stream of what an mpsc channel carries, ending when every sender is gone.
fn channel_stream(rx: mpsc::Receiver<Result<Note, Status>>) -> BoxStream<Note> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `Count`: `seq` notes, numbered from 0; each after the first waits for a permit of the gate.
struct Count(Echo);

impl ServerStreamingService<Note> for Count {
    type Response = Note;
    type ResponseStream = BoxStream<Note>;
    type Future = Streamed;

    fn call(&mut self, request: tonic::Request<Note>) -> Streamed {
        let shared = self.0.0.clone();
        let count = request.into_inner().seq;
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                for i in 0..count {
                    if i > 0 {
                        shared.gate.acquire().await.expect("gate open").forget();
                    }
                    shared.log(format!("sent {i}"));
                    if tx.send(Ok(note("counted", i))).await.is_err() {
                        return;
                    }
                }
            });
            Ok(tonic::Response::new(channel_stream(rx)))
        })
    }
}

/// `Drip`: one note, then nothing and no end until the caller goes away.
struct Drip;

impl ServerStreamingService<Note> for Drip {
    type Response = Note;
    type ResponseStream = BoxStream<Note>;
    type Future = Streamed;

    fn call(&mut self, _request: tonic::Request<Note>) -> Streamed {
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                if tx.send(Ok(note("first drop", 0))).await.is_ok() {
                    tx.closed().await;
                }
            });
            Ok(tonic::Response::new(channel_stream(rx)))
        })
    }
}

/// `Sum`: the sum of the notes' `seq`, each note logged as it arrives.
struct Sum(Echo);

impl ClientStreamingService<Note> for Sum {
    type Response = Note;
    type Future = Unary;

    fn call(&mut self, request: tonic::Request<Streaming<Note>>) -> Unary {
        let shared = self.0.0.clone();
        Box::pin(async move {
            let mut notes = request.into_inner();
            let (mut count, mut sum) = (0, 0);
            while let Some(n) = notes.message().await? {
                shared.log(format!("got {}", n.seq));
                count += 1;
                sum += n.seq;
            }
            Ok(tonic::Response::new(note(&format!("{count} notes"), sum)))
        })
    }
}

/// `Chat`: each note answered as it arrives.
struct Chat;

impl StreamingService<Note> for Chat {
    type Response = Note;
    type ResponseStream = BoxStream<Note>;
    type Future = Streamed;

    fn call(&mut self, request: tonic::Request<Streaming<Note>>) -> Streamed {
        Box::pin(async move {
            let mut notes = request.into_inner();
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                while let Ok(Some(n)) = notes.message().await {
                    let answer = note(&format!("echo {}", n.text), n.seq);
                    if tx.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(tonic::Response::new(channel_stream(rx)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway in between, and the tonic client.

const API_KEY: &[u8] = b"grpc-caller-secret";

/// Per-method routes to the echo server over h2c, a service-wide route behind an API key, a
/// rate-limited one, a short-timeout upstream for `Stall`, and the catch-all that answers every
/// method no route serves.
fn config(echo: SocketAddr, h1: SocketAddr) -> String {
    let key_digest = super::identity_support::sha256_hex(API_KEY);
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
auth:
  api_keys:
    header: X-Api-Key
    keys:
      - {{ id: grpc-caller, sha256: "{key_digest}", subject: grpc-caller }}
rate_limits:
  policies:
    - {{ id: once, algorithm: fixed-window, limit: 1, period: 1m, key: client_ip, routes: [limited] }}
upstreams:
  echo:
    instances: ["{echo}"]
    protocol: h2c
  echo-impatient:
    instances: ["{echo}"]
    protocol: h2c
    request_timeout: 300ms
  echo-guarded:
    instances: ["{echo}"]
    protocol: h2c
    circuit_breaker: {{ consecutive_failures: 3, min_requests: 100, open_for: 1m }}
  h1:
    instances: ["{h1}"]
routes:
  - {{ name: say, match: {{ path: /echo.Echo/Say }}, upstream: echo }}
  - {{ name: fail, match: {{ path: /echo.Echo/Fail }}, upstream: echo }}
  - {{ name: count, match: {{ path: /echo.Echo/Count }}, upstream: echo }}
  - {{ name: drip, match: {{ path: /echo.Echo/Drip }}, upstream: echo }}
  - {{ name: sum, match: {{ path: /echo.Echo/Sum }}, upstream: echo }}
  - {{ name: chat, match: {{ path: /echo.Echo/Chat }}, upstream: echo }}
  - {{ name: stall, match: {{ path: /echo.Echo/Stall }}, upstream: echo-impatient }}
  - {{ name: guarded, match: {{ path: /echo.Guarded/* }}, upstream: echo-guarded, rewrite: {{ strip_prefix: /echo.Guarded, add_prefix: /echo.Echo }} }}
  - name: private
    match: {{ path: /echo.Private/* }}
    upstream: echo
    grpc: true
    auth: {{ credentials: [api_key] }}
  - {{ name: limited, match: {{ path: /echo.Limited/* }}, upstream: echo }}
  - {{ name: h1, match: {{ path: /h1.Legacy/* }}, upstream: h1, grpc: true }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404, detail: no such method }} }}
"#
    )
}

struct Setup {
    echo: EchoServer,
    h1: Upstream,
    gw: TestGateway,
    client: tonic::client::Grpc<Channel>,
}

async fn setup() -> Setup {
    let echo = EchoServer::start().await;
    let h1 = Upstream::start().await;
    let gw = TestGateway::start(&config(echo.address, h1.address)).await;
    let channel = Endpoint::from_shared(format!("http://{}", gw.handle.address()))
        .expect("endpoint")
        .connect()
        .await
        .expect("the tonic client connects to the gateway");
    Setup {
        echo,
        h1,
        gw,
        client: tonic::client::Grpc::new(channel),
    }
}

/// Waits for `what` at most 10 s, so a test that would hang (a buffered stream) fails instead.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} within 10 s"))
}

impl Setup {
    async fn unary(
        &mut self,
        path: &'static str,
        request: tonic::Request<Note>,
    ) -> Result<tonic::Response<Note>, Status> {
        within("the client ready", self.client.ready())
            .await
            .expect("ready");
        let codec = ProstCodec::<Note, Note>::default();
        let path = PathAndQuery::from_static(path);
        within("a unary answer", self.client.unary(request, path, codec)).await
    }

    async fn server_streaming(
        &mut self,
        path: &'static str,
        request: tonic::Request<Note>,
    ) -> Streaming<Note> {
        within("the client ready", self.client.ready())
            .await
            .expect("ready");
        let codec = ProstCodec::<Note, Note>::default();
        let path = PathAndQuery::from_static(path);
        within(
            "the stream's head",
            self.client.server_streaming(request, path, codec),
        )
        .await
        .expect("the stream starts")
        .into_inner()
    }
}

// ---------------------------------------------------------------------------------------------
// Calls that pass.

#[tokio::test]
async fn a_unary_call_gets_its_answer_and_its_leading_and_trailing_metadata() {
    let mut s = setup().await;
    let response = s
        .unary("/echo.Echo/Say", tonic::Request::new(note("hello", 7)))
        .await
        .expect("the call succeeds");
    // tonic's client merges the trailers into the response's metadata.
    let metadata = response.metadata().clone();
    assert_eq!(response.into_inner(), note("said hello", 7));
    assert_eq!(
        metadata.get("x-leading").and_then(|v| v.to_str().ok()),
        Some("start"),
        "leading metadata"
    );
    assert_eq!(
        metadata.get("x-trailing").and_then(|v| v.to_str().ok()),
        Some("end-of-say"),
        "trailing metadata arrived as trailers through the gateway"
    );

    let head = s.echo.shared.last_head();
    assert_eq!(
        head.get("te").and_then(|v| v.to_str().ok()),
        Some("trailers"),
        "gRPC needs te: trailers upstream"
    );
    let record = s.gw.record().await;
    assert_eq!(record.status, 200);
    assert_eq!(record.grpc_status, Some(0), "the trailers' grpc-status");
    assert_eq!(record.stopped_at, None);
    assert!(
        record.completed,
        "a body that ended with trailers completed"
    );
    assert_eq!(record.route_template.as_deref(), Some("/echo.Echo/Say"));

    // Metrics label the call by its method's route template.
    let admin = s.gw.handle.admin_address().expect("admin");
    let metrics = s.gw.get_absolute(&format!("http://{admin}/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("gatehouse_requests_total{")
                && l.contains(r#"route="/echo.Echo/Say""#)
                && l.contains(r#"status_class="2xx""#)),
        "{text}"
    );
}

#[tokio::test]
async fn server_streaming_messages_arrive_one_by_one_before_the_stream_ends() {
    let mut s = setup().await;
    let mut stream = s
        .server_streaming("/echo.Echo/Count", tonic::Request::new(note("", 3)))
        .await;
    for i in 0..3 {
        let message = within("the next message", stream.message())
            .await
            .expect("a message, not an error")
            .expect("the stream has not ended");
        assert_eq!(message.seq, i);
        s.echo.shared.log(format!("received {i}"));
        // The server sends the next message only now: this one came through on its own.
        s.echo.shared.gate.add_permits(1);
    }
    assert_eq!(
        within("the stream's end", stream.message())
            .await
            .expect("ends with OK"),
        None
    );
    assert_eq!(
        s.echo.shared.events(),
        [
            "sent 0",
            "received 0",
            "sent 1",
            "received 1",
            "sent 2",
            "received 2"
        ],
        "each message reached the client before the server sent the next"
    );
    let record = s.gw.record().await;
    assert_eq!(record.grpc_status, Some(0));
    assert!(record.completed);
    assert_eq!(record.route_template.as_deref(), Some("/echo.Echo/Count"));
}

#[tokio::test]
async fn client_streaming_messages_reach_the_server_before_the_client_sends_the_next() {
    let mut s = setup().await;
    let (tx, rx) = mpsc::channel::<Note>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    let mut client = s.client.clone();
    let call = tokio::spawn(async move {
        client.ready().await.expect("ready");
        let codec = ProstCodec::<Note, Note>::default();
        let path = PathAndQuery::from_static("/echo.Echo/Sum");
        client
            .client_streaming(tonic::Request::new(outgoing), path, codec)
            .await
    });
    let shared = s.echo.shared.clone();
    for seq in [1, 2, 3] {
        tx.send(note("part", seq)).await.expect("the call is open");
        let wanted = format!("got {seq}");
        // The next note is sent only once the server has this one: nothing held it back.
        eventually(
            &format!("the server got note {seq}"),
            Duration::from_secs(10),
            async || {
                let events = shared.events();
                if events.contains(&wanted) {
                    Ok(())
                } else {
                    Err(format!("{events:?}"))
                }
            },
        )
        .await;
    }
    drop(tx);
    let answer = within("the sum", call)
        .await
        .expect("the call task")
        .expect("the call succeeds")
        .into_inner();
    assert_eq!(answer, note("3 notes", 6));
    assert_eq!(s.gw.record().await.grpc_status, Some(0));
}

#[tokio::test]
async fn a_bidirectional_stream_answers_each_message_before_the_next_is_sent() {
    let mut s = setup().await;
    let (tx, rx) = mpsc::channel::<Note>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    within("the client ready", s.client.ready())
        .await
        .expect("ready");
    let codec = ProstCodec::<Note, Note>::default();
    let path = PathAndQuery::from_static("/echo.Echo/Chat");
    // Waits in the channel until the call reads it.
    tx.send(note("ping 0", 0)).await.expect("open");
    let mut replies = within(
        "the stream's head",
        s.client
            .streaming(tonic::Request::new(outgoing), path, codec),
    )
    .await
    .expect("the stream starts")
    .into_inner();
    // Each ping goes out only after the reply to the one before: both directions stream.
    for i in 0..4 {
        let reply = within("the reply", replies.message())
            .await
            .expect("no error")
            .expect("a reply");
        assert_eq!(reply, note(&format!("echo ping {i}"), i));
        if i < 3 {
            tx.send(note(&format!("ping {}", i + 1), i + 1))
                .await
                .expect("open");
        }
    }
    drop(tx);
    assert_eq!(
        within("the end", replies.message())
            .await
            .expect("ends with OK"),
        None
    );
    assert_eq!(s.gw.record().await.grpc_status, Some(0));
}

#[tokio::test]
async fn an_error_status_its_message_and_metadata_pass_through() {
    let mut s = setup().await;
    let status = s
        .unary("/echo.Echo/Fail", tonic::Request::new(note("x", 0)))
        .await
        .expect_err("the server fails the call");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "note №7 is 100% gone");
    assert_eq!(
        status.metadata().get("x-why").and_then(|v| v.to_str().ok()),
        Some("tested")
    );
    let record = s.gw.record().await;
    assert_eq!(record.status, 200);
    assert_eq!(
        record.grpc_status,
        Some(9),
        "trailers-only: the status is in the head"
    );
    assert_eq!(record.stopped_at, None, "the upstream answered: not a stop");
}

// ---------------------------------------------------------------------------------------------
// Deadlines.

#[tokio::test]
async fn a_deadline_cuts_a_stream_after_its_head_with_deadline_exceeded() {
    let mut s = setup().await;
    let mut request = tonic::Request::new(note("", 0));
    request.set_timeout(Duration::from_millis(300));
    let mut stream = s.server_streaming("/echo.Echo/Drip", request).await;
    let first = within("the first message", stream.message())
        .await
        .expect("no error yet")
        .expect("a message");
    assert_eq!(first.text, "first drop");
    // The server never ends the stream; the gateway does, at the call's deadline.
    let status = within("the deadline", stream.message())
        .await
        .expect_err("the stream ends in an error");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let head = s.echo.shared.last_head();
    let forwarded = head
        .get("grpc-timeout")
        .expect("what is left of the deadline goes upstream");
    let left = gateway::vocab::grpc::parse_timeout(forwarded.as_bytes()).expect("valid");
    assert!(
        left > Duration::ZERO && left <= Duration::from_millis(300),
        "{forwarded:?}"
    );
    let record = s.gw.record().await;
    assert_eq!(record.grpc_status, Some(4));
    assert_eq!(record.status, 200, "the status sent with the head");
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-timeout"));
    assert!(record.completed, "the client's stream ended whole");
}

#[tokio::test]
async fn an_upstream_request_timeout_shorter_than_the_deadline_caps_it() {
    let mut s = setup().await;
    let mut request = tonic::Request::new(note("", 0));
    request.set_timeout(Duration::from_secs(30));
    let status = s
        .unary("/echo.Echo/Stall", request)
        .await
        .expect_err("no answer in time");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().starts_with("upstream-timeout: "),
        "{status:?}"
    );
    let record = s.gw.record().await;
    assert_eq!(record.status, 200);
    assert_eq!(record.grpc_status, Some(4));
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-timeout"));
}

/// A gRPC request written by hand: one length-prefixed message, over the HTTP/1.1 test client.
fn grpc_frame(message: &Note) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + encoded.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).expect("small"));
    frame.put_slice(&encoded);
    frame.freeze()
}

fn grpc_post(gw: &TestGateway, path: &str) -> http::request::Builder {
    request("POST", &gw.url(path)).header("content-type", "application/grpc")
}

#[tokio::test]
async fn the_calls_own_deadline_ends_it_when_the_head_is_late() {
    // The HTTP/1.1 upstream ignores grpc-timeout, so only the gateway can end the call; the
    // client is plain HTTP (tonic's own client would give up at the same instant, first).
    let s = setup().await;
    let mut gw = s.gw;
    let reply = gw
        .send(
            grpc_post(&gw, "/h1.Legacy/Slow")
                .header("grpc-timeout", "200m")
                .header("x-test-behaviour", "slow:3000")
                .body(full(grpc_frame(&note("", 0))))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/grpc"));
    assert_eq!(reply.header("grpc-status"), Some("4"));
    assert!(reply.body.is_empty(), "trailers only");
    let seen = s.h1.last();
    let left = seen
        .headers
        .get("grpc-timeout")
        .and_then(|v| gateway::vocab::grpc::parse_timeout(v.as_bytes()).ok())
        .expect("a valid grpc-timeout upstream");
    assert!(left <= Duration::from_millis(200), "{left:?}");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-timeout"));
    assert_eq!(record.grpc_status, Some(4));
}

#[tokio::test]
async fn an_invalid_grpc_timeout_is_a_clear_stop_at_route() {
    let s = setup().await;
    let mut gw = s.gw;
    for bad in ["1.5S", "10", "123456789m", "5s"] {
        let reply = gw
            .send(
                grpc_post(&gw, "/echo.Echo/Say")
                    .header("grpc-timeout", bad)
                    .body(full(grpc_frame(&note("", 0))))
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, 200, "{bad}");
        assert_eq!(reply.header("grpc-status"), Some("3"), "{bad}");
        let message = reply.header("grpc-message").unwrap_or_default();
        assert!(
            message.starts_with("invalid-grpc-timeout: "),
            "{bad}: {message}"
        );
        let record = gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Route), "{bad}");
        assert_eq!(record.reason.as_deref(), Some("invalid-grpc-timeout"));
    }
    assert!(
        s.echo.shared.last_head.lock().expect("head").is_none(),
        "nothing reached the server"
    );
}

// ---------------------------------------------------------------------------------------------
// Gateway stops, answered in gRPC's form.

#[tokio::test]
async fn a_call_without_its_credential_is_unauthenticated_and_with_it_passes() {
    let mut s = setup().await;
    let status = s
        .unary("/echo.Private/Say", tonic::Request::new(note("hi", 1)))
        .await
        .expect_err("no API key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().starts_with("missing-credentials: "),
        "{status:?}"
    );
    let record = s.gw.record().await;
    assert_eq!(record.status, 200, "a gRPC stop is an HTTP 200");
    assert_eq!(record.grpc_status, Some(16));
    assert_eq!(record.stopped_at, Some(StageId::Authn));
    assert_eq!(record.reason.as_deref(), Some("missing-credentials"));

    let mut request = tonic::Request::new(note("hi", 1));
    let key = std::str::from_utf8(API_KEY).expect("ascii");
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("value"));
    let answer = s
        .unary("/echo.Private/Say", request)
        .await
        .expect("the key lets the call through");
    assert_eq!(answer.into_inner(), note("said hi", 1));
    let head = s.echo.shared.last_head();
    assert!(
        head.get("x-api-key").is_none(),
        "the credential is not passed on"
    );
}

#[tokio::test]
async fn a_method_only_the_catch_all_serves_is_unimplemented() {
    let mut s = setup().await;
    let status = s
        .unary("/echo.Echo/Nope", tonic::Request::new(note("", 0)))
        .await
        .expect_err("no route");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(status.message(), "catch-all: no such method");
    let record = s.gw.record().await;
    assert_eq!(record.grpc_status, Some(12));
    assert_eq!(record.stopped_at, Some(StageId::Route));
    assert_eq!(record.reason.as_deref(), Some("catch-all"));
}

#[tokio::test]
async fn a_call_over_its_quota_is_resource_exhausted() {
    let mut s = setup().await;
    s.unary("/echo.Limited/Say", tonic::Request::new(note("one", 1)))
        .await
        .expect("the first call is within the quota");
    let _ = s.gw.record().await;
    let status = s
        .unary("/echo.Limited/Say", tonic::Request::new(note("two", 2)))
        .await
        .expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let record = s.gw.record().await;
    assert_eq!(record.grpc_status, Some(8));
    assert_eq!(record.stopped_at, Some(StageId::Ratelimit));
    assert_eq!(record.reason.as_deref(), Some("quota-exceeded"));
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable() {
    let echo = EchoServer::start().await;
    let dead = refused_address().await;
    let mut gw = TestGateway::start(&config(dead, echo.address)).await;
    let reply = gw
        .send(
            grpc_post(&gw, "/echo.Echo/Say")
                .body(full(grpc_frame(&note("", 0))))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), Some("14"));
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-unreachable"));
}

#[tokio::test]
async fn a_grpc_route_answers_in_grpcs_form_whatever_the_content_type_and_others_do_not() {
    let s = setup().await;
    let mut gw = s.gw;
    // `grpc: true`: a stop is a gRPC status even without a gRPC content type.
    let reply = gw
        .send(
            request("POST", &gw.url("/echo.Private/Say"))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/grpc"));
    assert_eq!(reply.header("grpc-status"), Some("16"));
    assert!(
        reply.header("www-authenticate").is_some(),
        "the challenge comes along"
    );
    let _ = gw.record().await;
    // Neither the route nor the content type says gRPC: the HTTP problem body, as ever.
    let reply = gw.get("/echo.Nowhere/Say").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.problem()["type"], "urn:gatehouse:problem:catch-all");
    assert_eq!(gw.record().await.grpc_status, None);
    // gRPC-Web is not gRPC on the wire: HTTP's answer too.
    let reply = gw
        .send(
            request("POST", &gw.url("/echo.Nowhere/Say"))
                .header("content-type", "application/grpc-web+proto")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 404);
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 clients.

/// A response's head, body and trailers, read whole.
async fn read_with_trailers(response: Response<Incoming>) -> (HeaderMap, Bytes, Option<HeaderMap>) {
    let (parts, body) = response.into_parts();
    let collected = within("the body", body.collect()).await.expect("body");
    let trailers = collected.trailers().cloned();
    (parts.headers, collected.to_bytes(), trailers)
}

/// A real HTTP/1.1 server that answers like a gRPC server would over HTTP/1.1: a chunked body,
/// then `grpc-status`, `grpc-message` and custom metadata as trailers it names in `Trailer`.
async fn h1_trailer_upstream() -> (SocketAddr, Arc<Mutex<Option<HeaderMap>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(None));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    *recorded.lock().expect("seen") = Some(req.headers().clone());
                    async move {
                        let _ = req.into_body().collect().await;
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().expect("value"));
                        trailers.insert("grpc-message", "all%20good".parse().expect("value"));
                        trailers.insert("x-meta", "from-h1".parse().expect("value"));
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                            Ok(Frame::data(grpc_frame(&note("over h1", 1)))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = StreamBody::new(futures_util::stream::iter(frames));
                        let mut response = Response::new(body);
                        let h = response.headers_mut();
                        h.insert("content-type", "application/grpc".parse().expect("value"));
                        h.insert(
                            "trailer",
                            "grpc-status, grpc-message, x-meta".parse().expect("value"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, seen)
}

#[tokio::test]
async fn an_http1_client_with_te_trailers_gets_an_http1_upstreams_trailers_chunked() {
    let echo = EchoServer::start().await;
    let (h1, seen) = h1_trailer_upstream().await;
    let mut gw = TestGateway::start(&config(echo.address, h1)).await;
    let response = within(
        "the answer",
        gw.client.request(
            grpc_post(&gw, "/h1.Legacy/Say")
                .header("te", "trailers")
                .body(full(grpc_frame(&note("", 0))))
                .expect("request"),
        ),
    )
    .await
    .expect("an answer");
    let (headers, body, trailers) = read_with_trailers(response).await;
    let upstream_head = seen.lock().expect("seen").clone().expect("a request");
    assert_eq!(
        upstream_head.get("te").and_then(|v| v.to_str().ok()),
        Some("trailers"),
        "te: trailers reached the upstream, which sends trailers only then"
    );
    assert_eq!(body, grpc_frame(&note("over h1", 1)));
    let trailers = trailers.expect("chunked trailers reached the client");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0")
    );
    assert_eq!(
        trailers.get("grpc-message").and_then(|v| v.to_str().ok()),
        Some("all%20good")
    );
    assert_eq!(
        trailers.get("x-meta").and_then(|v| v.to_str().ok()),
        Some("from-h1"),
        "named in the upstream's Trailer field, so passed on"
    );
    assert!(headers.contains_key("trailer"), "Trailer is end to end");
    let record = gw.record().await;
    assert_eq!(record.grpc_status, Some(0));
    assert!(record.completed);
}

#[tokio::test]
async fn an_http1_client_with_te_trailers_gets_grpc_status_from_an_http2_server() {
    let s = setup().await;
    let mut gw = s.gw;
    let response = within(
        "the answer",
        gw.client.request(
            grpc_post(&gw, "/echo.Echo/Say")
                .header("te", "trailers")
                .body(full(grpc_frame(&note("plain", 3))))
                .expect("request"),
        ),
    )
    .await
    .expect("an answer");
    let (headers, body, trailers) = read_with_trailers(response).await;
    assert_eq!(body, grpc_frame(&note("said plain", 3)));
    let declared = headers
        .get_all("trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    assert!(declared.contains("grpc-status"), "{declared}");
    let trailers = trailers.expect("chunked trailers");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0")
    );
    let record = gw.record().await;
    assert_eq!(record.grpc_status, Some(0));
    assert!(record.completed);
}

// ---------------------------------------------------------------------------------------------
// The documented mapping.

#[test]
fn docs_protocols_status_table_is_reason_grpc_code_for_every_reason() {
    use gateway::vocab::Reason;
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocols.md"))
            .expect("read docs/protocols.md");
    let section = docs
        .split("### Gateway stops as gRPC statuses")
        .nth(1)
        .expect("docs/protocols.md has the gRPC stops section");
    let mut documented = Vec::new();
    for row in section.lines().take_while(|l| !l.starts_with('#')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(stops), Some(code)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(number) = code
            .split_once('(')
            .and_then(|(_, n)| n.strip_suffix(')'))
            .and_then(|n| n.parse::<u16>().ok())
        else {
            continue;
        };
        for token in stops.split('`').skip(1).step_by(2) {
            if let Some(reason) = Reason::parse(token) {
                documented.push((reason, number));
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(Reason, u16)> = Reason::ALL
        .into_iter()
        .map(|r| (r, r.grpc_code().as_u16()))
        .collect();
    expected.sort();
    assert_eq!(
        documented, expected,
        "docs/protocols.md's gRPC status table vs Reason::grpc_code"
    );
}

#[tokio::test]
async fn an_upstreams_unavailable_answers_open_its_breaker_and_a_callers_error_does_not() {
    let mut s = setup().await;
    // FAILED_PRECONDITION is the server working: five in a row leave the breaker closed.
    for _ in 0..5 {
        let status = s
            .unary("/echo.Guarded/Fail", tonic::Request::new(note("x", 0)))
            .await
            .expect_err("the server fails the call");
        assert_eq!(status.code(), Code::FailedPrecondition);
    }
    s.unary("/echo.Guarded/Say", tonic::Request::new(note("hi", 0)))
        .await
        .expect("the breaker is closed");
    // UNAVAILABLE is the server failing, as a 503 would be: three in a row open it.
    for _ in 0..3 {
        let status = s
            .unary("/echo.Guarded/Down", tonic::Request::new(note("x", 0)))
            .await
            .expect_err("the server is down");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "overloaded, try another",
            "the server's own answer"
        );
    }
    let status = s
        .unary("/echo.Guarded/Say", tonic::Request::new(note("hi", 0)))
        .await
        .expect_err("the breaker is open");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().starts_with("circuit-open"),
        "{}",
        status.message()
    );
    let record = loop {
        let record = s.gw.record().await;
        if record.reason.is_some() && record.stopped_at.is_some() {
            break record;
        }
    };
    assert_eq!(record.stopped_at, Some(StageId::Route));
    assert_eq!(record.reason.as_deref(), Some("circuit-open"));
}
