//! Upstream responses are checked too: an HTTP/1.1 upstream that frames its response ambiguously
//! (Content-Length with Transfer-Encoding, a repeated or invalid Content-Length, bare-LF lines,
//! obs-fold, a NUL) gets its client a 502 `upstream-bad-response` and its connection closed, never
//! reused; a malformed chunk after the head cuts the client's response; an upstream that goes
//! silent mid-body is cut at its `idle_timeout`, while a slow but steady one is not.
//!
//! The upstream is a raw TCP fake that writes exact bytes and counts the connections it accepted
//! and the ones the gateway closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gateway::vocab::StageId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::util::*;

/// What the fake does for one request path, step by step.
enum Step {
    Write(&'static [u8]),
    /// Until the test says so (it has seen what came before reach the client).
    WaitForTest,
    Sleep(Duration),
}

fn script(path: &str) -> Vec<Step> {
    use Step::*;
    let head_only = |bytes| vec![Write(bytes)];
    match path {
        "/good" => head_only(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        "HEAD" => head_only(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
        "/chunked" => head_only(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n",
        ),
        "/empty" => head_only(b"HTTP/1.1 204 No Content\r\n\r\n"),
        "/continue" => head_only(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        "/cl-and-te" => head_only(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        "/two-cl" => {
            head_only(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok")
        }
        "/same-cl-twice" => head_only(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
        "/cl-abc" => head_only(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok"),
        "/bare-lf" => head_only(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
        "/obs-fold" => head_only(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
        "/nul" => head_only(b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok"),
        "/space-colon" => head_only(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
        "/te-gzip" => {
            head_only(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
        }
        // A body longer than its Content-Length: the rest would be read as the next response.
        "/smuggle" => head_only(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
              HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        ),
        "/bad-chunk" => vec![
            Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            WaitForTest,
            Write(b"zz\r\nnot a chunk\r\n0\r\n\r\n"),
        ],
        "/trickle" => vec![Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst",
        )],
        "/silent" => vec![Write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")],
        "/steady" => {
            let mut steps = vec![Write(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n")];
            for _ in 0..6 {
                steps.push(Sleep(STEADY_GAP));
                steps.push(Write(b"tick "));
            }
            steps
        }
        _ => head_only(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    }
}

/// The upstreams' idle timeout in these tests.
const IDLE: Duration = Duration::from_millis(400);
/// The steady upstream's gap between writes: well under [`IDLE`], and six of them over it.
const STEADY_GAP: Duration = Duration::from_millis(150);

#[derive(Clone)]
struct RawUpstream {
    address: SocketAddr,
    /// Connections accepted.
    accepts: Arc<AtomicUsize>,
    /// Connections the gateway closed (the fake read EOF).
    closed: Arc<AtomicUsize>,
    /// Requests read.
    requests: Arc<AtomicUsize>,
    release: Arc<Notify>,
    /// Answers every path as `/good`.
    answers_well: Arc<AtomicBool>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = RawUpstream {
            address: listener.local_addr().expect("address"),
            accepts: Arc::default(),
            closed: Arc::default(),
            requests: Arc::default(),
            release: Arc::default(),
            answers_well: Arc::default(),
        };
        let fake = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                fake.accepts.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(fake.clone().serve(stream));
            }
        });
        upstream
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let end = loop {
                if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        self.closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end);
            self.requests.fetch_add(1, Ordering::SeqCst);
            let path = match self.answers_well.load(Ordering::SeqCst) {
                true => "/good",
                // A response to HEAD has no body, whatever its Content-Length says.
                false if head.starts_with("HEAD ") => "HEAD",
                false => head.split(' ').nth(1).unwrap_or("/"),
            };
            for step in script(path) {
                match step {
                    Step::Write(bytes) => {
                        if stream.write_all(bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::WaitForTest => self.release.notified().await,
                    Step::Sleep(gap) => tokio::time::sleep(gap).await,
                }
            }
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    async fn wait_closed(&self, count: usize) {
        eventually(
            "the gateway closes the upstream connection",
            Duration::from_secs(5),
            async || match self.closed.load(Ordering::SeqCst) {
                n if n >= count => Ok(()),
                n => Err(format!("{n} closed")),
            },
        )
        .await;
    }
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  raw:
    instances: ["{upstream}"]
    request_timeout: 5s
    idle_timeout: {idle}ms
routes:
  - {{ name: raw, match: {{ path: /* }}, upstream: raw }}
"#,
        idle = IDLE.as_millis()
    )
}

/// A GET of `path` on a fresh client connection, written as raw bytes.
async fn raw_request(address: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    stream
}

/// Reads until `needle` has arrived, returning all read so far.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&out).contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => panic!(
                    "closed before {needle:?}: {:?}",
                    String::from_utf8_lossy(&out)
                ),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no {needle:?} within 5 s: {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the gateway closes the connection; what it sent meanwhile.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the gateway closes the client connection within 5 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// A canary on a fresh connection is served, on a new upstream connection.
async fn canary(gw: &mut TestGateway, upstream: &RawUpstream) {
    let before = upstream.accepts();
    let reply = gw.get("/good").await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"ok");
    let record = gw.record().await;
    assert!(record.completed && record.reason.is_none(), "{record:?}");
    assert_eq!(
        upstream.accepts(),
        before + 1,
        "the canary needed a new connection"
    );
}

#[tokio::test]
async fn well_framed_responses_keep_their_connection() {
    let upstream = RawUpstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    for (method, path, status, body) in [
        ("GET", "/good", 200, &b"ok"[..]),
        ("GET", "/chunked", 200, b"hello"),
        ("HEAD", "/good", 200, b""),
        ("GET", "/empty", 204, b""),
        ("GET", "/continue", 200, b"ok"),
        ("GET", "/good", 200, b"ok"),
    ] {
        let reply = gw
            .send(
                request(method, &gw.url(path))
                    .body(empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(
            (reply.status.as_u16(), &reply.body[..]),
            (status, body),
            "{method} {path}"
        );
        let record = gw.record().await;
        assert!(record.completed, "{method} {path}: {record:?}");
        assert_eq!(record.reason, None, "{method} {path}");
    }
    assert_eq!(
        upstream.accepts(),
        1,
        "one upstream connection carried them all"
    );
    assert_eq!(upstream.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_ambiguously_framed_response_head_is_a_502_and_its_connection_is_closed() {
    let upstream = RawUpstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let cases = [
        "/cl-and-te",
        "/two-cl",
        "/same-cl-twice",
        "/cl-abc",
        "/bare-lf",
        "/obs-fold",
        "/nul",
        "/space-colon",
        "/te-gzip",
        "/smuggle",
    ];
    for (i, path) in cases.into_iter().enumerate() {
        let reply = gw.get(path).await;
        assert_eq!(reply.status, 502, "{path}");
        let problem = reply.problem();
        assert_eq!(
            problem["type"], "urn:gatehouse:problem:upstream-bad-response",
            "{path}"
        );
        assert_eq!(problem["stage"], "forward", "{path}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(!detail.contains("127.0.0.1"), "no internals leak: {detail}");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("smuggled") && !body.contains("ok"),
            "{path}: {body}"
        );
        let record = gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Forward), "{path}");
        assert_eq!(
            record.reason.as_deref(),
            Some("upstream-bad-response"),
            "{path}"
        );
        assert_eq!(record.status, 502, "{path}");
        // The connection that carried it is closed by the gateway, never reused...
        upstream.wait_closed(i + 1).await;
        // ...and the next request is served on a new one.
        canary(&mut gw, &upstream).await;
    }
}

#[tokio::test]
async fn a_bad_response_is_retried_on_another_instance_like_a_reset() {
    let bad = RawUpstream::start().await;
    let good = RawUpstream::start().await;
    good.answers_well.store(true, Ordering::SeqCst);
    let yaml = format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  raw:
    instances: ["{bad}", "{good}"]
    retries: {{ attempts: 1, backoff: 1ms }}
routes:
  - {{ name: raw, match: {{ path: /* }}, upstream: raw }}
"#,
        bad = bad.address,
        good = good.address
    );
    let mut gw = TestGateway::start(&yaml).await;
    let mut retried = 0;
    for _ in 0..4 {
        let reply = gw.get("/cl-and-te").await;
        assert_eq!(reply.status, 200, "a retry on the good instance answers");
        let record = gw.record().await;
        assert_eq!(record.reason, None, "{record:?}");
        assert_eq!(record.upstream_instance, Some(good.address));
        retried += record.retries;
    }
    assert!(
        retried >= 1,
        "round robin tried the bad instance first at least once"
    );
    assert_eq!(bad.requests.load(Ordering::SeqCst), retried as usize);
}

#[tokio::test]
async fn a_malformed_chunk_after_the_head_cuts_the_response_and_closes_both_connections() {
    let upstream = RawUpstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut client = raw_request(gw.handle.address(), "/bad-chunk").await;
    let seen = read_until(&mut client, "hello").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    upstream.release.notify_one();
    let rest = read_to_close(&mut client).await;
    assert!(
        !rest.contains("not a chunk"),
        "the malformed chunk never reaches the client: {rest}"
    );
    assert!(
        !format!("{seen}{rest}").contains("\r\n0\r\n\r\n"),
        "the body never ends well"
    );
    let record = gw.record().await;
    assert!(!record.completed, "{record:?}");
    assert_eq!(record.status, 200);
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-bad-response"));
    upstream.wait_closed(1).await;
    canary(&mut gw, &upstream).await;
}

async fn silent_upstream_is_cut(path: &str, sent: &str) {
    let upstream = RawUpstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut client = raw_request(gw.handle.address(), path).await;
    let seen = read_until(&mut client, "\r\n\r\n").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let rest = read_to_close(&mut client).await;
    assert_eq!(
        format!("{seen}{rest}").split("\r\n\r\n").nth(1),
        Some(sent),
        "{path}"
    );
    let record = gw.record().await;
    assert!(!record.completed, "{path}: {record:?}");
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-idle-timeout"));
    assert_eq!(record.bytes_out, sent.len() as u64);
    // The gateway waited at least the idle timeout before cutting.
    assert!(record.duration_ns >= IDLE.as_nanos() as u64, "{record:?}");
    upstream.wait_closed(1).await;
    canary(&mut gw, &upstream).await;
}

#[tokio::test]
async fn an_upstream_that_goes_silent_mid_body_is_cut_at_its_idle_timeout() {
    silent_upstream_is_cut("/trickle", "first").await;
}

#[tokio::test]
async fn an_upstream_that_sends_no_body_after_its_head_is_cut_at_its_idle_timeout() {
    silent_upstream_is_cut("/silent", "").await;
}

#[tokio::test]
async fn a_slow_but_steady_body_is_not_cut() {
    let upstream = RawUpstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let reply = gw.get("/steady").await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], "tick ".repeat(6).as_bytes());
    let record = gw.record().await;
    assert!(record.completed, "{record:?}");
    assert_eq!(record.reason, None);
    // The body took longer than one idle timeout in all.
    assert!(record.duration_ns > IDLE.as_nanos() as u64, "{record:?}");
    assert_eq!(upstream.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_idle_timeout_of_zero_is_a_config_problem() {
    let yaml = config("127.0.0.1:1".parse().expect("address")).replace("400ms", "0s");
    let Err(problems) = gateway::config::load_str("gateway.yaml", &yaml) else {
        panic!("a zero idle timeout is refused");
    };
    let text = problems
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("gateway.yaml:8:") && text.contains("upstreams.raw.idle_timeout"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 upstreams: h2 frames and checks the response itself; the idle timeout resets the stream.

/// What the HTTP/2 fake answers on `path`.
async fn h2_answer(
    path: String,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    release: Arc<Notify>,
    resets: Arc<std::sync::Mutex<Vec<h2::Reason>>>,
) {
    let head = |cl: &[&str]| {
        let mut response = http::Response::builder().status(200);
        for value in cl {
            response = response.header("content-length", *value);
        }
        response.body(()).expect("response")
    };
    match path.as_str() {
        "/two-cl" => {
            let _ = respond.send_response(head(&["2", "5"]), true);
        }
        "/short" => {
            let Ok(mut body) = respond.send_response(head(&["10"]), false) else {
                return;
            };
            release.notified().await;
            let _ = body.send_data(bytes::Bytes::from_static(b"short"), true);
        }
        "/trickle" => {
            let Ok(mut body) = respond.send_response(head(&["100"]), false) else {
                return;
            };
            let _ = body.send_data(bytes::Bytes::from_static(b"first"), false);
            if let Ok(reason) = std::future::poll_fn(|cx| body.poll_reset(cx)).await {
                resets.lock().expect("resets").push(reason);
            }
        }
        _ => {
            let Ok(mut body) = respond.send_response(head(&["2"]), false) else {
                return;
            };
            let _ = body.send_data(bytes::Bytes::from_static(b"ok"), true);
        }
    }
}

struct H2Fake {
    address: SocketAddr,
    release: Arc<Notify>,
    /// The codes of the streams the gateway reset.
    resets: Arc<std::sync::Mutex<Vec<h2::Reason>>>,
}

async fn h2_fake() -> H2Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fake = H2Fake {
        address: listener.local_addr().expect("address"),
        release: Arc::default(),
        resets: Arc::default(),
    };
    let (release, resets) = (fake.release.clone(), fake.resets.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (release, resets) = (release.clone(), resets.clone());
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    let path = request.uri().path().to_string();
                    tokio::spawn(h2_answer(path, respond, release.clone(), resets.clone()));
                }
            });
        }
    });
    fake
}

fn h2_config(upstream: SocketAddr) -> String {
    config(upstream).replace(
        "    request_timeout: 5s\n",
        "    request_timeout: 5s\n    protocol: h2c\n",
    )
}

#[tokio::test]
async fn an_http2_response_h2_finds_malformed_is_named_upstream_bad_response() {
    let fake = h2_fake().await;
    let mut gw = TestGateway::start(&h2_config(fake.address)).await;
    // Two differing content-lengths in the head: refused before anything reaches the client.
    let reply = gw.get("/two-cl").await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.problem()["type"],
        "urn:gatehouse:problem:upstream-bad-response"
    );
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("upstream-bad-response"));
    // Fewer DATA bytes than content-length said, after the head: the client's response is cut.
    let mut client = raw_request(gw.handle.address(), "/short").await;
    let seen = read_until(&mut client, "\r\n\r\n").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    fake.release.notify_one();
    let rest = read_to_close(&mut client).await;
    assert!(
        rest.len() < 10,
        "the body never reaches its length: {rest:?}"
    );
    let record = gw.record().await;
    assert!(!record.completed, "{record:?}");
    assert_eq!(record.reason.as_deref(), Some("upstream-bad-response"));
    assert_eq!(gw.get("/good").await.status, 200, "the canary");
}

#[tokio::test]
async fn an_http2_upstream_silent_mid_body_has_its_stream_reset_at_the_idle_timeout() {
    let fake = h2_fake().await;
    let mut gw = TestGateway::start(&h2_config(fake.address)).await;
    let mut client = raw_request(gw.handle.address(), "/trickle").await;
    let seen = read_until(&mut client, "first").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    read_to_close(&mut client).await;
    let record = gw.record().await;
    assert!(!record.completed, "{record:?}");
    assert_eq!(record.reason.as_deref(), Some("upstream-idle-timeout"));
    let reason = eventually(
        "the upstream's stream is reset",
        Duration::from_secs(5),
        async || match fake.resets.lock().expect("resets").as_slice() {
            [reason] => Ok(*reason),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        reason,
        h2::Reason::CANCEL,
        "the gateway no longer wants the stream"
    );
    assert_eq!(gw.get("/good").await.status, 200, "the canary");
}
