//! Fake upstreams: real servers on loopback — HTTP/1.1, h2c (HTTP/2 with prior knowledge), or
//! TLS with ALPN `h2` and/or `http/1.1` — whose behaviour — latency, errors, down, hang, reset
//! mid-body, slow body, flapping, gRPC answers (`super::grpc`) — is set per instance and can
//! change along a scenario's timeline. Each records what it received, for assertions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::answer_body::AnswerBody;
use super::grpc::{self, GrpcAnswer};

/// How an instance answers. Every field is optional; the default answers 200 at once.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Written as a one-key map: `{fixed: 5ms}`.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub latency: Option<Latency>,
    /// Share of requests answered with `error_status` (0.0–1.0).
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// Refuse connections (the listener is closed).
    #[serde(default)]
    pub down: bool,
    /// Accept and read the request, never answer.
    #[serde(default)]
    pub hang: bool,
    /// Send the head and part of the body, then drop the connection.
    #[serde(default)]
    pub reset_mid_body: bool,
    /// Send the body in 16 chunks with this pause between them.
    #[serde(default, with = "humantime_serde")]
    pub slow_body: Option<Duration>,
    /// Alternate between up and down every `flapping` period.
    #[serde(default, with = "humantime_serde")]
    pub flapping: Option<Duration>,
    /// Response body size in bytes.
    #[serde(default = "default_body_bytes")]
    pub body_bytes: usize,
    /// Answer as a gRPC server: length-prefixed messages, then `grpc-status` in trailers.
    /// `latency`, `hang`, `reset_mid_body` (after half the messages) and `error_rate` (a plain
    /// HTTP `error_status`, no gRPC framing, as from a proxy in front of the service) still
    /// apply; `slow_body` and `body_bytes` do not.
    #[serde(default)]
    pub grpc: Option<GrpcAnswer>,
    /// Sent as `x-upstream-marker` on every response (`simulator upstream --marker`), so a
    /// script can tell its own upstream from whatever else answers on a port. Not a scenario
    /// field.
    #[serde(skip)]
    pub marker: Option<String>,
}

fn default_error_status() -> u16 {
    500
}

fn default_body_bytes() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Latency {
    #[serde(with = "humantime_serde")]
    Fixed(Duration),
    Uniform {
        #[serde(with = "humantime_serde")]
        min: Duration,
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
    /// Heavy-tailed service time: `median` with log-space spread `sigma`.
    Lognormal {
        #[serde(with = "humantime_serde")]
        median: Duration,
        sigma: f64,
    },
}

impl Latency {
    pub fn sample(&self) -> Duration {
        match self {
            Latency::Fixed(d) => *d,
            Latency::Uniform { min, max } => {
                let span = max.saturating_sub(*min).as_nanos() as f64;
                *min + Duration::from_nanos((span * fastrand::f64()) as u64)
            }
            Latency::Lognormal { median, sigma } => {
                // Box–Muller: one standard normal from two uniforms.
                let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
                let u2 = fastrand::f64();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let nanos = median.as_nanos() as f64 * (sigma * z).exp();
                Duration::from_nanos(nanos.min(3.6e12) as u64)
            }
        }
    }
}

/// How an instance speaks, in the words of the gateway's `upstreams.NAME.protocol`: `http1`
/// (plaintext, or over TLS when given a TLS config), `h2c` (plaintext HTTP/2, prior knowledge
/// only), `h2` (TLS offering only ALPN `h2`) or `auto` (TLS offering `h2` and `http/1.1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Http1,
    H2c,
    H2,
    Auto,
}

impl Protocol {
    /// Whether this protocol is only spoken over TLS.
    pub fn needs_tls(self) -> bool {
        matches!(self, Protocol::H2 | Protocol::Auto)
    }

    /// What the TLS handshake offers.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::H2c | Protocol::H2 => &[b"h2"],
            Protocol::Auto => &[b"h2", b"http/1.1"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::H2 => "h2",
            Protocol::Auto => "auto",
        }
    }
}

/// How an instance serves connections: its protocol, and the TLS config when it speaks TLS
/// (from [`super::tls::FakeCa`]).
#[derive(Clone, Default)]
pub struct Serving {
    pub protocol: Protocol,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What an instance received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `HTTP/1.1` or `HTTP/2.0`: how the gateway spoke to it.
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_bytes: u64,
    /// Length-prefixed messages in the body, when it was a gRPC request (`content-type:
    /// application/grpc…`).
    pub grpc_messages: Option<u64>,
}

