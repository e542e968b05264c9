//! Graceful shutdown: stop accepting, let in-flight requests finish.

use std::time::Duration;

use super::util::*;

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let address = gw.handle.address();
    let in_flight = {
        let client = gw.client.clone();
        let url = gw.url("/api/v1/users/slow");
        tokio::spawn(async move {
            let response = client
                .request(
                    request("GET", &url)
                        .header("x-test-behaviour", "slow:500")
                        .body(empty())
                        .expect("request"),
                )
                .await
                .expect("the in-flight request is answered");
            Reply::read(response).await
        })
    };
    // Let the request reach the upstream before shutting down.
    eventually(
        "the request reached the upstream",
        Duration::from_secs(5),
        async || match upstream.seen().len() {
            0 => Err("nothing at the upstream"),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(upstream.seen().len(), 1);
    let TestGateway { handle, .. } = gw;
    let shutdown = tokio::spawn(handle.shutdown());
    eventually(
        "the listener is closed once shutdown begins",
        Duration::from_secs(5),
        async || match tokio::net::TcpStream::connect(address).await {
            Ok(_) => Err("a connection was still let in"),
            Err(_) => Ok(()),
        },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the listener closed while the request was still in flight"
    );
    let reply = in_flight.await.expect("task");
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"upstream ok");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown completes after the drain")
        .expect("task");
}
