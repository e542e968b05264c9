//! The connection pool of one upstream, our own over `hyper::client::conn` and, for bodiless
//! HTTP/1.1 requests, over our own exchange (`wire::http1_client`): the protocol is chosen per
//! upstream (HTTP/1.1, h2c, h2, or what ALPN agrees for `auto`) and an HTTP/2 connection
//! carries many requests at once. A request checks a connection out on its own task. A bodiless
//! HTTP/1.1 exchange runs there too, and its response body brings the connection back; any
//! other request's [`Lease`] gives it back when the response body ends — the lease rides in the
//! request's in-flight guard — while hyper's connection task moves its bytes. Built when a
//! config is bound (never inside the compiled config), and kept across reloads that do not
//! change its connection settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use parking_lot::RwLock;

use crate::body::{UpstreamBody, UpstreamRequestBody};
use crate::config::Upstream;
use crate::config::UpstreamProtocol;
use crate::config::raw::RawHttp2;
use crate::vocab::fields;
use crate::wire::http1_client::{Connection, ConnectionHome, SendError};

mod checked;
mod connect;
mod error;
mod http1;
mod http2;

use connect::{Connector, Spoken};
pub use error::{PoolError, PoolErrorKind};

/// Tries of one request on pooled connections that turned out closed before it was sent: the
/// request comes back unsent and goes to another connection (the last try is a new one).
const UNSENT_TRIES: usize = 3;

/// One upstream's pool; cheap to clone (the clones share it).
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

struct Pool {
    protocol: UpstreamProtocol,
    connector: Connector,
    http2: RawHttp2,
    connect_timeout: Duration,
    /// Read by every request, written once per instance: a read lock does not serialize workers.
    /// Looked up on every request, by configured addresses: a fast hash (see Cargo.toml).
    hosts: RwLock<HashMap<SocketAddr, Arc<Host>, foldhash::fast::RandomState>>,
}

/// One instance's connections.
#[derive(Default)]
struct Host {
    http1: http1::Idle,
    own: http1::OwnIdle,
    http2: http2::Connections,
    /// What the last new connection agreed on (for `auto`; fixed for the other protocols).
    speaks_h2: AtomicBool,
}

/// Our own exchange's response bodies bring their connections back here.
impl ConnectionHome for Host {
    fn take_back(&self, connection: Connection) {
        self.own.give_back(connection);
    }
}

/// What the request holds while its exchange lasts: its HTTP/1.1 connection, to go back to the
/// idle stack, or its HTTP/2 stream, counted against the connection's maximum.
pub struct Lease {
    held: Held,
}

enum Held {
    Http1 {
        host: Arc<Host>,
        sender: Option<http1::Sender>,
    },
    Http2(#[allow(dead_code)] http2::Stream),
    /// An upgrade's connection: taken over by the WebSocket relay, never reused.
    Upgrade,
    /// Our own exchange's connection, which rides in the response body and goes back from it.
    InBody,
}

impl Lease {
    /// Whether the lease holds anything the exchange must keep until it ends: a connection to
    /// give back, or an HTTP/2 stream. Our own exchange's connection rides in the response body
    /// instead, and an upgrade's goes to the relay.
    pub fn holds_anything(&self) -> bool {
        matches!(self.held, Held::Http1 { .. } | Held::Http2(_))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Held::Http1 { host, sender } = &mut self.held {
            if let Some(sender) = sender.take() {
                host.http1.give_back(sender);
            }
        }
    }
}

pub fn new_client(upstream: &Upstream) -> UpstreamClient {
    UpstreamClient {
        pool: Arc::new(Pool {
            protocol: upstream.protocol,
            connector: Connector::new(
                upstream.connect_timeout,
                upstream.protocol,
                upstream.tls.as_ref(),
            ),
            http2: upstream.http2.clone(),
            connect_timeout: upstream.connect_timeout,
            hosts: RwLock::new(HashMap::default()),
        }),
    }
}

impl UpstreamClient {
    /// Sends `request` to the instance at `address`. Its URI carries the path and query (and the
    /// scheme and authority, which the pool rewrites for the protocol on the wire); a request
    /// with `Upgrade` goes over a fresh HTTP/1.1 connection whatever the protocol.
    pub async fn request(
        &self,
        address: SocketAddr,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let pool = &self.pool;
        if fields::holds(request.headers(), &header::UPGRADE) {
            return Box::pin(pool.upgrade(address, request)).await;
        }
        let host = pool.host(address);
        let h2_first = match pool.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
            UpstreamProtocol::Auto => host.speaks_h2.load(Ordering::Relaxed),
        };
        if h2_first {
            pool.send_http2(&host, address, request).await
        } else if http_body::Body::is_end_stream(request.body())
            && request.method() != http::Method::CONNECT
        {
            pool.send_own(&host, address, request).await
        } else {
            pool.send_http1(&host, address, request).await
        }
    }
}

