//! `mutate_request`: shapes what the upstream sees. Order matters and is fixed:
//! 1. hop-by-hop headers, and any header the client's `Connection` nominates, are removed first —
//!    but `TE: trailers` is passed on for a client that sent it and for every gRPC call;
//! 2. internal headers a client sent (X-User-Id, X-Tenant-Id, X-Auth-Scopes, configured ones) are
//!    removed — a client can never spoof them;
//!    RFC 9440 `Client-Cert` / `Client-Cert-Chain` a client sent are removed on every route too,
//!    and so is every credential the gateway reads (Authorization, API-key headers, token query
//!    parameters), used or not — here, not in `authn`, so a rate-limit policy can key on one;
//! 3. identity headers are injected from the verified identity only (percent-encoded or
//!    refused beyond printable ASCII, per `auth.identity_headers.non_ascii`), and the verified
//!    client certificate where the route has `forward_client_cert`;
//! 4. X-Request-Id, `traceparent`, X-Forwarded-Proto and the client-address headers are set:
//!    `X-Forwarded-For` and `Forwarded` are appended to from a trusted proxy
//!    (`rate_limits.trusted_proxies`) and replaced from anyone else; `X-Real-IP` is kept from a
//!    trusted proxy (one address) and replaced from anyone else; and `Host` is the request's one
//!    authority (an absolute-form target or `:authority` over a client's `Host`), the same one
//!    routing and the 421 check read — the pool sends it as `:authority` to an HTTP/2 upstream;
//! 5. the path is rewritten.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::identity::header_text;
use crate::identity::tls::TlsInfo;

use crate::stage::context::{ClientAddress, RequestContext, RouteMatch, StageResult};
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::trace::{TRACEPARENT, X_REQUEST_ID};
use crate::vocab::{Reason, Rejection};
use crate::vocab::{fields, grpc};

