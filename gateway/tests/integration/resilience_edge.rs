//! WebSocket pass-through on routes that allow it, and the `Deprecation` / `Sunset` headers of
//! deprecated routes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::resilience_util::*;
use super::util::*;

fn config(fake: std::net::SocketAddr) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: ["{fake}"]
    circuit_breaker: {{ consecutive_failures: 1, open_for: 1m }}
  dead:
    instances: ["{fake}"]
    circuit_breaker: {{ consecutive_failures: 1, open_for: 1m }}
routes:
  - {{ name: chat, match: {{ path: /ws/* }}, upstream: svc, websocket: true }}
  - {{ name: plain, match: {{ path: /plain/* }}, upstream: svc }}
  - name: old
    match: {{ path: /v1/* }}
    upstream: dead
    deprecation:
      date: 2024-12-31T23:59:59Z
      sunset: 2025-06-30
      link: https://developer.example.com/migrate
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

const UPGRADE: &str = "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("head within 5 s")
            .expect("read");
        assert_eq!(
            n,
            1,
            "connection closed before the head ended: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

#[tokio::test]
async fn a_websocket_upgrade_passes_through_and_bytes_flow_both_ways_until_a_side_closes() {
    let fake = Fake::start("svc").await;
    let mut gw = TestGateway::start(&config(fake.address)).await;
    let mut stream = tokio::net::TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    stream
        .write_all(UPGRADE.replace("{path}", "/ws/chat").as_bytes())
        .await
        .expect("write");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert_eq!(
        fake.upgrades(),
        ["websocket"],
        "the upstream was asked to upgrade"
    );
    let record = gw.record().await;
    assert_eq!(record.status, 101);
    assert_eq!(record.route.as_deref(), Some("chat"));

    for message in ["hello", "and again"] {
        stream.write_all(message.as_bytes()).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("echo within 5 s")
            .expect("read");
        assert_eq!(echoed, message.to_ascii_uppercase().as_bytes());
    }
    stream.shutdown().await.expect("close our side");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the gateway closes the client side once the upstream side closed"
    );
}

#[tokio::test]
async fn an_upgrade_on_a_route_that_does_not_allow_it_is_an_ordinary_request() {
    let fake = Fake::start("svc").await;
    let gw = TestGateway::start(&config(fake.address)).await;
    let (reply, _) = raw_exchange(
        gw.handle.address(),
        UPGRADE.replace("{path}", "/plain/x").as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        fake.upgrades().is_empty(),
        "Upgrade is hop-by-hop and was removed"
    );
}

#[tokio::test]
async fn a_deprecated_route_says_so_on_every_response() {
    let fake = Fake::start("svc").await;
    let gw = TestGateway::start(&config(fake.address)).await;
    let check = |reply: &Reply| {
        assert_eq!(reply.header("deprecation"), Some("@1735689599"));
        assert_eq!(
            reply.header("sunset"),
            Some("Mon, 30 Jun 2025 00:00:00 GMT")
        );
        assert_eq!(
            reply.header("link"),
            Some(
                "<https://developer.example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
            )
        );
    };
    let ok = gw.get("/v1/users").await;
    assert_eq!(ok.status, 200);
    check(&ok);
    // A stop on the route carries them too: here the breaker, opened by one failure.
    fake.set(Mode::Status(503));
    assert_eq!(gw.get("/v1/users").await.status, 503);
    let stopped = gw.get("/v1/users").await;
    assert_eq!(
        stopped.problem()["type"],
        "urn:gatehouse:problem:circuit-open"
    );
    check(&stopped);
    let plain = gw.get("/plain/x").await;
    assert_eq!(plain.header("deprecation"), None);
}
