//! One client connection, from its accept to its close: the TLS handshake, the stream guard,
//! and hyper's connection over it — HTTP/2 on ALPN `h2` or the h2c preface, HTTP/1.1 otherwise —
//! under the idle timeout and graceful shutdown.
//!
//! An HTTP/1.1 keep-alive connection idle for `limits.park_idle_after` is *parked*: hyper's
//! connection over it ends cleanly and is dropped with its buffers (a 16 KiB read buffer, an
//! 8 KiB write buffer, the dispatcher's state), and only the socket, the guard and the service
//! are kept until the client's next bytes come; then a new hyper connection is built over them.
//! nginx frees its request buffers on keep-alive the same way. The rebuild is the price: about
//! 25,000 instructions, paid by each request that finds its connection parked (measured in
//! docs/PERFORMANCE.md). HTTP/2 connections are never parked.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::edge_records::{record_refusal, record_stream_refusal};
use super::heap::HeapRelease;
use crate::body::{ConnectionActivity, StreamTracker};
use crate::clock::SharedClock;
use crate::config::Runtime;
use crate::config::raw::RawLimits;
use crate::identity::tls::{self, EdgeStream};
use crate::stage::context::{ClientAddress, ConnectionInfo};
use crate::state::GatewayState;
use crate::vocab::{Scheme, fields};
use crate::wire::{GuardReport, Guarded, HeadLimits, MessageStream};

/// The most header fields hyper's HTTP/1 parser takes when no cap is set (hyper's
/// `DEFAULT_MAX_HEADERS`).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

