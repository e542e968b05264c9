//! The fake upstream's HTTP/2 and gRPC answers and the scenario sender's HTTP/2 and gRPC
//! requests, checked against each other and against hyper's own HTTP/2 client over a real TLS
//! handshake: frames, trailers, trailers-only errors, messages arriving on their schedule, a
//! stream reset mid-answer, and the expectations' failure lines. No gateway is involved, so
//! these hold whatever the gateway does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use simulator::fake::tls::FakeCa;
use simulator::fake::upstream::{Behaviour, FakeInstance, Protocol, Serving};
use simulator::http_client::{Clients, Exchange, exchange};
use simulator::scenario::expect::check_request;
use simulator::scenario::model::{Expect, FakeUpstream, RequestSpec};
use simulator::scenario::outcome::RequestOutcome;
use simulator::scenario::run::build_request;

fn behaviour(yaml: &str) -> Behaviour {
    serde_yaml_ng::from_str(yaml).expect("behaviour")
}

fn spec(yaml: &str) -> RequestSpec {
    serde_yaml_ng::from_str(yaml).expect("request")
}

fn expect(yaml: &str) -> Expect {
    serde_yaml_ng::from_str(yaml).expect("expect")
}

async fn h2c_fake(yaml: &str) -> FakeInstance {
    let serving = Serving {
        protocol: Protocol::H2c,
        tls: None,
    };
    FakeInstance::start_serving(loopback(), behaviour(yaml), serving)
        .await
        .expect("fake")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Sends `request` (the step's YAML) to `fake` the way a scenario step does.
async fn step(fake: &FakeInstance, request: &str) -> Result<Exchange, String> {
    let request = build_request(&spec(request), fake.address, "sim-test-1", None)?;
    let clients = Clients::new();
    exchange(clients.for_request(&request), request).await
}

fn outcome(response: Result<Exchange, String>, fake: &FakeInstance) -> RequestOutcome {
    RequestOutcome {
        response,
        record: None,
        received: fake
            .received()
            .into_iter()
            .map(|r| ("greeter".to_string(), r))
            .collect(),
    }
}

#[tokio::test]
async fn a_unary_call_over_h2c_gets_one_message_then_its_status_in_trailers() {
    let fake = h2c_fake("grpc: { trailers: { x-served-by: fake } }").await;
    let got = step(
        &fake,
        "{ path: /demo.Greeter/SayHello, grpc: { messages: [hello], timeout: 250ms } }",
    )
    .await
    .expect("an answer");
    assert_eq!((got.status, got.version), (200, Version::HTTP_2));
    assert_eq!(got.headers["content-type"], "application/grpc");
    let messages = got.messages.as_ref().expect("a gRPC answer");
    assert_eq!(messages.len(), 1);
    assert_eq!((messages[0].bytes, messages[0].compressed), (16, false));
    assert_eq!(got.body_bytes, 5 + 16, "one prefix and one payload");
    let trailers = got.trailers.as_ref().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-served-by"], "fake");
    assert!(
        !got.headers.contains_key("grpc-status"),
        "the status ends the stream"
    );
    assert!(got.body_error.is_none(), "{:?}", got.body_error);

    let received = fake.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/demo.Greeter/SayHello")
    );
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.headers["te"], "trailers");
    assert_eq!(r.headers["content-type"], "application/grpc");
    assert_eq!(
        r.headers["grpc-timeout"], "250000u",
        "the gateway vocabulary's own writing"
    );
    assert_eq!(r.grpc_messages, Some(1));
    assert_eq!(r.body_bytes, 5 + 5, "`hello`, prefixed");

    let passing = expect(
        "{ status: 200, grpc_status: 0, trailers: { x-served-by: fake }, absent_trailers: [grpc-message],
           messages: { count: 1 }, upstream: { name: greeter, version: '2', messages: 1 } }",
    );
    assert_eq!(
        check_request(&passing, &outcome(Ok(got), &fake)),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_raw_body_is_length_prefixed_messages_and_the_trailers_come_last() {
    // hyper's own HTTP/2 client, frame by frame, so the prefix is checked byte for byte and not
    // through the simulator's own reader.
    let fake = h2c_fake("grpc: { messages: 2, message_bytes: 3, status: 0 }").await;
    let tcp = tokio::net::TcpStream::connect(fake.address)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/demo.Feed/Watch", fake.address))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .expect("request");
    let mut body = sender
        .send_request(request)
        .await
        .expect("response")
        .into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            Ok(data) => frames.push(format!("data {:?}", &data[..])),
            Err(frame) => {
                let trailers = frame.into_trailers().expect("trailers");
                frames.push(format!("trailers {:?}", trailers["grpc-status"]));
            }
        }
    }
    assert_eq!(
        frames,
        [
            "data [0, 0, 0, 0, 3, 120, 120, 120]",
            "data [0, 0, 0, 0, 3, 120, 120, 120]",
            "trailers \"0\"",
        ]
    );
    assert_eq!(
        fake.received()[0].grpc_messages,
        Some(1),
        "one empty message"
    );
}

