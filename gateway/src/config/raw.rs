//! The configuration as written: serde types that mirror the YAML one to one.
//!
//! Every struct denies unknown fields so a typo is a diagnostic, not a silently ignored setting.
//! Meaning (does the upstream exist, can the route ever match) is checked in [`super::compile`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::vocab::record_fields::FieldSet;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Threads serving requests; unset, one per core this process may run on.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Headers that only the gateway may set toward upstreams and that never leave toward clients,
    /// beyond the built-in X-User-Id, X-Tenant-Id and X-Auth-Scopes.
    #[serde(default)]
    pub internal_headers: Vec<String>,
    #[serde(default)]
    pub access_log: RawAccessLog,
    /// Requests as sent, redacted, for `simulator replay`; off unless the section is written.
    #[serde(default)]
    pub recording: Option<RawRecording>,
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// Issuers, API keys: what `authn` accepts (config/identity.rs).
    #[serde(default)]
    pub auth: super::auth::RawAuth,
    /// Rate-limit policies and their store (config/ratelimit.rs).
    #[serde(default)]
    pub rate_limits: super::ratelimit::RawRateLimits,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    /// `host:port`; port 0 asks the OS for a free one.
    pub address: String,
    /// Terminate TLS on this listener (config/identity.rs).
    #[serde(default)]
    pub tls: Option<super::tls::RawListenerTls>,
    /// What this listener does with path spellings servers disagree on (`%2F`, `%5C`, `\`,
    /// `;`): refused unless set otherwise (`routing::normalize`).
    #[serde(default)]
    pub paths: crate::routing::normalize::PathOptions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    /// Default request-body limit; a route may set its own.
    pub max_body_bytes: u64,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client connection with no request in flight and no body streaming stays open.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long an HTTP/1.1 client connection has nothing running before it is parked: the
    /// HTTP connection's buffers and state freed, the socket kept, until the client's next
    /// bytes (`crate::server`'s connection module). `0s`: never.
    #[serde(with = "humantime_serde")]
    pub park_idle_after: Duration,
    /// After client connections park or close, hand the heap's free memory back to the system
    /// (`crate::resilience::heap` says when).
    pub shrink_heap: bool,
    /// The longest one exchange may last, from its arrival to its response's last byte; `None`
    /// (the default) leaves a stream unbounded while it streams.
    #[serde(with = "humantime_serde")]
    pub max_stream_duration: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2-only limit on the header block as HTTP/2 measures it (RFC 7541 §4.1: each
    /// field's name and value plus 32, pseudo-headers included), checked by the `tls` stage on
    /// top of the limits both protocols share. `None`: only those.
    pub http2_max_header_list_bytes: Option<u32>,
    /// How long a TLS client has to finish its handshake, from the connection's accept.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// The longest wait for the next request-body bytes while the body streams upstream.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// The lowest average request-body rate, bytes per second, once `min_body_rate_grace` has
    /// passed; `None` (the default): no rate is required.
    pub min_body_rate: Option<u64>,
    /// How long a body may stream before `min_body_rate` applies.
    #[serde(with = "humantime_serde")]
    pub min_body_rate_grace: Duration,
    /// Requests in flight at once on each listener; past it, 503 `overloaded`. `None`: no limit.
    pub max_concurrent_requests: Option<u32>,
    /// Client connections open at once on each listener; past it a new connection is closed at
    /// once. `None`: no limit.
    pub max_connections: Option<u32>,
}

impl RawLimits {
    /// The header block HTTP/2 itself accepts (`SETTINGS_MAX_HEADER_LIST_SIZE`): twice the
    /// largest block the gateway's own checks could let through, counted as HTTP/2 counts it, so
    /// those checks answer an oversized block with a problem body and a record, as on HTTP/1.1.
    /// Past it the HTTP/2 layer refuses the block itself.
    pub fn http2_header_list_ceiling(&self) -> u32 {
        // Per field HTTP/2 adds 32 where the gateway's count adds 4; the pseudo-headers carry
        // the target (at most `max_uri_bytes`) and the authority, method and scheme.
        let shared = self
            .max_header_bytes
            .saturating_add(self.max_headers.saturating_mul(32))
            .saturating_add(self.max_uri_bytes)
            .saturating_add(1024);
        let own = self.http2_max_header_list_bytes.map_or(0, |b| b as usize);
        u32::try_from(shared.max(own).saturating_mul(2)).unwrap_or(u32::MAX)
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            park_idle_after: Duration::from_millis(100),
            shrink_heap: true,
            max_stream_duration: None,
            drain_timeout: Duration::from_secs(30),
            http2_max_concurrent_streams: 256,
            http2_max_header_list_bytes: None,
            tls_handshake_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_body_rate: None,
            min_body_rate_grace: Duration::from_secs(10),
            max_concurrent_requests: None,
            max_connections: None,
        }
    }
}

