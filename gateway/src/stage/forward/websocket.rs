//! WebSocket pass-through for routes with `websocket: true`, from HTTP/1.1 and HTTP/2 clients to
//! an HTTP/1.1 upstream.
//!
//! An upgrade request runs the whole pipeline like any other — `authn`, `authz` and `ratelimit`
//! decide on it — and `mutate_request` strips `Connection` and `Upgrade` like every hop-by-hop
//! header; for an allowed route it then puts them back deliberately ([`requested`],
//! [`restore_request`]). When the upstream answers `101 Switching Protocols`, `mutate_response`
//! does the same on the way back and `forward` hands both connections to a task that relays
//! bytes both ways until either side closes ([`relay`]).
//!
//! An HTTP/1.1 client upgrades with RFC 6455's handshake, passed through as it is: the client's
//! `Sec-WebSocket-Key`, the upstream's `Sec-WebSocket-Accept`, the client checks it. An HTTP/2
//! client opens the WebSocket on one stream with an extended CONNECT (RFC 8441: `:method CONNECT`,
//! `:protocol websocket`, no key). The gateway makes the RFC 6455 handshake toward the upstream
//! itself — a `GET` with `Upgrade: websocket` and a `Sec-WebSocket-Key` of its own —, checks the
//! `Sec-WebSocket-Accept` that comes back, answers the client `200`, and relays between the
//! stream and the upstream connection.
//!
//! A relay holds its client connection busy (the idle timeout does not close an HTTP/2
//! connection carrying a WebSocket) and ends when `limits.max_stream_duration` passes, counted
//! from the switch.

