//! The generator and the lab against the real gateway: `simulator generate` makes the committed
//! fixture byte for byte; `compare RECORDING --config` runs the config's own policies on it; and
//! the lab's prediction agrees exactly with an in-process gateway (fake issuer, fake upstreams,
//! virtual time) that was sent the generated requests with real tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::clock::ManualClock;
use gateway::record::recording::format::{CredentialKind, REDACTED};
use http_body_util::Full;
use simulator::fake::issuer::{Hostile, IdentitySpec};
use simulator::replay::generate::{self, DEFAULT_START_UNIX_MICROS, GenerateOptions, Kind};
use simulator::replay::model::{Decision, Exchange, ExchangeOutcome};
use simulator::replay::predict::{PredictOptions, predict_with};
use simulator::scenario::fakes::point_config_at_fakes;
use simulator::scenario::model::FakeIssuerSpec;

fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn simulator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the simulator runs")
}

#[test]
fn the_documented_command_makes_the_committed_fixture_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("day.jsonl");
    let run = simulator(&["generate", "--to", out.to_str().expect("utf-8 path")]);
    assert!(run.status.success(), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("wrote 10000 requests"), "{stdout}");
    let made = std::fs::read(&out).expect("generated");
    let committed =
        std::fs::read(repo_root().join("fixtures/recordings/day.jsonl")).expect("the fixture");
    assert!(
        made == committed,
        "fixtures/recordings/day.jsonl is not what `simulator generate` makes: regenerate it with the command in docs/replay.md"
    );
    assert!(committed.len() < 6_000_000, "{} bytes", committed.len());
}

