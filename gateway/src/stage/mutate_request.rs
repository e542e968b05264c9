//! `mutate_request`: shapes what the upstream sees. Order matters and is fixed:
//! 1. hop-by-hop headers, and any header the client's `Connection` nominates, are removed first;
//! 2. internal headers a client sent (X-User-Id, X-Tenant-Id, X-Auth-Scopes, configured ones) are
//!    removed — a client can never spoof them;
//! 3. identity headers are injected from the verified identity only;
//! 4. X-Request-Id, `traceparent`, X-Forwarded-For and X-Forwarded-Proto are set;
//! 5. the path is rewritten.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;

const STAGE: StageId = StageId::MutateRequest;

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies still see.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
static X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");

pub fn run(cx: &mut RequestContext) -> StageResult {
    // Read before the hop-by-hop headers go: a WebSocket upgrade the route allows.
    let upgrade = crate::stage::forward::websocket::requested(cx);
    let headers = &mut cx.parts.headers;
    remove_hop_by_hop(headers);
    for name in &cx.runtime.internal_headers {
        headers.remove(name);
    }

    if let Some(identity) = &cx.identity {
        let scopes = identity.scopes.join(" ");
        for (name, value) in [
            (&X_USER_ID, Some(identity.subject.as_str())),
            (&X_TENANT_ID, identity.tenant.as_deref()),
            (
                &X_AUTH_SCOPES,
                Some(scopes.as_str()).filter(|s| !s.is_empty()),
            ),
        ] {
            if let Some(value) = value {
                // authn refuses claims that cannot be header values; this is the backstop.
                let value = HeaderValue::from_str(value).map_err(|_| {
                    Rejection::new(
                        STAGE,
                        http::StatusCode::BAD_REQUEST,
                        "identity-not-representable",
                        "the identity cannot be passed on in a header",
                    )
                })?;
                headers.insert(name.clone(), value);
            }
        }
    }

    if let Ok(v) = HeaderValue::from_str(&cx.request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
    headers.insert(TRACEPARENT.clone(), cx.trace.header_value());
    let mut ip = String::with_capacity(40);
    let _ = write!(ip, "{}", cx.peer.ip());
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(cx.scheme.as_str()),
    );

    if let Some(route) = &cx.route {
        if let Some(rewrite) = &route.rewrite {
            cx.upstream_path = Some(rewrite.apply(&cx.normalized_path));
        }
    }
    if let Some(upgrade) = upgrade {
        // Hop-by-hop, removed above like every other; put back on purpose for this route.
        crate::stage::forward::websocket::restore_request(&mut cx.parts.headers, &upgrade);
        cx.resilience.upgrade = Some(upgrade);
    }
    Ok(())
}

/// Removes connection-specific headers, including every header a `Connection` field nominates.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    // `Upgrade` is hop-by-hop too; WebSocket pass-through (resilience issue) re-adds it deliberately.
    headers.remove(header::UPGRADE);
}

/// A request id a client sent is kept when it is well formed: 1–128 characters of
/// `[A-Za-z0-9._:-]`, so it is safe in a header, a log line and a metric exemplar.
pub fn well_formed_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
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

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out == [0u8; N] {
        out.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// A fresh request id: 32 lowercase hex digits.
pub fn new_request_id() -> String {
    hex(&random_nonzero::<16>())
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
    fn connection_nominated_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        assert!(well_formed_request_id(b"abc-123_x.y:z"));
        assert!(!well_formed_request_id(b""));
        assert!(!well_formed_request_id(b"has space"));
        assert!(!well_formed_request_id(&[b'a'; 129]));
        assert_eq!(new_request_id().len(), 32);
    }
}
