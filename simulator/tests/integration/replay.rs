//! The replay engine against real things on loopback: the real gateway in-process with its fake
//! upstream, a fake upstream as `--target`, and a raw listener that counts connections. The
//! exchanges are built here from what was sent (the readers are tested with their own files).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use simulator::fake::upstream::{Behaviour, FakeInstance};
use simulator::replay::model::{Exchange, ExchangeOutcome, Recording};
use simulator::replay::report::{ReplayReport, RunReport};
use simulator::replay::run::{self, RunOptions};
use simulator::replay::schedule::{Loops, Pacing, Shard, Spacing};
use simulator::replay::target::{self, TargetSpec};
use simulator::scenario::interrupt::Interrupt;
use simulator::scenario::under_test::GatewayMode;

/// No identities, one upstream, a per-client token bucket of 3 a minute: a replay decides the
/// same as the original only if it keeps every request's route, client and order.
const CONFIG: &str = r#"
listeners: [{ name: public, address: "127.0.0.1:0" }]
access_log: off
upstreams:
  svc: { instances: ["127.0.0.1:9"] }
rate_limits:
  policies:
    - { id: per-client, algorithm: token-bucket, limit: 3, period: 1m, burst: 3, key: "header:x-client" }
routes:
  - { name: api, match: { path: /api/* }, upstream: svc }
"#;

const MS: u64 = 1_000_000;

fn exchange(id: &str, client: &str, target: &str, at_ms: u64) -> Exchange {
    Exchange {
        position: at_ms,
        id: id.into(),
        unix_nanos: 1_700_000_000_000 * MS + at_ms * MS,
        client: client.into(),
        connection: None,
        method: "GET".into(),
        target: target.into(),
        version: "HTTP/1.1".into(),
        headers: vec![("x-client".into(), client.into())],
        body: Vec::new(),
        body_truncated: false,
        tls: None,
        credentials: Vec::new(),
        recorded: None,
        response: None,
    }
}

fn rate(per_second: f64) -> Pacing {
    Pacing {
        spacing: Spacing::Rate { per_second },
        ..Pacing::default()
    }
}

fn url_of(fake: &FakeInstance) -> TargetSpec {
    TargetSpec::Url {
        url: format!("http://{}", fake.address),
        admin: None,
    }
}

fn received_ids(fake: &FakeInstance) -> Vec<String> {
    fake.received()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("x-request-id")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect()
}

fn config_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, CONFIG).expect("write config");
    path
}

#[tokio::test]
async fn replay_round_trip_gives_the_recorded_decision_for_every_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&dir);
    let spec = TargetSpec::Config {
        config: config.clone(),
        mode: GatewayMode::InProcess,
        record: None,
    };
    // The original traffic: two clients over their quota, an unknown route, a body.
    let mut exchanges = Vec::new();
    for i in 0..5 {
        exchanges.push(exchange(
            &format!("rt-a{i}"),
            "alice",
            &format!("/api/users/{i}?x=1"),
            i * 10,
        ));
    }
    for i in 0..4 {
        exchanges.push(exchange(
            &format!("rt-b{i}"),
            "bob",
            "/api/orders",
            100 + i * 10,
        ));
    }
    exchanges.push(exchange("rt-nowhere", "carol", "/elsewhere", 200));
    let mut post = exchange("rt-post", "carol", "/api/orders", 210);
    post.method = "POST".into();
    post.body = b"{\"n\":1}".to_vec();
    post.headers
        .push(("content-type".into(), "application/json".into()));
    exchanges.push(post);
    // Sent once through the gateway, as its users did; its records become the recording.
    let original = target::start(&spec).await.expect("gateway starts");
    let sent = run::run_on(
        Arc::new(exchanges.clone()),
        &original,
        &RunOptions::default(),
    )
    .await
    .expect("original traffic");
    assert_eq!(sent.outcomes.len(), exchanges.len());
    let records = original
        .records
        .clone()
        .expect("an in-process gateway's records");
    for (exchange, outcome) in exchanges.iter_mut().zip(&sent.outcomes) {
        let record = records.get(&exchange.id).expect("the gateway recorded it");
        assert_eq!(outcome.status, Some(record.status));
        // What a recording line holds: the request as sent and the gateway's record of it.
        exchange.recorded = Some(record);
    }
    original.stop().await;
    let statuses: Vec<u16> = sent.outcomes.iter().filter_map(|o| o.status).collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 429, 429, 200, 200, 200, 429, 404, 200]
    );

    // The replay, through a fresh gateway on the same config.
    let exchanges = Arc::new(exchanges);
    let replayed = run::run(exchanges.clone(), &spec, &RunOptions::default())
        .await
        .expect("replay");
    let baseline: Vec<ExchangeOutcome> = replayed
        .recorded_baseline(&exchanges)
        .into_iter()
        .map(|b| b.expect("every exchange has its record"))
        .collect();
    assert_eq!(replayed.outcomes.len(), baseline.len());
    for (got, want) in replayed.outcomes.iter().zip(&baseline) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.decision, want.decision, "{}", got.id);
        assert_eq!(got.status, want.status, "{}", got.id);
    }
    let report = RunReport::from_run(replayed);
    assert_eq!(report.stopped_at.get("ratelimit"), Some(&3));
    assert_eq!(report.stopped_at.get("route"), Some(&1));
    assert_eq!(report.records_missing, 0);
}

#[tokio::test]
async fn replay_at_a_fixed_rate_keeps_recorded_order_and_loops_with_suffixed_ids() {
    let fake = FakeInstance::start(Behaviour::default())
        .await
        .expect("fake");
    // Recorded out of timestamp order and far apart: --rate sends them evenly, as listed.
    let exchanges = Arc::new(vec![
        exchange("r1", "alice", "/a", 5_000),
        exchange("r2", "bob", "/b", 0),
        exchange("r3", "carol", "/c", 90_000),
        exchange("r4", "alice", "/d", 90_001),
    ]);
    let options = RunOptions {
        pacing: Pacing {
            loops: Loops::Times(2),
            ..rate(100.0)
        },
        ..RunOptions::default()
    };
    let result = run::run(exchanges, &url_of(&fake), &options)
        .await
        .expect("replay");
    let ids: Vec<&str> = result.outcomes.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["r1", "r2", "r3", "r4", "r1~2", "r2~2", "r3~2", "r4~2"]
    );
    // On the wire `~` is not a request-id character the gateway keeps: it becomes `.`.
    assert_eq!(
        received_ids(&fake),
        vec!["r1", "r2", "r3", "r4", "r1.2", "r2.2", "r3.2", "r4.2"]
    );
    let dues: Vec<u64> = result.outcomes.iter().map(|o| o.scheduled_ns).collect();
    assert_eq!(dues, (0..8).map(|i| i * 10 * MS).collect::<Vec<_>>());
    assert!(result.outcomes.iter().all(|o| o.status == Some(200)));
    assert!(result.outcomes.iter().all(|o| o.sent_ns >= o.scheduled_ns));
    assert!(!result.interrupted);
}

#[tokio::test]
async fn replay_shards_are_disjoint_and_complete_and_merge_into_one_report() {
    let fake = FakeInstance::start(Behaviour::default())
        .await
        .expect("fake");
    let exchanges: Vec<Exchange> = (0..60)
        .map(|i| exchange(&format!("s{i}"), &format!("client-{}", i % 13), "/x", i))
        .collect();
    let recording = Recording {
        exchanges: exchanges.clone(),
        ..Recording::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for k in 1..=3 {
        let shard = Shard { k, n: 3 };
        let mine = Arc::new(shard.select(&exchanges));
        let options = RunOptions {
            pacing: Pacing {
                shard: Some(shard),
                ..rate(500.0)
            },
            ..RunOptions::default()
        };
        let result = run::run(mine, &url_of(&fake), &options)
            .await
            .expect("shard");
        let report = ReplayReport::new(
            std::path::Path::new("day.jsonl"),
            &recording,
            None,
            Some(shard.to_string()),
            RunReport::from_run(result),
            None,
        );
        let path = dir.path().join(format!("shard-{k}.json"));
        report.write(&path).expect("write report");
        paths.push(path);
    }
    let mut got = received_ids(&fake);
    assert_eq!(
        got.len(),
        60,
        "every request sent exactly once over the shards"
    );
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 60, "no request in two shards");

    let merged_path = dir.path().join("merged.json");
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("report")
        .arg("merge")
        .args(&paths)
        .arg("--json")
        .arg(&merged_path)
        .output()
        .expect("simulator runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sent       60 of 60"), "{stdout}");
    assert!(stdout.contains("3 reports merged"), "{stdout}");
    let merged = ReplayReport::read(&merged_path).expect("merged report");
    assert_eq!(merged.run.sent, 60);
    assert_eq!(merged.run.statuses.get(&200), Some(&60));
    assert_eq!(merged.shard.as_deref(), Some("1/3, 2/3, 3/3"));
    let mut ids: Vec<&str> = merged.run.outcomes.iter().map(|o| o.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60);
}

/// A listener that answers 200 and counts the connections it accepts.
async fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    // A moment of work, so a request due meanwhile finds its connection busy.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, accepted)
}

#[tokio::test]
async fn replay_reuses_a_recorded_connection_for_its_requests_in_order() {
    let (address, accepted) = counting_listener().await;
    // Two recorded connections, interleaved, sent faster than the listener answers: each keeps
    // to its one connection, a request waiting for the previous answer on it.
    let exchanges: Vec<Exchange> = (0..10)
        .map(|i| {
            let mut e = exchange(&format!("c{i}"), "alice", "/x", i);
            e.connection = Some(if i % 2 == 0 { "conn-1" } else { "conn-2" }.into());
            e
        })
        .collect();
    let spec = TargetSpec::Url {
        url: format!("http://{address}"),
        admin: None,
    };
    let result = run::run(
        Arc::new(exchanges),
        &spec,
        &RunOptions {
            pacing: rate(1000.0),
            ..RunOptions::default()
        },
    )
    .await
    .expect("replay");
    assert!(
        result.outcomes.iter().all(|o| o.status == Some(200)),
        "{:?}",
        result.outcomes
    );
    // One for `target::start`'s reachability check, one per recorded connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 1 + 2);
    // On one connection, each waited for the one before: sends 15 ms apart, not 2 ms.
    let conn_1: Vec<&ExchangeOutcome> = result.outcomes.iter().step_by(2).collect();
    for pair in conn_1.windows(2) {
        assert!(pair[1].sent_ns >= pair[0].sent_ns + 15 * MS, "{pair:?}");
    }
    // Latency counts from the due time, so the waiting shows in it.
    assert!(conn_1[4].latency_ns >= 4 * 15 * MS, "{:?}", conn_1[4]);
}

#[tokio::test]
async fn replay_interrupted_returns_what_was_sent() {
    let fake = FakeInstance::start(Behaviour::default())
        .await
        .expect("fake");
    let exchanges: Vec<Exchange> = (0..200)
        .map(|i| exchange(&format!("i{i}"), "alice", "/x", i))
        .collect();
    let (interrupter, interrupt) = Interrupt::new();
    let options = RunOptions {
        pacing: rate(50.0),
        interrupt,
        ..RunOptions::default()
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        interrupter.interrupt();
    });
    let result = run::run(Arc::new(exchanges), &url_of(&fake), &options)
        .await
        .expect("replay");
    assert!(result.interrupted);
    let n = result.outcomes.len();
    assert!((5..200).contains(&n), "{n} sent");
    assert_eq!(result.planned, 200);
    let ids: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
    assert_eq!(
        result
            .outcomes
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(received_ids(&fake).len(), n);
    let report = RunReport::from_run(result);
    assert!(report.interrupted);
    assert_eq!(report.sent, n as u64);
}

fn simulator(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .output()
        .expect("simulator runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn replay_flags_are_checked_before_anything_runs() {
    let (code, out) = simulator(&["replay", "day.jsonl"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--config GATEWAY.yaml"), "{out}");
    let (code, out) = simulator(&[
        "replay",
        "day.jsonl",
        "--target",
        "http://127.0.0.1:9",
        "--config",
        "g.yaml",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot be used with"), "{out}");
    let (code, out) = simulator(&[
        "replay",
        "day.jsonl",
        "--config",
        "g.yaml",
        "--shard",
        "5/4",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--shard `5/4`"), "{out}");
    let (code, out) = simulator(&["replay", "/nonexistent/day.jsonl", "--config", "g.yaml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/day.jsonl"), "{out}");
    let (code, out) = simulator(&["report", "merge", "/nonexistent/a.json"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn replay_command_runs_a_shard_of_the_fixture_through_the_real_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("shard.json");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .current_dir(root)
        .args([
            "replay",
            "fixtures/recordings/day.jsonl",
            "--config",
            "fixtures/testbed.yaml",
        ])
        .args(["--shard", "1/8", "--rate", "2000", "--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("simulator runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("shard 1/8"), "{text}");
    let report = ReplayReport::read(&json).expect("the JSON report");
    assert!(report.run.sent > 500, "{text}");
    assert_eq!(report.run.sent, report.run.planned, "{text}");
    assert_eq!(report.run.answered, report.run.sent, "{text}");
    assert_eq!(report.run.records_missing, 0, "{text}");
    // Tokens were minted afresh: valid ones pass, the recording's bad ones are refused again.
    assert!(
        report.run.statuses.get(&200).is_some_and(|n| *n > 20),
        "{text}"
    );
    assert!(report.run.stopped_at.contains_key("authn"), "{text}");
    assert!(report.run.stopped_at.contains_key("ratelimit"), "{text}");
}