pub(super) async fn serve_connection(
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<GatewayState>,
    heap: Arc<HeapRelease>,
    mut shutdown: watch::Receiver<bool>,
    parked_gauge: Gauge,
) {
    // The TLS handshake, when the listener has TLS; a failed one is counted, logged and dropped.
    // Boxed: its state would otherwise size the connection's task for as long as it lives.
    let Some((stream, info)) = Box::pin(accept_connection(&state, index, stream, peer)).await
    else {
        return;
    };
    let activity = Arc::new(ConnectionActivity::new(state.clock.now()));
    // The strict HTTP/1.1 parser reads every byte before hyper does (crate::wire::guard).
    let report = Arc::new(GuardReport::with_stream_sink({
        let (state, info) = (state.clone(), info.clone());
        Box::new(move |refusal| record_stream_refusal(&state, &info, refusal))
    }));
    let connection_info = info.clone();
    // The limits in force at the accept, read in a block: the task keeps only what it needs of
    // them, where a copy of the whole (208 bytes) would be kept for as long as it lives.
    let (guarded, tracker, http1, idle, park_after, heap) = {
        let active = state.active.load();
        let limits = &active.config.limits;
        let walk = if info.alpn.as_deref() == Some("h2") {
            MessageStream::http2()
        } else {
            MessageStream::new(HeadLimits {
                max_uri_bytes: limits.max_uri_bytes,
                max_header_bytes: limits.max_header_bytes,
                max_headers: limits.max_headers,
            })
        };
        let guarded = Guarded::new(
            stream,
            walk,
            limits.header_read_timeout,
            activity.clone(),
            report.clone(),
        );
        let tracker = StreamTracker::new(
            activity.clone(),
            state.clock.clone(),
            limits.max_stream_duration,
        );
        let http1 = http1_builder(limits);
        let heap = limits.shrink_heap.then_some(heap);
        (
            guarded,
            tracker,
            http1,
            limits.idle_timeout,
            limits.park_idle_after,
            heap,
        )
    };
    let service = {
        let state = state.clone();
        service_fn(move |mut request: http::Request<Incoming>| {
            let state = state.clone();
            let info = info.clone();
            // From the request's arrival: the connection is busy, and its stream's time runs.
            let busy = tracker.begin();
            let deadline = tracker.max_duration().map(tokio::time::sleep);
            let connect = request.method() == http::Method::CONNECT;
            let asks_upgrade = connect || fields::holds(request.headers(), &http::header::UPGRADE);
            // For what outlives the response head on its own: a WebSocket relay, which only an
            // upgrade (HTTP/1.1) or an extended CONNECT (HTTP/2) can become. Not for every
            // request: the extension map is an allocation and a hash insert each time.
            if asks_upgrade {
                request.extensions_mut().insert(tracker.clone());
            }
            // An HTTP/1.1 upgrade that is not taken must close the connection: the guard stops
            // reading after an upgrade request, so nothing may follow it as HTTP/1.1.
            let upgrade = request.version() == http::Version::HTTP_11 && asks_upgrade;
            async move {
                let mut response = crate::pipeline::handle(&state, info, request).await;
                let status = response.status();
                if upgrade
                    && status != http::StatusCode::SWITCHING_PROTOCOLS
                    && !(connect && status.is_success())
                {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                // The connection stays busy until the body's last byte, not just its head.
                response.body_mut().stream(busy, deadline);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };

    let watch = Watch {
        activity: &activity,
        clock: &state.clock,
        idle,
        park_after,
        peer,
    };
    let mut draining = false;
    let mut io = TokioIo::new(guarded);
    let mut service = service;
    // The first pass waits for the connection's first bytes; each later one, parked.
    let mut parked = false;
    loop {
        // Plaintext may be h2c: the first bytes say which, read before any hyper connection.
        if !io.inner().speaks_http2() {
            let _counted = parked.then(|| ParkedCount::enter(&parked_gauge));
            if !watch.wait_for_bytes(io.inner_mut(), &mut shutdown).await {
                break;
            }
        }
        if io.inner().speaks_http2() {
            // Boxed: h2's connection state is large, and most connections are HTTP/1.1. Its
            // settings are those in force when the first bytes say HTTP/2, just after the accept.
            let connection = Box::pin(
                http2_builder(&state.active.load().config.limits).serve_connection(io, service),
            );
            let result = Box::pin(watch.drive(
                connection,
                |c| c.graceful_shutdown(),
                false,
                &mut shutdown,
                &mut draining,
            ))
            .await;
            watch.log_end(result);
            break;
        }
        // With upgrades, so a WebSocket route's 101 hands the connection to forward's relay.
        let mut connection = Box::new(http1.serve_connection(io, service).with_upgrades());
        // The watch's timers boxed too, so that they do not size the task while it is parked.
        let result = Box::pin(watch.drive(
            Pin::new(&mut *connection),
            |c| c.graceful_shutdown(),
            true,
            &mut shutdown,
            &mut draining,
        ))
        .await;
        activity.request_park(false);
        match connection.into_parts() {
            Some(parts) if parts.io.inner().is_parked() && !draining && result.is_ok() => {
                io = parts.io;
                service = parts.service;
                io.inner_mut().unread(&parts.read_buf);
                parked = true;
                if let Some(heap) = &heap {
                    heap.released();
                }
            }
            _ => {
                watch.log_end(result);
                break;
            }
        }
    }
    if let Some(refused) = report.take() {
        record_refusal(&state, &connection_info, refused, &report);
    }
    if let Some(heap) = &heap {
        heap.released();
    }
}

/// One connection counted parked, until dropped.
struct ParkedCount<'a>(&'a Gauge);

impl<'a> ParkedCount<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ParkedCount<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn http1_builder(limits: &RawLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The guard times a head from its first bytes (`limits.header_read_timeout`); hyper's
        // timer would also run while a keep-alive connection idles, closing it long before
        // `limits.idle_timeout`.
        .header_read_timeout(None)
        .keep_alive(true)
        // hyper's own ceiling sits above ours, as a backstop: the guard refuses a head past
        // our limits, with a problem body, before hyper reads it.
        .max_buf_size((limits.max_header_bytes + limits.max_uri_bytes).max(8192) * 2);
    // Likewise the field count — but a cap set here makes hyper allocate and fill an array of
    // that many slots for every request, where its default (100) is an uninitialized array on
    // the stack; the guard already refuses a head past `limits.max_headers`.
    if limits.max_headers > HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    builder
}

fn http2_builder(limits: &RawLimits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        // As for HTTP/1.1: above what the `tls` stage checks, so an oversized header block is
        // answered by the gateway, with a problem body and a record, not by h2 with a bare 431.
        .max_header_list_size(limits.http2_header_list_ceiling())
        // RFC 8441: WebSockets over HTTP/2 (`:method CONNECT`, `:protocol websocket`).
        .enable_connect_protocol()
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// What ended one pass of [`Watch::drive`]'s loop.
enum Woke {
    Ended(hyper::Result<()>),
    Shutdown,
    Timer,
}

/// What watches a connection while hyper serves it, or while it is parked: its activity, for
/// the idle timeout and parking.
struct Watch<'a> {
    activity: &'a ConnectionActivity,
    clock: &'a SharedClock,
    idle: Duration,
    /// `limits.park_idle_after`; zero: never park.
    park_after: Duration,
    peer: SocketAddr,
}

impl Watch<'_> {
    /// How long the connection has had nothing running.
    fn idle_for(&self) -> Duration {
        Duration::from_nanos(self.activity.idle_for(self.clock.now()))
    }

    /// Drives hyper's `connection` until it ends. Shutdown, or the idle timeout, starts its
    /// graceful shutdown (`drain`); a `parkable` one idle for `park_after` is asked to park,
    /// which ends it cleanly at its next idle read.
    async fn drive<C>(
        &self,
        mut connection: Pin<C>,
        drain: impl Fn(Pin<&mut C::Target>),
        parkable: bool,
        shutdown: &mut watch::Receiver<bool>,
        draining: &mut bool,
    ) -> hyper::Result<()>
    where
        C: std::ops::DerefMut,
        C::Target: Future<Output = hyper::Result<()>>,
    {
        // One timer for both checks, the idle one every quarter of the idle timeout and the
        // park one once: every wake of this task polls each branch, and a second timer was a
        // second poll on each of a request's wakes.
        let period = (self.idle / 4).max(Duration::from_millis(10));
        let mut park_pending = parkable && !self.park_after.is_zero();
        let first = if park_pending {
            period.min(self.park_after)
        } else {
            period
        };
        let timer = tokio::time::sleep(first);
        tokio::pin!(timer);
        let started = timer.deadline() - first;
        let mut idle_check_at = started + period;
        let mut park_at = started + self.park_after;
        // Looks at the shutdown version without registering anything.
        let probe = shutdown.clone();
        loop {
            let changed = shutdown.changed();
            tokio::pin!(changed);
            // The two side branches are polled for real on this pass's first poll, which leaves
            // the task's waker with each. After that a look that registers nothing (the timer's
            // state, the shutdown version) says whether either can be ready: polling both on
            // each of a request's wakes cost ~600 instructions a request (docs/PERFORMANCE.md).
            let mut registered = false;
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Ended(result));
                }
                if *draining {
                    return Poll::Pending;
                }
                if registered && !timer.is_elapsed() && !probe.has_changed().unwrap_or(true) {
                    return Poll::Pending;
                }
                registered = true;
                if changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Shutdown);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Woke::Timer),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match woke {
                Woke::Ended(result) => return result,
                Woke::Shutdown => {
                    *draining = true;
                    self.activity.request_park(false);
                    drain(connection.as_mut());
                }
                Woke::Timer => {
                    let now = timer.deadline();
                    if now >= idle_check_at {
                        idle_check_at = now + period;
                        if self.idle_for() > self.idle {
                            *draining = true;
                            self.activity.request_park(false);
                            drain(connection.as_mut());
                            continue;
                        }
                    }
                    if park_pending && now >= park_at {
                        let idle_for = self.idle_for();
                        if idle_for >= self.park_after {
                            // The next pass of the loop polls hyper, whose read then parks.
                            self.activity.request_park(true);
                            park_pending = false;
                        } else {
                            park_at = now + (self.park_after - idle_for);
                        }
                    }
                    let next = if park_pending {
                        idle_check_at.min(park_at)
                    } else {
                        idle_check_at
                    };
                    timer.as_mut().reset(next);
                }
            }
        }
    }

    /// With no hyper connection on the stream: waits for the client's next bytes (true), or for
    /// the idle timeout, shutdown or a read error (false: the connection closes). A head that
    /// has begun and does not end is timed by the guard, whose read then ends (true: the next
    /// hyper connection reads that end and closes).
    async fn wait_for_bytes(
        &self,
        guard: &mut Guarded<EdgeStream>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let resumed = std::future::poll_fn(|cx| guard.poll_resume(cx));
        let idle_left = self.idle.saturating_sub(self.idle_for());
        tokio::select! {
            resumed = resumed => resumed.is_ok(),
            _ = tokio::time::sleep(idle_left) => false,
            _ = shutdown.changed() => false,
        }
    }

    fn log_end(&self, result: hyper::Result<()>) {
        if let Err(error) = result {
            tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
        }
    }
}

