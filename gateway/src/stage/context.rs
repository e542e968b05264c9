//! The request context the stages share: what the connection and the arrival established (fixed
//! from then on), and what each stage adds for the ones after it — typed so that a stage never has
//! to handle a state the pipeline's order rules out.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Method};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::body::RequestBodyMeter;
use crate::clock::{Nanos, timer_deadline};
use crate::config::{CompiledRoute, Runtime};
use crate::identity::tls::TlsInfo;
use crate::resilience::concurrency::{Admitted, Gate};
use crate::resilience::{Admission, BreakerState, InFlight};
use crate::routing::authority::HostError;
use crate::routing::normalize::PathError;
use crate::state::Active;
use crate::state::upstreams::BoundUpstream;
use crate::vocab::trace::TraceContext;
use crate::vocab::{Identity, LimitOutcome, Rejection, Scheme};

/// What the connection knows about a request that the request itself does not say.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// What the TLS handshake established (SNI, client certificate); `None` on plaintext.
    pub tls: Option<Arc<TlsInfo>>,
    /// The protocol the TLS handshake agreed (`h2`, `http/1.1`); `None` on plaintext or without
    /// ALPN.
    pub alpn: Option<Arc<str>>,
    /// Unique among this process's connections: requests that share a connection share it (the
    /// recording's `connection`).
    pub id: u64,
    /// The requests in flight on the connection's listener, which `tls` admits by when
    /// `limits.max_concurrent_requests` is set.
    pub listener_requests: Gate,
    /// Which of the config's `listeners` accepted it (its `paths:` options apply); an index past
    /// the config's listeners gets the defaults.
    pub listener: usize,
    /// The peer as `mutate_request`'s client-address fields carry it.
    pub client_address: ClientAddress,
    /// The timer the connection's requests time their upstream tries with.
    pub upstream_timer: UpstreamTimer,
}

/// One timer that a connection's requests reuse for their upstream tries' timeouts. Moving a
/// registered timer's deadline later is one atomic update in tokio's timer; a new timer for each
/// try was a registration in the timer wheel, and a removal after it (~450 instructions a
/// request, docs/PERFORMANCE.md). A request that finds it taken (an HTTP/2 connection's streams
/// run at once) makes one of its own.
#[derive(Debug, Default)]
pub struct UpstreamTimer(parking_lot::Mutex<Option<Pin<Box<Sleep>>>>);

impl UpstreamTimer {
    /// A timer that fires `after` from now: the connection's, when it is free.
    pub fn start(&self, after: Duration) -> Pin<Box<Sleep>> {
        let deadline = timer_deadline(after);
        match self.0.lock().take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the connection's next request, unless it holds one already.
    pub fn give_back(&self, timer: Pin<Box<Sleep>>) {
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(timer);
        }
    }
}

/// A connection's peer as `X-Forwarded-For`, `X-Real-IP` and `Forwarded` carry it, written once
/// per connection: every request on it sends the same values unless a trusted proxy sent lists
/// to extend, and writing them per request cost three allocations and a formatting pass each.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    /// The address alone (`X-Forwarded-For`, `X-Real-IP`).
    pub ip: Option<HeaderValue>,
    /// RFC 7239's element for it: `for=` the address (an IPv6 one bracketed and quoted, §6) and
    /// `;proto=` the connection's scheme.
    pub forwarded: Option<HeaderValue>,
}

impl ClientAddress {
    pub fn of(peer: SocketAddr, scheme: Scheme) -> Self {
        let peer = peer.ip().to_canonical();
        let mut ip = String::with_capacity(39);
        push_ip(&mut ip, peer);
        let mut forwarded = String::with_capacity(48);
        match peer {
            IpAddr::V4(_) => {
                forwarded.push_str("for=");
                forwarded.push_str(&ip);
            }
            IpAddr::V6(_) => {
                forwarded.push_str("for=\"[");
                forwarded.push_str(&ip);
                forwarded.push_str("]\"");
            }
        }
        forwarded.push_str(";proto=");
        forwarded.push_str(scheme.as_str());
        Self {
            ip: shared_value(ip),
            forwarded: shared_value(forwarded),
        }
    }
}

/// A header value whose clones share its bytes from the start. One made from a `&str` copies
/// them into a buffer that its first clone moves behind a new shared header: an allocation in
/// the middle of the connection's first request, kept as long as the connection, which left the
/// heap more fragmented than the value's size says (a kibibyte more per idle connection).
fn shared_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).ok()
}

