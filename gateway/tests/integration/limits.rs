//! The limits that protect the gateway from slow and greedy clients, over real sockets: a request
//! body that stalls or trickles (408 `request-body-timeout`, the upstream's request aborted and its
//! connection not reused), a TLS handshake that never completes (`tls_handshake_timeout`),
//! requests past a listener's or a route's `max_concurrent_requests` (503 `overloaded` at once,
//! with `Retry-After`), and connections past a listener's `max_connections`.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::vocab::StageId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::identity_support::{
    ClientCert, Pki, assert_refused, tls_client, tls_get, tls_listener_config,
};
use super::util::*;

/// A small gateway: `limited` allows `route_limit` requests at once, `open` has no limit of its
/// own; `limits` is written into the `limits` block.
fn config(upstream: SocketAddr, limits: &str, route_limit: u32) -> String {
    format!(
        r#"
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
access_log: off
limits:
{limits}
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - name: limited
    match: {{ path: /limited/* }}
    upstream: svc
    max_concurrent_requests: {route_limit}
  - name: open
    match: {{ path: /open/* }}
    upstream: svc
  - name: catch-all
    match: {{ path: /* }}
    respond: {{ status: 404 }}
"#
    )
}

async fn metrics(gw: &TestGateway) -> String {
    let admin = gw.handle.admin_address().expect("admin");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    String::from_utf8(reply.body.to_vec()).expect("metrics text")
}

/// Waits (bounded) until the metric line `series` (name and labels) reads `value`.
async fn metric_reaches(gw: &TestGateway, series: &str, value: u64) {
    let prefix = format!("{series} ");
    eventually(
        &format!("{series} reaches {value}"),
        Duration::from_secs(10),
        async || {
            let text = metrics(gw).await;
            let now = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|n| n.trim().parse::<u64>().ok());
            match now {
                Some(n) if n == value => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Everything the gateway writes on `stream` until it closes it or `wait` passes; whether it
/// closed.
async fn read_all(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Asserts a raw HTTP/1.1 answer is the 408 `request-body-timeout` problem, closing.
fn assert_body_timeout(reply: &str) {
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{reply}");
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{reply}"
    );
    assert!(
        reply.contains("\"type\":\"urn:gatehouse:problem:request-body-timeout\""),
        "{reply}"
    );
    assert!(reply.contains("\"stage\":\"forward\""), "{reply}");
}

// ---------------------------------------------------------------------------------------------
// Request bodies that stall or trickle.

#[tokio::test]
async fn a_stalled_upload_is_408_at_body_read_timeout_and_its_upstream_connection_is_not_reused() {
    let upstream = Upstream::start().await;
    let mut gw =
        TestGateway::start(&config(upstream.address, "  body_read_timeout: 300ms", 10)).await;
    // A first request leaves a pooled connection to the upstream, the one the upload will take.
    assert_eq!(gw.get("/open/warm").await.status, 200);
    gw.record().await;
    let warm = upstream.last().peer;

    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    // The head and 10 of the 100 bytes it announces, then nothing.
    stream
        .write_all(
            b"POST /open/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .expect("write");
    let (reply, closed) = read_all(&mut stream, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert_body_timeout(&reply);
    assert!(closed, "the client connection is closed after the 408");
    assert!(
        waited >= Duration::from_millis(250),
        "not before the timeout: {waited:?}"
    );

    let record = gw.record().await;
    assert_eq!(record.status, 408);
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("request-body-timeout"));
    assert_eq!(record.bytes_in, 10);

    // The upstream saw the message begin and never end: its connection closed mid-body.
    let upload = eventually(
        "the upstream sees the aborted upload",
        Duration::from_secs(5),
        async || {
            upstream
                .seen()
                .into_iter()
                .find(|s| s.target == "/open/upload")
                .ok_or("not yet")
        },
    )
    .await;
    assert_eq!(
        upload.peer, warm,
        "the upload went over the pooled connection"
    );
    assert_eq!(upload.body_bytes, 10, "the upstream never saw a whole body");

    // The canary is served, on a new upstream connection: the aborted one was not reused.
    assert_eq!(gw.get("/open/canary").await.status, 200);
    let canary = upstream.last();
    assert_eq!(canary.target, "/open/canary");
    assert_ne!(
        canary.peer, warm,
        "the connection of an aborted request is never reused"
    );
}

#[tokio::test]
async fn a_trickling_upload_under_min_body_rate_is_408() {
    let upstream = Upstream::start().await;
    // The read timeout is far away: only the rate can end this body.
    let limits = "  body_read_timeout: 20s\n  min_body_rate: 1000\n  min_body_rate_grace: 300ms";
    let mut gw = TestGateway::start(&config(upstream.address, limits, 10)).await;

    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    let stream = TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        write
            .write_all(b"POST /open/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
            .await
            .expect("write head");
        // One byte every 50 ms: 20 bytes per second, well under 1000.
        for _ in 0..400 {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(15), read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let waited = started.elapsed();
    trickle.abort();
    let reply = String::from_utf8_lossy(&out);
    assert_body_timeout(&reply);
    assert!(reply.contains("too slowly"), "{reply}");
    assert!(closed, "the client connection is closed after the 408");
    assert!(
        waited < Duration::from_secs(15),
        "the rate, not the read timeout, ended it: {waited:?}"
    );

    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("request-body-timeout"));
    let upload = eventually(
        "the upstream sees the aborted upload",
        Duration::from_secs(5),
        async || upstream.seen().into_iter().next().ok_or("not yet"),
    )
    .await;
    assert!(
        upload.body_bytes < 10000,
        "the upstream never saw a whole body: {upload:?}"
    );

    // The same body sent at once is served.
    let reply = gw
        .send(
            request("POST", &gw.url("/open/upload"))
                .body(full(vec![b'x'; 10000]))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().body_bytes, 10000);
}

// ---------------------------------------------------------------------------------------------
// TLS handshakes that never complete.

#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_closed_at_tls_handshake_timeout_and_counted() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let config = tls_listener_config(
        &pki,
        upstream.address,
        "/open/*",
        "  header_read_timeout: 30s\n  tls_handshake_timeout: 300ms",
    );
    let mut gw = TestGateway::start(&config).await;
    let silent: &[u8] = b"";
    // A TLS record header announcing a 200-byte ClientHello, and only its first bytes.
    let partial: &[u8] = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03\x00\x01\x02";
    for (n, sent) in [silent, partial].into_iter().enumerate() {
        #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
        let started = std::time::Instant::now();
        let (reply, closed) =
            raw_exchange(gw.handle.address(), sent, Duration::from_secs(10)).await;
        // The header-read timeout is 30 s: closing within 10 s is the handshake timeout's doing.
        assert!(closed, "case {n}: the connection is closed");
        assert!(reply.is_empty(), "case {n}: nothing is answered: {reply:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "case {n}: not before the timeout"
        );
        metric_reaches(
            &gw,
            "gatehouse_tls_handshake_failures_total{listener=\"edge\",reason=\"timeout\"}",
            n as u64 + 1,
        )
        .await;
    }
    assert!(upstream.seen().is_empty());
    assert!(
        gw.records.try_recv().is_err(),
        "a failed handshake reaches no stage"
    );

    // The canary completes its handshake and is served.
    let client = tls_client(&pki, ClientCert::None, &[b"http/1.1"]);
    let (reply, _) = tls_get(
        gw.handle.address(),
        &client,
        "localhost",
        "localhost",
        "/open/1",
        &[],
    )
    .await
    .expect("exchange");
    assert_eq!(reply.status, 200);
    assert_eq!(gw.record().await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Requests past max_concurrent_requests.

/// Starts `n` slow requests to `path` (the upstream answers each after 3 s) and returns their
/// tasks, once the upstream has received all of them.
async fn slow_requests(
    gw: &TestGateway,
    upstream: &Upstream,
    path: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<u16>> {
    let tasks = (0..n)
        .map(|_| {
            let client = gw.client.clone();
            let request = request("GET", &gw.url(path))
                .header("x-test-behaviour", "slow:3000")
                .body(empty())
                .expect("request");
            tokio::spawn(async move {
                let response = client.request(request).await.expect("answered");
                Reply::read(response).await.status.as_u16()
            })
        })
        .collect();
    eventually(
        "the slow requests reach the upstream",
        Duration::from_secs(10),
        async || {
            let seen = upstream.seen().len();
            if seen == n { Ok(()) } else { Err(seen) }
        },
    )
    .await;
    tasks
}

/// The refusal of a request past a limit: 503 `overloaded` at `stage`, `Retry-After: 1`, its
/// record, and nothing reaching the upstream.
async fn assert_overloaded(gw: &mut TestGateway, upstream: &Upstream, path: &str, stage: StageId) {
    let before = upstream.seen().len();
    let reply = gw.get(path).await;
    assert_refused(&reply, 503, stage.as_str(), "overloaded");
    assert_eq!(reply.header("retry-after"), Some("1"));
    let record = gw.record().await;
    assert_eq!(record.status, 503);
    assert_eq!(record.stopped_at, Some(stage));
    assert_eq!(record.reason.as_deref(), Some("overloaded"));
    assert_eq!(
        upstream.seen().len(),
        before,
        "the upstream got nothing of the refused request"
    );
}

#[tokio::test]
async fn a_route_past_its_max_concurrent_requests_answers_503_overloaded_at_once() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "  idle_timeout: 60s", 2)).await;
    let slow = slow_requests(&gw, &upstream, "/limited/slow", 2).await;
    metric_reaches(
        &gw,
        "gatehouse_route_requests_in_flight{route=\"limited\"}",
        2,
    )
    .await;

    assert_overloaded(&mut gw, &upstream, "/limited/third", StageId::Route).await;
    metric_reaches(
        &gw,
        "gatehouse_route_requests_overloaded_total{route=\"limited\"}",
        1,
    )
    .await;
    // Another route is not limited by this one's count.
    assert_eq!(gw.get("/open/1").await.status, 200);
    gw.record().await;

    for task in slow {
        assert_eq!(
            task.await.expect("slow request"),
            200,
            "the admitted requests are served"
        );
    }
    metric_reaches(
        &gw,
        "gatehouse_route_requests_in_flight{route=\"limited\"}",
        0,
    )
    .await;
    // A freed place is taken again: the canary is served.
    assert_eq!(gw.get("/limited/canary").await.status, 200);
    assert_eq!(upstream.last().target, "/limited/canary");
}

#[tokio::test]
async fn a_listener_past_its_max_concurrent_requests_answers_503_overloaded_at_tls() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(
        upstream.address,
        "  max_concurrent_requests: 2",
        10,
    ))
    .await;
    let slow = slow_requests(&gw, &upstream, "/open/slow", 2).await;
    metric_reaches(
        &gw,
        "gatehouse_listener_requests_in_flight{listener=\"public\"}",
        2,
    )
    .await;

    assert_overloaded(&mut gw, &upstream, "/open/third", StageId::Tls).await;
    metric_reaches(
        &gw,
        "gatehouse_listener_requests_overloaded_total{listener=\"public\"}",
        1,
    )
    .await;

    for task in slow {
        assert_eq!(
            task.await.expect("slow request"),
            200,
            "the admitted requests are served"
        );
    }
    // The places are held until the response bodies end, then freed.
    metric_reaches(
        &gw,
        "gatehouse_listener_requests_in_flight{listener=\"public\"}",
        0,
    )
    .await;
    assert_eq!(gw.get("/open/canary").await.status, 200);
    assert_eq!(upstream.last().target, "/open/canary");
}

// ---------------------------------------------------------------------------------------------
// Connections past max_connections.

/// A keep-alive connection that has been served one request.
async fn served_connection(address: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&head).contains("upstream ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_at_once_until_one_frees() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "  max_connections: 2", 10)).await;
    let address = gw.handle.address();
    let first = served_connection(address, "/open/1").await;
    let _second = served_connection(address, "/open/2").await;
    gw.record().await;
    gw.record().await;
    metric_reaches(
        &gw,
        "gatehouse_listener_connections{listener=\"public\"}",
        2,
    )
    .await;

    // The third is accepted and closed, unread and unanswered.
    let before = upstream.seen().len();
    let (reply, closed) = raw_exchange(
        address,
        b"GET /open/3 HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "the connection past the limit is closed");
    assert!(reply.is_empty(), "nothing is answered on it: {reply}");
    assert_eq!(upstream.seen().len(), before, "the upstream got nothing");
    assert!(
        gw.records.try_recv().is_err(),
        "no request was read, so none is recorded"
    );
    metric_reaches(
        &gw,
        "gatehouse_listener_connections_refused_total{listener=\"public\"}",
        1,
    )
    .await;

    // One closes; a new connection is served.
    drop(first);
    metric_reaches(
        &gw,
        "gatehouse_listener_connections{listener=\"public\"}",
        1,
    )
    .await;
    let (reply, _) = raw_exchange(
        address,
        b"GET /open/canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(upstream.last().target, "/open/canary");
}

// ---------------------------------------------------------------------------------------------
// The same stall toward an HTTP/2 upstream: its stream is reset.

/// What an h2c upstream saw of each request body: bytes, and whether it ended whole.
type BodiesSeen = std::sync::Arc<std::sync::Mutex<Vec<(String, u64, bool)>>>;

async fn h2c_upstream() -> (SocketAddr, BodiesSeen) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = BodiesSeen::default();
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let mut body = req.into_body();
                            let mut bytes = 0u64;
                            let whole = loop {
                                match body.frame().await {
                                    Some(Ok(frame)) => {
                                        bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                                    }
                                    Some(Err(_)) => break false,
                                    None => break true,
                                }
                            };
                            recorded.lock().expect("seen").push((path, bytes, whole));
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"h2 ok")),
                            ))
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
    (address, seen)
}

#[tokio::test]
async fn a_stalled_upload_to_an_http2_upstream_is_408_and_its_stream_reset() {
    let (address, seen) = h2c_upstream().await;
    let text = config(address, "  body_read_timeout: 300ms", 10).replace(
        &format!("    instances: [\"{address}\"]"),
        &format!("    instances: [\"{address}\"]\n    protocol: h2c"),
    );
    assert!(text.contains("protocol: h2c"));
    let mut gw = TestGateway::start(&text).await;
    let (reply, closed) = raw_exchange(
        gw.handle.address(),
        b"POST /open/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(10),
    )
    .await;
    assert_body_timeout(&reply);
    assert!(closed, "the client connection is closed after the 408");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("request-body-timeout"));
    let upload = eventually(
        "the upstream sees the reset",
        Duration::from_secs(5),
        async || seen.lock().expect("seen").first().cloned().ok_or("not yet"),
    )
    .await;
    assert_eq!(
        upload,
        ("/open/upload".to_string(), 10, false),
        "the stream was reset mid-body"
    );

    assert_eq!(gw.get("/open/canary").await.status, 200);
    let canary = seen.lock().expect("seen").last().cloned();
    assert_eq!(canary, Some(("/open/canary".to_string(), 0, true)));
}
