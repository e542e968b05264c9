//! The fake upstream's gRPC answers read by tonic, a gRPC client that shares no code with the
//! simulator: a unary call with trailing metadata, a server stream whose messages come on the
//! fake's schedule, an error status in a trailers-only answer, and tonic's own deadline reaching
//! the fake as `grpc-timeout`.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::PathAndQuery;
use simulator::fake::upstream::{Behaviour, FakeInstance, Protocol, Serving};
use tonic::codec::ProstCodec;
use tonic::transport::{Channel, Endpoint};

/// What the fake's payloads read as: `x` bytes are field 15 varints, which a message without
/// that field skips, so any message type decodes them.
#[derive(Clone, PartialEq, prost::Message)]
struct Anything {
    #[prost(string, tag = "1")]
    text: String,
}

async fn fake(yaml: &str) -> FakeInstance {
    let behaviour: Behaviour = serde_yaml_ng::from_str(yaml).expect("behaviour");
    let serving = Serving {
        protocol: Protocol::H2c,
        tls: None,
    };
    FakeInstance::start_serving(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour, serving)
        .await
        .expect("fake")
}

async fn client(fake: &FakeInstance) -> tonic::client::Grpc<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{}", fake.address)).expect("endpoint");
    let channel = endpoint
        .connect()
        .await
        .expect("tonic connects to the fake");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc
}

fn request() -> tonic::Request<Anything> {
    tonic::Request::new(Anything { text: "hi".into() })
}

#[tokio::test]
async fn tonic_reads_a_unary_answer_and_its_trailing_metadata() {
    let fake = fake("grpc: { trailers: { x-served-by: fake } }").await;
    let mut grpc = client(&fake).await;
    let path = PathAndQuery::from_static("/demo.Greeter/SayHello");
    let mut call = request();
    call.set_timeout(Duration::from_secs(5));
    let response = grpc
        .unary(call, path, ProstCodec::<Anything, Anything>::default())
        .await
        .expect("OK");
    assert_eq!(response.get_ref().text, "", "the payload holds no field 1");
    let received = &fake.received()[0];
    assert_eq!(received.grpc_messages, Some(1));
    assert_eq!(
        received
            .headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok()),
        Some("5000000u"),
        "tonic's deadline reached the fake: {:?}",
        received.headers
    );
    let mut grpc = client(&fake).await;
    let path = PathAndQuery::from_static("/demo.Greeter/SayHello");
    let mut stream = grpc
        .server_streaming(request(), path, ProstCodec::<Anything, Anything>::default())
        .await
        .expect("OK")
        .into_inner();
    while stream.message().await.expect("a message").is_some() {}
    let trailers = stream.trailers().await.expect("trailers").expect("some");
    assert_eq!(
        trailers.get("x-served-by").and_then(|v| v.to_str().ok()),
        Some("fake")
    );
}

#[tokio::test]
async fn tonic_reads_a_stream_message_by_message() {
    let fake = fake("grpc: { messages: 3, every: 150ms }").await;
    let mut grpc = client(&fake).await;
    let path = PathAndQuery::from_static("/demo.Feed/Watch");
    let started = tokio::time::Instant::now();
    let mut stream = grpc
        .server_streaming(request(), path, ProstCodec::<Anything, Anything>::default())
        .await
        .expect("the stream starts")
        .into_inner();
    let mut arrivals = Vec::new();
    while stream.message().await.expect("a message").is_some() {
        arrivals.push(started.elapsed());
    }
    assert_eq!(arrivals.len(), 3);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "{arrivals:?}"
        );
    }
}

#[tokio::test]
async fn tonic_reads_a_trailers_only_error_as_its_status() {
    let fake = fake("grpc: { messages: 0, status: 5, message: 'no user ü, 100%' }").await;
    let mut grpc = client(&fake).await;
    let path = PathAndQuery::from_static("/demo.Users/Get");
    let status = grpc
        .unary(request(), path, ProstCodec::<Anything, Anything>::default())
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no user ü, 100%");
}
