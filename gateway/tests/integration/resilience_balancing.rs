//! Load balancing across an upstream's instances: weights, least outstanding, consistent hash,
//! and what happens when no instance is in rotation.

use std::collections::HashMap;
use std::time::Duration;

use gateway::vocab::StageId;

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

async fn body_counts(
    gw: &TestGateway,
    n: usize,
    header: Option<(&str, &str)>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let mut r = request("GET", &gw.url("/svc/x"));
        if let Some((name, value)) = header {
            r = r.header(name, value);
        }
        let reply = gw.send(r.body(empty()).expect("request")).await;
        *counts
            .entry(String::from_utf8_lossy(&reply.body).into_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_round_robin_gives_each_instance_its_share() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gw = TestGateway::start(&config(&format!(
        "    instances:\n      - {{ address: \"{}\", weight: 3 }}\n      - {{ address: \"{}\", weight: 1 }}\n",
        a.address, b.address
    )))
    .await;
    let counts = body_counts(&gw, 40, None).await;
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
}

#[tokio::test]
async fn least_outstanding_sends_nothing_more_to_an_instance_stuck_on_a_request() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Hang);
    let gw = TestGateway::start(&config(&format!(
        "    instances: [\"{}\", \"{}\"]\n    request_timeout: 30s\n    load_balancing: {{ policy: least_outstanding }}\n",
        a.address, b.address
    )))
    .await;
    let mut stuck = Vec::new();
    for sent in 1..=20 {
        let client = gw.client.clone();
        let url = gw.url("/svc/x");
        stuck.push(tokio::spawn(async move {
            let _ = client
                .request(request("GET", &url).body(empty()).expect("request"))
                .await;
        }));
        // One at a time: each request has been picked (and reached its instance) before the next.
        eventually(
            "the request reached an instance",
            Duration::from_secs(5),
            async || match a.hits() + b.hits() {
                n if n == sent => Ok(()),
                n => Err(format!("{n} of {sent} requests")),
            },
        )
        .await;
    }
    // With two instances both are always drawn, and one with a request in flight loses to one
    // without: once a request hangs on `a`, every later one goes to `b`.
    assert!(a.hits() <= 1, "a received {} requests", a.hits());
    assert_eq!(a.hits() + b.hits(), 20);
    for task in stuck {
        task.abort();
    }
}

#[tokio::test]
async fn consistent_hash_keeps_a_key_on_its_instance_and_moves_only_the_keys_of_a_lost_one() {
    let fakes = [
        Fake::start("a").await,
        Fake::start("b").await,
        Fake::start("c").await,
    ];
    let gw = TestGateway::start(&config(&format!(
        "    instances: [\"{}\", \"{}\", \"{}\"]\n    load_balancing: {{ policy: consistent_hash, hash_on: \"header:X-Session\" }}\n    health_check: {{ path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\n",
        fakes[0].address, fakes[1].address, fakes[2].address
    )))
    .await;
    let mut placed = HashMap::new();
    for key in 0..30 {
        let session = format!("session-{key}");
        let counts = body_counts(&gw, 3, Some(("x-session", &session))).await;
        assert_eq!(
            counts.len(),
            1,
            "{session} stayed on one instance: {counts:?}"
        );
        placed.insert(session, counts.into_keys().next().expect("one"));
    }
    let used: std::collections::HashSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 3, "30 keys spread over all three instances");

    fakes[1].set_health(503);
    eventually("b out of rotation", Duration::from_secs(5), async || {
        let b = instance(&gw, "svc", fakes[1].address).await;
        if b["available"] == false {
            Ok(())
        } else {
            Err(b)
        }
    })
    .await;
    for (session, before) in &placed {
        let counts = body_counts(&gw, 1, Some(("x-session", session))).await;
        let now = counts.into_keys().next().expect("one");
        if before == "b" {
            assert_ne!(now, "b", "{session} left the lost instance");
        } else {
            assert_eq!(&now, before, "{session} did not move");
        }
    }
}

#[tokio::test]
async fn with_every_instance_out_of_rotation_route_answers_503() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let mut gw = TestGateway::start(&config(&format!(
        "    instances: [\"{}\", \"{}\"]\n    health_check: {{ path: /healthz, interval: 50ms, timeout: 500ms, unhealthy_threshold: 2 }}\n",
        a.address, b.address
    )))
    .await;
    a.set_health(500);
    b.set_health(500);
    eventually("both out of rotation", Duration::from_secs(5), async || {
        let all = admin_json(&gw, "/upstreams").await;
        let instances = &all["upstreams"][0]["instances"];
        let out = instances
            .as_array()
            .expect("instances")
            .iter()
            .all(|i| i["available"] == false);
        if out { Ok(()) } else { Err(instances.clone()) }
    })
    .await;
    let before = a.hits() + b.hits();
    let reply = gw.get("/svc/x").await;
    assert_eq!(reply.status, 503);
    let problem = reply.problem();
    assert_eq!(problem["stage"], "route");
    assert_eq!(problem["type"], "urn:gatehouse:problem:no-healthy-instance");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Route));
    assert_eq!(record.reason.as_deref(), Some("no-healthy-instance"));
    assert_eq!(a.hits() + b.hits(), before, "no upstream was touched");
}
