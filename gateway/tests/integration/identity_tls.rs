//! TLS at the edge with real handshakes: ALPN h2 and http/1.1, certificates by SNI, client
//! certificates per host and per route, 421 for a request naming an mTLS host on another host's
//! connection, handshake failures counted (never reaching a stage), certificates swapped with
//! the config; and TLS toward an upstream, with a client certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::vocab::StageId;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use super::identity_support::*;
use super::util::*;

fn tls_config(pki: &Pki, upstream: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: "127.0.0.1:0"
    tls:
      client_ca_file: "{ca}"
      certificates:
        - {{ cert_file: "{server}", key_file: "{server_key}", hosts: [localhost, api.localhost] }}
        - {{ cert_file: "{payments}", key_file: "{payments_key}", hosts: [payments.localhost], client_auth: optional }}
        - {{ cert_file: "{server}", key_file: "{server_key}", hosts: [secure.localhost], client_auth: required }}
access_log: off
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - name: payments
    match: {{ path: /api/payments/* }}
    upstream: svc
    auth: {{ client_cert: true, credentials: [] }}
  - name: users
    match: {{ path: /api/users/* }}
    upstream: svc
  - name: catch-all
    match: {{ path: /* }}
    respond: {{ status: 404 }}
"#,
        ca = pki.path_str("ca.pem"),
        server = pki.path_str("server.pem"),
        server_key = pki.path_str("server.key"),
        payments = pki.path_str("payments.pem"),
        payments_key = pki.path_str("payments.key"),
    )
}

async fn metrics(gw: &TestGateway) -> String {
    let admin = gw.handle.admin_address().expect("admin");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    String::from_utf8(reply.body.to_vec()).expect("metrics text")
}

/// Waits (bounded) for `gatehouse_tls_handshake_failures_total{listener="edge",reason=…}`.
async fn handshake_failures(gw: &TestGateway, reason: &str) -> u64 {
    let line =
        format!("gatehouse_tls_handshake_failures_total{{listener=\"edge\",reason=\"{reason}\"}} ");
    eventually(
        &format!("a {reason} handshake failure is counted"),
        Duration::from_secs(5),
        async || {
            let text = metrics(gw).await;
            let counted = text
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|n| n.trim().parse().ok());
            counted.ok_or_else(|| {
                text.lines()
                    .filter(|l| l.starts_with("gatehouse_tls_"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        },
    )
    .await
}

#[tokio::test]
async fn http2_and_http1_are_negotiated_by_alpn_and_reach_the_upstream_as_https() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let address = gw.handle.address();
    for (alpn, want) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], Some(b"h2".to_vec())),
        (&[b"http/1.1".as_slice()][..], Some(b"http/1.1".to_vec())),
        (&[][..], None),
    ] {
        let client = tls_client(&pki, ClientCert::None, alpn);
        let (reply, negotiated) = tls_get(
            address,
            &client,
            "api.localhost",
            "api.localhost",
            "/api/users/1",
            &[],
        )
        .await
        .expect("exchange");
        assert_eq!(reply.status, 200);
        assert_eq!(negotiated, want);
        assert_eq!(upstream.last().headers["x-forwarded-proto"], "https");
        assert_eq!(gw.record().await.status, 200);
    }
}

#[tokio::test]
async fn the_certificate_is_picked_by_sni() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let client = tls_client(&pki, ClientCert::Trusted, &[b"http/1.1"]);
    // payments.pem names only payments.localhost and server.pem never does: the client's
    // verification passes only if the gateway picked by SNI.
    for sni in ["payments.localhost", "api.localhost", "localhost"] {
        let (reply, _) = tls_get(gw.handle.address(), &client, sni, sni, "/api/users/1", &[])
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(reply.status, 200, "{sni}");
    }
}

#[tokio::test]
async fn a_route_that_requires_a_client_certificate_refuses_connections_without_one() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let address = gw.handle.address();
    let anonymous = tls_client(&pki, ClientCert::None, &[b"h2", b"http/1.1"]);
    let (reply, _) = tls_get(
        address,
        &anonymous,
        "payments.localhost",
        "payments.localhost",
        "/api/payments/charge",
        &[],
    )
    .await
    .expect("the handshake succeeds: the host asks for a certificate but does not require one");
    assert_refused(&reply, 403, "authn", "client-cert-required");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Authn));
    assert_eq!(record.reason.as_deref(), Some("client-cert-required"));
    assert!(upstream.seen().is_empty());

    let trusted = tls_client(&pki, ClientCert::Trusted, &[b"h2", b"http/1.1"]);
    let (reply, _) = tls_get(
        address,
        &trusted,
        "payments.localhost",
        "payments.localhost",
        "/api/payments/charge",
        &[],
    )
    .await
    .expect("exchange");
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn an_untrusted_client_certificate_fails_the_handshake_and_is_counted() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let rogue = tls_client(&pki, ClientCert::Rogue, &[b"http/1.1"]);
    let result = tls_get(
        gw.handle.address(),
        &rogue,
        "payments.localhost",
        "payments.localhost",
        "/api/payments/charge",
        &[],
    )
    .await;
    assert!(
        result.is_err(),
        "a certificate from an untrusted CA is refused"
    );
    assert_eq!(handshake_failures(&gw, "bad-client-cert").await, 1);
    assert!(upstream.seen().is_empty());
    assert!(
        gw.records.try_recv().is_err(),
        "a failed handshake never reaches a stage"
    );
}

#[tokio::test]
async fn a_host_that_requires_client_certificates_refuses_handshakes_without_one() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let anonymous = tls_client(&pki, ClientCert::None, &[b"http/1.1"]);
    let result = tls_get(
        gw.handle.address(),
        &anonymous,
        "secure.localhost",
        "secure.localhost",
        "/api/users/1",
        &[],
    )
    .await;
    assert!(result.is_err());
    assert_eq!(handshake_failures(&gw, "no-client-cert").await, 1);
    let trusted = tls_client(&pki, ClientCert::Trusted, &[b"http/1.1"]);
    let (reply, _) = tls_get(
        gw.handle.address(),
        &trusted,
        "secure.localhost",
        "secure.localhost",
        "/api/users/1",
        &[],
    )
    .await
    .expect("with a certificate");
    assert_eq!(reply.status, 200);
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the request with a certificate arrived"
    );
    assert_eq!(gw.record().await.status, 200);
}

#[tokio::test]
async fn a_request_for_an_mtls_host_on_another_hosts_connection_is_421() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let client = tls_client(&pki, ClientCert::Trusted, &[b"h2", b"http/1.1"]);
    let (reply, _) = tls_get(
        gw.handle.address(),
        &client,
        "api.localhost",
        "payments.localhost",
        "/api/payments/charge",
        &[],
    )
    .await
    .expect("exchange");
    assert_refused(&reply, 421, "tls", "misdirected-request");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("misdirected-request"));
    assert!(upstream.seen().is_empty());
    // The same connection serves its own host; an unprotected host on it is fine too.
    let (reply, _) = tls_get(
        gw.handle.address(),
        &client,
        "api.localhost",
        "localhost:8443",
        "/api/users/1",
        &[],
    )
    .await
    .expect("exchange");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn plaintext_on_a_tls_listener_is_a_counted_handshake_failure() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&tls_config(&pki, upstream.address)).await;
    let (reply, closed) = raw_exchange(
        gw.handle.address(),
        b"GET /api/users/1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(closed);
    assert!(!reply.contains("200"), "{reply}");
    assert_eq!(handshake_failures(&gw, "not-tls").await, 1);
    assert!(upstream.seen().is_empty());
    assert!(gw.records.try_recv().is_err());
}

#[tokio::test]
async fn certificates_are_swapped_with_the_config() {
    let first = Pki::generate();
    let second = Pki::generate();
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&tls_config(&first, upstream.address)).await;
    let address = gw.handle.address();
    let trusts_first = tls_client(&first, ClientCert::None, &[b"http/1.1"]);
    let trusts_second = tls_client(&second, ClientCert::None, &[b"http/1.1"]);
    assert!(
        tls_get(
            address,
            &trusts_first,
            "localhost",
            "localhost",
            "/api/users/1",
            &[]
        )
        .await
        .is_ok()
    );
    assert!(
        tls_get(
            address,
            &trusts_second,
            "localhost",
            "localhost",
            "/api/users/1",
            &[]
        )
        .await
        .is_err()
    );

    // What a reload does: compile the new config (reading its certificates) and swap it in.
    let runtime = gateway::config::load_str("<reload>", &tls_config(&second, upstream.address))
        .expect("second config");
    gw.handle.reload(runtime);
    assert!(
        tls_get(
            address,
            &trusts_second,
            "localhost",
            "localhost",
            "/api/users/1",
            &[]
        )
        .await
        .is_ok()
    );
    assert!(
        tls_get(
            address,
            &trusts_first,
            "localhost",
            "localhost",
            "/api/users/1",
            &[]
        )
        .await
        .is_err()
    );
}

/// A TLS upstream that requires a client certificate from the test CA.
async fn tls_upstream(pki: &Pki) -> SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.expect("ca")).expect("add");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            CertificateDer::pem_file_iter(pki.path("upstream.pem"))
                .expect("open")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert"),
            PrivateKeyDer::from_pem_file(pki.path("upstream.key")).expect("key"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"tls upstream ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    address
}

#[tokio::test]
async fn upstream_tls_verifies_the_upstream_and_presents_a_client_certificate() {
    let pki = Pki::generate();
    let address = tls_upstream(&pki).await;
    let config = |ca: &str| {
        format!(
            r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  secure:
    instances: ["{address}"]
    tls:
      ca_file: "{ca}"
      server_name: upstream.localhost
      client_cert_file: "{cert}"
      client_key_file: "{key}"
routes:
  - {{ name: secure, match: {{ path: /* }}, upstream: secure }}
"#,
            ca = pki.path_str(ca),
            cert = pki.path_str("client.pem"),
            key = pki.path_str("client.key"),
        )
    };
    let mut gw = TestGateway::start(&config("ca.pem")).await;
    let reply = gw.get("/anything").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "tls upstream ok");
    assert_eq!(gw.record().await.stopped_at, None);

    // An upstream whose certificate the configured CA did not sign is not talked to.
    let mut gw = TestGateway::start(&config("rogue-ca.pem")).await;
    let reply = gw.get("/anything").await;
    assert_eq!(reply.status, 502);
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Forward));
    assert_eq!(record.reason.as_deref(), Some("upstream-unreachable"));
}
