//! forward: pooled streaming client, 502 on refused or reset, 504 on timeout, flat memory for a
//! 1 GiB upload, HTTP/2 prior knowledge from clients.

use std::net::SocketAddr;

use bytes::Bytes;
use gateway::vocab::StageId;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::util::*;

pub fn small_config(svc: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: ["{svc}"]
    connect_timeout: 300ms
    request_timeout: 400ms
  bulk:
    instances: ["{svc}"]
    request_timeout: 120s
  dead:
    instances: ["{dead}"]
    connect_timeout: 300ms
routes:
  - {{ name: svc, match: {{ path: /svc/* }}, upstream: svc, max_body_bytes: 1024 }}
  - {{ name: bulk, match: {{ path: /bulk/* }}, upstream: bulk, max_body_bytes: 2147483648 }}
  - {{ name: dead, match: {{ path: /dead/* }}, upstream: dead }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

/// An address nothing listens on: bound, then released.
pub async fn refused_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

#[tokio::test]
async fn a_refusing_upstream_is_a_502_stopped_at_forward() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let reply = gw.get("/dead/x").await;
    assert_eq!(reply.status, 502);
    let problem = reply.problem();
    assert_eq!(problem["stage"], "forward");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(!detail.contains("127.0.0.1"), "no internals leak: {detail}");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-unreachable"));
    assert_eq!(record.upstream.as_deref(), Some("dead"));
}

#[tokio::test]
async fn an_upstream_that_resets_before_answering_is_a_502() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/svc/x"))
                .header("x-test-behaviour", "reset")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(gw.record().await.reason.as_deref(), Some("upstream-reset"));
}

#[tokio::test]
async fn an_upstream_slower_than_its_request_timeout_is_a_504() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/svc/x"))
                .header("x-test-behaviour", "slow:2000")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.problem()["stage"], "forward");
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("upstream-timeout"));
    assert!(
        record.duration_ns < 1_900_000_000,
        "the gateway did not wait for the upstream"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_route_limit_is_413_before_the_upstream() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let reply = gw
        .send(
            request("POST", &gw.url("/svc/x"))
                .body(full(vec![b'x'; 2048]))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.problem()["stage"], "route");
    assert_eq!(gw.record().await.reason.as_deref(), Some("body-too-large"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn a_chunked_body_that_grows_past_the_limit_is_413_at_forward() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; 512]))));
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
    let reply = gw
        .send(
            request("POST", &gw.url("/svc/x"))
                .body(body)
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.problem()["stage"], "forward");
    assert_eq!(gw.record().await.reason.as_deref(), Some("body-too-large"));
    assert!(
        upstream.seen().iter().all(|s| s.body_bytes <= 1024),
        "the upstream never got more than the limit"
    );
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_upload_streams_through_with_flat_memory() {
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 64 * 1024;
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&small_config(upstream.address, refused_address().await)).await;
    let before = resident_bytes();
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let frames =
        (0..TOTAL / CHUNK as u64).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone())));
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let reply = gw
        .send(
            request("POST", &gw.url("/bulk/upload"))
                .body(body)
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().body_bytes, TOTAL);
    let record = gw.record().await;
    assert_eq!(record.bytes_in, TOTAL);
    let grew = resident_bytes().saturating_sub(before);
    assert!(
        grew < 64 << 20,
        "memory grew by {grew} bytes for a 1 GiB upload"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let response = client
        .request(
            request("GET", &gw.url("/api/v1/users/7"))
                .body(empty())
                .expect("request"),
        )
        .await
        .expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let reply = Reply::read(response).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().target, "/users/7");
    let seen = upstream.last().headers;
    assert!(
        seen.contains_key("host"),
        "the :authority became Host for the HTTP/1.1 upstream"
    );
    assert_eq!(gw.record().await.route.as_deref(), Some("users-v1"));
}

/// Bodiless requests take the pool's own HTTP/1.1 exchange, requests with a body hyper's client:
/// a request with a body takes the connection a bodiless one left idle rather than open another.
#[tokio::test]
async fn a_request_with_a_body_takes_over_the_connection_a_bodiless_one_left_idle() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    assert_eq!(gw.get("/api/v1/users/1").await.status, 200);
    for _ in 0..2 {
        let reply = gw
            .send(
                request("POST", &gw.url("/api/v1/users"))
                    .body(full(&b"{\"name\":\"ada\"}"[..]))
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let seen = upstream.seen();
    assert_eq!(
        seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(),
        ["GET", "POST", "POST"]
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.body_bytes == 14 && s.body_complete)
    );
    assert!(
        seen.iter().all(|s| s.peer == seen[0].peer),
        "one upstream connection: {:?}",
        seen.iter().map(|s| s.peer).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/api/v1/users/1").await.status, 200);
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 5);
    assert!(
        seen.iter().all(|s| s.peer == seen[0].peer),
        "all five requests used one pooled connection: {:?}",
        seen.iter().map(|s| s.peer).collect::<Vec<_>>()
    );
}
