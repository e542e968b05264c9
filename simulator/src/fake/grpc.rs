//! gRPC's wire shape, as much of it as the fakes and the scenario sender need and no more:
//! length-prefixed messages (one flag byte, a big-endian u32 length, the bytes), the
//! `grpc-timeout` header, `grpc-message`'s percent-encoding and the status codes' names — and
//! the fake upstream's gRPC answers (`behaviour: {grpc: …}`). The fake writes with it and the
//! scenario sender reads with it; the tests check both against a client and a server that do
//! not share this code.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;

use super::upstream::AnswerBody;

/// How a fake upstream answers as a gRPC server. The default is a unary call's answer: one
/// message at once, then `grpc-status: 0`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcAnswer {
    /// Messages in the answer; `0` sends a trailers-only answer (the status in the head, no
    /// body), as servers answer an error before any message.
    #[serde(default = "one")]
    pub messages: u32,
    /// The pause before each message: message `k` leaves `k × every` after the head.
    #[serde(default, with = "humantime_serde")]
    pub every: Duration,
    /// Each message's payload size in bytes.
    #[serde(default = "default_message_bytes")]
    pub message_bytes: usize,
    /// `grpc-status` in the trailers.
    #[serde(default)]
    pub status: u32,
    /// `grpc-message` in the trailers (percent-encoded on the wire).
    #[serde(default)]
    pub message: Option<String>,
    /// Custom metadata sent as trailers beside the status (`x-served-by: fake`).
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
}

impl Default for GrpcAnswer {
    fn default() -> Self {
        GrpcAnswer {
            messages: one(),
            every: Duration::ZERO,
            message_bytes: default_message_bytes(),
            status: 0,
            message: None,
            trailers: BTreeMap::new(),
        }
    }
}

fn one() -> u32 {
    1
}

fn default_message_bytes() -> usize {
    16
}

/// How long a stream reset mid-answer waits before resetting, at least.
const RESET_PAUSE: Duration = Duration::from_millis(50);

/// The answer's head (status 200 is the response's default) and its body: the messages on
/// their schedule, then the trailers — or, with `reset`, an error after half the messages,
/// which resets the stream (HTTP/2 `RST_STREAM`) or the connection (HTTP/1.1).
pub(super) fn answer(spec: &GrpcAnswer, reset: bool) -> (HeaderMap, AnswerBody) {
    let mut head = HeaderMap::new();
    head.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    let status = status_fields(spec);
    if spec.messages == 0 && !reset {
        head.extend(status);
        let body = http_body_util::Empty::new().map_err(|e| match e {}).boxed();
        return (head, body);
    }
    let payload = Bytes::from(vec![b'x'; spec.message_bytes]);
    let total = spec.messages;
    let reset_at = reset.then_some(total / 2);
    let every = spec.every;
    let stream = futures_util::stream::unfold(Some((0u32, status)), move |state| {
        let payload = payload.clone();
        async move {
            let (sent, trailers) = state?;
            if reset_at == Some(sent) {
                // HTTP/2 drops a stream's queued frames when it is reset: the pause lets the
                // messages before the reset reach the wire, as they would from a real server
                // that failed while working on the next one.
                tokio::time::sleep(every.max(RESET_PAUSE)).await;
                return Some((Err(std::io::Error::other("reset mid-stream")), None));
            }
            if sent == total {
                return Some((Ok(Frame::trailers(trailers)), None));
            }
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            Some((
                Ok(Frame::data(frame(&payload, false))),
                Some((sent + 1, trailers)),
            ))
        }
    });
    (head, StreamBody::new(stream).boxed())
}

/// `grpc-status`, `grpc-message` and the custom metadata; a name or value that cannot be a
/// header is left out (the scenario's expectations then say it was absent).
fn status_fields(spec: &GrpcAnswer) -> HeaderMap {
    let mut fields = HeaderMap::new();
    fields.insert("grpc-status", HeaderValue::from(spec.status));
    if let Some(text) = &spec.message {
        if let Ok(value) = HeaderValue::from_str(&encode_message(text)) {
            fields.insert("grpc-message", value);
        }
    }
    for (name, value) in &spec.trailers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            fields.append(name, value);
        }
    }
    fields
}

/// The prefix before every message: the compressed flag and the length.
pub const PREFIX_LEN: usize = 5;

/// `content-type` of a gRPC request or response.
pub const CONTENT_TYPE: &str = "application/grpc";

/// One message with its prefix.
pub fn frame(payload: &[u8], compressed: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + payload.len());
    out.put_u8(u8::from(compressed));
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// A message read back: its size and whether its flag said compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub compressed: bool,
    pub payload: Bytes,
}

