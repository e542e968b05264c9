//! Server limits and framing: 414, 431, 400 on ambiguous framing with the connection closed,
//! slowloris and idle connections cut off.

use std::time::Duration;

use gateway::vocab::StageId;

use super::util::*;

fn limited_config(upstream: std::net::SocketAddr) -> String {
    let text = reference_config(upstream);
    let limited = text
        .replace("max_uri_bytes: 8192", "max_uri_bytes: 256")
        .replace("max_header_bytes: 16384", "max_header_bytes: 2048")
        .replace("header_read_timeout: 10s", "header_read_timeout: 300ms")
        .replace("idle_timeout: 60s", "idle_timeout: 400ms");
    assert_ne!(
        text, limited,
        "the fixture's limits block changed; update this test"
    );
    limited
}

#[tokio::test]
async fn a_long_uri_is_414_at_the_edge() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&limited_config(upstream.address)).await;
    let reply = gw.get(&format!("/api/v1/users/{}", "a".repeat(300))).await;
    assert_eq!(reply.status, 414);
    assert_eq!(reply.problem()["stage"], "tls");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("uri-too-long"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn large_headers_are_431_at_the_edge() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&limited_config(upstream.address)).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/api/v1/users/1"))
                .header("x-big", "b".repeat(3000))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 431);
    assert_eq!(
        gw.record().await.reason.as_deref(),
        Some("headers-too-large")
    );
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_second_request() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    // Read by Content-Length the body is "0\r\n\r"; read as chunked it ends at "0\r\n\r\n" and
    // a GET to /api/admin follows. Whoever disagrees on the framing gets smuggled into: the
    // gateway refuses the message whole (RFC 9112 §6.1 allows it), so no one can disagree.
    let smuggle = b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/admin/x HTTP/1.1\r\nHost: x\r\n\r\n";
    let (reply, closed) = raw_exchange(gw.handle.address(), smuggle, Duration::from_secs(3)).await;
    assert_eq!(
        reply.matches("HTTP/1.1 ").count(),
        1,
        "one answer, the smuggled GET got none: {reply}"
    );
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(
        closed,
        "the connection is closed after an ambiguous message"
    );
    assert!(upstream.seen().is_empty(), "nothing reached an upstream");
}

#[tokio::test]
async fn differing_or_invalid_content_length_is_400_and_nothing_reaches_the_upstream() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    for (bad, status) in [
        (&b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"[..], "400"),
        (&b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"[..], "400"),
        (&b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"[..], "400"),
        // A coding the gateway does not decode: 501 (RFC 9112 §6.1).
        (&b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"[..], "501"),
    ] {
        let (reply, closed) = raw_exchange(gw.handle.address(), bad, Duration::from_secs(3)).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{}: {reply}", String::from_utf8_lossy(bad));
        assert!(closed, "connection closed after {}", String::from_utf8_lossy(bad));
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn identical_duplicate_content_lengths_are_one_length() {
    // RFC 9110 §8.6 lets a recipient treat identical repeated values as one.
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let (reply, _) = raw_exchange(
        gw.handle.address(),
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(upstream.last().body_bytes, 3);
    assert_eq!(
        upstream
            .last()
            .headers
            .get_all("content-length")
            .iter()
            .count(),
        1
    );
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_by_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&limited_config(upstream.address)).await;
    // Half a request line, then silence: the gateway must not wait forever.
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    let (_reply, closed) = raw_exchange(
        gw.handle.address(),
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "the connection was closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&limited_config(upstream.address)).await;
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    let (reply, closed) = raw_exchange(
        gw.handle.address(),
        b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(closed, "the idle connection was closed");
    assert!(started.elapsed() < Duration::from_secs(4));
}