/// Listener `index`'s name in `config` (its metric label), or `#index` for a listener handed in
/// beyond the config's.
pub(super) fn listener_name(config: &Runtime, index: usize) -> String {
    config
        .listeners
        .get(index)
        .map_or_else(|| format!("#{index}"), |l| l.name.clone())
}

/// The next connection's id: unique within the process, so ids from two gateways in one
/// process (the simulator runs several) never collide either.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Accepts a client connection on listener `index`: the TLS handshake when the listener has
/// TLS (with the certificates of the runtime in force now), bounded by
/// `limits.tls_handshake_timeout`.
/// A failed handshake is counted and logged and the connection dropped: it never reaches a
/// stage.
pub(super) async fn accept_connection(
    state: &GatewayState,
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(tls::EdgeStream, Arc<ConnectionInfo>)> {
    let _ = stream.set_nodelay(true);
    let active = state.active.load();
    let listener = active.config.listeners.get(index);
    let listener_tls = listener.and_then(|l| l.tls.clone());
    let name = listener_name(&active.config, index);
    let timeout = active.config.limits.tls_handshake_timeout;
    drop(active);
    let is_tls = listener_tls.is_some();
    match tls::accept(stream, listener_tls, timeout).await {
        Ok((io, tls)) => {
            if is_tls {
                state.sinks.metrics.identity.handshake(&name);
            }
            let alpn = match &io {
                tls::EdgeStream::Tls(stream) => stream
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| Arc::from(String::from_utf8_lossy(p).as_ref())),
                tls::EdgeStream::Plain(_) => None,
            };
            Some((
                io,
                Arc::new(ConnectionInfo {
                    peer,
                    scheme: if is_tls { Scheme::Https } else { Scheme::Http },
                    tls,
                    alpn,
                    id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
                    listener_requests: state.sinks.metrics.concurrency.listener(&name),
                    listener: index,
                    client_address: ClientAddress::of(
                        peer,
                        if is_tls { Scheme::Https } else { Scheme::Http },
                    ),
                    upstream_timer: Default::default(),
                }),
            ))
        }
        Err(failure) => {
            state
                .sinks
                .metrics
                .identity
                .handshake_failed(&name, failure.reason);
            tracing::info!(%peer, listener = %name, reason = failure.reason, error = %failure.error, "TLS handshake failed");
            None
        }
    }
}
