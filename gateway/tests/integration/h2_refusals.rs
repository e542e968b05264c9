//! HTTP/2 requests the h2 library refuses by itself — a malformed header block, one that breaks
//! HPACK, over h2c and over TLS — written as hand-built frames and HPACK literals: the client
//! gets the reset RFC 9113 requires, the upstream nothing, the connection goes on serving, and
//! each refusal has exactly one record (stage `tls`). A stream h2 resets after the pipeline
//! already took it has the pipeline's one record (499: its answer was never made).

use std::net::SocketAddr;
use std::time::Duration;

use gateway::vocab::StageId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::identity_support::*;
use super::util::*;

const WAIT: Duration = Duration::from_secs(5);

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// HPACK "literal field without indexing, new name" (RFC 7541 §6.2.2), lengths under 127, no
/// Huffman: the bytes say exactly the name and value written.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend(name.as_bytes());
    out.push(value.len() as u8);
    out.extend(value.as_bytes());
    out
}

/// `GET http://localhost/api/v1/users/1` and `extra` fields, as one header block.
fn request_block(extra: &[u8]) -> Vec<u8> {
    // :method GET (static 2), :scheme http (static 6), then :path and :authority as literals
    // with static names 4 and 1.
    let mut out = vec![0x82, 0x86];
    let path = "/api/v1/users/1";
    out.extend([0x04, path.len() as u8]);
    out.extend(path.as_bytes());
    out.extend([0x01, 9]);
    out.extend(b"localhost");
    out.extend(extra);
    out
}

struct RawH2<S> {
    io: S,
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawH2<S> {
    async fn start(mut io: S) -> Self {
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        io.write_all(&hello).await.expect("preface");
        RawH2 { io }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write frames");
    }

    /// The next frame, answering the server's SETTINGS and PINGs on the way.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let mut head = [0u8; 9];
            tokio::time::timeout(WAIT, self.io.read_exact(&mut head))
                .await
                .expect("a frame in time")
                .ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            self.io.read_exact(&mut payload).await.ok()?;
            let frame_read = Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            };
            match frame_read.kind {
                SETTINGS if frame_read.flags & 0x1 == 0 => {
                    self.send(&frame(SETTINGS, 0x1, 0, &[])).await
                }
                PING if frame_read.flags & 0x1 == 0 => {
                    self.send(&frame(PING, 0x1, 0, &frame_read.payload)).await
                }
                SETTINGS | PING | 0x8 => {}
                _ => return Some(frame_read),
            }
        }
    }

    /// Frames until one on `stream` of `kind` (or a GOAWAY); panics when the connection ends.
    async fn until(&mut self, stream: u32, kind: u8) -> Frame {
        loop {
            let f = self.next().await.expect("the connection stays open");
            if (f.stream == stream && f.kind == kind) || f.kind == GOAWAY {
                return f;
            }
        }
    }
}

fn code(frame: &Frame) -> u32 {
    let at = if frame.kind == GOAWAY { 4 } else { 0 };
    u32::from_be_bytes(frame.payload[at..at + 4].try_into().expect("an error code"))
}

async fn h2c(gw: &TestGateway) -> RawH2<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    RawH2::start(tcp).await
}

/// The record h2's refusal left: `tls`, `malformed-request`, no method or path known.
async fn assert_refusal_record(gw: &mut TestGateway) {
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("malformed-request"));
    assert_eq!(record.status, 400);
    assert!(!record.completed, "the client got a reset, not a status");
    assert_eq!(record.method.as_str(), "-");
}

/// A valid request on `stream` of the same connection is answered, and recorded with its 200.
async fn served_after<S: AsyncRead + AsyncWrite + Unpin>(
    raw: &mut RawH2<S>,
    gw: &mut TestGateway,
    stream: u32,
) {
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &request_block(&[]),
    ))
    .await;
    let answer = raw.until(stream, HEADERS).await;
    assert_eq!(answer.kind, HEADERS, "an answer, not a GOAWAY");
    // `:status: 200` is HPACK's static entry 8.
    assert_eq!(answer.payload.first(), Some(&0x88), "status 200");
    assert_eq!(gw.record().await.status, 200);
}

fn config(upstream: SocketAddr) -> String {
    reference_config(upstream)
}

