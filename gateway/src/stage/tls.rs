//! `tls`: owns the connection edge. The handshake itself happens when the connection is accepted
//! (`identity::tls`: certificates by SNI, ALPN, client certificates); a failed handshake never
//! reaches a stage. Per request this stage enforces what must hold before anything reads the
//! request: the URI length and the header block size, and — on TLS connections — that a request
//! naming an mTLS-protected host arrived on a connection whose handshake was for that host (421
//! otherwise: the client certificate policy of one host must not be bypassed through the
//! connection of another).
//!
//! Message framing is enforced one layer down, by hyper's HTTP/1 parser, before a request exists:
//! differing or invalid Content-Length values are refused with 400 and the connection closed;
//! Content-Length with Transfer-Encoding is resolved as RFC 9112 §6.3 requires of an
//! intermediary — Transfer-Encoding wins, Content-Length is removed before forwarding, and the
//! connection is closed after the response, so nothing can be smuggled behind the message.

use http::HeaderMap;

use crate::config::raw::RawLimits;
use crate::identity::tls::{ClientAuth, TlsInfo};
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Tls;

pub async fn run(_state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    check_edge(&cx.parts.uri, &cx.parts.headers, &cx.active.config.limits)?;
    if let Some(tls) = &cx.facts.connection.tls {
        let host = cx
            .parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| cx.parts.uri.host());
        if let Some(host) = host {
            check_host_matches_handshake(tls, host)?;
        }
    }
    Ok(())
}

/// 421 when `host` is answered by an mTLS-protected certificate entry other than the one the
/// connection's handshake (its SNI) selected.
pub fn check_host_matches_handshake(tls: &TlsInfo, host: &str) -> StageResult {
    let Some(entry) = tls.listener.entry_for_host(host) else {
        return Ok(());
    };
    let protected = tls.listener.entries[entry].client_auth != ClientAuth::None;
    if protected && entry != tls.entry {
        return Err(Rejection::new(
            STAGE,
            Reason::MisdirectedRequest,
            "this host requires its own TLS connection: connect with its name in SNI",
        ));
    }
    Ok(())
}

pub fn check_edge(uri: &http::Uri, headers: &HeaderMap, limits: &RawLimits) -> StageResult {
    let uri_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(Rejection::new(
            STAGE,
            Reason::UriTooLong,
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
            Reason::HeadersTooLarge,
            format!(
                "the request headers exceed {} bytes or {} fields",
                limits.max_header_bytes, limits.max_headers
            ),
        ));
    }
    Ok(())
}
