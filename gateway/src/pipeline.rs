//! The eight stages, the per-request context they share, and the driver that runs them in order.
//!
//! A stage either passes (possibly enriching the context) or stops the request with a typed
//! [`Rejection`]. The driver times every stage, and whatever happens the request leaves one
//! [`RequestRecord`](crate::record::RequestRecord).

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use hyper::body::Incoming;
use serde::{Serialize, Serializer};

use crate::clock::Nanos;
use crate::config::{CompiledRoute, Runtime};
use crate::rejection::Rejection;
use crate::stage::mutate_request::TraceContext;

/// The stable identifier of a stage: module name, config key, metric label, scenario `stopped_at`
/// value and TUI label are all this one snake_case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageId {
    Tls,
    Authn,
    Authz,
    Ratelimit,
    Route,
    MutateRequest,
    Forward,
    MutateResponse,
}

impl StageId {
    pub const ALL: [StageId; 8] = [
        StageId::Tls,
        StageId::Authn,
        StageId::Authz,
        StageId::Ratelimit,
        StageId::Route,
        StageId::MutateRequest,
        StageId::Forward,
        StageId::MutateResponse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StageId::Tls => "tls",
            StageId::Authn => "authn",
            StageId::Authz => "authz",
            StageId::Ratelimit => "ratelimit",
            StageId::Route => "route",
            StageId::MutateRequest => "mutate_request",
            StageId::Forward => "forward",
            StageId::MutateResponse => "mutate_response",
        }
    }

    pub fn parse(name: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StageId::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown stage `{name}`, expected one of: tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response"
            ))
        })
    }
}

/// Who made the request, as established by `authn`. Never holds a secret.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The id of the API key or of the signing key that vouched for this identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Whether the client reached us over TLS; decides X-Forwarded-Proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What one stage decided about the limit, kept for the record and the response headers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LimitDecision {
    pub policy: String,
    pub subject: String,
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// The state one request carries through the pipeline.
pub struct RequestContext {
    /// The configuration this request started under; a reload never changes it mid-request.
    pub runtime: Arc<Runtime>,
    pub request_id: String,
    pub trace: TraceContext,
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// Monotonic time the request arrived, from the gateway's clock.
    pub arrived: Nanos,
    pub unix_millis: u64,
    /// The request head; the body travels separately so it can stream.
    pub parts: Parts,
    pub body: Option<Incoming>,
    /// The path after normalization: what routing matched and what the upstream sees unless rewritten.
    pub normalized_path: String,
    /// Set before the pipeline runs so authz and ratelimit can read the route's rules; `route`
    /// is the stage that stops a request with no route.
    pub route: Option<Arc<CompiledRoute>>,
    /// Why the path could not be normalized; `route` turns it into a 400.
    pub path_error: Option<crate::stage::route::normalize::PathError>,
    pub identity: Option<Identity>,
    pub limit: Option<LimitDecision>,
    /// The upstream instance `route` picked, as `name@address`.
    pub upstream_instance: Option<(Arc<str>, SocketAddr)>,
    /// The path sent upstream, after rewriting.
    pub upstream_path: Option<String>,
    pub stage_nanos: [u64; 8],
}

impl RequestContext {
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref().map(|r| r.name.as_ref())
    }
}

/// The outcome of the driver: where the request stopped, if anywhere.
pub type StageResult = Result<(), Rejection>;
