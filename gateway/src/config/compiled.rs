//! The configuration as the pipeline uses it: validated, with names resolved, patterns parsed and
//! header names pre-built so nothing is parsed on the request path. Data only: no connection
//! pools, no live state — binding a config to those is `crate::state`'s job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

pub use super::raw::UpstreamProtocol;
use super::raw::{RawAccessLog, RawLimits};
use crate::routing::pattern::RoutePattern;
pub use crate::routing::table::ValueMatch;
use crate::routing::table::{RouteTable, Rule};

/// Everything one request needs to know about the active configuration. Swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// Where it came from (a file path, or `<inline>`), for diagnostics and the admin endpoint.
    pub source: String,
    /// A hash of the source text: the admin endpoint reports it so operators see which config runs.
    pub hash: String,
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<SocketAddr>,
    pub limits: RawLimits,
    /// `workers:` as written (`None`: one per core); fixed at start.
    pub workers: Option<usize>,
    /// Every field `mutate_request` removes by name, in one list so that one walk over a
    /// request's names finds them all: the internal headers (lower-cased, the identity fields
    /// and `internal_headers`), the credential fields and the client-certificate fields.
    pub request_fields_removed: Vec<HeaderName>,
    /// Every field `mutate_response` removes by name: the upstream's software fields and the
    /// internal headers.
    pub response_fields_removed: Vec<HeaderName>,
    pub access_log: RawAccessLog,
    /// The `recording:` section when recording is on; fixed at start, like `access_log`.
    pub recording: Option<RecordingConfig>,
    pub cors: Option<CorsPolicy>,
    pub upstreams: HashMap<Arc<str>, Arc<Upstream>>,
    pub routes: RouteTable<CompiledRoute>,
    /// Issuers, API keys and each route's auth rules (config/identity.rs).
    pub auth: super::auth::AuthConfig,
    /// Rate-limit policies and their store settings (config/ratelimit.rs); the counters live in
    /// `GatewayState`, not here, so a reload keeps them.
    pub rate_limits: super::ratelimit::CompiledRateLimits,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Certificates by SNI and the client-certificate policy; read per handshake, so a reload
    /// that swaps the runtime swaps the certificates.
    pub tls: Option<Arc<crate::identity::tls::ListenerTls>>,
    /// Encoded slashes, backslashes and `;` parameters in paths: refuse, keep, or redirect.
    pub paths: crate::routing::normalize::PathOptions,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub instances: Vec<Instance>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The longest wait for the upstream's next response-body bytes (`idle_timeout`).
    pub idle_timeout: Duration,
    /// TLS toward the upstream (`upstreams.<name>.tls`): the CA to verify it and the client
    /// certificate to present. The pooled client is built from it when the config is bound
    /// (crate::state::upstreams), never here.
    pub tls: Option<crate::identity::tls::UpstreamTls>,
    /// `https` when the upstream is reached over TLS (`upstreams.<name>.tls`), else `http`.
    pub scheme: http::uri::Scheme,
    /// What the gateway speaks to the instances.
    pub protocol: UpstreamProtocol,
    /// HTTP/2 connection settings (used when the protocol is or negotiates HTTP/2).
    pub http2: super::raw::RawHttp2,
    /// Balancing, health, breaker, retries, total timeout (config/resilience.rs).
    pub resilience: super::resilience::UpstreamResilience,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub address: SocketAddr,
    pub weight: u32,
    /// `http://addr` prebuilt so forwarding only appends the path.
    pub authority: http::uri::Authority,
}

#[derive(Debug)]
pub struct CompiledRoute {
    pub name: Arc<str>,
    /// Position in the file: the last tie-breaker, so equal routes resolve the way they read.
    pub declaration_index: usize,
    pub priority: i32,
    pub pattern: RoutePattern,
    /// The path pattern as written: the metric label and the record's route template.
    pub template: Arc<str>,
    /// Empty means any method.
    pub methods: Vec<Method>,
    /// Lower-cased, without port.
    pub host: Option<String>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    pub max_body_bytes: u64,
    /// Requests in flight at once on this route (`None`: no limit of its own).
    pub max_concurrent_requests: Option<u32>,
    /// Pass WebSocket upgrades through (stage/forward/websocket.rs).
    pub websocket: bool,
    /// Every request on the route is a gRPC call (stage/context.rs `GrpcCall`), not only those
    /// whose content type says so.
    pub grpc: bool,
    /// Send the verified client certificate upstream as RFC 9440 `Client-Cert` (and its chain).
    pub forward_client_cert: bool,
    /// `Deprecation` / `Sunset` / `Link` headers for every response on the route.
    pub deprecation: Option<super::resilience::Deprecation>,
}

impl Rule for CompiledRoute {
    fn declaration_index(&self) -> usize {
        self.declaration_index
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn pattern(&self) -> &RoutePattern {
        &self.pattern
    }
    fn methods(&self) -> &[Method] {
        &self.methods
    }
    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    fn headers(&self) -> &[(HeaderName, ValueMatch)] {
        &self.headers
    }
    fn query(&self) -> &[(String, ValueMatch)] {
        &self.query
    }
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward {
        upstream: Arc<Upstream>,
    },
    Respond {
        status: http::StatusCode,
        detail: Arc<str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
}

impl Rewrite {
    /// The path the upstream sees. Stripping never produces an empty path: `/api/v1` stripped
    /// from `/api/v1` is `/`.
    pub fn apply(&self, path: &str) -> String {
        let mut rest = path;
        if let Some(prefix) = &self.strip_prefix {
            if let Some(stripped) = path.strip_prefix(prefix.as_str()) {
                if stripped.is_empty() || stripped.starts_with('/') {
                    rest = stripped;
                }
            }
        }
        let mut out = String::with_capacity(rest.len() + 16);
        if let Some(prefix) = &self.add_prefix {
            out.push_str(prefix.trim_end_matches('/'));
        }
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
        out
    }
}

/// `recording:` compiled: the path resolved, the header names parsed, the sample turned into
/// the threshold a draw is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    pub path: std::path::PathBuf,
    pub sample: f64,
    /// A request is recorded when its 64-bit draw is below this; `u64::MAX` with `always`.
    pub sample_below: u64,
    /// Every request is recorded (`sample: 1`), without a draw.
    pub always: bool,
    pub max_body_bytes: usize,
    /// 0: never rotate.
    pub rotate_bytes: u64,
    pub keep: usize,
    /// Lower-cased, beyond the credentials always redacted.
    pub redact_headers: Vec<HeaderName>,
    pub responses: bool,
    pub queue: usize,
}

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    pub any_origin: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: HeaderValue,
    pub allowed_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub allow_credentials: bool,
    pub max_age: Option<HeaderValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_strips_whole_segments_only() {
        let strip = Rewrite {
            strip_prefix: Some("/api/v1".into()),
            add_prefix: None,
        };
        assert_eq!(strip.apply("/api/v1/users/7"), "/users/7");
        assert_eq!(strip.apply("/api/v1"), "/");
        assert_eq!(strip.apply("/api/v10/users"), "/api/v10/users");
        let replace = Rewrite {
            strip_prefix: Some("/api".into()),
            add_prefix: Some("/internal/".into()),
        };
        assert_eq!(replace.apply("/api/admin/x"), "/internal/admin/x");
    }
}