/// `access_log:` — where the JSON access log goes, and which of the record's fields its lines
/// carry. Written as the destination alone (`stdout`, `off`, a file path), or as a mapping with
/// `path` and `fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAccessLog {
    pub to: AccessLogTo,
    /// The record's top-level fields each line carries; `None`: all of them.
    pub fields: Option<FieldSet>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLogTo {
    #[default]
    Stdout,
    Off,
    File(String),
}

impl From<&str> for AccessLogTo {
    fn from(s: &str) -> Self {
        match s {
            "stdout" => AccessLogTo::Stdout,
            "off" => AccessLogTo::Off,
            _ => AccessLogTo::File(s.to_owned()),
        }
    }
}

/// The mapping spelling of `access_log`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccessLogDetail {
    #[serde(default = "stdout")]
    path: String,
    #[serde(default)]
    fields: Option<Vec<RecordFieldName>>,
}

fn stdout() -> String {
    "stdout".to_owned()
}

/// One of `fields`' names, checked as it is read so that an unknown one is reported at its line.
struct RecordFieldName(String);

impl<'de> Deserialize<'de> for RecordFieldName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        FieldSet::of(&[&name]).map_err(serde::de::Error::custom)?;
        Ok(RecordFieldName(name))
    }
}

impl<'de> Deserialize<'de> for RawAccessLog {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Spelling;
        impl<'de> serde::de::Visitor<'de> for Spelling {
            type Value = RawAccessLog;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`stdout`, `off`, a file path, or a mapping with `path` and `fields`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawAccessLog, E> {
                Ok(RawAccessLog {
                    to: AccessLogTo::from(s),
                    fields: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawAccessLog, A::Error> {
                let detail = RawAccessLogDetail::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                let fields = detail
                    .fields
                    .map(|names| {
                        if names.is_empty() {
                            return Err("an empty `fields` list would write `{}` lines: leave \
                                 `fields` out for every field, or set `path: off`"
                                .to_owned());
                        }
                        let names: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
                        FieldSet::of(&names)
                    })
                    .transpose()
                    .map_err(serde::de::Error::custom)?;
                Ok(RawAccessLog {
                    to: AccessLogTo::from(detail.path.as_str()),
                    fields,
                })
            }
        }
        deserializer.deserialize_any(Spelling)
    }
}

/// `recording:` — what the gateway keeps of each sampled request for replay (docs/replay.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecording {
    /// `false` keeps the section written but records nothing.
    pub enabled: bool,
    /// The file lines are appended to; required when recording is on.
    pub path: Option<String>,
    /// The share of requests recorded, 0 to 1.
    pub sample: f64,
    /// How much of each request body is kept; 0 keeps none (the length is always recorded).
    pub max_body_bytes: u64,
    /// Rotate when the file would grow past this; 0 never rotates.
    pub rotate_bytes: u64,
    /// Rotated files kept (`path.1` … `path.<keep>`), beside the one being written.
    pub keep: usize,
    /// Headers whose values are replaced, beyond the credentials always redacted.
    pub redact_headers: Vec<String>,
    /// Also keep the response: status, headers, SHA-256 of the body.
    pub responses: bool,
    /// Lines waiting for the writer; beyond this they are dropped and counted.
    pub queue: usize,
}

impl Default for RawRecording {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            sample: 1.0,
            max_body_bytes: 64 * 1024,
            rotate_bytes: 64 * 1024 * 1024,
            keep: 5,
            redact_headers: Vec::new(),
            responses: false,
            queue: 8192,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Exact origins (`https://app.example.com`), or `*` for any origin without credentials.
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub instances: Vec<RawInstance>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response head arrives.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The longest the upstream may send nothing while its response body is read; then the
    /// response is cut (`upstream-idle-timeout`).
    #[serde(default = "default_upstream_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connect to the instances with TLS (config/identity.rs).
    #[serde(default)]
    pub tls: Option<super::tls::RawUpstreamTls>,
    /// What the gateway speaks to the instances: `http1` (the default), `h2c`, `h2` or `auto`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// HTTP/2 connection settings, for `h2c`, `h2` and an `auto` that negotiated HTTP/2.
    #[serde(default)]
    pub http2: RawHttp2,
    /// All tries together, backoff included (config/resilience.rs, as are the fields below).
    #[serde(default, with = "humantime_serde")]
    pub total_timeout: Option<Duration>,
    #[serde(default)]
    pub load_balancing: Option<super::resilience::RawLoadBalancing>,
    #[serde(default)]
    pub health_check: Option<super::resilience::RawHealthCheck>,
    #[serde(default)]
    pub outlier_ejection: Option<super::resilience::RawOutlierEjection>,
    #[serde(default)]
    pub circuit_breaker: Option<super::resilience::RawCircuitBreaker>,
    #[serde(default)]
    pub retries: Option<super::resilience::RawRetries>,
}

/// `upstreams.<name>.http2`: how HTTP/2 connections to the instances are used and kept alive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Streams one connection carries at once; past it the pool opens another connection.
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A PING this often on a quiet connection, so a dead peer or a NAT that forgot the
    /// connection is found before a request is sent on it. `0s` turns PINGs off.
    #[serde(default = "default_h2_keepalive_interval", with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[serde(default = "default_h2_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
}