#[tokio::test]
async fn a_server_stream_arrives_message_by_message_on_its_schedule() {
    let fake = h2c_fake("grpc: { messages: 3, every: 150ms }").await;
    let got = step(&fake, "{ path: /demo.Feed/Watch, grpc: {} }")
        .await
        .expect("an answer");
    let messages = got.messages.clone().expect("a gRPC answer");
    assert_eq!(messages.len(), 3, "{got:?}");
    // Lower bounds only: the fake sleeps 150 ms before each message, so each arrives at least
    // that long after the head; a reader that buffered the stream would see them together.
    assert!(
        messages[0].at >= got.head_after + Duration::from_millis(100),
        "the head came first: {got:?}"
    );
    for pair in messages.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(50),
            "{messages:?}"
        );
    }
    let passing = expect("{ grpc_status: 0, messages: { count: 3, gap: { min: 50ms } } }");
    assert_eq!(
        check_request(&passing, &outcome(Ok(got.clone()), &fake)),
        Vec::<String>::new()
    );

    let failing = expect(
        "{ grpc_status: 4, messages: { count: { min: 5 }, first_within: 10ms, gap: { min: 1s } } }",
    );
    let failures = check_request(&failing, &outcome(Ok(got), &fake));
    assert_eq!(failures.len(), 5, "{failures:#?}");
    assert_eq!(
        failures[0],
        "grpc_status: expected 4 (DEADLINE_EXCEEDED), got 0 (OK)"
    );
    assert_eq!(failures[1], "messages: expected between 5 and ∞, got 3");
    assert!(
        failures[2].starts_with("messages: expected the first within 10ms, it arrived after "),
        "{}",
        failures[2]
    );
    assert!(
        failures[3]
            .starts_with("messages: expected each gap at least 1s, the gap before message 2 was "),
        "{}",
        failures[3]
    );
    assert!(failures[4].contains("before message 3"), "{}", failures[4]);
}

#[tokio::test]
async fn an_error_before_any_message_is_a_trailers_only_answer() {
    let fake = h2c_fake("grpc: { messages: 0, status: 5, message: 'no user ü, 100%' }").await;
    let got = step(&fake, "{ path: /demo.Users/Get, grpc: {} }")
        .await
        .expect("an answer");
    assert_eq!(got.status, 200);
    assert!(got.trailers.is_none(), "{got:?}");
    assert_eq!(got.body_bytes, 0);
    assert_eq!(got.headers["grpc-status"], "5");
    assert_eq!(got.headers["grpc-message"], "no user %C3%BC, 100%25");
    let passing =
        expect("{ grpc_status: 5, grpc_message: 'no user ü, 100%', messages: { count: 0 } }");
    assert_eq!(
        check_request(&passing, &outcome(Ok(got.clone()), &fake)),
        Vec::<String>::new()
    );
    let failing = expect("{ grpc_status: 0, grpc_message: fine, trailers: { grpc-status: '0' } }");
    assert_eq!(
        check_request(&failing, &outcome(Ok(got), &fake)),
        [
            "grpc_status: expected 0 (OK), got 5 (NOT_FOUND, grpc-message: no user ü, 100%)",
            "grpc_message: expected \"fine\", got \"no user ü, 100%\"",
            "trailers: expected grpc-status, the answer had none",
        ]
    );
}

