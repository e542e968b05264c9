//! `simulator demo`: the whole testbed in-process on embedded defaults — the reference gateway
//! config, fake upstreams (one of them down, one slow), and a client mix that exercises the
//! stops the gateway has today. Prints a live line per second and a final table of requests per
//! stage and reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::fake::upstream::{Behaviour, Latency};
use crate::scenario::model::FakeUpstream;
use crate::scenario::run::{http_client, point_config_at_fakes, send, start_gateway, GatewayMode};

/// The embedded gateway config: the reference routing table.
pub const DEMO_CONFIG: &str = include_str!("../../fixtures/reference.yaml");

/// One stream of the client mix: a request sent at a steady rate.
struct Stream {
    label: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    per_second: u32,
}

const MIX: &[Stream] = &[
    Stream { label: "read users", method: "GET", path: "/api/v1/users/42", headers: &[], per_second: 120 },
    Stream { label: "create user", method: "POST", path: "/api/v1/users", headers: &[], per_second: 20 },
    Stream { label: "v2 reads", method: "GET", path: "/api/v2/users/7", headers: &[], per_second: 40 },
    Stream { label: "admin (slow upstream)", method: "GET", path: "/api/admin/reports", headers: &[], per_second: 10 },
    Stream { label: "payments (down)", method: "POST", path: "/api/payments/charges", headers: &[], per_second: 10 },
    Stream { label: "unknown route", method: "GET", path: "/api/unknown", headers: &[], per_second: 15 },
    Stream { label: "dot-segment probe", method: "GET", path: "/api/v1/../admin/users", headers: &[], per_second: 5 },
    Stream { label: "browser preflight", method: "OPTIONS", path: "/api/v1/users/1", headers: &[("origin", "https://app.example.com"), ("access-control-request-method", "GET")], per_second: 5 },
    Stream { label: "foreign origin preflight", method: "OPTIONS", path: "/api/v1/users/1", headers: &[("origin", "https://evil.example.net"), ("access-control-request-method", "GET")], per_second: 2 },
];

fn fakes() -> BTreeMap<String, FakeUpstream> {
    let upstream = |behaviour: Behaviour| FakeUpstream {
        instances: 2,
        behaviour,
        timeline: Vec::new(),
    };
    let mut specs = BTreeMap::new();
    specs.insert(
        "users-svc".to_string(),
        upstream(Behaviour {
            latency: Some(Latency::Lognormal { median: Duration::from_millis(3), sigma: 0.6 }),
            body_bytes: 256,
            ..Behaviour::default()
        }),
    );
    specs.insert(
        "admin-svc".to_string(),
        upstream(Behaviour {
            latency: Some(Latency::Uniform { min: Duration::from_millis(50), max: Duration::from_millis(15_000) }),
            ..Behaviour::default()
        }),
    );
    specs.insert(
        "payments-svc".to_string(),
        upstream(Behaviour { down: true, ..Behaviour::default() }),
    );
    specs
}

type Tally = Arc<Mutex<BTreeMap<(String, String), u64>>>;

pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let (config, _fakes) = point_config_at_fakes("<embedded demo>", DEMO_CONFIG, &fakes(), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let gateway = start_gateway("<embedded demo>", &config, &GatewayMode::InProcess)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let address = gateway.address;
    println!("gatehouse demo: gateway on http://{address}, {} client streams, {:?}", MIX.len(), duration);

    let tally: Tally = Arc::default();
    let mut records = gateway
        .subscribe()
        .ok_or_else(|| anyhow::anyhow!("the demo gateway runs in-process"))?;
    let collector = {
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                match records.recv().await {
                    Ok(r) => {
                        let stage = r.stopped_at.map_or("passed".to_string(), |s| s.to_string());
                        let reason = r.reason.as_deref().unwrap_or("-").to_string();
                        if let Ok(mut t) = tally.lock() {
                            *t.entry((stage, reason)).or_insert(0) += 1;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        })
    };

    let client = http_client();
    let deadline = tokio::time::Instant::now() + duration;
    let mut senders = Vec::new();
    for stream in MIX {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / f64::from(stream.per_second.max(1)));
            let mut next = tokio::time::Instant::now();
            let mut inflight = tokio::task::JoinSet::new();
            while next < deadline {
                tokio::time::sleep_until(next).await;
                next += gap;
                let mut builder = http::Request::builder()
                    .method(stream.method)
                    .uri(format!("http://{address}{}", stream.path));
                for (k, v) in stream.headers {
                    builder = builder.header(*k, *v);
                }
                let body = if stream.method == "POST" { Bytes::from_static(b"{\"demo\":true}") } else { Bytes::new() };
                if let Ok(request) = builder.body(Full::new(body)) {
                    let client = client.clone();
                    inflight.spawn(async move { send(&client, request).await });
                }
                while inflight.try_join_next().is_some() {}
            }
            // Requests still in flight at the end are abandoned: the demo is bounded in time.
            inflight.abort_all();
            stream.label
        }));
    }

    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_total = 0u64;
    while tokio::time::Instant::now() < deadline {
        ticker.tick().await;
        let snapshot = tally.lock().map(|t| t.clone()).unwrap_or_default();
        let total: u64 = snapshot.values().sum();
        let mut by_stage: BTreeMap<&str, u64> = BTreeMap::new();
        for ((stage, _), n) in &snapshot {
            *by_stage.entry(stage.as_str()).or_insert(0) += n;
        }
        let stages: Vec<String> = by_stage.iter().map(|(s, n)| format!("{s}={n}")).collect();
        println!(
            "t={:>3}s  {:>5} req/s  total {:>6}  {}",
            started.elapsed().as_secs(),
            total - last_total,
            total,
            stages.join("  ")
        );
        last_total = total;
    }
    for s in senders {
        let _ = s.await;
    }
    gateway.stop().await;
    collector.abort();

    let snapshot = tally.lock().map(|t| t.clone()).unwrap_or_default();
    println!("\n{:<18} {:<24} {:>8}", "stopped at", "reason", "requests");
    for ((stage, reason), n) in &snapshot {
        println!("{stage:<18} {reason:<24} {n:>8}");
    }
    println!("{:<18} {:<24} {:>8}", "total", "", snapshot.values().sum::<u64>());
    Ok(())
}
