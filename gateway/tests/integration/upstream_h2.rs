//! HTTP/2 toward upstreams: `protocol: h2c`, `h2` and `auto` against real hyper HTTP/2 servers
//! (cleartext and TLS with ALPN), streams multiplexed on few connections, a stream the upstream
//! refuses retried, and a GOAWAY under load that fails no request.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::vocab::StageId;
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::identity_support::Pki;
use super::util::{TestGateway, empty, request};

/// What an HTTP/2 upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    path: String,
    authority: Option<String>,
    /// The gateway's side of the connection.
    peer: SocketAddr,
}

/// A real HTTP/2 (or, with `http1_only`, HTTP/1.1) upstream: answers 200 `h2 upstream ok` after
/// `delay`, records each request, and on `goaway` sends a graceful GOAWAY on every connection
/// it has open (new connections are still accepted).
#[derive(Clone)]
struct H2Upstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    goaway: watch::Sender<u64>,
}

struct Options {
    delay: Duration,
    /// TLS with ALPN: which protocols the upstream offers.
    tls: Option<(Arc<Pki>, Vec<Vec<u8>>)>,
}

impl H2Upstream {
    async fn start(options: Options) -> H2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (goaway, _) = watch::channel(0u64);
        let upstream = H2Upstream {
            address,
            seen: seen.clone(),
            goaway: goaway.clone(),
        };
        let acceptor = options.tls.map(|(pki, alpn)| tls_acceptor(&pki, alpn));
        let delay = options.delay;
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let goaway = goaway.subscribe();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().expect("seen").push(Seen {
                                version: req.version(),
                                path: req.uri().path().to_string(),
                                authority: req.uri().authority().map(|a| a.to_string()),
                                peer,
                            });
                            tokio::time::sleep(delay).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"h2 upstream ok",
                            ))))
                        }
                    });
                    match acceptor {
                        None => serve_h2(TokioIo::new(tcp), service, goaway).await,
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            if h2 {
                                serve_h2(TokioIo::new(tls), service, goaway).await;
                            } else {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        upstream
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    fn connections(&self) -> usize {
        self.seen()
            .iter()
            .map(|s| s.peer)
            .collect::<HashSet<_>>()
            .len()
    }

    fn send_goaway(&self) {
        self.goaway.send_modify(|n| *n += 1);
    }
}

async fn serve_h2<I, S>(io: I, service: S, mut goaway: watch::Receiver<u64>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = goaway.changed() => {}
    }
    // Graceful: GOAWAY, the streams in flight finish, then the connection closes.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

fn tls_acceptor(pki: &Pki, alpn: Vec<Vec<u8>>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_file_iter(pki.path("upstream.pem"))
                .expect("open")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert"),
            PrivateKeyDer::from_pem_file(pki.path("upstream.key")).expect("key"),
        )
        .expect("server config");
    config.alpn_protocols = alpn;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn config(address: SocketAddr, upstream_settings: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  grpcish:
    instances: ["{address}"]
{upstream_settings}
routes:
  - {{ name: all, match: {{ path: /* }}, upstream: grpcish }}
"#
    )
}

fn tls_settings(pki: &Pki, protocol: &str) -> String {
    format!(
        "    protocol: {protocol}\n    tls: {{ ca_file: \"{}\", server_name: upstream.localhost }}",
        pki.path_str("ca.pem")
    )
}

/// Sends `count` GETs, `concurrency` at a time, and returns every status.
async fn load(gw: &TestGateway, count: usize, concurrency: usize) -> Vec<u16> {
    LoadShell {
        client: gw.client.clone(),
        url: gw.url("/load"),
    }
    .run(count, concurrency)
    .await
}

#[tokio::test]
async fn h2c_upstreams_get_http2_with_the_clients_authority() {
    let upstream = H2Upstream::start(Options {
        delay: Duration::ZERO,
        tls: None,
    })
    .await;
    let mut gw = TestGateway::start(&config(upstream.address, "    protocol: h2c")).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/hello"))
                .header("host", "api.example.com")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, "h2 upstream ok");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, Version::HTTP_2);
    assert_eq!(seen[0].authority.as_deref(), Some("api.example.com"));
    let record = gw.record().await;
    assert_eq!(record.stopped_at, None);
    assert!(record.completed);
}

#[tokio::test]
async fn concurrent_requests_share_connections_up_to_max_concurrent_streams() {
    // Slow answers keep all 40 requests in flight at once.
    let upstream = H2Upstream::start(Options {
        delay: Duration::from_millis(400),
        tls: None,
    })
    .await;
    let gw = TestGateway::start(&config(
        upstream.address,
        "    protocol: h2c\n    http2: { max_concurrent_streams: 10 }",
    ))
    .await;
    let statuses = load(&gw, 40, 40).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(upstream.seen().iter().all(|s| s.version == Version::HTTP_2));
    // 40 streams at 10 a connection: four connections, not one per request.
    let connections = upstream.connections();
    assert!(
        (4..=6).contains(&connections),
        "40 concurrent streams used {connections} connections"
    );
    // Sequential requests afterwards reuse what is open.
    let before = upstream.connections();
    let statuses = load(&gw, 10, 1).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(upstream.connections(), before);
}

#[tokio::test]
async fn h2_over_tls_is_agreed_by_alpn_and_auto_falls_back_to_http1() {
    let pki = Arc::new(Pki::generate());
    let both = H2Upstream::start(Options {
        delay: Duration::ZERO,
        tls: Some((pki.clone(), vec![b"h2".to_vec(), b"http/1.1".to_vec()])),
    })
    .await;
    let http1_only = H2Upstream::start(Options {
        delay: Duration::ZERO,
        tls: Some((pki.clone(), vec![b"http/1.1".to_vec()])),
    })
    .await;

    for protocol in ["h2", "auto"] {
        let gw = TestGateway::start(&config(both.address, &tls_settings(&pki, protocol))).await;
        assert_eq!(gw.get("/x").await.status, 200, "{protocol}");
        assert_eq!(
            both.seen().last().expect("seen").version,
            Version::HTTP_2,
            "{protocol}"
        );
    }

    let gw = TestGateway::start(&config(http1_only.address, &tls_settings(&pki, "auto"))).await;
    assert_eq!(gw.get("/x").await.status, 200);
    assert_eq!(gw.get("/x").await.status, 200);
    let seen = http1_only.seen();
    assert!(
        seen.iter().all(|s| s.version == Version::HTTP_11),
        "{seen:?}"
    );

    // `h2` insists: an upstream that does not offer it is unreachable, never spoken to in 1.1.
    let mut gw = TestGateway::start(&config(http1_only.address, &tls_settings(&pki, "h2"))).await;
    let before = http1_only.seen().len();
    let reply = gw.get("/x").await;
    assert_eq!(reply.status, 502);
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-unreachable"));
    assert_eq!(http1_only.seen().len(), before);
}

#[tokio::test]
async fn a_goaway_under_load_fails_no_request() {
    let upstream = H2Upstream::start(Options {
        delay: Duration::from_millis(20),
        tls: None,
    })
    .await;
    let gw = TestGateway::start(&config(
        upstream.address,
        "    protocol: h2c\n    http2: { max_concurrent_streams: 8 }",
    ))
    .await;
    let shell = LoadShell {
        client: gw.client.clone(),
        url: gw.url("/load"),
    };
    let sending = tokio::spawn(shell.run(400, 16));
    // GOAWAY on every open connection, three times while the load runs.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        upstream.send_goaway();
    }
    let statuses = sending.await.expect("load");
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert_eq!(statuses.len(), 400);
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    // The GOAWAYs did move the load to new connections.
    assert!(upstream.connections() > 2, "{}", upstream.connections());
}

/// A closed-loop load of GETs that owns its client, so it can run on its own task.
struct LoadShell {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
    >,
    url: String,
}

impl LoadShell {
    async fn run(self, count: usize, concurrency: usize) -> Vec<u16> {
        let next = Arc::new(AtomicUsize::new(0));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let client = self.client.clone();
            let url = self.url.clone();
            let next = next.clone();
            let statuses = statuses.clone();
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let req = request("GET", &url).body(empty()).expect("request");
                    let status = match client.request(req).await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    statuses.lock().expect("statuses").push(status);
                }
            }));
        }
        for worker in workers {
            worker.await.expect("worker");
        }
        // Every worker has ended: the list has one owner again.
        Arc::try_unwrap(statuses)
            .expect("workers done")
            .into_inner()
            .expect("statuses")
    }
}

/// A raw HTTP/2 server (the `h2` crate) that refuses the first stream of every connection with
/// `REFUSED_STREAM` and answers the others.
async fn refusing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                let first = AtomicBool::new(true);
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    if first.swap(false, Ordering::Relaxed) {
                        counter.fetch_add(1, Ordering::Relaxed);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let response = Response::new(());
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(Bytes::from_static(b"second stream ok"), true);
                    }
                }
            });
        }
    });
    (address, refused)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_without_a_retry_policy() {
    let (address, refused) = refusing_upstream().await;
    let mut gw = TestGateway::start(&config(address, "    protocol: h2c")).await;
    let reply = gw.get("/refuse-me-once").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, "second stream ok");
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    let record = gw.record().await;
    assert_eq!(record.retries, 1);
    assert_eq!(record.stopped_at, None);

    // A request with a body cannot be sent twice (it streamed): the refusal is the answer.
    let mut gw = TestGateway::start(&config(address, "    protocol: h2c")).await;
    let reply = gw
        .send(
            request("POST", &gw.url("/with-body"))
                .body(super::util::full("payload"))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 502);
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-reset"));
}

#[tokio::test]
async fn health_checks_and_retries_work_over_http2_as_over_http1() {
    let upstream = H2Upstream::start(Options {
        delay: Duration::ZERO,
        tls: None,
    })
    .await;
    // An address nothing listens on: connections to it are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let yaml = format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: ["{live}", "{dead}"]
    protocol: h2c
    retries: {{ attempts: 1 }}
    health_check: {{ path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
routes:
  - {{ name: all, match: {{ path: /* }}, upstream: svc }}
"#,
        live = upstream.address,
    );
    let gw = TestGateway::start(&yaml).await;
    // Before the checks have taken the dead instance out, a request sent to it is retried on the
    // live one; after, none goes there. Either way every answer is a 200.
    let statuses = load(&gw, 20, 2).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    super::util::eventually(
        "health checks reach the upstream over HTTP/2",
        Duration::from_secs(5),
        async || {
            let checks = upstream
                .seen()
                .iter()
                .filter(|s| s.path == "/healthz")
                .count();
            if checks >= 2 {
                Ok(())
            } else {
                Err(format!("{checks} checks"))
            }
        },
    )
    .await;
    assert!(upstream.seen().iter().all(|s| s.version == Version::HTTP_2));
    // The dead instance is out of rotation now: requests go straight to the live one.
    let mut gw = gw;
    let reply = gw.get("/after").await;
    assert_eq!(reply.status, 200);
    let record = loop {
        let record = gw.record().await;
        if record.path == "/after" {
            break record;
        }
    };
    assert_eq!(record.retries, 0);
    assert_eq!(record.upstream_instance, Some(upstream.address));
}
