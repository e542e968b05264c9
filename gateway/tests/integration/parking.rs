//! Parking: an HTTP/1.1 keep-alive connection idle for `limits.park_idle_after` gives up
//! hyper's connection state and keeps only its socket. Its next request is served as on a live
//! connection, and what arrives while it is parked meets the same rules: a refused head, a head
//! that never ends, the idle timeout, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::vocab::StageId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::eventually::eventually;
use super::identity_support::{Pki, tls_connect, tls_listener_config};
use super::ratelimit_support::{metric, metrics};
use super::util::*;

const PARKED: &str = "gatehouse_listener_connections_parked{";
const PARK_AFTER: Duration = Duration::from_millis(100);
const GET: &[u8] = b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\n\r\n";

fn config(upstream: SocketAddr) -> String {
    let text = reference_config(upstream);
    let changed = text
        .replace("header_read_timeout: 10s", "header_read_timeout: 300ms")
        .replace(
            "idle_timeout: 60s",
            "idle_timeout: 3s\n  park_idle_after: 100ms",
        );
    assert_ne!(text, changed, "the fixture's limits block changed");
    changed
}

/// [`config`] with parking off.
fn never_parking(upstream: SocketAddr) -> String {
    config(upstream).replace("park_idle_after: 100ms", "park_idle_after: 0s")
}

/// Reads one answer with a `content-length` body; returns its head.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed before the answer's head: {data:?}");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a content-length");
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed inside the body");
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(data.len(), head_end + length, "nothing past the answer");
    head
}

/// A connection that has served one request, and is idle now.
async fn served_connection(gw: &TestGateway) -> TcpStream {
    let mut stream = TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    stream.write_all(GET).await.expect("write");
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream
}

async fn parked(gw: &TestGateway) -> f64 {
    metric(&metrics(gw).await, PARKED)
}

async fn until_parked(gw: &TestGateway, count: f64) {
    eventually(
        "the connection is parked",
        PARK_AFTER * 8,
        async || match parked(gw).await {
            n if n == count => Ok(()),
            n => Err(format!("{n} parked")),
        },
    )
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_parked_and_its_next_requests_are_served() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut stream = TcpStream::connect(gw.handle.address()).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    gw.record().await;
    until_parked(&gw, 1.0).await;

    // Two pipelined requests on the parked connection, the second's head split across writes.
    stream
        .write_all(b"GET /api/v1/users/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/users/3 HT")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream
        .write_all(b"TP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    let paths: Vec<String> = upstream.seen().iter().map(|s| s.target.clone()).collect();
    // (The route strips its `/api/v1` prefix.)
    assert_eq!(paths, ["/users/1", "/users/2", "/users/3"]);
    assert_eq!(gw.record().await.path, "/api/v1/users/2");
    assert_eq!(gw.record().await.path, "/api/v1/users/3");
    // Served again, so no longer parked; idle again, so parked once more.
    until_parked(&gw, 1.0).await;
    drop(stream);
    until_parked(&gw, 0.0).await;
}

#[tokio::test]
async fn a_head_refused_on_a_parked_connection_gets_its_answer_and_its_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut stream = served_connection(&gw).await;
    gw.record().await;
    until_parked(&gw, 1.0).await;

    // Two framings at once: refused by the guard, before hyper could read it.
    stream
        .write_all(
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_answer(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(closes_within(&mut stream, Duration::from_secs(3)).await);
    let record = gw.record().await;
    assert_eq!(record.status, 400);
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the first request went upstream"
    );
}

#[tokio::test]
async fn a_head_that_never_ends_on_a_parked_connection_is_cut_at_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&config(upstream.address)).await;
    let mut stream = served_connection(&gw).await;
    until_parked(&gw, 1.0).await;
    stream
        .write_all(b"GET /api/v1/users/2 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    // The idle timeout is 3 s: only the header read timeout (300 ms) can close it this soon.
    assert!(closes_within(&mut stream, Duration::from_secs(2)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_idle_timeout_and_at_shutdown() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&config(upstream.address)).await;
    let mut idle = served_connection(&gw).await;
    until_parked(&gw, 1.0).await;
    // Idle timeout 3 s from the end of its request.
    assert!(closes_within(&mut idle, Duration::from_secs(5)).await);
    until_parked(&gw, 0.0).await;

    let mut draining = served_connection(&gw).await;
    until_parked(&gw, 1.0).await;
    shutdown_closes_at_once(gw, &mut draining, "a parked connection").await;
}

/// Shuts `gw` down and checks that the idle `connection` is closed, and does not hold up the
/// shutdown, within 2 s.
async fn shutdown_closes_at_once(gw: TestGateway, connection: &mut TcpStream, what: &str) {
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    gw.handle.shutdown().await;
    assert!(
        closes_within(connection, Duration::from_secs(2)).await,
        "{what}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what} does not hold up shutdown"
    );
}

/// The same on a connection that is never parked: hyper's connection is still live, and its
/// watch hears the idle timeout and shutdown after the wakes of requests served before.
#[tokio::test]
async fn a_live_idle_connection_is_closed_at_the_idle_timeout_and_at_shutdown() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&never_parking(upstream.address)).await;
    let mut idle = served_connection(&gw).await;
    for _ in 0..3 {
        idle.write_all(GET).await.expect("write");
        assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    }
    assert!(closes_within(&mut idle, Duration::from_secs(5)).await);

    let mut draining = served_connection(&gw).await;
    draining.write_all(GET).await.expect("write");
    assert!(read_answer(&mut draining).await.starts_with("HTTP/1.1 200"));
    assert_eq!(parked(&gw).await, 0.0, "neither was parked");
    shutdown_closes_at_once(gw, &mut draining, "an idle live connection").await;
}

