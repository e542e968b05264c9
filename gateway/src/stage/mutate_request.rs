//! `mutate_request`: shapes what the upstream sees. Order matters and is fixed:
//! 1. hop-by-hop headers, and any header the client's `Connection` nominates, are removed first —
//!    but `TE: trailers` is passed on for a client that sent it and for every gRPC call;
//! 2. internal headers a client sent (X-User-Id, X-Tenant-Id, X-Auth-Scopes, configured ones) are
//!    removed — a client can never spoof them;
//! 3. identity headers are injected from the verified identity only;
//! 4. X-Request-Id, `traceparent`, X-Forwarded-For and X-Forwarded-Proto are set, and `Host` is
//!    the request's one authority (an absolute-form target or `:authority` over a client's
//!    `Host`), the same one routing and the 421 check read — the pool sends it as `:authority` to
//!    an HTTP/2 upstream;
//! 5. the path is rewritten.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::stage::context::{RequestContext, RouteMatch, StageResult};
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::grpc;
use crate::vocab::trace::{TRACEPARENT, X_REQUEST_ID};
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::MutateRequest;

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies still see.
/// `Trailer` is not one: it is end to end (RFC 9110 §6.6.2), naming the trailer fields that
/// follow the body, and an HTTP/1.1 server sends only the trailers it names.
pub const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
static X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");

pub async fn run(_state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    // Read before the hop-by-hop headers go: a WebSocket upgrade the route allows.
    let upgrade = crate::stage::forward::websocket::requested(cx);
    let headers = &mut cx.parts.headers;
    // TE is hop-by-hop, but its `trailers` says the client takes trailer fields, which the
    // gateway relays: it may say so on the client's behalf (RFC 9110 §10.1.4). gRPC requires it
    // of every request (the gateway takes trailers from any upstream); other codings stay here.
    let te_trailers = cx.grpc.is_some() || grpc::te_lists_trailers(headers);
    remove_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    remove_named(headers, &cx.active.config.internal_headers);

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
                        Reason::IdentityNotRepresentable,
                        "the identity cannot be passed on in a header",
                    )
                })?;
                headers.insert(name.clone(), value);
            }
        }
    }

    if let Ok(v) = HeaderValue::from_str(&cx.facts.request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
    headers.insert(TRACEPARENT.clone(), cx.facts.trace.header_value());
    let mut ip = String::with_capacity(40);
    let _ = write!(ip, "{}", cx.facts.connection.peer.ip());
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(cx.facts.connection.scheme.as_str()),
    );
    match &cx.facts.host {
        Some(host) => headers.insert(header::HOST, host.clone()),
        None => headers.remove(header::HOST),
    };

    if let RouteMatch::Matched { route, path } = &cx.route {
        if let Some(rewrite) = &route.rewrite {
            cx.upstream_path = Some(rewrite.apply(path));
        }
    }
    if let Some(upgrade) = upgrade {
        // Hop-by-hop, removed above like every other; put back on purpose for this route.
        crate::stage::forward::websocket::restore_request(&mut cx.parts, &upgrade);
        cx.upgrade = Some(upgrade);
    }
    Ok(())
}

/// Removes connection-specific headers, including every header a `Connection` field nominates.
///
/// Most requests carry none: one pass over the names present (a few, compared by value) finds
/// that, where removing each of the nine names would hash and probe the map nine times.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !present {
        return;
    }
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

/// Removes every field named in `names`, after one pass over the names present says any is:
/// the usual request or response carries none of them.
pub fn remove_named(headers: &mut HeaderMap, names: &[HeaderName]) {
    if headers.keys().any(|name| names.contains(name)) {
        for name in names {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn each_hop_by_hop_header_alone_is_found_and_removed_and_others_stay() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}");
            assert!(h.contains_key("x-kept"), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }
}
