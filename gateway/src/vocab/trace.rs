//! What identifies a request across systems, fixed at arrival: the request id (kept from the
//! client when well formed) and the W3C trace context the gateway continues or starts.

use http::{HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A request id a client sent is kept when it is well formed: 1–128 characters of
/// `[A-Za-z0-9._:-]`, so it is safe in a header, a log line and a metric exemplar.
pub fn well_formed_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A request's id as its `X-Request-Id` value, made once at arrival: the client's well-formed
/// one, shared, or a new one. The upstream request and the answer each carry a handle to the one
/// value, where each used to be a copy of a string: three allocations a request became one.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id when it is well formed ([`well_formed_request_id`]).
    pub fn from_client(value: &HeaderValue) -> Option<Self> {
        well_formed_request_id(value.as_bytes()).then(|| Self(value.clone()))
    }

    /// A fresh id: 32 lowercase hex digits.
    pub fn new() -> Self {
        // One allocation, its owner: a clone of the value is a count, not a copy.
        let value =
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(fresh_request_id_digits()))
                .unwrap_or_else(|_| HeaderValue::from_static("0"));
        Self(value)
    }

    /// The id as text: its bytes are `[A-Za-z0-9._:-]` whichever way it was made.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The value for a header: a handle to the same bytes.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// W3C Trace Context: the trace this request belongs to and the span the gateway opens in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// Continues a valid incoming `traceparent`, or starts a new trace.
    pub fn continue_or_start(incoming: Option<&HeaderValue>) -> Self {
        let span_id = random_nonzero::<8>();
        match incoming.and_then(|v| parse_traceparent(v.as_bytes())) {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                parent_id: Some(parent_id),
                span_id,
                flags,
            },
            None => Self {
                trace_id: random_nonzero::<16>(),
                parent_id: None,
                span_id,
                flags: 0x01,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// `00-<trace-id>-<gateway span id>-<flags>`: the upstream's parent is the gateway's span.
    pub fn header_value(&self) -> HeaderValue {
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        hex_into(&self.span_id, &mut buf[36..52]);
        buf[52] = b'-';
        hex_into(&[self.flags], &mut buf[53..55]);
        // Only lowercase hex digits and dashes: always a valid header value.
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context §3.2). Version `ff` is invalid;
/// a future version may carry more fields after the four we read.
fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = parse_hex::<1>(&v[0..2])?[0];
    if version == 0xff
        || (version == 0 && v.len() != 55)
        || (version != 0 && v.len() > 55 && v[55] != b'-')
    {
        return None;
    }
    let trace_id = parse_hex::<16>(&v[3..35])?;
    let parent_id = parse_hex::<8>(&v[36..52])?;
    let flags = parse_hex::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, flags))
}

fn parse_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // the spec allows lowercase only
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// N random bytes, not all zero (W3C Trace Context forbids an all-zero id). Drawn eight at a
/// time: a draw per byte made ids and spans 40 draws a request.
fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out == [0u8; N] {
        for chunk in out.chunks_mut(8) {
            let draw = fastrand::u64(..).to_le_bytes();
            chunk.copy_from_slice(&draw[..chunk.len()]);
        }
    }
    out
}

/// Lowercase hex of `bytes`, its digits made on the stack and copied into a string of the
/// right size: not `vec![0; n]`, a `calloc` that cost more than the digits, and not `push` per
/// digit, which re-checks capacity and encodes UTF-8 each time.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    let mut digits = [0u8; 64];
    for chunk in bytes.chunks(digits.len() / 2) {
        let digits = &mut digits[..chunk.len() * 2];
        hex_into(chunk, digits);
        out.push_str(std::str::from_utf8(digits).unwrap_or_default());
    }
    out
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// Each byte's two digits, looked up whole: two nibble lookups and a two-byte slice copy per
/// byte made a request id's 32 digits cost more than drawing it.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0x0f]];
        b += 1;
    }
    pairs
};

/// A fresh request id's 32 lowercase hex digits, which [`RequestId::new`] and
/// [`new_request_id`] both spell.
fn fresh_request_id_digits() -> [u8; 32] {
    let mut digits = [0u8; 32];
    hex_into(&random_nonzero::<16>(), &mut digits);
    digits
}

/// A fresh request id as text, for the records the guard and the server write of a request that
/// never reached the pipeline (which makes a [`RequestId`]).
pub fn new_request_id() -> String {
    String::from_utf8_lossy(&fresh_request_id_digits()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparent_is_continued_with_a_new_span() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let t = TraceContext::continue_or_start(Some(&incoming));
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        let out = t.header_value();
        let out = out.to_str().unwrap();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !out.contains("00f067aa0ba902b7"),
            "the gateway's own span is the parent"
        );
        assert!(out.ends_with("-01"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let t = TraceContext::continue_or_start(Some(&HeaderValue::from_static(bad)));
            assert_eq!(t.parent_id, None, "{bad}");
            assert_ne!(
                t.trace_id_hex(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        assert!(well_formed_request_id(b"abc-123_x.y:z"));
        assert!(!well_formed_request_id(b""));
        assert!(!well_formed_request_id(b"has space"));
        assert!(!well_formed_request_id(&[b'a'; 129]));
        assert_eq!(new_request_id().len(), 32);
        let fresh = RequestId::new();
        assert_eq!(fresh.as_str().len(), 32);
        assert!(well_formed_request_id(fresh.as_str().as_bytes()));
        assert_ne!(fresh.as_str(), RequestId::new().as_str());
        assert_eq!(fresh.header_value(), fresh.as_str());
        let sent = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(
            RequestId::from_client(&sent).map(|id| id.header_value()),
            Some(sent)
        );
        assert!(RequestId::from_client(&HeaderValue::from_static("has space")).is_none());
    }

    #[test]
    fn hex_spells_every_byte_as_two_lowercase_digits_across_chunks() {
        let bytes: Vec<u8> = (0..=255).chain(0..=40).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&bytes), expected);
        assert_eq!(hex(&[]), "");
    }
}
