//! `replay --virtual-time` against the real in-process gateway: its `ManualClock` starts at the
//! first exchange's recorded time and is set to each request's due time, so window edges fall
//! exactly where the recording put them, the same config twice changes nothing, two runs decide
//! alike request by request, and the lab's prediction agrees with the gateway. Flags that need a
//! wall clock or another process are refused (exit 1).

use std::process::Command;
use std::sync::Arc;

use simulator::replay::model::Exchange;
use simulator::replay::report::ReplayReport;
use simulator::replay::run::{self, RunOptions};
use simulator::replay::schedule::Pacing;
use simulator::replay::target::{self, TargetError, TargetSpec};
use simulator::scenario::under_test::GatewayMode;

/// A fixed window of one request a second per client: whether the second request of a pair is
/// refused depends only on which side of a whole Unix second it falls.
const CONFIG: &str = r#"
listeners: [{ name: public, address: "127.0.0.1:0" }]
access_log: off
upstreams:
  svc: { instances: ["127.0.0.1:9"] }
rate_limits:
  policies:
    - { id: one-a-second, algorithm: fixed-window, limit: 1, period: 1s, key: "header:x-client" }
routes:
  - { name: api, match: { path: /api/* }, upstream: svc }
"#;

/// A whole Unix second (2023-11-14T22:13:20Z), in microseconds.
const SECOND_EDGE_MICROS: u64 = 1_700_000_000_000_000;

fn exchange(id: &str, client: &str, unix_micros: u64) -> Exchange {
    Exchange {
        position: 0,
        id: id.into(),
        unix_nanos: unix_micros * 1_000,
        client: client.into(),
        connection: None,
        method: "GET".into(),
        target: format!("/api/{id}"),
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

fn virtual_time() -> Pacing {
    Pacing {
        virtual_time: true,
        ..Pacing::default()
    }
}

#[tokio::test]
async fn virtual_time_puts_each_request_at_its_recorded_instant_in_the_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, CONFIG).expect("write config");
    let spec = TargetSpec::Config {
        config: config.clone(),
        mode: GatewayMode::InProcess,
        record: None,
    };
    // A microsecond either side of a second's edge; the first request off a whole millisecond,
    // so the clock's sub-millisecond origin is exercised too.
    let mut exchanges = vec![
        exchange("a1", "alice", SECOND_EDGE_MICROS - 600_250),
        exchange("a2", "alice", SECOND_EDGE_MICROS - 1),
        exchange("a3", "alice", SECOND_EDGE_MICROS),
        exchange("a4", "alice", SECOND_EDGE_MICROS + 1),
        exchange("b1", "bob", SECOND_EDGE_MICROS + 999_999),
        exchange("b2", "bob", SECOND_EDGE_MICROS + 1_000_000),
    ];
    for (i, e) in exchanges.iter_mut().enumerate() {
        e.position = i as u64 + 1;
    }
    let exchanges = Arc::new(exchanges);
    let options = RunOptions {
        pacing: virtual_time(),
        ..RunOptions::default()
    };
    let result = run::run(exchanges.clone(), &spec, &options)
        .await
        .expect("replay");
    let statuses: Vec<Option<u16>> = result.outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [200, 429, 200, 429, 200, 200].map(Some),
        "{:#?}",
        result.outcomes
    );
    let refused_by: Vec<Option<String>> = result
        .outcomes
        .iter()
        .map(|o| {
            o.decision
                .as_ref()
                .filter(|d| d.status == 429)
                .and_then(|d| d.limit.as_ref())
                .map(|l| l.policy.to_string())
        })
        .collect();
    assert_eq!(refused_by[1].as_deref(), Some("one-a-second"));
    assert_eq!(refused_by[3].as_deref(), Some("one-a-second"));
    // Time zero is the first exchange's recorded time; nothing is late in virtual time, and the
    // latency is the real time the gateway took.
    assert_eq!(
        result.started_unix_nanos,
        (SECOND_EDGE_MICROS - 600_250) * 1_000
    );
    for (outcome, exchange) in result.outcomes.iter().zip(exchanges.iter()) {
        let due = exchange.unix_nanos - result.started_unix_nanos;
        assert_eq!(outcome.scheduled_ns, due, "{}", outcome.id);
        assert_eq!(outcome.sent_ns, due, "{}", outcome.id);
        assert!(outcome.latency_ns > 0, "{}", outcome.id);
    }
    // Again: the very same decisions.
    let again = run::run(exchanges.clone(), &spec, &options)
        .await
        .expect("replay again");
    let decisions = |r: &run::RunResult| -> Vec<_> {
        r.outcomes
            .iter()
            .map(|o| (o.id.clone(), o.status, o.decision.clone()))
            .collect()
    };
    assert_eq!(decisions(&result), decisions(&again));

    // Only an in-process gateway runs on the virtual clock.
    let process = TargetSpec::Config {
        config: config.clone(),
        mode: GatewayMode::Process("gateway".into()),
        record: None,
    };
    for spec in [
        process,
        TargetSpec::Url {
            url: "http://127.0.0.1:9".into(),
            admin: None,
        },
    ] {
        match run::run(exchanges.clone(), &spec, &options).await {
            Err(TargetError::Runtime(message)) => {
                assert!(message.contains("--virtual-time"), "{message}");
            }
            other => panic!("{spec:?}: {:?}", other.map(|r| r.outcomes.len())),
        }
    }
    // A target started on the system clock is refused too, not silently run in real time.
    let wall = target::start(&spec).await.expect("the gateway starts");
    let refused = run::run_on(exchanges.clone(), &wall, &options).await;
    wall.stop().await;
    assert!(
        matches!(&refused, Err(TargetError::Runtime(m)) if m.contains("--virtual-time")),
        "{:?}",
        refused.map(|r| r.outcomes.len())
    );
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn simulator(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("the simulator runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const FIXTURE: &str = "fixtures/recordings/day.jsonl";
const TESTBED: &str = "fixtures/testbed.yaml";

/// Per request: id, status, and the gateway's decision.
fn decisions_of(report: &ReplayReport) -> Vec<serde_json::Value> {
    report
        .run
        .outcomes
        .iter()
        .map(|o| serde_json::json!([o.id, o.status, o.decision]))
        .collect()
}

#[test]
fn the_fixture_in_virtual_time_changes_nothing_against_itself_and_the_lab_agrees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("review.json");
    let (code, text) = simulator(&[
        "replay",
        FIXTURE,
        "--config",
        TESTBED,
        "--against",
        TESTBED,
        "--virtual-time",
        "--predict",
        "--quiet",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("config diff: 10000 requests compared, none changed"),
        "{text}"
    );
    let report = ReplayReport::read(&json).expect("the JSON report");
    assert_eq!(report.run.answered, 10_000, "{text}");
    assert_eq!(report.run.records_missing, 0, "{text}");
    // Tokens minted for virtual time are accepted by a gateway on virtual time; the recorded
    // bad ones are refused again, and the storms run into their limits.
    assert!(report.run.statuses.get(&200).is_some_and(|n| *n > 7_000));
    assert!(report.run.stopped_at.get("authn").is_some_and(|n| *n > 100));
    assert!(
        report
            .run
            .stopped_at
            .get("ratelimit")
            .is_some_and(|n| *n > 500)
    );
    let diff = report.diff.as_ref().expect("the config review");
    assert_eq!(diff["changed"], 0, "{diff}");
    // Every policy's prediction, on the virtual clock's origin, agrees request by request.
    let prediction = report.prediction.as_ref().expect("the prediction");
    let policies = prediction["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 4, "{prediction}");
    for policy in policies {
        assert_eq!(policy["disagreements"], 0, "{prediction}");
        assert_eq!(policy["difference"], 0.0, "{prediction}");
    }
    assert!(
        policies
            .iter()
            .any(|p| p["algorithm"] == "fixed-window" && p["actual_refused"].as_u64() > Some(0)),
        "{prediction}"
    );
    assert!(
        policies
            .iter()
            .any(|p| p["algorithm"] == "sliding-window-counter"
                && p["actual_refused"].as_u64() > Some(0)),
        "{prediction}"
    );
}

#[test]
fn two_virtual_time_runs_decide_every_request_alike() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut runs = Vec::new();
    for n in 1..=2 {
        let json = dir.path().join(format!("run-{n}.json"));
        let (code, text) = simulator(&[
            "replay",
            FIXTURE,
            "--config",
            TESTBED,
            "--shard",
            "3/8",
            "--virtual-time",
            "--quiet",
            "--json",
            json.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(code, Some(0), "{text}");
        runs.push(ReplayReport::read(&json).expect("the JSON report"));
    }
    assert!(runs[0].run.sent > 500);
    assert!(runs[0].run.stopped_at.contains_key("ratelimit"));
    assert_eq!(decisions_of(&runs[0]), decisions_of(&runs[1]));
    assert_eq!(
        runs[0].run.started_unix_nanos,
        runs[1].run.started_unix_nanos
    );
    let sends = |r: &ReplayReport| -> Vec<(u64, u64)> {
        r.run
            .outcomes
            .iter()
            .map(|o| (o.scheduled_ns, o.sent_ns))
            .collect()
    };
    assert_eq!(sends(&runs[0]), sends(&runs[1]));
    assert!(sends(&runs[0]).iter().all(|(due, sent)| due == sent));
}

#[test]
fn virtual_time_is_refused_where_there_is_no_in_process_clock_to_drive() {
    let refused: [&[&str]; 5] = [
        // No gateway of its own to drive.
        &["--virtual-time", "--target", "http://127.0.0.1:9"],
        &["--virtual-time"],
        // The binary reads its own clock.
        &["--virtual-time", "--config", TESTBED, "--process"],
        // Wall-clock flags.
        &[
            "--virtual-time",
            "--config",
            TESTBED,
            "--start-at",
            "1900000000",
        ],
        &[
            "--virtual-time",
            "--config",
            TESTBED,
            "--rotate",
            "publish@1s",
        ],
    ];
    for extra in refused {
        let mut args = vec!["replay", FIXTURE];
        args.extend_from_slice(extra);
        let (code, text) = simulator(&args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(text.contains("--virtual-time"), "{args:?}: {text}");
    }
}