impl Pool {
    fn host(&self, address: SocketAddr) -> Arc<Host> {
        if let Some(host) = self.hosts.read().get(&address) {
            return host.clone();
        }
        self.hosts.write().entry(address).or_default().clone()
    }

    fn max_streams(&self) -> usize {
        self.http2.max_concurrent_streams as usize
    }

    async fn send_http1(
        &self,
        host: &Arc<Host>,
        address: SocketAddr,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let mut request = origin_form(request, address);
        for attempt in 0..UNSENT_TRIES {
            // The last try is always on a new connection.
            let idle = if attempt + 1 < UNSENT_TRIES {
                match host.http1.checkout(self.connect_timeout).await {
                    Some(sender) => Some(sender),
                    None => match host.own.checkout() {
                        Some(connection) => http1::take_over(connection).await,
                        None => None,
                    },
                }
            } else {
                None
            };
            let pooled = match idle {
                Some(sender) => sender,
                None => match Box::pin(self.open(host, address)).await? {
                    Opened::Http1(sender) => sender,
                    Opened::Http2(stream) => {
                        // `auto` learned HTTP/2 on this connection.
                        return match self.send_on_stream(stream, absolute_form(request)).await {
                            Ok(done) => done,
                            Err(Unsent(_)) => Err(PoolError::new(
                                PoolErrorKind::Reset,
                                "the new HTTP/2 connection closed before the request was sent",
                            )),
                        };
                    }
                },
            };
            let mut sender = pooled;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((hyper_body(response), http1_lease(host, sender))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(PoolError::sent(failed.into_error())),
                },
            }
        }
        Err(PoolError::new(
            PoolErrorKind::Reset,
            "every connection tried closed before the request was sent",
        ))
    }

    /// A bodiless request over our own exchange: an idle connection of its stack or a new one,
    /// the request head written whole, the response head read on this task.
    async fn send_own(
        &self,
        host: &Arc<Host>,
        address: SocketAddr,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let (mut parts, body) = origin_form(request, address).into_parts();
        for attempt in 0..UNSENT_TRIES {
            // The last try is always on a new connection.
            let idle = if attempt + 1 < UNSENT_TRIES {
                host.own.checkout()
            } else {
                None
            };
            let connection = match idle {
                Some(connection) => connection,
                None => {
                    let (stream, spoken) = Box::pin(self.connect(host, address)).await?;
                    if spoken == Spoken::Http2 {
                        // `auto` learned HTTP/2 on this connection.
                        let request = absolute_form(Request::from_parts(parts, body));
                        return Box::pin(self.first_on_new_http2(host, stream, request)).await;
                    }
                    http1::own_connection(stream)
                }
            };
            let home: Arc<dyn ConnectionHome> = host.clone();
            match connection.send(&mut parts, home).await {
                Ok(response) => {
                    let lease = Lease { held: Held::InBody };
                    return Ok((response.map(UpstreamBody::Http1), lease));
                }
                Err(SendError::Unsent(_)) => continue,
                Err(SendError::Failed(error)) => return Err(PoolError::sent_own(error)),
            }
        }
        Err(PoolError::new(
            PoolErrorKind::Reset,
            "every connection tried closed before the request was sent",
        ))
    }

    async fn send_http2(
        &self,
        host: &Arc<Host>,
        address: SocketAddr,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let mut request = absolute_form(request);
        for _ in 0..UNSENT_TRIES {
            let stream = match host.http2.checkout(self.max_streams()) {
                Some(stream) => stream,
                None => {
                    let _opening = host.http2.opening().await;
                    // Another request may have opened one while this one waited.
                    match host.http2.checkout(self.max_streams()) {
                        Some(stream) => stream,
                        None => match Box::pin(self.open(host, address)).await? {
                            Opened::Http2(stream) => stream,
                            Opened::Http1(mut sender) => {
                                // `auto` found an upstream that no longer offers HTTP/2.
                                let request = origin_form(request, address);
                                return match sender.try_send_request(request).await {
                                    Ok(response) => {
                                        Ok((hyper_body(response), http1_lease(host, sender)))
                                    }
                                    Err(failed) => Err(PoolError::sent(failed.into_error())),
                                };
                            }
                        },
                    }
                }
            };
            match self.send_on_stream(stream, request).await {
                Err(Unsent(unsent)) => request = unsent,
                Ok(done) => return done,
            }
        }
        Err(PoolError::new(
            PoolErrorKind::Reset,
            "every HTTP/2 connection tried closed before the request was sent",
        ))
    }

    /// Sends on one stream; a request that never left comes back for another connection.
    async fn send_on_stream(
        &self,
        stream: http2::Stream,
        request: Request<UpstreamRequestBody>,
    ) -> Result<Result<(Response<UpstreamBody>, Lease), PoolError>, Unsent> {
        let mut sender = stream.sender();
        match sender.try_send_request(request).await {
            Ok(response) => Ok(Ok((
                hyper_body(response),
                Lease {
                    held: Held::Http2(stream),
                },
            ))),
            Err(mut failed) => match failed.take_message() {
                Some(unsent) => Err(Unsent(unsent)),
                None => Ok(Err(PoolError::sent(failed.into_error()))),
            },
        }
    }

    /// A new connection, handshaken in the protocol it speaks; an HTTP/2 one joins the set with
    /// its first stream taken. Callers box it: its TCP, TLS and HTTP/2 handshake state is kilobytes,
    /// and inline it would grow every request's future — copied whole each time it moves — for a
    /// path most requests never take.
    async fn open(&self, host: &Arc<Host>, address: SocketAddr) -> Result<Opened, PoolError> {
        let (stream, spoken) = self.connect(host, address).await?;
        match spoken {
            Spoken::Http1 => http1::handshake(stream)
                .await
                .map(Opened::Http1)
                .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e)),
            Spoken::Http2 => http2::handshake(stream, &self.http2)
                .await
                .map(|sender| Opened::Http2(host.http2.add(sender)))
                .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e)),
        }
    }

    /// A new connection, not yet handshaken; what it speaks is remembered for `auto`.
    async fn connect(
        &self,
        host: &Arc<Host>,
        address: SocketAddr,
    ) -> Result<(Box<dyn connect::Stream>, Spoken), PoolError> {
        let (stream, spoken) = self.connector.connect(address, false).await?;
        host.speaks_h2
            .store(spoken == Spoken::Http2, Ordering::Relaxed);
        Ok((stream, spoken))
    }

    /// The first request of a new HTTP/2 connection, which then joins the set.
    async fn first_on_new_http2(
        &self,
        host: &Arc<Host>,
        stream: Box<dyn connect::Stream>,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let sender = http2::handshake(stream, &self.http2)
            .await
            .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e))?;
        match self.send_on_stream(host.http2.add(sender), request).await {
            Ok(done) => done,
            Err(Unsent(_)) => Err(PoolError::new(
                PoolErrorKind::Reset,
                "the new HTTP/2 connection closed before the request was sent",
            )),
        }
    }

    async fn upgrade(
        &self,
        address: SocketAddr,
        request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<UpstreamBody>, Lease), PoolError> {
        let (stream, _) = self.connector.connect(address, true).await?;
        let mut sender = http1::handshake(stream)
            .await
            .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e))?;
        let response = sender
            .send_request(origin_form(request, address))
            .await
            .map_err(PoolError::sent)?;
        Ok((
            hyper_body(response),
            Lease {
                held: Held::Upgrade,
            },
        ))
    }
}

