//! Strict HTTP/1.1 at the edge, with exact bytes over TCP: every refusal class of the head
//! parser and the chunked-body validator answered with its problem body and one record, nothing
//! (or never a complete body) reaching the upstream, the connection closed, and a canary served
//! on a fresh connection; the oversized head over HTTP/2; silent connections closed at the
//! header-read timeout on plaintext and TLS.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::vocab::StageId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::identity_support::*;
use super::util::*;

const WAIT: Duration = Duration::from_secs(3);

fn config(upstream: SocketAddr) -> String {
    let text = reference_config(upstream);
    let limited = text
        .replace("max_uri_bytes: 8192", "max_uri_bytes: 256")
        .replace("max_header_bytes: 16384", "max_header_bytes: 2048")
        .replace("header_read_timeout: 10s", "header_read_timeout: 300ms");
    assert_ne!(text, limited, "the fixture's limits block changed");
    limited
}

/// The problem body after the head of a raw answer.
fn problem_of(reply: &str) -> serde_json::Value {
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("problem body: {e}: {reply}"))
}

async fn canary(gw: &TestGateway) {
    let reply = gw.get("/api/v1/users/1").await;
    assert_eq!(reply.status, 200, "the canary on a fresh connection");
}

/// One hostile message on its own connection: refused with `status` and `reason` at `tls`,
/// the connection closed, nothing upstream, one record, and a canary served afterwards.
async fn refused_at_the_edge(bytes: &[u8], status: u16, reason: &str) {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let (reply, closed) = raw_exchange(gw.handle.address(), bytes, WAIT).await;
    let shown = String::from_utf8_lossy(bytes).escape_debug().to_string();
    assert!(
        reply.starts_with(&format!("HTTP/1.1 {status} ")),
        "{shown}: {reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{shown}: {reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(
        reply.contains("content-type: application/problem+json"),
        "{reply}"
    );
    let problem = problem_of(&reply);
    assert_eq!(
        problem["type"],
        format!("urn:gatehouse:problem:{reason}"),
        "{shown}"
    );
    assert_eq!(problem["stage"], "tls");
    assert_eq!(problem["status"], status);
    assert!(closed, "{shown}: the connection is closed");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls), "{shown}");
    assert_eq!(record.reason.as_deref(), Some(reason), "{shown}");
    assert_eq!(record.status, status);
    assert!(record.completed, "the answer was written");
    assert_eq!(
        problem["request_id"], record.request_id,
        "the answer and the record are one"
    );
    canary(&gw).await;
    assert_eq!(gw.record().await.status, 200);
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        1,
        "{shown}: only the canary reached the upstream"
    );
    assert_eq!(seen[0].method, "GET", "{shown}: {seen:?}");
}

#[tokio::test]
async fn a_transfer_encoding_other_than_one_final_chunked_is_refused() {
    for (bytes, status, reason) in [
        (
            &b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"[..],
            400,
            "malformed-request",
        ),
        (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "malformed-request",
        ),
        (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            400,
            "malformed-request",
        ),
        (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "unsupported-transfer-coding",
        ),
        (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "malformed-request",
        ),
    ] {
        refused_at_the_edge(bytes, status, reason).await;
    }
}

#[tokio::test]
async fn bad_line_endings_and_field_bytes_are_refused() {
    for bytes in [
        &b"GET /api/v1/users/1 HTTP/1.1\nHost: x\r\n\r\n"[..],
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\n\n",
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost : x\r\n\r\n",
    ] {
        refused_at_the_edge(bytes, 400, "malformed-request").await;
    }
}

#[tokio::test]
async fn a_request_target_outside_rfc_3986_is_refused_and_recorded_escaped() {
    for bytes in [
        &b"GET /api/v1/users/1#frag HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /api/v1/users/a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/users/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        refused_at_the_edge(bytes, 400, "malformed-request").await;
    }
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let _ = raw_exchange(
        gw.handle.address(),
        b"GET /api/v1/users/\x1b[2J\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        WAIT,
    )
    .await;
    let record = gw.record().await;
    assert_eq!(record.method, "GET");
    assert_eq!(
        record.path, "/api/v1/users/%1B[2J%FF",
        "control bytes escaped"
    );
}

