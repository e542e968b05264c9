//! WebSocket pass-through for routes with `websocket: true`.
//!
//! An upgrade request runs the whole pipeline like any other — `authn`, `authz` and `ratelimit`
//! decide on it — and `mutate_request` strips `Connection` and `Upgrade` like every hop-by-hop
//! header; for an allowed route it then puts them back deliberately ([`requested`],
//! [`restore_request`]). When the upstream answers `101 Switching Protocols`, `mutate_response`
//! does the same on the way back and `forward` hands both connections to a task that relays
//! bytes both ways until either side closes ([`relay`]).
//!
//! Only HTTP/1.1 upgrades are passed through (RFC 6455); an HTTP/2 extended CONNECT (RFC 8441)
//! is not.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::stage::context::RequestContext;

/// The client's `Upgrade` value when this request is a WebSocket upgrade the route allows.
pub fn requested(cx: &RequestContext) -> Option<HeaderValue> {
    if !cx.route.route().is_some_and(|r| r.websocket)
        || cx.parts.version != Version::HTTP_11
        || cx.parts.method != Method::GET
        || cx.parts.extensions.get::<OnUpgrade>().is_none()
    {
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

/// Puts the upgrade back on the request after the hop-by-hop headers were removed.
pub fn restore_request(headers: &mut HeaderMap, upgrade: &HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade.clone());
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

/// Relays bytes between the client's and the upstream's upgraded connections until either side
/// closes. The request stays counted in flight to its instance while the relay runs.
pub fn relay(cx: &mut RequestContext, response: &mut Response<Incoming>) {
    let client = cx.parts.extensions.remove::<OnUpgrade>();
    let upstream = hyper::upgrade::on(response);
    // The relay counts as a request in flight to the instance until it ends; the `101`'s own
    // guard (in the record) ends with its empty body.
    let in_flight = cx.target.as_ref().map(|t| t.upstream.begin(t.instance));
    let request_id = cx.facts.request_id.clone();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let Some(client) = client else { return };
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => {
                        tracing::debug!(%request_id, bytes_to_upstream = up, bytes_to_client = down, "websocket closed")
                    }
                    Err(error) => tracing::debug!(%request_id, %error, "websocket relay ended"),
                }
            }
            Err(error) => tracing::debug!(%request_id, %error, "websocket upgrade failed"),
        }
    });
}