impl Default for RawHttp2 {
    fn default() -> Self {
        Self {
            max_concurrent_streams: default_h2_max_concurrent_streams(),
            keepalive_interval: default_h2_keepalive_interval(),
            keepalive_timeout: default_h2_keepalive_timeout(),
        }
    }
}

fn default_h2_max_concurrent_streams() -> u32 {
    100
}

fn default_h2_keepalive_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_h2_keepalive_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// nginx's `proxy_read_timeout`: a minute of silence mid-body is a stuck upstream, not a slow one.
fn default_upstream_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// An instance is written either as `"127.0.0.1:9001"` or as `{ address: ..., weight: ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawInstance {
    Address(String),
    Detailed(RawInstanceDetail),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceDetail {
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl RawInstance {
    pub fn address(&self) -> &str {
        match self {
            RawInstance::Address(a) => a,
            RawInstance::Detailed(d) => &d.address,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub match_: RawMatch,
    #[serde(default)]
    pub priority: i32,
    /// Forward to this upstream ...
    #[serde(default)]
    pub upstream: Option<String>,
    /// ... or answer at the gateway (the catch-all 404).
    #[serde(default)]
    pub respond: Option<RawRespond>,
    #[serde(default)]
    pub rewrite: Option<RawRewrite>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Requests in flight at once on this route; past it, 503 `overloaded`.
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
    /// Who may call this route (config/identity.rs); absent means public.
    #[serde(default)]
    pub auth: Option<super::auth::raw::RawRouteAuth>,
    /// Pass WebSocket upgrades through to the upstream (config/resilience.rs).
    #[serde(default)]
    pub websocket: bool,
    /// The route serves gRPC: every request on it is a gRPC call, whatever its content type
    /// (docs/protocols.md).
    #[serde(default)]
    pub grpc: bool,
    /// Forward the verified client certificate as RFC 9440 `Client-Cert` / `Client-Cert-Chain`.
    #[serde(default)]
    pub forward_client_cert: bool,
    /// `Deprecation` / `Sunset` headers on every response (config/resilience.rs).
    #[serde(default)]
    pub deprecation: Option<super::resilience::RawDeprecation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// `/exact`, `/prefix/*` or `/users/{id}`.
    pub path: String,
    /// Empty means any method.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// Header name → exact value; the value `"*"` means "present".
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameter → exact value; `"*"` means "present".
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: u16,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    /// Remove this leading path prefix: `/api/v1` turns `/api/v1/users/7` into `/users/7`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put this in front after stripping.
    #[serde(default)]
    pub add_prefix: Option<String>,
}

/// The protocol toward an upstream's instances (`upstreams.<name>.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request at a time per pooled connection.
    #[default]
    Http1,
    /// HTTP/2 in cleartext with prior knowledge (what gRPC servers listen with).
    H2c,
    /// HTTP/2 over TLS, agreed by ALPN: an upstream that does not offer `h2` is not reachable.
    H2,
    /// Over TLS, HTTP/2 when the upstream offers it by ALPN, else HTTP/1.1.
    Auto,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::Auto => "auto",
        }
    }
}