#[tokio::test]
async fn a_stream_reset_mid_answer_is_reported_with_the_messages_before_it() {
    let fake = h2c_fake("{ reset_mid_body: true, grpc: { messages: 4 } }").await;
    let got = step(&fake, "{ path: /demo.Feed/Watch, grpc: {} }")
        .await
        .expect("a head");
    assert_eq!(got.messages.as_ref().map(Vec::len), Some(2), "{got:?}");
    assert!(got.body_error.is_some(), "{got:?}");
    let failures = check_request(
        &expect("{ grpc_status: 0, messages: { count: 4 } }"),
        &outcome(Ok(got), &fake),
    );
    assert_eq!(failures.len(), 3, "{failures:#?}");
    assert!(
        failures[0].starts_with("the answer did not end cleanly; the body was cut"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].starts_with("grpc_status: expected 0 (OK), got none"),
        "{}",
        failures[1]
    );
    assert!(
        failures[2].starts_with("messages: expected exactly 4, got 2; the body was cut"),
        "{}",
        failures[2]
    );
}

#[tokio::test]
async fn plain_requests_can_go_over_h2c_and_an_h1_only_fake_refuses_prior_knowledge() {
    let h2 = h2c_fake("{}").await;
    let got = step(&h2, "{ path: /plain, http2: true }")
        .await
        .expect("answer");
    assert_eq!((got.status, got.version), (200, Version::HTTP_2));
    assert!(got.messages.is_none(), "not gRPC");
    assert_eq!(h2.received()[0].version, Version::HTTP_2);
    assert_eq!(h2.received()[0].method, "GET");

    let h1 = FakeInstance::start(Behaviour::default())
        .await
        .expect("fake");
    let refused = step(&h1, "{ path: /plain, http2: true }").await;
    assert!(refused.is_err(), "{refused:?}");
    let got = step(&h1, "{ path: /plain }").await.expect("answer");
    assert_eq!((got.status, got.version), (200, Version::HTTP_11));
}

/// hyper's HTTP/2 (or HTTP/1.1) client over TLS trusting `ca_pem`, offering `alpn`; the ALPN
/// agreed and the response's version and gRPC status.
async fn over_tls(
    address: SocketAddr,
    ca_pem: &[u8],
    alpn: &[&[u8]],
) -> Result<(Option<Vec<u8>>, Version, Option<String>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut config =
        rustls::ClientConfig::builder_with_provider(gateway::identity::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let agreed = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let uri = format!("https://{address}/demo.Greeter/SayHello");
    let request = |version| {
        http::Request::post(&uri)
            .version(version)
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .map_err(|e| e.to_string())
    };
    let response = if agreed.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(request(Version::HTTP_2)?).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(request(Version::HTTP_11)?).await
    }
    .map_err(|e| e.to_string())?;
    let version = response.version();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((agreed, version, status))
}

