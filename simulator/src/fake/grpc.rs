//! gRPC's messages on the wire — length-prefixed (one flag byte, a big-endian u32 length, the
//! bytes), written by the fake upstream and the scenario sender, read back however the body's
//! frames cut them — and the fake upstream's gRPC answers (`behaviour: {grpc: …}`). The rest of
//! gRPC's words (status codes, `grpc-timeout`, `grpc-message`'s encoding, which content types are
//! gRPC) are the gateway's own, `gateway::vocab::grpc`, so the fakes and the gateway cannot
//! disagree on them; the tests check both sides against tonic and hyper, which share no code
//! with either.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gateway::vocab::grpc::{GRPC_CONTENT_TYPE, GRPC_MESSAGE, GRPC_STATUS, encode_message};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;

use super::answer_body::AnswerBody;

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
        HeaderValue::from_static(GRPC_CONTENT_TYPE),
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
    fields.insert(GRPC_STATUS.clone(), HeaderValue::from(spec.status));
    if let Some(text) = &spec.message {
        fields.insert(GRPC_MESSAGE.clone(), encode_message(text));
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
}