fn hyper_body(response: Response<Incoming>) -> Response<UpstreamBody> {
    response.map(UpstreamBody::Hyper)
}

fn http1_lease(host: &Arc<Host>, sender: http1::Sender) -> Lease {
    Lease {
        held: Held::Http1 {
            host: host.clone(),
            sender: Some(sender),
        },
    }
}

enum Opened {
    Http1(http1::Sender),
    Http2(http2::Stream),
}

/// A request that never left: hyper handed it back.
struct Unsent(Request<UpstreamRequestBody>);

/// HTTP/1.1 on a connection the pool chose: the request line carries only path and query, and
/// `Host` names the site (the client's, which `forward` keeps; else the instance).
fn origin_form(
    mut request: Request<UpstreamRequestBody>,
    address: SocketAddr,
) -> Request<UpstreamRequestBody> {
    if !request.headers().contains_key(header::HOST) {
        let authority = request
            .uri()
            .authority()
            .map_or_else(|| address.to_string(), |a| a.to_string());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            request.headers_mut().insert(header::HOST, value);
        }
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    *request.version_mut() = Version::HTTP_11;
    request
}

/// HTTP/2: `:authority` is the site the client named (its `Host`, which HTTP/2 does not send
/// beside `:authority`), `:scheme` the upstream's.
fn absolute_form(mut request: Request<UpstreamRequestBody>) -> Request<UpstreamRequestBody> {
    let host = request.headers_mut().remove(header::HOST);
    let mut parts = request.uri().clone().into_parts();
    if parts.scheme.is_none() {
        parts.scheme = Some(http::uri::Scheme::HTTP);
    }
    if let Some(authority) = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
    {
        parts.authority = Some(authority);
    }
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_2;
    request
}
