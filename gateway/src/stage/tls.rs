//! `tls`: owns the connection edge. Until TLS termination lands (the identity issue) connections
//! are plaintext and this stage enforces what must hold before anything reads the request: the
//! URI length, the header block size and trustworthy message framing.

use http::{HeaderMap, StatusCode, header};

use crate::config::raw::RawLimits;
use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;

const STAGE: StageId = StageId::Tls;

pub fn run(cx: &mut RequestContext) -> StageResult {
    check_edge(&cx.parts.uri, &cx.parts.headers, &cx.runtime.limits)
}

pub fn check_edge(uri: &http::Uri, headers: &HeaderMap, limits: &RawLimits) -> StageResult {
    let uri_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(Rejection::new(
            STAGE,
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request target exceeds {} bytes", limits.max_uri_bytes),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes || headers.len() > limits.max_headers {
        return Err(Rejection::new(
            STAGE,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "the request headers exceed {} bytes or {} fields",
                limits.max_header_bytes, limits.max_headers
            ),
        ));
    }
    check_framing(headers)
}

/// Request smuggling defence (RFC 9112 §6.3): a message whose length two parties could read
/// differently is refused and its connection closed, so nothing of it reaches an upstream.
fn check_framing(headers: &HeaderMap) -> StageResult {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = lengths.next();
    let framing = |detail: &'static str| {
        Err(
            Rejection::new(STAGE, StatusCode::BAD_REQUEST, "bad-framing", detail)
                .closing_connection(),
        )
    };
    if first.is_some() && headers.contains_key(header::TRANSFER_ENCODING) {
        return framing("Content-Length and Transfer-Encoding together");
    }
    if lengths.next().is_some() {
        return framing("more than one Content-Length");
    }
    if let Some(v) = first {
        let valid = !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
        if !valid {
            return framing("Content-Length is not a decimal number");
        }
    }
    Ok(())
}