use base64::Engine as _;
use http::header::{SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::STAGE;
use crate::body::{StreamTracker, UpstreamBody};
use crate::stage::context::RequestContext;
use crate::vocab::{Reason, Rejection};

/// RFC 6455 §1.3: what the key is concatenated with before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` the upstream must answer the gateway's own key with: present (in
/// the request's extensions) exactly when the gateway made the handshake for an HTTP/2 client.
#[derive(Clone)]
struct ExpectedAccept(HeaderValue);

/// The client's `Upgrade` value when this request is a WebSocket upgrade the route allows: an
/// HTTP/1.1 `GET` with `Connection: upgrade` and `Upgrade: websocket`, or an HTTP/2 extended
/// CONNECT for `websocket`.
pub fn requested(cx: &RequestContext) -> Option<HeaderValue> {
    if !cx.route.route().is_some_and(|r| r.websocket)
        || cx.parts.extensions.get::<OnUpgrade>().is_none()
    {
        return None;
    }
    if cx.parts.version == Version::HTTP_2 {
        return extended_connect(&cx.parts).then(|| HeaderValue::from_static("websocket"));
    }
    if cx.parts.version != Version::HTTP_11 || cx.parts.method != Method::GET {
        return None;
    }
    let headers = &cx.parts.headers;
    let asks_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = headers.get(header::UPGRADE)?;
    let websocket = upgrade
        .to_str()
        .ok()?
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
    (asks_upgrade && websocket).then(|| upgrade.clone())
}

/// RFC 8441 §4: `:method CONNECT` with `:protocol websocket`.
fn extended_connect(parts: &http::request::Parts) -> bool {
    parts.method == Method::CONNECT
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Puts the upgrade back on the request after the hop-by-hop headers were removed; for an
/// HTTP/2 client's extended CONNECT, turns the request into the HTTP/1.1 handshake the upstream
/// expects (RFC 8441 §5: the method becomes `GET`, the key is the gateway's).
pub fn restore_request(parts: &mut http::request::Parts, upgrade: &HeaderValue) {
    if extended_connect(parts) {
        parts.method = Method::GET;
        let key = new_key();
        parts
            .extensions
            .insert(ExpectedAccept(accept_for(key.as_bytes())));
        parts.headers.insert(SEC_WEBSOCKET_KEY, key);
    }
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, upgrade.clone());
}

/// 16 random bytes, base64 (RFC 6455 §4.1). A nonce, not a secret: it proves the answer was made
/// for this handshake, so a per-thread generator is enough.
fn new_key() -> HeaderValue {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    // Base64 is always a valid header value.
    HeaderValue::from_str(&key)
        .unwrap_or_else(|_| HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="))
}

/// RFC 6455 §4.2.2: base64 of the SHA-1 of the key and the GUID.
fn accept_for(key: &[u8]) -> HeaderValue {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes());
    HeaderValue::from_str(&accept).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// For the upstream's `101` to an upgrade the gateway passed: the protocol it switched to,
/// read before `mutate_response` strips hop-by-hop headers.
pub fn switching(
    cx: &RequestContext,
    response: &Response<crate::body::ResponseBody>,
) -> Option<HeaderValue> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let asked = cx.upgrade.as_ref()?;
    Some(
        response
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or_else(|| asked.clone()),
    )
}

/// Puts the upgrade back on the `101` after the hop-by-hop headers were removed.
pub fn restore_response(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

fn bad_upgrade(detail: &'static str) -> Rejection {
    Rejection::new(STAGE, Reason::UpstreamBadUpgrade, detail)
}

/// The upstream's answer to an upgrade the gateway passed. A `101` starts the relay between the
/// client's and the upstream's upgraded connections, which runs until either side closes; for
/// an HTTP/2 client it becomes the `200` that opens the client's stream, once the upstream's
/// `Sec-WebSocket-Accept` proved it answered the gateway's key. Any other answer goes back as it
/// is — except a success that did not switch, to an HTTP/2 client, which would take it for an
/// open WebSocket. The request stays counted in flight to its instance while the relay runs.
pub fn relay(
    cx: &mut RequestContext,
    response: &mut Response<UpstreamBody>,
) -> Result<(), Rejection> {
    let expected = cx.parts.extensions.remove::<ExpectedAccept>();
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        if expected.is_some() && response.status().is_success() {
            return Err(bad_upgrade(
                "the upstream answered the WebSocket handshake without switching protocols",
            ));
        }
        return Ok(());
    }
    if let Some(ExpectedAccept(accept)) = expected {
        if response.headers().get(SEC_WEBSOCKET_ACCEPT) != Some(&accept) {
            return Err(bad_upgrade(
                "the upstream's WebSocket handshake answered another key",
            ));
        }
        // RFC 8441 §5: the stream opens with a 2xx; the HTTP/1.1 handshake's own fields stay
        // behind (`mutate_response` removes Connection and Upgrade as hop-by-hop).
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().remove(SEC_WEBSOCKET_ACCEPT);
    }
    let client = cx.parts.extensions.remove::<OnUpgrade>();
    let upstream = hyper::upgrade::on(&mut *response);
    // The relay counts as a request in flight to the instance until it ends; the answer's own
    // guard (in the record) ends with its empty body.
    let in_flight = cx.target.as_ref().map(|t| t.upstream.begin(t.instance));
    let tracker = cx.parts.extensions.get::<StreamTracker>();
    // Taken now, before the answer's own hold on the connection ends with its empty body.
    let busy = tracker.map(StreamTracker::begin);
    let max_duration = tracker.and_then(StreamTracker::max_duration);
    // A copy, not a handle: a client's id shares its request's buffer, which a relay that
    // lasts for hours would otherwise keep.
    let request_id = cx.facts.request_id.as_str().to_owned();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let _busy = busy;
        let Some(client) = client else { return };
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                let copied = match max_duration {
                    Some(max) => match tokio::time::timeout(max, copy).await {
                        Ok(copied) => copied,
                        Err(_) => {
                            tracing::debug!(%request_id, "websocket ended: limits.max_stream_duration passed");
                            return;
                        }
                    },
                    None => copy.await,
                };
                match copied {
                    Ok((up, down)) => {
                        tracing::debug!(%request_id, bytes_to_upstream = up, bytes_to_client = down, "websocket closed")
                    }
                    Err(error) => tracing::debug!(%request_id, %error, "websocket relay ended"),
                }
            }
            Err(error) => tracing::debug!(%request_id, %error, "websocket upgrade failed"),
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_is_rfc_6455s_for_its_example_key() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_sixteen_bytes_of_base64_and_differ() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.as_bytes())
            .expect("base64");
        assert_eq!(decoded.len(), 16);
    }
}
