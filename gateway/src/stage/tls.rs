//! `tls`: owns the connection edge. Until TLS termination lands (the identity issue) connections
//! are plaintext and this stage enforces what must hold before anything reads the request: the
//! URI length and the header block size.
//!
//! Message framing is enforced one layer down, by hyper's HTTP/1 parser, before a request exists:
//! differing or invalid Content-Length values are refused with 400 and the connection closed;
//! Content-Length with Transfer-Encoding is resolved as RFC 9112 §6.3 requires of an
//! intermediary — Transfer-Encoding wins, Content-Length is removed before forwarding, and the
//! connection is closed after the response, so nothing can be smuggled behind the message.

use http::{HeaderMap, StatusCode};

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
    Ok(())
}