#[tokio::test]
async fn h2_over_tls_agrees_alpn_h2_and_refuses_a_client_that_offers_only_http1() {
    let ca = FakeCa::generate().expect("CA");
    let serving = Serving {
        protocol: Protocol::H2,
        tls: Some(ca.server_config(&[], Protocol::H2.alpn()).expect("config")),
    };
    let fake = FakeInstance::start_serving(loopback(), behaviour("grpc: {}"), serving)
        .await
        .expect("fake");
    let pem = ca.pem();
    let (agreed, version, status) = over_tls(fake.address, pem.as_bytes(), &[b"h2", b"http/1.1"])
        .await
        .expect("a gRPC call over TLS");
    assert_eq!(agreed.as_deref(), Some(&b"h2"[..]));
    assert_eq!((version, status.as_deref()), (Version::HTTP_2, Some("0")));
    let refused = over_tls(fake.address, pem.as_bytes(), &[b"http/1.1"]).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.starts_with("handshake")),
        "{refused:?}"
    );
    let other_ca = FakeCa::generate().expect("CA");
    let untrusted = over_tls(fake.address, other_ca.pem().as_bytes(), &[b"h2"]).await;
    assert!(untrusted.is_err(), "a verified handshake: {untrusted:?}");
    assert!(
        FakeInstance::start_serving(
            loopback(),
            Behaviour::default(),
            Serving {
                protocol: Protocol::H2,
                tls: None,
            }
        )
        .await
        .is_err(),
        "h2 without a TLS config"
    );
}

#[tokio::test]
async fn auto_over_tls_speaks_whichever_protocol_the_client_offers() {
    let ca = FakeCa::generate().expect("CA");
    let serving = Serving {
        protocol: Protocol::Auto,
        tls: Some(
            ca.server_config(&[], Protocol::Auto.alpn())
                .expect("config"),
        ),
    };
    let fake = FakeInstance::start_serving(loopback(), Behaviour::default(), serving)
        .await
        .expect("fake");
    let pem = ca.pem();
    let (agreed, version, _) = over_tls(fake.address, pem.as_bytes(), &[b"h2", b"http/1.1"])
        .await
        .expect("h2");
    assert_eq!(
        (agreed.as_deref(), version),
        (Some(&b"h2"[..]), Version::HTTP_2)
    );
    let (agreed, version, _) = over_tls(fake.address, pem.as_bytes(), &[b"http/1.1"])
        .await
        .expect("http/1.1");
    assert_eq!(
        (agreed.as_deref(), version),
        (Some(&b"http/1.1"[..]), Version::HTTP_11)
    );
}

#[tokio::test]
async fn a_config_asking_for_h2_gets_tls_fakes_and_a_ca_file_that_trusts_them() {
    let config = "upstreams:\n  greeter:\n    protocol: h2\n    tls: { server_name: greeter.internal }\n    instances: [\"10.0.0.1:1\"]\n  plain:\n    protocol: h2c\n    instances: [\"10.0.0.1:2\"]\n  legacy:\n    instances: [\"10.0.0.1:3\"]\n";
    let mut specs = std::collections::BTreeMap::new();
    specs.insert(
        "greeter".to_string(),
        serde_yaml_ng::from_str::<FakeUpstream>("behaviour: { grpc: {} }").expect("spec"),
    );
    let (rewritten, fakes) =
        simulator::scenario::fakes::point_config_at_fakes("test.yaml", config, &specs, None)
            .await
            .expect("fakes");
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rewritten).expect("yaml");
    let greeter = &value["upstreams"]["greeter"];
    assert_eq!(greeter["tls"]["server_name"], "greeter.internal", "kept");
    let ca_file = greeter["tls"]["ca_file"]
        .as_str()
        .expect("ca_file")
        .to_string();
    let address: SocketAddr = greeter["instances"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("a fake's address");
    let pem = std::fs::read(&ca_file).expect("the CA file exists while the fakes run");
    let (agreed, version, status) = over_tls(address, &pem, &[b"h2"]).await.expect("h2");
    assert_eq!(agreed.as_deref(), Some(&b"h2"[..]));
    assert_eq!((version, status.as_deref()), (Version::HTTP_2, Some("0")));
    assert!(
        value["upstreams"]["plain"].get("tls").is_none(),
        "h2c is plaintext"
    );
    assert!(value["upstreams"]["legacy"].get("tls").is_none());

    let plain = &fakes.upstreams["plain"][0];
    let got = step(plain, "{ path: /x, http2: true }").await.expect("h2c");
    assert_eq!(got.version, Version::HTTP_2);
    drop(fakes);
    assert!(
        !std::path::Path::new(&ca_file).exists(),
        "the CA file goes with the fakes"
    );
}