#[tokio::test]
async fn a_tls_connection_is_parked_and_served_again() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let yaml = tls_listener_config(&pki, upstream.address, "/api/users/*", "");
    let gw = TestGateway::start(&yaml).await;
    // The default `park_idle_after` (100 ms) is in force here.
    let mut tls = tls_connect(&pki, &[b"http/1.1"], gw.handle.address()).await;
    for n in 1..=2 {
        tls.write_all(format!("GET /api/users/{n} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_answer(&mut tls).await.starts_with("HTTP/1.1 200"));
        until_parked(&gw, 1.0).await;
    }
    assert_eq!(upstream.seen().len(), 2);
}

#[tokio::test]
async fn park_idle_after_zero_never_parks() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&never_parking(upstream.address)).await;
    let mut stream = served_connection(&gw).await;
    // Long past the delay the others park at, and past the header read timeout (300 ms), which
    // times heads, not idleness: a sleep is the scenario here.
    tokio::time::sleep(PARK_AFTER * 5).await;
    assert_eq!(parked(&gw).await, 0.0);
    stream.write_all(GET).await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_head_that_never_ends_on_a_live_connection_is_cut_at_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&never_parking(upstream.address)).await;
    let mut stream = served_connection(&gw).await;
    stream
        .write_all(b"GET /api/v1/users/2 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let started = std::time::Instant::now();
    assert!(closes_within(&mut stream, Duration::from_secs(2)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(parked(&gw).await, 0.0);
    assert_eq!(upstream.seen().len(), 1);
}

const HEAP_TRIMS: &str = "gatehouse_heap_trims_total ";

/// Opens `count` connections, each serving one request, and waits until all are parked.
async fn park_a_wave(gw: &TestGateway, count: usize) -> Vec<TcpStream> {
    let mut wave = Vec::with_capacity(count);
    for _ in 0..count {
        wave.push(served_connection(gw).await);
    }
    until_parked(gw, count as f64).await;
    wave
}

#[tokio::test]
async fn a_wave_of_parked_connections_trims_the_heap_once() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&config(upstream.address)).await;
    let count = gateway::resilience::heap::RELEASES_PER_TRIM as usize;
    let _wave = park_a_wave(&gw, count).await;
    eventually(
        "the heap is trimmed after the wave",
        Duration::from_secs(3),
        async || match metric(&metrics(&gw).await, HEAP_TRIMS) {
            1.0 => Ok(()),
            n => Err(format!("{n} trims")),
        },
    )
    .await;
    // One wave, one trim: the releases before it were all it covered.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(metric(&metrics(&gw).await, HEAP_TRIMS), 1.0);
}

#[tokio::test]
async fn shrink_heap_false_never_trims() {
    let upstream = Upstream::start().await;
    let text = config(upstream.address).replace(
        "park_idle_after: 100ms",
        "park_idle_after: 100ms\n  shrink_heap: false",
    );
    let gw = TestGateway::start(&text).await;
    let count = gateway::resilience::heap::RELEASES_PER_TRIM as usize;
    let _wave = park_a_wave(&gw, count).await;
    // Past the settle time a trim would wait after the wave's last release: a sleep is the
    // scenario here.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = metrics(&gw).await;
    assert!(
        text.contains("gatehouse_heap_trims_total"),
        "the metric is exposed"
    );
    assert_eq!(metric(&text, HEAP_TRIMS), 0.0);
}