#[tokio::test]
async fn an_oversized_head_is_431_or_414_from_the_parser() {
    let big = format!(
        "GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(3000)
    );
    refused_at_the_edge(big.as_bytes(), 431, "headers-too-large").await;
    // More fields than `limits.max_headers` (100), each small: the gateway's own 431, never
    // hyper's bare one (hyper's parser is left at its default of 100 slots).
    let many: String = (0..101).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many = format!("GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    refused_at_the_edge(many.as_bytes(), 431, "headers-too-large").await;
    let long = format!(
        "GET /api/v1/users/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(300)
    );
    refused_at_the_edge(long.as_bytes(), 414, "uri-too-long").await;
}

#[tokio::test]
async fn a_good_request_then_a_bad_one_on_one_connection_answers_the_first_only() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let pair = b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /api/v1/users/2 HTTP/1.1\nHost: x\r\n\r\n";
    let (reply, closed) = raw_exchange(gw.handle.address(), pair, WAIT).await;
    let answers: Vec<&str> = reply.matches("HTTP/1.1 ").collect();
    assert_eq!(answers.len(), 2, "{reply}");
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let second = &reply[reply[1..].find("HTTP/1.1 ").map_or(0, |i| i + 1)..];
    assert!(second.starts_with("HTTP/1.1 400 "), "{reply}");
    assert_eq!(
        problem_of(second)["type"],
        "urn:gatehouse:problem:malformed-request"
    );
    assert!(closed);
    let first = gw.record().await;
    assert_eq!(first.status, 200);
    let refusal = gw.record().await;
    assert_eq!(refusal.stopped_at, Some(StageId::Tls));
    assert_eq!(refusal.reason.as_deref(), Some("malformed-request"));
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        1,
        "only the first reached the upstream: {seen:?}"
    );
    assert_eq!(seen[0].body_bytes, 3);
    canary(&gw).await;
}

/// A chunked body that goes wrong after its head was forwarded: 400 `malformed-body` from
/// `forward` (not a 502), the upstream never sees the body end, the connection closed.
async fn malformed_body(body: &[u8]) {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut bytes =
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    bytes.extend_from_slice(body);
    let shown = String::from_utf8_lossy(body).escape_debug().to_string();
    let (reply, closed) = raw_exchange(gw.handle.address(), &bytes, WAIT).await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{shown}: {reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    let problem = problem_of(&reply);
    assert_eq!(
        problem["type"], "urn:gatehouse:problem:malformed-body",
        "{shown}"
    );
    assert_eq!(problem["stage"], "forward");
    assert!(closed, "{shown}: the connection is closed");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward), "{shown}");
    assert_eq!(record.reason.as_deref(), Some("malformed-body"));
    // The upstream may have seen the head and the good chunks; never a body that ended.
    eventually(
        "the upstream's side ended",
        Duration::from_secs(3),
        async || {
            let seen = upstream.seen();
            if seen.iter().all(|s| !s.body_complete) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    canary(&gw).await;
    assert!(
        upstream
            .seen()
            .iter()
            .filter(|s| s.method == "POST")
            .all(|s| !s.body_complete)
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_and_the_upstream_never_sees_it_end() {
    for body in [
        &b"3\r\nabc\r\n10000000000000000\r\n"[..],
        b"3;bad ext=\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n",
        b"3\r\nabc\r\n0\r\nHost: evil.test\r\n\r\n",
    ] {
        malformed_body(body).await;
    }
}

#[tokio::test]
async fn an_oversized_header_block_over_http2_gets_the_problem_body_and_a_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let tcp = tokio::net::TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(format!("http://{}/api/v1/users/1", gw.handle.address()))
        .header("x-big", "b".repeat(3000))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("an answer, not a reset");
    assert_eq!(response.status(), 431);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let problem: serde_json::Value = serde_json::from_slice(&bytes).expect("problem body");
    assert_eq!(problem["type"], "urn:gatehouse:problem:headers-too-large");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("headers-too-large"));
    assert!(upstream.seen().is_empty());
    canary(&gw).await;
}

#[tokio::test]
async fn a_plaintext_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&config(upstream.address)).await;
    let mut silent = tokio::net::TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    // The idle timeout is a minute: only the header-read timeout (300 ms) can close it.
    assert!(closes_within(&mut silent, Duration::from_secs(3)).await);
    canary(&gw).await;
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_its_handshake_is_closed_too() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let yaml = tls_listener_config(
        &pki,
        upstream.address,
        "/api/users/*",
        "  header_read_timeout: 300ms",
    );
    let gw = TestGateway::start(&yaml).await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let mut tls = tls_connect(&pki, alpn, gw.handle.address()).await;
        assert!(
            closes_within(&mut tls, Duration::from_secs(3)).await,
            "closed after a silent handshake ({alpn:?})"
        );
    }
    // And a connection that does talk is served.
    let mut tls = tls_connect(&pki, &[b"http/1.1"], gw.handle.address()).await;
    tls.write_all(b"GET /api/users/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut reply)).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
