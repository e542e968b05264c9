//! The pooled keep-alive client of one upstream: plaintext or TLS, its own connect timeout and its
//! own pool. Built when a config is bound (never inside the compiled config), and kept across
//! reloads that do not change its connection settings.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::UpstreamRequestBody;
use crate::identity::tls::UpstreamTls;

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamRequestBody>;

/// One pooled client per upstream, so each keeps its own connect timeout and its own pool.
/// With `tls`, connections are TLS (verified against the upstream's CA, with its client
/// certificate if configured); the request URI's scheme (`Upstream::scheme`) selects it.
pub fn new_client(
    connect_timeout: std::time::Duration,
    tls: Option<UpstreamTls>,
) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The https connector wraps this one; it refuses `http` URIs only when asked to.
    http.enforce_http(false);
    let connector = match tls {
        Some(tls) => crate::identity::tls::https_connector(http, Some(tls.config), tls.server_name),
        None => crate::identity::tls::https_connector(http, None, None),
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}
