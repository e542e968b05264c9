//! `simulator loadgen` through the binary against real targets on loopback: a fake upstream
//! (statuses, quantiles, method, headers and body), a closed port (refused), a hanging upstream
//! (timeout), and an https server with a certificate from a test CA (rcgen).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use simulator::fake::upstream::{Behaviour, FakeInstance};

/// Runs the binary; returns its exit code, stdout and the JSON report it wrote.
async fn loadgen(args: &[&str]) -> (i32, String, String, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("loadgen")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .expect("run simulator");
    let report = std::fs::read(&json)
        .map(|b| serde_json::from_slice(&b).expect("report is JSON"))
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    )
}

fn count(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_reports_every_status_and_ordered_quantiles_and_sends_what_it_was_told() {
    let upstream = FakeInstance::start(Behaviour {
        error_rate: 0.3,
        error_status: 503,
        ..Behaviour::default()
    })
    .await
    .expect("fake upstream");
    let url = format!("http://{}/orders?x=1", upstream.address);
    let (code, stdout, stderr, report) = loadgen(&[
        &url,
        "--connections",
        "4",
        "--duration",
        "1s",
        "--method",
        "POST",
        "--header",
        "x-test: yes",
        "-H",
        "x-other:2",
        "--body",
        "hello",
    ])
    .await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let ok = count(&report, "/statuses/200");
    let unavailable = count(&report, "/statuses/503");
    assert!(ok > 0 && unavailable > 0, "both statuses seen: {report}");
    assert_eq!(count(&report, "/responses"), ok + unavailable);
    assert_eq!(count(&report, "/succeeded"), ok);
    assert_eq!(
        report["errors"],
        serde_json::json!({}),
        "no errors: {report}"
    );
    let q: Vec<u64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|k| count(&report, &format!("/latency_us/{k}")))
        .collect();
    assert!(q[0] >= 1, "a latency was recorded: {q:?}");
    assert!(
        q.windows(2).all(|w| w[0] <= w[1]),
        "quantiles ordered: {q:?}"
    );
    assert!(
        stdout.contains("statuses   200: ") && stdout.contains("503: "),
        "{stdout}"
    );
    assert!(stdout.contains("p99.9"), "{stdout}");
    let received = upstream.received();
    assert_eq!(received.len() as u64, ok + unavailable);
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.target, "/orders?x=1");
    assert_eq!(first.headers["x-test"], "yes");
    assert_eq!(first.headers["x-other"], "2");
    assert_eq!(first.body_bytes, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_reported_as_refused_and_exits_1() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }; // dropped: nothing listens there now
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout, stderr, report) =
        loadgen(&[&url, "--connections", "2", "--duration", "300ms"]).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(count(&report, "/errors/refused/count") > 0, "{report}");
    assert_eq!(count(&report, "/responses"), 0);
    assert!(stdout.contains("refused: "), "{stdout}");
    assert!(stderr.contains("nothing succeeded"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_error_statuses_mean_nothing_succeeded() {
    let upstream = FakeInstance::start(Behaviour {
        error_rate: 1.0,
        error_status: 502,
        ..Behaviour::default()
    })
    .await
    .expect("fake upstream");
    let url = format!("http://{}/", upstream.address);
    let (code, _, stderr, report) =
        loadgen(&[&url, "--connections", "2", "--duration", "300ms"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(count(&report, "/statuses/502") > 0, "{report}");
    assert_eq!(count(&report, "/succeeded"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_is_reported_as_timeouts() {
    let upstream = FakeInstance::start(Behaviour {
        hang: true,
        ..Behaviour::default()
    })
    .await
    .expect("fake upstream");
    let url = format!("http://{}/", upstream.address);
    let (code, stdout, _, report) = loadgen(&[
        &url,
        "--connections",
        "2",
        "--duration",
        "300ms",
        "--timeout",
        "100ms",
    ])
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert!(count(&report, "/errors/timeout/count") >= 2, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_with_the_reason() {
    let (code, _, stderr, _) = loadgen(&["ftp://127.0.0.1/", "--duration", "100ms"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("not http or https"), "{stderr}");
    let (code, _, stderr, _) = loadgen(&["http://127.0.0.1:1/", "--header", "nocolon"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("Name: value"), "{stderr}");
}

/// An https server on loopback answering 200, with a leaf for 127.0.0.1 signed by a fresh CA;
/// returns its address and the CA's PEM.
async fn tls_server() -> (std::net::SocketAddr, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "loadgen test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let config = rustls::ServerConfig::builder_with_provider(gateway::identity::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"over tls"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (address, ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_loaded_over_tls_trusting_the_given_ca_and_refused_otherwise() {
    let (address, ca_pem) = tls_server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let url = format!("https://{address}/");
    let ca = ca_file.to_str().expect("utf-8 path");

    let (code, stdout, stderr, report) = loadgen(&[
        &url,
        "--connections",
        "2",
        "--duration",
        "500ms",
        "--ca-file",
        ca,
    ])
    .await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(count(&report, "/statuses/200") > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");

    // The platform's roots do not know the test CA: every handshake fails, as TLS.
    let (code, stdout, _, report) =
        loadgen(&[&url, "--connections", "1", "--duration", "200ms"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(count(&report, "/errors/tls/count") > 0, "{report}");
    assert_eq!(count(&report, "/responses"), 0);
    let first = report
        .pointer("/errors/tls/first")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(first.contains("certificate"), "says why: {first}");

    let (code, _, _, report) = loadgen(&[
        &url,
        "--connections",
        "1",
        "--duration",
        "200ms",
        "--insecure",
    ])
    .await;
    assert_eq!(code, 0, "{report}");
    assert!(count(&report, "/statuses/200") > 0, "{report}");
}
