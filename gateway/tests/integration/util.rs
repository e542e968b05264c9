//! Test harness: a recording upstream, an in-process gateway, a plain HTTP client, and
//! `eventually` (in `eventually.rs`, re-exported here) for waiting on a condition.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::record::RequestRecord;
use gateway::{GatewayHandle, StartOptions};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub use super::eventually::{eventually, eventually_blocking};

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as the upstream saw them.
    pub target: String,
    pub headers: HeaderMap,
    pub body_bytes: u64,
    /// The body ended as its framing says (false: it was cut or failed mid-way).
    pub body_complete: bool,
    /// The gateway's side of the connection: equal across requests when the pool reuses it.
    pub peer: SocketAddr,
}

/// A real HTTP/1.1 upstream on loopback. Behaviour is chosen per request by the
/// `x-test-behaviour` header: `slow:<ms>` answers late, `reset` closes without answering,
/// `leaky` answers with headers the gateway must strip; otherwise it answers 200 `upstream ok`.
#[derive(Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let address = listener.local_addr().expect("upstream address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let recorded = recorded.clone();
                        async move { answer(req, peer, recorded).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { address, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received a request")
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    recorded: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let behaviour = req
        .headers()
        .get("x-test-behaviour")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.to_string());
    let headers = req.headers().clone();
    // Count the body frame by frame: never hold it whole.
    let mut body = req.into_body();
    let mut body_bytes = 0u64;
    let mut body_complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => {
                body_complete = false;
                break;
            }
        }
    }
    recorded.lock().expect("seen lock").push(Seen {
        method,
        target,
        headers,
        body_bytes,
        body_complete,
        peer,
    });
    if let Some(ms) = behaviour.strip_prefix("slow:") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
    }
    if behaviour == "reset" {
        return Err(std::io::Error::other("reset on purpose"));
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"upstream ok")));
    if behaviour == "leaky" {
        let h = response.headers_mut();
        h.insert("server", "leaky/1.0".parse().expect("value"));
        h.insert("x-powered-by", "php".parse().expect("value"));
        h.insert("x-internal-debug", "secret".parse().expect("value"));
        h.insert("x-user-id", "leaked".parse().expect("value"));
        h.insert("access-control-allow-origin", "*".parse().expect("value"));
        h.insert("x-kept", "yes".parse().expect("value"));
        // Hop-by-hop: this connection's, and a field the `Connection` field nominates.
        h.insert(
            "connection",
            "keep-alive, x-hop-field".parse().expect("value"),
        );
        h.insert("x-hop-field", "1".parse().expect("value"));
        h.insert("keep-alive", "timeout=5".parse().expect("value"));
    }
    Ok(response)
}

/// The reference fixture with its upstream addresses pointed at `upstream` and its listeners
/// and admin on port 0, access log off.
pub fn reference_config(upstream: SocketAddr) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/reference.yaml"
    ))
    .expect("read fixtures/reference.yaml");
    point_at(&text, upstream)
}

/// Rewrites every `127.0.0.1:<port>` in a config to `upstream`, and turns off the access log.
pub fn point_at(text: &str, upstream: SocketAddr) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if let Some(pos) = line.find("127.0.0.1:") {
            let end = line[pos + 10..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(line.len(), |e| pos + 10 + e);
            out.push_str(&line[..pos]);
            out.push_str(&upstream.to_string());
            out.push_str(&line[end..]);
        } else if line.starts_with("access_log:") {
            continue;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str("access_log: off\n");
    out
}

pub struct TestGateway {
    pub handle: GatewayHandle,
    pub records: broadcast::Receiver<Arc<RequestRecord>>,
    pub client: Client<HttpConnector, BoxBody<Bytes, std::io::Error>>,
}

impl TestGateway {
    pub async fn start(config_yaml: &str) -> TestGateway {
        Self::start_with_clock(config_yaml, gateway::clock::SystemClock::shared()).await
    }

    /// A gateway whose time-dependent rules read `clock` (a `ManualClock` in virtual-time tests).
    pub async fn start_with_clock(
        config_yaml: &str,
        clock: gateway::clock::SharedClock,
    ) -> TestGateway {
        let runtime = gateway::config::load_str("<test>", config_yaml).unwrap_or_else(|d| {
            panic!(
                "test config invalid:\n{}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let handle = gateway::start(
            runtime,
            StartOptions {
                listeners: Some(vec![listener]),
                admin_listener: Some(admin),
                clock,
            },
        )
        .await
        .expect("start gateway");
        let records = handle.subscribe();
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestGateway {
            handle,
            records,
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.handle.address(), path)
    }

    pub async fn send(&self, request: Request<BoxBody<Bytes, std::io::Error>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("the gateway answers within 30 s")
            .expect("the gateway answers");
        Reply::read(response).await
    }

    pub async fn get_absolute(&self, url: &str) -> Reply {
        self.send(request("GET", url).body(empty()).expect("request"))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(
            request("GET", &self.url(path))
                .body(empty())
                .expect("request"),
        )
        .await
    }

    /// The next record the gateway emits.
    pub async fn record(&mut self) -> Arc<RequestRecord> {
        tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("a record within 10 s")
            .expect("record channel open")
    }
}

pub fn request(method: &str, url: &str) -> http::request::Builder {
    Request::builder().method(method).uri(url)
}

pub fn empty() -> BoxBody<Bytes, std::io::Error> {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, std::io::Error> {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(response: Response<Incoming>) -> Reply {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn problem(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "a stop answers with problem+json"
        );
        serde_json::from_slice(&self.body).expect("problem body is JSON")
    }
}

/// Sends raw bytes on a fresh connection and returns everything the gateway wrote back until it
/// closed the connection or `wait` passed.
pub async fn raw_exchange(address: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Whether the gateway closes `stream` within `wait`. What it writes first is read past: over
/// ALPN `h2` its connection preface (a SETTINGS frame) goes out at once.
pub async fn closes_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, closed).await.is_ok()
}