#[tokio::test]
async fn a_malformed_header_block_is_reset_and_recorded_and_the_connection_goes_on() {
    for (what, extra) in [
        (
            "a connection-specific field",
            literal("connection", "keep-alive"),
        ),
        ("TE other than trailers", literal("te", "gzip")),
        (
            "content-length on a request that ended",
            literal("content-length", "5"),
        ),
        ("a pseudo-header after a field", {
            let mut fields = literal("accept", "*/*");
            fields.extend(literal(":scheme", "https"));
            fields
        }),
    ] {
        let upstream = Upstream::start().await;
        let mut gw = TestGateway::start(&config(upstream.address)).await;
        let mut raw = h2c(&gw).await;
        raw.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block(&extra),
        ))
        .await;
        let reset = raw.until(1, RST_STREAM).await;
        assert_eq!(reset.kind, RST_STREAM, "{what}: a stream reset");
        assert_eq!(code(&reset), PROTOCOL_ERROR, "{what}");
        assert_refusal_record(&mut gw).await;
        served_after(&mut raw, &mut gw, 3).await;
        assert_eq!(upstream.seen().len(), 1, "{what}: only the good request");
    }
}

/// A field name h2's HPACK decoder refuses (uppercase) is a connection error: GOAWAY, and the
/// refused stream's record.
async fn refused_with_goaway(block: &[u8]) {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut raw = h2c(&gw).await;
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        .await;
    let away = raw.until(1, RST_STREAM).await;
    assert_eq!(away.kind, GOAWAY, "a connection error");
    assert_eq!(code(&away), PROTOCOL_ERROR);
    assert_refusal_record(&mut gw).await;
    let fresh = gw.get("/api/v1/users/1").await;
    assert_eq!(fresh.status, 200, "a fresh connection is served");
    assert_eq!(gw.record().await.status, 200);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn an_uppercase_field_name_ends_the_connection_with_a_record() {
    refused_with_goaway(&request_block(&literal("X-Bad", "1"))).await;
}

#[tokio::test]
async fn a_header_block_that_breaks_hpack_ends_the_connection_with_a_record() {
    // An indexed field far past both tables (index 254).
    let mut block = request_block(&[]);
    block.extend([0xff, 0x7f]);
    refused_with_goaway(&block).await;
}

#[tokio::test]
async fn over_tls_a_malformed_header_block_is_recorded_too() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let yaml = tls_listener_config(&pki, upstream.address, "/api/v1/users/*", "");
    let mut gw = TestGateway::start(&yaml).await;
    let tls = tls_connect(&pki, &[b"h2"], gw.handle.address()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut raw = RawH2::start(tls).await;
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block(&literal("connection", "close")),
    ))
    .await;
    let reset = raw.until(1, RST_STREAM).await;
    assert_eq!(reset.kind, RST_STREAM, "a stream reset");
    assert_eq!(code(&reset), PROTOCOL_ERROR);
    assert_refusal_record(&mut gw).await;
    served_after(&mut raw, &mut gw, 3).await;
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_stream_reset_after_the_pipeline_took_it_keeps_one_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut raw = h2c(&gw).await;
    // A valid head announcing 10 body bytes, then 3 and the end: h2 resets the stream when the
    // body falls short, after hyper handed the request to the pipeline.
    let mut bytes = frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block(&literal("content-length", "10")),
    );
    bytes.extend(frame(DATA, END_STREAM, 1, b"abc"));
    raw.send(&bytes).await;
    let reset = raw.until(1, RST_STREAM).await;
    assert_eq!(code(&reset), PROTOCOL_ERROR, "h2 refuses the short body");
    // hyper dropped the request: the pipeline's record says the client's side went away.
    let first = gw.record().await;
    assert_eq!(first.status, 499, "{first:?}");
    assert_eq!(first.stopped_at, None);
    assert!(!first.completed);
    assert_eq!(first.route.as_deref(), Some("users-v1"), "{first:?}");
    served_after(&mut raw, &mut gw, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        gw.records.try_recv().is_err(),
        "no second record for the reset stream"
    );
}