/// One fake upstream instance.
pub struct FakeInstance {
    pub address: SocketAddr,
    behaviour: watch::Sender<Behaviour>,
    received: Arc<Mutex<Vec<Received>>>,
    hits: Arc<AtomicU64>,
    _stop: watch::Sender<bool>,
}

impl FakeInstance {
    /// Starts on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> std::io::Result<FakeInstance> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await
    }

    pub async fn start_on(
        address: SocketAddr,
        behaviour: Behaviour,
    ) -> std::io::Result<FakeInstance> {
        Self::start_serving(address, behaviour, Serving::default()).await
    }

    /// Starts speaking `serving`'s protocol; `h2` and `auto` need its TLS config.
    pub async fn start_serving(
        address: SocketAddr,
        behaviour: Behaviour,
        serving: Serving,
    ) -> std::io::Result<FakeInstance> {
        if serving.protocol.needs_tls() && serving.tls.is_none() {
            return Err(std::io::Error::other(format!(
                "a fake upstream speaking {} needs a TLS config",
                serving.protocol.as_str()
            )));
        }
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (behaviour_tx, behaviour_rx) = watch::channel(behaviour);
        let (stop_tx, stop_rx) = watch::channel(false);
        let received = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicU64::new(0));
        tokio::spawn(serve(
            Some(listener),
            serving,
            address,
            behaviour_rx,
            stop_rx,
            received.clone(),
            hits.clone(),
        ));
        Ok(FakeInstance {
            address,
            behaviour: behaviour_tx,
            received,
            hits,
            _stop: stop_tx,
        })
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let _ = self.behaviour.send(behaviour);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests that reached this instance (answered or not).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Binds `address` again after it was released (down → up), with SO_REUSEADDR so TIME_WAIT
/// sockets of the previous life do not block it.
fn rebind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

fn is_up(behaviour: &Behaviour, started: tokio::time::Instant) -> bool {
    if behaviour.down {
        return false;
    }
    match behaviour.flapping {
        Some(period) if !period.is_zero() => {
            let phase = started.elapsed().as_nanos() / period.as_nanos();
            phase % 2 == 0
        }
        _ => true,
    }
}

async fn serve(
    mut listener: Option<TcpListener>,
    serving: Serving,
    address: SocketAddr,
    mut behaviour: watch::Receiver<Behaviour>,
    mut stop: watch::Receiver<bool>,
    received: Arc<Mutex<Vec<Received>>>,
    hits: Arc<AtomicU64>,
) {
    let started = tokio::time::Instant::now();
    loop {
        let up = is_up(&behaviour.borrow(), started);
        if !up {
            // Closing the listener makes connects fail with ECONNREFUSED, like a dead process.
            listener = None;
        } else if listener.is_none() {
            listener = rebind(address).ok();
        }
        let tick = tokio::time::sleep(Duration::from_millis(20));
        tokio::select! {
            _ = stop.changed() => return,
            _ = behaviour.changed() => continue,
            _ = tick => continue,
            accepted = async {
                match &listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                let Ok((stream, _)) = accepted else { continue };
                // As gRPC servers do: without it a small answer (a head, one message, the
                // trailers in separate writes) waits on the peer's delayed ACK.
                let _ = stream.set_nodelay(true);
                let behaviour = behaviour.clone();
                let received = received.clone();
                let hits = hits.clone();
                let serving = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let current = behaviour.borrow().clone();
                        let received = received.clone();
                        let hits = hits.clone();
                        async move { answer(req, current, received, hits).await }
                    });
                    connection(stream, &serving, service).await;
                });
            }
        }
    }
}

/// One accepted connection, in the instance's protocol: over TLS the ALPN the handshake agreed
/// decides (an `h2` instance whose client offered no ALPN speaks HTTP/2 all the same).
async fn connection<S>(stream: TcpStream, serving: &Serving, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<AnswerBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(config) = &serving.tls else {
        speak(stream, serving.protocol == Protocol::H2c, service).await;
        return;
    };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config.clone())
        .accept(stream)
        .await
    else {
        return;
    };
    let h2 = match tls.get_ref().1.alpn_protocol() {
        Some(agreed) => agreed == b"h2",
        None => serving.protocol == Protocol::H2,
    };
    speak(tls, h2, service).await;
}

