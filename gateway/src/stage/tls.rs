//! `tls`: owns the connection edge. The handshake itself happens when the connection is accepted
//! (`identity::tls`: certificates by SNI, ALPN, client certificates); a failed handshake never
//! reaches a stage. Per request this stage first admits the request under the listener's
//! `limits.max_concurrent_requests` (503 `overloaded` past it, no queue), then enforces what must hold before anything reads the
//! request: the URI length and the header block size (the same limits on HTTP/1.1 and HTTP/2, the
//! HTTP/2 measure of `limits.http2_max_header_list_bytes` on top), and — on TLS connections — that a request
//! naming an mTLS-protected host arrived on a connection whose handshake was for that host (421
//! otherwise: the client certificate policy of one host must not be bypassed through the
//! connection of another). It also refuses a request whose authority cannot be trusted (decided
//! once at arrival, `routing::authority`): an HTTP/1.1 request without `Host` (`missing-host`),
//! two `Host` fields, an authority that is not a valid `host[:port]`, or an HTTP/2 `host` that
//! names another host than `:authority` (`invalid-host`) — before routing, CORS or the 421 check
//! could read one host while the upstream is sent another.
//!
//! Message framing is enforced before a request exists, by the strict HTTP/1.1 parser in front
//! of hyper (`crate::wire`): a head with ambiguous framing (Content-Length with
//! Transfer-Encoding, differing or invalid Content-Length values, a Transfer-Encoding other than
//! one final `chunked`), invalid bytes or over these same limits never reaches this stage — the
//! stream guard answers it in this stage's name (`tls`, its reason, the problem body, one record)
//! and closes the connection. What reaches this stage over HTTP/1.1 is already within the limits;
//! the checks here are what HTTP/2 requests meet.

use http::HeaderMap;

use crate::config::raw::RawLimits;
use crate::identity::tls::{ClientAuth, TlsInfo};
use crate::routing::authority::HostError;
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Tls;

pub async fn run(_state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    // First, so shedding load costs the least it can.
    if let Some(max) = cx.active.config.limits.max_concurrent_requests {
        let permit = cx.facts.connection.listener_requests.try_enter(max);
        cx.admitted.listener =
            Some(permit.ok_or_else(|| crate::stage::route::overloaded(STAGE, "listener"))?);
    }
    check_edge(&cx.parts.uri, &cx.parts.headers, &cx.active.config.limits)?;
    if cx.parts.version == http::Version::HTTP_2 {
        check_http2_header_list(&cx.parts, &cx.active.config.limits)?;
    }
    if let Some(problem) = cx.facts.host_problem {
        return Err(host_rejection(problem));
    }
    if let Some(tls) = &cx.facts.connection.tls {
        // The one authority: an absolute-form target or `:authority` over a `Host` field.
        if let Some(host) = cx.facts.host.as_ref().and_then(|h| h.to_str().ok()) {
            check_host_matches_handshake(tls, host)?;
        }
    }
    Ok(())
}

/// The stop for an authority that cannot be trusted (`gateway routes --test` reports it too).
pub fn host_rejection(problem: HostError) -> Rejection {
    let reason = match problem {
        HostError::Missing => Reason::MissingHost,
        HostError::Duplicate
        | HostError::InvalidHost(_)
        | HostError::InvalidAuthority(_)
        | HostError::Conflict => Reason::InvalidHost,
    };
    Rejection::new(STAGE, reason, problem.to_string())
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
    // HTTP/2 names the host in `:authority` where HTTP/1.1 sends a Host field: counted alike, so
    // both protocols meet the same limits.
    let authority = match uri.authority() {
        Some(a) if !headers.contains_key(http::header::HOST) => {
            Some("host".len() + a.as_str().len() + 4)
        }
        _ => None,
    };
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + authority.unwrap_or(0);
    let fields = headers.len() + usize::from(authority.is_some());
    if header_bytes > limits.max_header_bytes || fields > limits.max_headers {
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

/// `limits.http2_max_header_list_bytes`, when set: the header block as HTTP/2 measures it
/// (RFC 7541 §4.1, each field's name and value plus 32, the pseudo-headers included).
fn check_http2_header_list(parts: &http::request::Parts, limits: &RawLimits) -> StageResult {
    let Some(limit) = limits.http2_max_header_list_bytes else {
        return Ok(());
    };
    let field = |name: usize, value: usize| name + value + 32;
    let uri = &parts.uri;
    let pseudo = field(":method".len(), parts.method.as_str().len())
        + field(":scheme".len(), uri.scheme_str().map_or(0, str::len))
        + field(
            ":authority".len(),
            uri.authority().map_or(0, |a| a.as_str().len()),
        )
        + field(
            ":path".len(),
            uri.path_and_query().map_or(0, |pq| pq.as_str().len()),
        )
        + parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .map_or(0, |p| field(":protocol".len(), p.as_str().len()));
    let list: usize = pseudo
        + parts
            .headers
            .iter()
            .map(|(n, v)| field(n.as_str().len(), v.len()))
            .sum::<usize>();
    if list > limit as usize {
        return Err(Rejection::new(
            STAGE,
            Reason::HeadersTooLarge,
            format!("the request headers exceed {limit} bytes as HTTP/2 counts them"),
        ));
    }
    Ok(())
}