#[tokio::test]
async fn a_client_that_cancels_before_the_answer_leaves_a_499_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut raw = h2c(&gw).await;
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block(&literal("x-test-behaviour", "slow:2000")),
    ))
    .await;
    // The upstream has the request, then the client gives up (RST_STREAM CANCEL).
    eventually(
        "the upstream has the request",
        Duration::from_secs(5),
        async || (upstream.seen().len() == 1).then_some(()).ok_or("not yet"),
    )
    .await;
    raw.send(&frame(RST_STREAM, 0, 1, &0x8u32.to_be_bytes()))
        .await;
    let record = gw.record().await;
    assert_eq!(record.status, 499);
    assert_eq!(record.stopped_at, None);
    assert!(!record.completed);
    assert!(
        record.duration_ns < 2_000_000_000,
        "recorded when the client left, not when the upstream answered"
    );
    served_after(&mut raw, &mut gw, 3).await;
}

#[tokio::test]
async fn a_stream_past_the_concurrency_setting_is_refused_by_h2_and_recorded_overloaded() {
    let upstream = Upstream::start().await;
    let yaml = config(upstream.address).replace(
        "  max_header_bytes: 16384\n",
        "  max_header_bytes: 16384\n  http2_max_concurrent_streams: 1\n",
    );
    assert_ne!(
        yaml,
        config(upstream.address),
        "the fixture's limits changed"
    );
    let mut gw = TestGateway::start(&yaml).await;
    let mut raw = h2c(&gw).await;
    // One slow stream in flight, then a second one the client was told not to open.
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block(&literal("x-test-behaviour", "slow:500")),
    ))
    .await;
    eventually(
        "the upstream has the first request",
        Duration::from_secs(5),
        async || (upstream.seen().len() == 1).then_some(()).ok_or("not yet"),
    )
    .await;
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &request_block(&[]),
    ))
    .await;
    let reset = raw.until(3, RST_STREAM).await;
    assert_eq!(code(&reset), 0x7, "REFUSED_STREAM");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("overloaded"));
    assert_eq!(record.status, 503);
    // The first stream is answered in full, with its own record.
    let answer = raw.until(1, HEADERS).await;
    assert_eq!(answer.payload.first(), Some(&0x88), "status 200");
    assert_eq!(gw.record().await.status, 200);
    assert_eq!(
        upstream.seen().len(),
        1,
        "the refused stream never went upstream"
    );
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), the prefix's other bits `flags`.
fn hpack_int(flags: u8, n: u32, mut value: usize) -> Vec<u8> {
    let max = (1usize << n) - 1;
    if value < max {
        return vec![flags | value as u8];
    }
    let mut out = vec![flags | max as u8];
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
    out
}

#[tokio::test]
async fn a_header_list_past_h2s_ceiling_gets_h2s_431_and_a_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address)).await;
    let mut raw = h2c(&gw).await;
    // One field whose value (16,000 bytes) passes the gateway's ceiling for the reference
    // limits (twice 16 KiB + 100 × 32 + 8 KiB + 1 KiB is 57 KiB: so three of them), in one
    // HEADERS and two CONTINUATION frames, no body.
    let value = "v".repeat(16_000);
    let mut block = request_block(&[]);
    for name in ["x-big-a", "x-big-b", "x-big-c", "x-big-d"] {
        block.push(0x00);
        block.extend(hpack_int(0, 7, name.len()));
        block.extend(name.as_bytes());
        block.extend(hpack_int(0, 7, value.len()));
        block.extend(value.as_bytes());
    }
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut bytes = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (kind, flags) = match (i, last) {
            (0, true) => (HEADERS, END_HEADERS | END_STREAM),
            (0, false) => (HEADERS, END_STREAM),
            (_, true) => (0x9, END_HEADERS),
            (_, false) => (0x9, 0),
        };
        bytes.extend(frame(kind, flags, 1, piece));
    }
    raw.send(&bytes).await;
    let answer = raw.until(1, HEADERS).await;
    assert_eq!(answer.kind, HEADERS, "h2's own answer");
    assert!(answer.flags & END_STREAM != 0, "no body: h2's bare 431");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("headers-too-large"));
    assert_eq!(record.status, 431);
    assert!(record.completed, "the client got a status");
    served_after(&mut raw, &mut gw, 3).await;
    assert_eq!(upstream.seen().len(), 1);
}
