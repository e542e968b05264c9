//! The circuit breaker: closed → open on failures → 503 `circuit-open` at `route` without
//! touching the upstream → half-open probes after `open_for` (virtual time) → closed, or open
//! again when a probe fails. Its state shows in the record, the metrics and `/upstreams`.

use std::sync::Arc;
use std::time::Duration;

use gateway::clock::ManualClock;
use gateway::resilience::BreakerState;
use gateway::vocab::StageId;

use super::resilience_util::*;
use super::util::*;

fn config(fake: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: ["{fake}"]
    request_timeout: 300ms
    circuit_breaker: {{ consecutive_failures: 3, min_requests: 100, open_for: 10s, half_open_probes: 2 }}
{extra}
routes:
  - {{ name: svc, match: {{ path: /svc/* }}, upstream: svc }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

async fn breaker(gw: &TestGateway) -> serde_json::Value {
    admin_json(gw, "/upstreams").await["upstreams"][0]["breaker"].clone()
}

#[tokio::test]
async fn the_breaker_opens_refuses_without_touching_the_upstream_then_probes_and_closes() {
    let fake = Fake::start("svc").await;
    fake.set(Mode::Status(503));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut gw = gateway_on_clock(&config(fake.address, ""), clock.clone()).await;

    for _ in 0..3 {
        let reply = gw.get("/svc/x").await;
        assert_eq!(reply.status, 503, "the upstream's own answer");
        let record = gw.record().await;
        assert_eq!(record.stopped_at, None);
        assert_eq!(record.breaker, Some(BreakerState::Closed));
    }
    assert_eq!(breaker(&gw).await, "open");
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"gatehouse_breaker_state{upstream="svc",state="open"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"gatehouse_breaker_transitions_total{upstream="svc",state="open"} 1"#),
        "{text}"
    );

    let hits = fake.hits();
    let reply = gw.get("/svc/x").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("10"));
    let problem = reply.problem();
    assert_eq!(problem["type"], "urn:gatehouse:problem:circuit-open");
    assert_eq!(problem["stage"], "route");
    assert_eq!(
        fake.hits(),
        hits,
        "an open breaker does not touch the upstream"
    );
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Route));
    assert_eq!(record.reason.as_deref(), Some("circuit-open"));
    assert_eq!(record.breaker, Some(BreakerState::Open));

    // Open for 10 s of the gateway's clock; then two probes, both fine, close it.
    clock.advance(Duration::from_secs(4));
    assert_eq!(gw.get("/svc/x").await.header("retry-after"), Some("6"));
    gw.record().await;
    fake.set(Mode::Ok);
    clock.advance(Duration::from_secs(6));
    assert_eq!(breaker(&gw).await, "half_open");
    for _ in 0..2 {
        assert_eq!(gw.get("/svc/x").await.status, 200);
        assert_eq!(gw.record().await.breaker, Some(BreakerState::HalfOpen));
    }
    assert_eq!(breaker(&gw).await, "closed");
    assert_eq!(gw.get("/svc/x").await.status, 200);
    assert_eq!(gw.record().await.breaker, Some(BreakerState::Closed));
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let fake = Fake::start("svc").await;
    fake.set(Mode::Status(502));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let gw = gateway_on_clock(&config(fake.address, ""), clock.clone()).await;
    for _ in 0..3 {
        gw.get("/svc/x").await;
    }
    assert_eq!(breaker(&gw).await, "open");
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        gw.get("/svc/x").await.status,
        502,
        "the probe reached the upstream"
    );
    assert_eq!(breaker(&gw).await, "open");
    let reply = gw.get("/svc/x").await;
    assert_eq!(
        reply.problem()["type"],
        "urn:gatehouse:problem:circuit-open"
    );
    assert_eq!(
        reply.header("retry-after"),
        Some("10"),
        "a full open period again"
    );
}

#[tokio::test]
async fn a_hanging_upstream_trips_the_breaker_with_its_timeouts() {
    let fake = Fake::start("svc").await;
    fake.set(Mode::Hang);
    let gw = TestGateway::start(&config(fake.address, "")).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/svc/x").await.status, 504);
    }
    let reply = gw.get("/svc/x").await;
    assert_eq!(
        reply.problem()["type"],
        "urn:gatehouse:problem:circuit-open"
    );
    assert_eq!(fake.hits(), 3);
}
