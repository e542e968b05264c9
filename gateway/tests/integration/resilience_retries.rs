//! Retries: what is retried (refused connections, resets before the response, 502, 503) and what
//! is not (timeouts, 500, bodies, non-idempotent methods unless configured, a response already
//! streaming), the retry budget, the total timeout, and the count in the record.

use gateway::vocab::StageId;

use super::forward::refused_address;
use super::resilience_util::*;
use super::util::*;

fn config(instances: &[std::net::SocketAddr], retries: &str, extra: &str) -> String {
    let list = instances
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: [{list}]
    connect_timeout: 300ms
    request_timeout: 500ms
    retries: {retries}
{extra}
routes:
  - {{ name: svc, match: {{ path: /svc/* }}, upstream: svc }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

const RETRY_TWICE: &str = "{ attempts: 2, backoff: 1ms }";

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_instance() {
    let a = Fake::start("a").await;
    let dead = refused_address().await;
    let mut gw = TestGateway::start(&config(&[dead, a.address], RETRY_TWICE, "")).await;
    let mut retried = 0;
    for _ in 0..10 {
        let reply = gw.get("/svc/x").await;
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body[..], b"a");
        let record = gw.record().await;
        assert_eq!(
            record.upstream_instance,
            Some(a.address),
            "the record names the instance that answered"
        );
        retried += record.retries;
    }
    assert_eq!(
        retried, 5,
        "round robin sent every other first try to the refusing instance"
    );
    assert!(
        metrics(&gw)
            .await
            .contains(r#"gatehouse_retries_total{upstream="svc"} 5"#)
    );
}

#[tokio::test]
async fn a_reset_before_the_response_and_a_503_are_retried_a_500_is_not() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let mut gw = TestGateway::start(&config(&[a.address, b.address], RETRY_TWICE, "")).await;
    for (mode, retried) in [
        (Mode::Reset, true),
        (Mode::Status(503), true),
        (Mode::Status(502), true),
        (Mode::Status(500), false),
    ] {
        a.set(mode.clone());
        for _ in 0..2 {
            let reply = gw.get("/svc/x").await;
            let record = gw.record().await;
            if record.retries == 0 && &reply.body[..] == b"b" {
                continue; // b answered the first try
            }
            if retried {
                assert_eq!(
                    (reply.status.as_u16(), &reply.body[..]),
                    (200, &b"b"[..]),
                    "{mode:?}"
                );
                assert_eq!(record.retries, 1, "{mode:?}");
            } else {
                assert_eq!(reply.status, 500, "{mode:?}: the upstream's answer");
                assert_eq!(record.retries, 0, "{mode:?}");
            }
        }
    }
}

#[tokio::test]
async fn only_idempotent_bodiless_requests_are_retried_unless_methods_are_listed() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Reset);
    b.set(Mode::Reset);
    let mut gw = TestGateway::start(&config(&[a.address, b.address], RETRY_TWICE, "")).await;
    let hits = || a.hits() + b.hits();

    let reply = gw
        .send(
            request("POST", &gw.url("/svc/x"))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(gw.record().await.retries, 0, "POST is not idempotent");
    assert_eq!(hits(), 1);

    let reply = gw
        .send(
            request("DELETE", &gw.url("/svc/x"))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        gw.record().await.retries,
        2,
        "DELETE is, and gets both retries"
    );
    assert_eq!(hits(), 4);

    let reply = gw
        .send(
            request("PUT", &gw.url("/svc/x"))
                .body(full("a body"))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        gw.record().await.retries,
        0,
        "a request with a body is tried once"
    );
    assert_eq!(hits(), 5);

    let mut gw = TestGateway::start(&config(
        &[a.address, b.address],
        "{ attempts: 1, backoff: 1ms, methods: [POST] }",
        "",
    ))
    .await;
    gw.send(
        request("POST", &gw.url("/svc/x"))
            .body(empty())
            .expect("request"),
    )
    .await;
    assert_eq!(gw.record().await.retries, 1, "POST listed: retried");
    gw.send(
        request("GET", &gw.url("/svc/x"))
            .body(empty())
            .expect("request"),
    )
    .await;
    assert_eq!(gw.record().await.retries, 0, "GET not listed: not retried");
}

#[tokio::test]
async fn the_retry_budget_stops_retries_from_multiplying_an_outage() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Status(503));
    b.set(Mode::Status(503));
    let mut gw = TestGateway::start(&config(
        &[a.address, b.address],
        "{ attempts: 3, backoff: 1ms, budget: { ratio: 0.2, min_per_second: 0, window: 1m } }",
        "",
    ))
    .await;
    let mut retries = 0;
    for _ in 0..20 {
        assert_eq!(gw.get("/svc/x").await.status, 503);
        retries += gw.record().await.retries;
    }
    assert_eq!(retries, 4, "20% of 20 requests");
    assert_eq!(
        a.hits() + b.hits(),
        24,
        "without the budget it would have been 80"
    );
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"gatehouse_retries_total{upstream="svc"} 4"#),
        "{text}"
    );
    assert!(
        text.contains(r#"gatehouse_retries_over_budget_total{upstream="svc"} 20"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_timeout_is_not_retried_and_the_total_timeout_bounds_all_tries() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Hang);
    b.set(Mode::Hang);
    let mut gw = TestGateway::start(&config(&[a.address, b.address], RETRY_TWICE, "")).await;
    let reply = gw.get("/svc/x").await;
    assert_eq!(reply.status, 504);
    let record = gw.record().await;
    assert_eq!(
        (record.retries, record.reason.as_deref()),
        (0, Some("upstream-timeout"))
    );
    assert_eq!(
        a.hits() + b.hits(),
        1,
        "a hanging upstream gets no second request"
    );

    // Resets are retried, but the total timeout leaves no time for a retry after a long backoff.
    a.set(Mode::Reset);
    b.set(Mode::Reset);
    let mut gw = TestGateway::start(&config(
        &[a.address, b.address],
        "{ attempts: 3, backoff: 2s }",
        "    total_timeout: 400ms",
    ))
    .await;
    let reply = gw.get("/svc/x").await;
    assert_eq!(reply.status, 502);
    let record = gw.record().await;
    assert_eq!(record.retries, 0);
    assert!(
        record.duration_ns < 1_000_000_000,
        "{} ns",
        record.duration_ns
    );
}

#[tokio::test]
async fn a_reset_mid_body_is_not_retried_and_the_record_says_it_did_not_complete() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::ResetMidBody);
    b.set(Mode::ResetMidBody);
    let mut gw = TestGateway::start(&config(&[a.address, b.address], RETRY_TWICE, "")).await;
    let response = gw
        .client
        .request(
            request("GET", &gw.url("/svc/x"))
                .body(empty())
                .expect("request"),
        )
        .await
        .expect("the head arrives");
    assert_eq!(response.status(), 200);
    let read = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(read.is_err(), "the client sees the body break");
    let record = gw.record().await;
    assert!(!record.completed);
    assert_eq!(record.retries, 0, "the response had started: never retried");
    assert_eq!(record.stopped_at, None::<StageId>);
    assert_eq!(a.hits() + b.hits(), 1);
}