/// `peer` as `Display` writes it (dotted decimal, or RFC 5952 for IPv6): by hand for IPv4, where
/// `core::fmt` took several formatting passes.
fn push_ip(out: &mut String, peer: IpAddr) {
    match peer {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written address text is `Display`'s, for every IPv4 address.
        #[test]
        fn ipv4_addresses_are_written_as_display_writes_them(octets in proptest::array::uniform4(0u8..)) {
            let peer = IpAddr::from(octets);
            let mut out = String::new();
            push_ip(&mut out, peer);
            proptest::prop_assert_eq!(out, peer.to_string());
        }
    }

    #[tokio::test]
    async fn the_connections_upstream_timer_is_reused_with_its_deadline_moved() {
        let timers = UpstreamTimer::default();
        let mut first = timers.start(Duration::from_millis(5));
        (&mut first).await;
        let fired_at = first.deadline();
        let kept: *const Sleep = &*first;
        timers.give_back(first);
        // The same timer, its deadline moved: it has not fired again.
        let second = timers.start(Duration::from_secs(60));
        assert!(
            std::ptr::eq(&*second, kept),
            "the connection's timer, not a new one"
        );
        assert!(!second.is_elapsed());
        assert!(second.deadline() >= fired_at + Duration::from_secs(59));
        // While it is out, another request at once gets one of its own.
        let third = timers.start(Duration::from_secs(60));
        assert!(!std::ptr::eq(&*third, kept));
        timers.give_back(second);
        timers.give_back(third);
        let again = timers.start(Duration::from_secs(1));
        assert!(
            std::ptr::eq(&*again, kept),
            "the first one given back is kept"
        );
    }
}

/// What never changes after the request arrived: who sent it over what, when, under which ids,
/// and the method and authority as the client sent them (the record keeps those, whatever
/// `mutate_request` does to the head later).
#[derive(Debug)]
pub struct RequestFacts {
    pub request_id: crate::vocab::trace::RequestId,
    pub trace: TraceContext,
    /// Shared by the connection's requests: each holds the one value, not a copy of it.
    pub connection: Arc<ConnectionInfo>,
    /// Monotonic time the request arrived, from the gateway's clock.
    pub arrived: Nanos,
    pub unix_millis: u64,
    pub method: Method,
    /// The one authority the request names (`routing::authority`): the request-target's
    /// (absolute form, or `:authority` on HTTP/2), else `Host`. Routing, the 421 check, the record
    /// and the `Host`/`:authority` sent upstream all read this, never the header map.
    pub host: Option<HeaderValue>,
    /// Why that authority cannot be trusted (missing, duplicate, invalid, or `host` differing
    /// from `:authority`); `tls` stops such a request before anything reads it.
    pub host_problem: Option<HostError>,
    /// The request-target as it arrived (a `Uri` clone shares its bytes): the record's
    /// `target`, whatever `mutate_request` removes from the query later.
    pub target: http::Uri,
    /// `Origin`, which CORS answers to.
    pub origin: Option<HeaderValue>,
}

/// Where routing left the request. Looked up before the stages run (authz and ratelimit read the
/// route's rules); the `route` stage is where a request that is not `Matched` stops.
#[derive(Debug)]
pub enum RouteMatch {
    /// A stage before routing stopped the request (or answered it): no lookup happened.
    NotLooked,
    /// The normalized path, and the route that serves it.
    Matched {
        path: String,
        route: Arc<CompiledRoute>,
    },
    /// The normalized path, which no route serves (404 at `route`).
    Unmatched { path: String },
    /// The path could not be normalized, or holds a spelling the listener refuses (400 at
    /// `route`: `bad-path`, or `ambiguous-path`).
    BadPath(PathError),
    /// The listener unescapes slashes by redirecting: the path and query to send the client to
    /// (a redirect at `route`).
    Redirect { location: String },
}

impl RouteMatch {
    pub fn route(&self) -> Option<&Arc<CompiledRoute>> {
        match self {
            RouteMatch::Matched { route, .. } => Some(route),
            _ => None,
        }
    }

    /// The normalized path, when normalization ran and succeeded.
    pub fn path(&self) -> Option<&str> {
        match self {
            RouteMatch::Matched { path, .. } | RouteMatch::Unmatched { path } => Some(path),
            _ => None,
        }
    }
}