#[test]
fn generate_refuses_an_empty_span_and_names_an_unwritable_file() {
    let run = simulator(&["generate", "--to", "/dev/null", "--span", "0s"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").expect("a file");
    let target = blocked.join("day.jsonl");
    let run = simulator(&[
        "generate",
        "--to",
        target.to_str().expect("utf-8"),
        "--requests",
        "10",
    ]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("file"),
        "{run:?}"
    );
}

#[test]
fn compare_with_a_config_runs_its_own_policies_on_the_fixture() {
    let run = simulator(&[
        "compare",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--json",
        "-",
    ]);
    assert!(run.status.success(), "{run:?}");
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(json["tally"]["requests"], 10_000);
    let policies = json["policies"].as_array().expect("policies");
    let ids: Vec<&str> = policies
        .iter()
        .filter_map(|p| p["policy"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "paid-sustained",
            "paid-per-second",
            "free-sustained",
            "v2-beta"
        ]
    );
    let rejected_by_own = |id: &str| -> u64 {
        let p = policies
            .iter()
            .find(|p| p["policy"] == id)
            .expect("the policy");
        let own = p["algorithm"].as_str().expect("algorithm");
        p["comparison"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["algorithm"] == own)
            .and_then(|r| r["rejected"].as_u64())
            .expect("the policy's own algorithm ran")
    };
    // The cron storm is a paid identity far over the paid tier's burst; the buggy client and
    // the bursts are free users far over theirs.
    assert!(rejected_by_own("paid-sustained") > 300);
    assert!(rejected_by_own("free-sustained") > 500);
    // Without --config, --tui and friends keep working; with it, they are refused.
    let run = simulator(&[
        "compare",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--tui",
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let run = simulator(&["compare", "steady", "--config", "fixtures/testbed.yaml"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
}

/// An exchange as the replay's reader makes it from a generated line.
fn exchange_of(
    position: u64,
    line: &gateway::record::recording::format::RecordingLine,
) -> Exchange {
    Exchange {
        position,
        id: line.id.clone(),
        unix_nanos: line.unix_micros * 1_000,
        client: line.client.clone().unwrap_or_else(|| "-".into()),
        connection: None,
        method: line.request.method.clone(),
        target: line.request.target.clone(),
        version: line.request.version.clone(),
        headers: line.request.headers.clone(),
        body: Vec::new(),
        body_truncated: false,
        tls: None,
        credentials: line.credentials.clone(),
        recorded: None,
        response: None,
    }
}

#[tokio::test]
async fn the_prediction_agrees_exactly_with_the_gateway_on_a_generated_day() {
    // The committed fixture's requests (the first test holds them equal).
    let generated = generate::generate(&GenerateOptions::default());
    let text = std::fs::read_to_string(repo_root().join("fixtures/testbed.yaml")).expect("config");
    let issuer_spec = FakeIssuerSpec {
        name: None,
        timeline: Vec::new(),
    };
    let (config, fakes) =
        point_config_at_fakes("testbed.yaml", &text, &BTreeMap::new(), Some(&issuer_spec))
            .await
            .expect("fakes");
    let issuer = fakes.issuer.as_ref().expect("the fake issuer");
    let runtime = gateway::config::load_str("testbed.yaml", &config).expect("the config");
    let predicted_runtime = gateway::config::load_str("testbed.yaml", &config).expect("again");
    let origin_millis = DEFAULT_START_UNIX_MICROS / 1_000;
    let clock = Arc::new(ManualClock::new(origin_millis));
    let handle = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            ]),
            clock: clock.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("the gateway starts");
    let address = handle.address();
    let mut records = handle.subscribe();
    let client = simulator::http_client::new();

    let mut exchanges = Vec::new();
    let mut outcomes = Vec::new();
    for (i, g) in generated.iter().enumerate() {
        let line = &g.line;
        let offset_ns = (line.unix_micros - DEFAULT_START_UNIX_MICROS) * 1_000;
        clock.set(offset_ns);
        let now_unix = (origin_millis + offset_ns / 1_000_000) / 1_000;
        let mut request = http::Request::builder()
            .method(line.request.method.as_str())
            .uri(format!("http://{address}{}", line.request.target));
        for (name, value) in &line.request.headers {
            if name == "authorization" && value == REDACTED {
                let credential = &line.credentials[0];
                assert_eq!(credential.kind, CredentialKind::Bearer);
                let identity = credential.identity.as_ref().expect("an identity");
                let who = IdentitySpec {
                    subject: identity.subject.clone(),
                    tenant: identity.tenant.clone(),
                    scopes: identity.scopes.clone(),
                    roles: identity.roles.clone(),
                    tier: identity.tier.clone(),
                };
                let token = match credential.invalid.as_deref() {
                    None => issuer.mint(&who, now_unix, Duration::from_secs(3_600)),
                    Some("token-expired") => issuer.mint_hostile(&who, now_unix, Hostile::Expired),
                    Some("bad-signature") => {
                        issuer.mint_hostile(&who, now_unix, Hostile::BadSignature)
                    }
                    Some("unknown-kid") => issuer.mint_hostile(&who, now_unix, Hostile::UnknownKid),
                    Some(other) => panic!("the generator made an unexpected kind: {other}"),
                }
                .expect("a token");
                request = request.header("authorization", format!("Bearer {token}"));
            } else if name != "content-length" {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        let body = line
            .request
            .body_base64
            .as_ref()
            .map(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .expect("base64")
            })
            .unwrap_or_default();
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        let (status, _) = simulator::http_client::send(&client, request)
            .await
            .expect("an answer");
        let record = tokio::time::timeout(Duration::from_secs(10), records.recv())
            .await
            .expect("a record in time")
            .expect("the record");
        assert_eq!(record.status, status, "{}", line.id);
        let exchange = exchange_of(i as u64 + 1, line);
        outcomes.push(ExchangeOutcome {
            id: line.id.clone(),
            position: exchange.position,
            method: exchange.method.clone(),
            path: record.path.clone(),
            status: Some(status),
            error: None,
            decision: Some(Decision::of(&record)),
            response: None,
            scheduled_ns: offset_ns,
            sent_ns: offset_ns,
            latency_ns: record.duration_ns,
        });
        exchanges.push(exchange);
    }
    handle.shutdown().await;

    // Bad tokens were refused for the reason they were recorded with, before ratelimit.
    for (g, o) in generated.iter().zip(&outcomes) {
        if g.kind == Kind::BadToken {
            let decision = o.decision.as_ref().expect("decided");
            assert_eq!(decision.stopped_at.as_deref(), Some("authn"), "{}", o.id);
            assert_eq!(
                decision.reason.as_deref(),
                g.line.credentials[0].invalid.as_deref(),
                "{}",
                o.id
            );
        }
    }
    let prediction = predict_with(
        &predicted_runtime,
        &exchanges,
        &outcomes,
        &PredictOptions {
            origin_unix_micros: DEFAULT_START_UNIX_MICROS,
            ..PredictOptions::default()
        },
    );
    let text = prediction.render_text();
    for p in &prediction.policies {
        assert_eq!(p.disagreements, 0, "{}:\n{text}", p.id);
        assert_eq!(p.predicted_refused, p.actual_refused, "{text}");
    }
    let refused: u64 = prediction.policies.iter().map(|p| p.actual_refused).sum();
    assert!(refused > 500, "the storms were refused: {text}");
    assert!(prediction.stopped_before >= 200, "{text}");
    println!("{text}");
    assert_eq!(prediction.unknown, 0);
}
