//! Instance health: active checks take a flapping instance out of rotation and bring it back;
//! outlier ejection takes out instances that fail real requests, for longer each time, never
//! more than the configured share; the ejection clock is the gateway's (virtual here).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway::clock::ManualClock;

use super::forward::refused_address;
use super::resilience_util::*;
use super::util::*;

fn config(upstream: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
{upstream}
routes:
  - {{ name: svc, match: {{ path: /svc/* }}, upstream: svc }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

async fn spread(gw: &TestGateway, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = gw.get("/svc/x").await;
        *counts
            .entry(format!(
                "{} {}",
                reply.status.as_u16(),
                String::from_utf8_lossy(&reply.body)
            ))
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_flapping_instance_leaves_rotation_and_comes_back() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gw = TestGateway::start(&config(&format!(
        "    instances: [\"{}\", \"{}\"]\n    health_check: {{ path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }}\n",
        a.address, b.address
    )))
    .await;
    eventually(
        "health checks run",
        Duration::from_secs(5),
        async || match b.health_hits() {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} checks of b")),
        },
    )
    .await;
    assert_eq!(spread(&gw, 10).await.get("200 b"), Some(&5));

    b.set_health(503);
    eventually("b out of rotation", Duration::from_secs(5), async || {
        let b = instance(&gw, "svc", b.address).await;
        if b["healthy"] == false {
            Ok(())
        } else {
            Err(b)
        }
    })
    .await;
    let text = metrics(&gw).await;
    let gauge = format!(
        r#"gatehouse_instance_available{{upstream="svc",instance="{}"}} 0"#,
        b.address
    );
    assert!(text.contains(&gauge), "{text}");
    let before = b.hits();
    assert_eq!(spread(&gw, 10).await.get("200 a"), Some(&10));
    assert_eq!(
        b.hits(),
        before,
        "an instance out of rotation gets no traffic"
    );

    b.set_health(200);
    eventually("b back in rotation", Duration::from_secs(5), async || {
        let b = instance(&gw, "svc", b.address).await;
        if b["available"] == true {
            Ok(())
        } else {
            Err(b)
        }
    })
    .await;
    assert_eq!(spread(&gw, 10).await.get("200 b"), Some(&5));
}

fn outlier_config(a: std::net::SocketAddr, b: std::net::SocketAddr, extra: &str) -> String {
    config(&format!(
        "    instances: [\"{a}\", \"{b}\"]\n    outlier_ejection: {{ consecutive_5xx: 3, consecutive_connect_failures: 2, base_ejection_time: 30s, max_ejection_time: 5m{extra} }}\n"
    ))
}

#[tokio::test]
async fn failing_an_instance_three_times_ejects_it_for_longer_each_time() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    b.set(Mode::Status(500));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let gw = gateway_on_clock(&outlier_config(a.address, b.address, ""), clock.clone()).await;

    // Round robin: b's third 500 comes with the sixth request; then b is out.
    let first = spread(&gw, 6).await;
    assert_eq!(first.get("500 b"), Some(&3), "{first:?}");
    let ejected = instance(&gw, "svc", b.address).await;
    assert_eq!(ejected["ejected"], true, "{ejected}");
    assert_eq!(ejected["ejected_for_ms"], 30_000);
    assert_eq!(spread(&gw, 10).await.get("200 a"), Some(&10));
    assert!(
        metrics(&gw)
            .await
            .contains(r#"gatehouse_outlier_ejections_total{upstream="svc"} 1"#)
    );

    // Time is up: b is back, fails three more times, and is out for twice as long.
    clock.advance(Duration::from_secs(30));
    assert_eq!(instance(&gw, "svc", b.address).await["available"], true);
    let second = spread(&gw, 6).await;
    assert_eq!(second.get("500 b"), Some(&3), "{second:?}");
    let again = instance(&gw, "svc", b.address).await;
    assert_eq!(again["ejected_for_ms"], 60_000, "{again}");
    assert_eq!(again["ejections"], 2);

    // Healthy again: back after the longer ejection.
    b.set(Mode::Ok);
    clock.advance(Duration::from_secs(31));
    assert_eq!(instance(&gw, "svc", b.address).await["ejected"], true);
    clock.advance(Duration::from_secs(30));
    assert_eq!(spread(&gw, 10).await.get("200 b"), Some(&5));
}

#[tokio::test]
async fn a_refusing_instance_is_ejected_after_its_connect_failures() {
    let a = Fake::start("a").await;
    let dead = refused_address().await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let gw = gateway_on_clock(&outlier_config(a.address, dead, ""), clock).await;
    let first = spread(&gw, 4).await;
    assert_eq!(first.get("200 a"), Some(&2), "{first:?}");
    assert_eq!(instance(&gw, "svc", dead).await["ejected"], true);
    assert_eq!(spread(&gw, 10).await.get("200 a"), Some(&10));
}

#[tokio::test]
async fn ejection_never_takes_more_than_the_configured_share() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Status(500));
    b.set(Mode::Status(500));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let gw = gateway_on_clock(
        &outlier_config(a.address, b.address, ", max_ejected_percent: 50"),
        clock,
    )
    .await;
    spread(&gw, 20).await;
    let (ia, ib) = (
        instance(&gw, "svc", a.address).await,
        instance(&gw, "svc", b.address).await,
    );
    let ejected = [&ia, &ib].iter().filter(|i| i["ejected"] == true).count();
    assert_eq!(ejected, 1, "half of two instances is one: {ia} {ib}");
    // The instance left in rotation keeps getting the traffic, failing or not.
    let counts = spread(&gw, 4).await;
    assert_eq!(counts.values().sum::<usize>(), 4);
    assert!(counts.keys().all(|k| k.starts_with("500 ")), "{counts:?}");
}