/// The upstream instance a try goes to, as `route` picked it and `forward` (on a retry) moves it:
/// the bound upstream, which instance, the breaker's permission, and the guard that counts the
/// request in flight to that instance until its response body ends.
pub struct Target {
    pub upstream: Arc<BoundUpstream>,
    /// Index into `upstream.instances`.
    pub instance: usize,
    pub admission: Option<Admission>,
    pub in_flight: InFlight,
    /// The consistent-hash key, when the upstream hashes and the request has one.
    pub hash_key: Option<u64>,
}

impl Target {
    pub fn address(&self) -> SocketAddr {
        self.upstream.instances[self.instance].address
    }
}

/// What makes a request a gRPC call, and what the call asks of the gateway. A request is one when
/// its `content-type` is `application/grpc…` (known at arrival, so even a stop before routing
/// answers in gRPC's form) or its route says `grpc: true` (known once the route is looked up).
#[derive(Debug, Clone, Default)]
pub struct GrpcCall {
    /// When the call must be over, on the gateway's clock: arrival plus the client's
    /// `grpc-timeout`, which `route` reads. `forward` waits no longer for the response head
    /// (and tells the upstream what is left); the response body is cut there.
    pub deadline: Option<Nanos>,
    /// An HTTP/1.x client that sent `TE: trailers`: the only kind of HTTP/1 client hyper sends
    /// trailers to, and then only those the response's `Trailer` field names.
    pub h1_trailers: bool,
}

impl GrpcCall {
    /// The call a request head makes (read before `mutate_request` removes `TE`).
    pub fn of(parts: &Parts) -> GrpcCall {
        GrpcCall {
            deadline: None,
            h1_trailers: parts.version < http::Version::HTTP_2
                && crate::vocab::grpc::te_lists_trailers(&parts.headers),
        }
    }

    /// A call when the head's `content-type` says gRPC.
    pub fn detect(parts: &Parts) -> Option<GrpcCall> {
        crate::vocab::fields::first(&parts.headers, &http::header::CONTENT_TYPE)
            .is_some_and(crate::vocab::grpc::is_grpc_content_type)
            .then(|| GrpcCall::of(parts))
    }
}

/// The state one request carries through the pipeline.
pub struct RequestContext {
    /// The configuration this request started under, bound to its live upstream state; a reload
    /// never changes it mid-request.
    pub active: Arc<Active>,
    pub facts: RequestFacts,
    /// The request head; `mutate_request` reshapes it for the upstream. The body travels
    /// separately so it can stream.
    pub parts: Parts,
    pub body: Option<Incoming>,
    /// Request body bytes seen so far (and a recorded request's first bytes), shared with the
    /// streaming body.
    pub bytes_in: Arc<RequestBodyMeter>,
    pub route: RouteMatch,
    pub identity: Option<Arc<Identity>>,
    /// The rate limiter's decision and the header fields it chose (added to the answer,
    /// admitted or refused, by `mutate_response`).
    pub limit: Option<LimitOutcome>,
    /// The instance the last try went to: `route` picks it and hands it to `forward`, which
    /// leaves the one it ended with here for the record.
    pub target: Option<Target>,
    /// The breaker's state when it let the request through, or `Open` when it refused it.
    pub breaker: Option<BreakerState>,
    pub retries: u32,
    /// The path sent upstream, after rewriting.
    pub upstream_path: Option<String>,
    /// The client's `Upgrade` value, when the route passes WebSocket upgrades through.
    pub upgrade: Option<HeaderValue>,
    /// Close the client connection after answering (a stop that cannot trust the framing).
    pub close_connection: bool,
    /// Set when the request is a gRPC call: stops are answered in gRPC's form, `te: trailers`
    /// reaches the upstream, `grpc-timeout` is its deadline.
    pub grpc: Option<GrpcCall>,
    /// Its places under the listener's and the route's `max_concurrent_requests`, held until
    /// the response body ends.
    pub admitted: Admitted,
}

impl RequestContext {
    pub fn config(&self) -> &Runtime {
        &self.active.config
    }

    pub fn route_name(&self) -> Option<&str> {
        self.route.route().map(|r| r.name.as_ref())
    }
}

/// What a stage returns: pass (the next stage runs) or stop.
pub type StageResult = Result<(), Rejection>;