async fn speak<I, S>(io: I, h2: bool, service: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<AnswerBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(io);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }
}

async fn answer(
    req: Request<Incoming>,
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<Received>>>,
    hits: Arc<AtomicU64>,
) -> Result<Response<AnswerBody>, std::io::Error> {
    hits.fetch_add(1, Ordering::Relaxed);
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.to_string());
    let version = req.version();
    let headers = req.headers().clone();
    let mut deframer = headers
        .get(http::header::CONTENT_TYPE)
        .filter(|v| gateway::vocab::grpc::is_grpc_content_type(v))
        .map(|_| (grpc::Deframer::default(), 0u64));
    let mut body = req.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                let data = f.data_ref().map_or(&[][..], |d| &d[..]);
                body_bytes += data.len() as u64;
                if let Some((deframer, count)) = deframer.as_mut() {
                    *count += deframer.push(data).len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    if let Ok(mut r) = received.lock() {
        r.push(Received {
            method,
            target,
            version,
            headers,
            body_bytes,
            grpc_messages: deframer.map(|(_, count)| count),
        });
    }
    if behaviour.hang {
        std::future::pending::<()>().await;
    }
    if let Some(latency) = &behaviour.latency {
        tokio::time::sleep(latency.sample()).await;
    }
    let failed = behaviour.error_rate > 0.0 && fastrand::f64() < behaviour.error_rate;
    let status = if failed {
        StatusCode::from_u16(behaviour.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::OK
    };
    if let Some(answer) = behaviour.grpc.as_ref().filter(|_| !failed) {
        let (headers, body) = grpc::answer(answer, behaviour.reset_mid_body);
        let mut response = Response::new(body);
        *response.headers_mut() = headers;
        mark(&mut response, &behaviour);
        return Ok(response);
    }
    let payload = Bytes::from(vec![b'x'; behaviour.body_bytes]);
    let body: AnswerBody = if behaviour.reset_mid_body || behaviour.slow_body.is_some() {
        let chunks = 16usize;
        let size = behaviour.body_bytes.div_ceil(chunks).max(1);
        let pause = behaviour.slow_body.unwrap_or_default();
        let reset = behaviour.reset_mid_body;
        let stream = futures_util::stream::unfold(0usize, move |sent| {
            let payload = payload.clone();
            async move {
                if sent >= payload.len() {
                    return None;
                }
                if reset && sent >= payload.len() / 2 {
                    return Some((Err(std::io::Error::other("reset mid-body")), payload.len()));
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                let end = (sent + size).min(payload.len());
                Some((Ok(Frame::data(payload.slice(sent..end))), end))
            }
        });
        StreamBody::new(stream).boxed()
    } else {
        http_body_util::Full::new(payload)
            .map_err(|e| match e {})
            .boxed()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    mark(&mut response, &behaviour);
    if behaviour.reset_mid_body {
        // A declared length the body never reaches: the client sees a truncated message.
        response.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(behaviour.body_bytes),
        );
    }
    Ok(response)
}

fn mark(response: &mut Response<AnswerBody>, behaviour: &Behaviour) {
    if let Some(marker) = behaviour.marker.as_deref() {
        if let Ok(value) = http::HeaderValue::from_str(marker) {
            response.headers_mut().insert("x-upstream-marker", value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_samples_stay_in_their_shape() {
        let fixed = Latency::Fixed(Duration::from_millis(5));
        assert_eq!(fixed.sample(), Duration::from_millis(5));
        let uniform = Latency::Uniform {
            min: Duration::from_millis(1),
            max: Duration::from_millis(3),
        };
        for _ in 0..1000 {
            let s = uniform.sample();
            assert!(s >= Duration::from_millis(1) && s <= Duration::from_millis(3));
        }
        let lognormal = Latency::Lognormal {
            median: Duration::from_millis(10),
            sigma: 0.5,
        };
        let mut samples: Vec<Duration> = (0..2001).map(|_| lognormal.sample()).collect();
        samples.sort();
        let median = samples[1000];
        assert!(
            median > Duration::from_millis(8) && median < Duration::from_millis(12),
            "{median:?}"
        );
    }
}