const STAGE: StageId = StageId::MutateRequest;

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies still see.
/// `Trailer` is not one: it is end to end (RFC 9110 §6.6.2), naming the trailer fields that
/// follow the body, and an HTTP/1.1 server sends only the trailers it names. A `static`: as a
/// `const`, each use made the array afresh and dropped it, eight times a request.
pub static HOP_BY_HOP: [HeaderName; 7] = [
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
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
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
    // The internal headers, every credential field (used, ignored or of a kind the route does
    // not take) and the client-certificate fields: one walk, one list made with the config.
    fields::remove_named(headers, &cx.active.config.request_fields_removed);
    crate::stage::authn::strip_token_params(&mut cx.parts, &cx.active.config.auth);
    let headers = &mut cx.parts.headers;
    let route = cx.route.route();
    if let (Some(tls), true) = (
        &cx.facts.connection.tls,
        route.is_some_and(|r| r.forward_client_cert),
    ) {
        client_cert_headers(headers, tls);
    }

    if let Some(identity) = &cx.identity {
        let mode = cx.active.config.auth.non_ascii;
        // Each scope encoded on its own: the spaces between them are the list's separators.
        let mut scopes = String::new();
        for scope in &identity.scopes {
            if !scopes.is_empty() {
                scopes.push(' ');
            }
            scopes.push_str(&header_text::encode(scope, mode));
        }
        let subject = header_text::encode(&identity.subject, mode);
        let tenant = identity
            .tenant
            .as_deref()
            .map(|t| header_text::encode(t, mode));
        for (name, value) in [
            (&X_USER_ID, Some(&*subject)),
            (&X_TENANT_ID, tenant.as_deref()),
            (
                &X_AUTH_SCOPES,
                Some(scopes.as_str()).filter(|s| !s.is_empty()),
            ),
        ] {
            if let Some(value) = value {
                // authn refuses claims that cannot be header values; this is the backstop (and
                // catches a cached identity after a reload to `reject`).
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

    headers.insert(X_REQUEST_ID.clone(), cx.facts.request_id.header_value());
    headers.insert(TRACEPARENT.clone(), cx.facts.trace.header_value());
    let peer = cx.facts.connection.peer.ip().to_canonical();
    let trusted = cx
        .active
        .config
        .rate_limits
        .trusted_proxies
        .iter()
        .any(|c| c.contains(peer));
    client_address_headers(headers, &cx.facts.connection.client_address, trusted);
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

/// `X-Forwarded-For`, `Forwarded` (RFC 7239) and `X-Real-IP` for a request from the connection's
/// peer: a trusted proxy's list is extended with the peer, anyone else's copies are replaced, so
/// no client can name its own address to the upstream. The peer's own values were written once
/// for its connection ([`ClientAddress`]); only a trusted proxy's lists cost text per request.
fn client_address_headers(headers: &mut HeaderMap, address: &ClientAddress, trusted: bool) {
    let (Some(ip_value), Some(own_forwarded)) = (&address.ip, &address.forwarded) else {
        return;
    };
    let prior = |headers: &HeaderMap, name: &HeaderName| {
        let mut list = String::new();
        if trusted {
            for value in headers.get_all(name) {
                if let Ok(text) = value.to_str() {
                    let text = text.trim();
                    if !text.is_empty() {
                        list.push_str(text);
                        list.push_str(", ");
                    }
                }
            }
        }
        list
    };
    let xff = prior(headers, &X_FORWARDED_FOR);
    let forwarded = prior(headers, &header::FORWARDED);
    let extended = |mut list: String, own: &HeaderValue| {
        if list.is_empty() {
            return Some(own.clone());
        }
        list.push_str(own.to_str().unwrap_or_default());
        HeaderValue::from_str(&list).ok()
    };
    for (name, value) in [
        (&X_FORWARDED_FOR, extended(xff, ip_value)),
        (&header::FORWARDED, extended(forwarded, own_forwarded)),
    ] {
        if let Some(v) = value {
            headers.insert(name.clone(), v);
        }
    }
    // A trusted proxy's one `X-Real-IP` stays when it is an address; nobody else's is read.
    let kept = trusted && {
        let mut real = fields::all(headers, &X_REAL_IP);
        real.next()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<IpAddr>().is_ok())
            && real.next().is_none()
    };
    if !kept {
        headers.insert(X_REAL_IP.clone(), ip_value.clone());
    }
}

/// RFC 9440: the verified leaf as `Client-Cert: :<base64 DER>:`, and the certificates the
/// client sent after it as `Client-Cert-Chain`, a list of the same (sf-binary, RFC 8941 §3.3.5).
fn client_cert_headers(headers: &mut HeaderMap, tls: &TlsInfo) {
    let sf_binary = |der: &[u8]| {
        let mut out = String::with_capacity(der.len() * 4 / 3 + 6);
        out.push(':');
        STANDARD.encode_string(der, &mut out);
        out.push(':');
        out
    };
    let Some((leaf, chain)) = tls.client_chain.split_first() else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&sf_binary(leaf)) {
        headers.insert(fields::CLIENT_CERT_FIELDS[0].clone(), v);
    }
    if !chain.is_empty() {
        let list: Vec<String> = chain.iter().map(|c| sf_binary(c)).collect();
        if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
            headers.insert(fields::CLIENT_CERT_FIELDS[1].clone(), v);
        }
    }
}

/// Removes connection-specific headers, including every header a `Connection` field nominates.
///
/// One pass over the names present (a few, compared by value) marks which hop-by-hop names are
/// there, and only those are removed: each `remove` hashes and probes the map, and a response
/// with only `Connection: keep-alive` would otherwise pay for all eight names. Nominated names
/// that are hop-by-hop already (`keep-alive`, the usual one) or `close` need no lookup of their
/// own; any other is removed by name, without building a `HeaderName`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u32;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name);
    }
    if present == 0 {
        return;
    }
    // `Connection` is HOP_BY_HOP[0]. Its other nominated names are copied out (rare: most
    // name only `keep-alive` or `close`), since the map cannot be changed while read.
    let mut others: Vec<String> = Vec::new();
    if present & 1 != 0 {
        for value in headers.get_all(header::CONNECTION) {
            let Ok(text) = value.to_str() else { continue };
            for token in text.split(',').map(str::trim) {
                if token.is_empty() || token.eq_ignore_ascii_case("close") {
                    continue;
                }
                // A hop-by-hop name's bit came from the pass over the names: set here, it
                // would cost a hashed removal of a field that is not there (`keep-alive`).
                let already_marked = token.eq_ignore_ascii_case("upgrade")
                    || HOP_BY_HOP
                        .iter()
                        .any(|h| token.eq_ignore_ascii_case(h.as_str()));
                if !already_marked {
                    others.push(token.to_owned());
                }
            }
        }
    }
    for token in &others {
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    // `Upgrade` is hop-by-hop too; WebSocket pass-through (resilience issue) re-adds it deliberately.
    if present & UPGRADE_BIT != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// The bit after the HOP_BY_HOP names' (seven of them).
const UPGRADE_BIT: u32 = 1 << 7;

/// `name`'s bit in `remove_hop_by_hop`'s set: `1 << i` for `HOP_BY_HOP[i]`, [`UPGRADE_BIT`] for
/// `Upgrade`, 0 for any other. One match on the text, where comparing with each of the eight
/// names in turn was most of the pass over a head's fields.
fn hop_by_hop_bit(name: &HeaderName) -> u32 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "proxy-authorization" => 1 << 4,
        "te" => 1 << 5,
        "transfer-encoding" => 1 << 6,
        "upgrade" => UPGRADE_BIT,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Scheme;

    fn address(peer: IpAddr, scheme: Scheme) -> ClientAddress {
        ClientAddress::of(std::net::SocketAddr::new(peer, 40000), scheme)
    }

    #[test]
    fn an_ipv6_client_is_bracketed_and_quoted_in_forwarded_and_bare_elsewhere() {
        let peer: IpAddr = "2001:db8::7".parse().expect("address");
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=\"[2001:db8::1]\""),
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("2001:db8::1"));
        client_address_headers(&mut h, &address(peer, Scheme::Https), true);
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\", for=\"[2001:db8::7]\";proto=https"
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1, 2001:db8::7");
        assert_eq!(h["x-real-ip"], "2001:db8::7");
        client_address_headers(&mut h, &address(peer, Scheme::Http), false);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::7]\";proto=http");
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
    }

    #[test]
    fn an_ipv4_client_from_a_trusted_proxy_extends_the_lists() {
        let peer: IpAddr = "10.0.0.254".parse().expect("address");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.insert("x-real-ip", HeaderValue::from_static("192.0.2.1"));
        client_address_headers(&mut h, &address(peer, Scheme::Http), true);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.254");
        assert_eq!(h["forwarded"], "for=10.0.0.254;proto=http");
        assert_eq!(
            h["x-real-ip"], "192.0.2.1",
            "a trusted proxy's one valid X-Real-IP stays"
        );
        client_address_headers(&mut h, &address(peer, Scheme::Https), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.254");
        assert_eq!(h["x-real-ip"], "10.0.0.254");
    }

    #[test]
    fn the_upgrade_bit_follows_the_hop_by_hop_names() {
        assert_eq!(HOP_BY_HOP.len(), 7, "remove_hop_by_hop's UPGRADE_BIT");
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name), 1 << i, "{name}");
        }
        assert_eq!(hop_by_hop_bit(&header::UPGRADE), UPGRADE_BIT);
        assert_eq!(hop_by_hop_bit(&header::CONTENT_LENGTH), 0);
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
        // Nominations in any case, hop-by-hop names among them, several `Connection` lines.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-Other ,Upgrade"),
        );
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
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
