//! Fakes for the resilience tests: upstreams whose behaviour is switched while the test runs
//! (answer, fail with a status, reset, hang, answer slowly, reset mid-body, echo a WebSocket), a
//! health endpoint that can flap, and helpers to read the admin endpoints and to start a gateway
//! on a manual clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::clock::ManualClock;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::util::TestGateway;

/// What a fake upstream does with the next requests (its health endpoint aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with its name as the body.
    Ok,
    /// This status, with its name as the body.
    Status(u16),
    /// Closes the connection without answering.
    Reset,
    /// Never answers.
    Hang,
    /// Answers 200 after this long.
    Slow(Duration),
    /// Sends the head and part of the body, then breaks the connection.
    ResetMidBody,
}

struct Shared {
    name: String,
    mode: Mutex<Mode>,
    health: AtomicU16,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    /// `upgrade` header values of requests received.
    upgrades: Mutex<Vec<String>>,
}

/// A fake upstream on loopback. `/healthz` answers with the configured health status; every
/// other path follows the mode. A WebSocket upgrade is accepted on any path and echoes what it
/// receives in upper case.
#[derive(Clone)]
pub struct Fake {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl Fake {
    pub async fn start(name: &str) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let address = listener.local_addr().expect("fake address");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            mode: Mutex::new(Mode::Ok),
            health: AtomicU16::new(200),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            upgrades: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Fake { address, shared }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = mode;
    }

    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// Requests received, health checks aside.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    pub fn health_hits(&self) -> usize {
        self.shared.health_hits.load(Ordering::SeqCst)
    }

    pub fn upgrades(&self) -> Vec<String> {
        self.shared.upgrades.lock().expect("upgrades").clone()
    }
}

type FakeBody = BoxBody<Bytes, std::io::Error>;

fn text(status: u16, body: String) -> Response<FakeBody> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r
}

async fn answer(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<FakeBody>, std::io::Error> {
    if req.uri().path() == "/healthz" {
        shared.health_hits.fetch_add(1, Ordering::SeqCst);
        return Ok(text(shared.health.load(Ordering::SeqCst), "health".into()));
    }
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(upgrade) = req.headers().get("upgrade") {
        let upgrade = upgrade.to_str().unwrap_or("").to_string();
        shared
            .upgrades
            .lock()
            .expect("upgrades")
            .push(upgrade.clone());
        if upgrade.eq_ignore_ascii_case("websocket") {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let upper = buf[..n].to_ascii_uppercase();
                            if io.write_all(&upper).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut r = text(101, String::new());
            r.headers_mut()
                .insert("upgrade", "websocket".parse().expect("value"));
            r.headers_mut()
                .insert("connection", "upgrade".parse().expect("value"));
            return Ok(r);
        }
    }
    // Read the body: a retried request must not carry one.
    let _ = req.into_body().collect().await;
    let mode = shared.mode.lock().expect("mode").clone();
    match mode {
        Mode::Ok => Ok(text(200, shared.name.clone())),
        Mode::Status(status) => Ok(text(status, shared.name.clone())),
        Mode::Reset => Err(std::io::Error::other("reset on purpose")),
        Mode::Hang => std::future::pending().await,
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            Ok(text(200, shared.name.clone()))
        }
        Mode::ResetMidBody => {
            // The head and a first chunk go out; the break comes a moment later.
            let frames = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from(vec![b'x'; 1000]))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("broken mid-body on purpose")), 2))
                    }
                    _ => None,
                }
            });
            let body = StreamBody::new(frames).boxed();
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-length", "100000".parse().expect("value"));
            Ok(r)
        }
    }
}

/// Starts a gateway whose rules read `clock`: ejections, breakers and budgets move only when
/// the test advances it.
pub async fn gateway_on_clock(config: &str, clock: Arc<ManualClock>) -> TestGateway {
    TestGateway::start_with_clock(config, clock).await
}

/// A config parsed for `GatewayHandle::reload`.
pub fn runtime(config: &str) -> gateway::config::Runtime {
    gateway::config::load_str("<test>", config).unwrap_or_else(|d| {
        panic!(
            "test config invalid:\n{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// An admin endpoint's JSON.
pub async fn admin_json(gw: &TestGateway, path: &str) -> serde_json::Value {
    let admin = gw.handle.admin_address().expect("admin address");
    let reply = gw.get_absolute(&format!("http://{admin}{path}")).await;
    serde_json::from_slice(&reply.body).expect("admin JSON")
}

pub async fn metrics(gw: &TestGateway) -> String {
    let admin = gw.handle.admin_address().expect("admin address");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The instance entry of `/upstreams` for `upstream` at `address`.
pub async fn instance(gw: &TestGateway, upstream: &str, address: SocketAddr) -> serde_json::Value {
    let all = admin_json(gw, "/upstreams").await;
    let up = all["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["name"] == upstream)
        .unwrap_or_else(|| panic!("no upstream {upstream} in {all}"))
        .clone();
    up["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["address"] == address.to_string())
        .unwrap_or_else(|| panic!("no instance {address} in {up}"))
        .clone()
}