/// Splits a body into messages however its bytes arrive: a message may span data frames and a
/// frame may hold several messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buffer: BytesMut,
}

impl Deframer {
    /// Takes the next chunk of the body; returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Message> {
        self.buffer.extend_from_slice(chunk);
        let mut done = Vec::new();
        loop {
            if self.buffer.len() < PREFIX_LEN {
                return done;
            }
            let length = u32::from_be_bytes([
                self.buffer[1],
                self.buffer[2],
                self.buffer[3],
                self.buffer[4],
            ]) as usize;
            if self.buffer.len() < PREFIX_LEN + length {
                return done;
            }
            let compressed = self.buffer[0] != 0;
            let mut message = self.buffer.split_to(PREFIX_LEN + length);
            let payload = message.split_off(PREFIX_LEN).freeze();
            done.push(Message {
                compressed,
                payload,
            });
        }
    }

    /// Bytes left over that do not make a whole message: a body cut short mid-message.
    pub fn leftover(&self) -> usize {
        self.buffer.len()
    }
}

/// `grpc-timeout` for a deadline: at most eight digits and a unit — the coarsest unit that holds
/// it exactly (`200m`, `2S`), else the finest that holds it rounded up, so a deadline is never
/// sent shorter than asked.
pub fn timeout_header(deadline: Duration) -> String {
    const MAX: u128 = 99_999_999;
    const UNITS: [(&str, u128); 6] = [
        ("H", 3_600_000_000_000),
        ("M", 60_000_000_000),
        ("S", 1_000_000_000),
        ("m", 1_000_000),
        ("u", 1_000),
        ("n", 1),
    ];
    let nanos = deadline.as_nanos();
    if let Some((unit, per)) = UNITS
        .iter()
        .find(|(_, per)| nanos % per == 0 && nanos / per <= MAX)
    {
        return format!("{}{unit}", nanos / per);
    }
    for (unit, per) in UNITS.iter().rev() {
        if nanos.div_ceil(*per) <= MAX {
            return format!("{}{unit}", nanos.div_ceil(*per));
        }
    }
    format!("{MAX}H")
}

/// `grpc-message` as sent: bytes outside printable ASCII, and `%` itself, percent-encoded.
pub fn encode_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `grpc-message` as meant; a `%` not followed by two hex digits is kept as written, as the
/// spec asks of receivers.
pub fn decode_message(sent: &str) -> String {
    let bytes = sent.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code's name (`DEADLINE_EXCEEDED` for 4), for failure lines.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "not a gRPC code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_whole_however_the_body_is_cut() {
        let mut body = Vec::new();
        body.extend_from_slice(&frame(b"hello", false));
        body.extend_from_slice(&frame(b"", false));
        body.extend_from_slice(&frame(&[7; 300], true));
        assert_eq!(&body[..5], &[0, 0, 0, 0, 5]);
        for cut in 1..body.len() {
            let mut d = Deframer::default();
            let mut got = d.push(&body[..cut]);
            got.extend(d.push(&body[cut..]));
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(&got[0].payload[..], b"hello");
            assert!(got[1].payload.is_empty() && !got[1].compressed);
            assert_eq!((got[2].payload.len(), got[2].compressed), (300, true));
            assert_eq!(d.leftover(), 0);
        }
        let mut d = Deframer::default();
        assert!(d.push(&body[..8]).is_empty());
        assert_eq!(d.leftover(), 8);
    }

    #[test]
    fn timeouts_take_the_coarsest_unit_that_holds_them_exactly_in_eight_digits() {
        assert_eq!(timeout_header(Duration::from_millis(200)), "200m");
        assert_eq!(timeout_header(Duration::from_secs(2)), "2S");
        assert_eq!(timeout_header(Duration::from_secs(150)), "150S");
        assert_eq!(timeout_header(Duration::from_secs(7200)), "2H");
        assert_eq!(timeout_header(Duration::from_micros(1500)), "1500u");
        assert_eq!(
            timeout_header(Duration::from_nanos(100_000_000_001)),
            "100001m"
        );
        assert_eq!(
            timeout_header(Duration::from_secs(400_000_000_000)),
            "99999999H"
        );
    }

    #[test]
    fn grpc_message_survives_percent_encoding() {
        for text in ["plain", "100% sure", "naïve\ttab", ""] {
            let sent = encode_message(text);
            assert!(sent.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{sent}");
            assert_eq!(decode_message(&sent), text);
        }
        assert_eq!(encode_message("a%b"), "a%25b");
        assert_eq!(decode_message("50%-off %zz"), "50%-off %zz");
    }
}
