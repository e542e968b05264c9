//! `replay --diff-responses` against real things: a service on loopback behind the real gateway
//! (in-process, `recording:` with `responses: true`) records the traffic; the `simulator` binary
//! replays it with `--target` at a second gateway on the same service and compares each response
//! with the recorded one. A header the service makes fresh for every answer is flagged until
//! `--noise-runs 2` learns it as noise; a body that changed after the recording is flagged
//! whatever the noise; exit codes 0, 1 and 4, and the JSON and JUnit reports, say the same.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use simulator::replay::report::ReplayReport;
use simulator::replay::responses::ResponseField;

/// The service's state: whether `/api/items` answers its new body, and how many answers it gave.
#[derive(Default)]
struct Service {
    items_changed: AtomicBool,
    answers: AtomicU64,
}

/// A real HTTP/1.1 service: `/api/items` answers `items v1` (or `items v2` once changed), any
/// other path `ok`; every answer carries `x-answer-id`, fresh per answer.
async fn start_service(state: Arc<Service>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the service");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let n = state.answers.fetch_add(1, Ordering::Relaxed);
                        let body = match req.uri().path() {
                            "/api/items" if state.items_changed.load(Ordering::Relaxed) => {
                                "items v2"
                            }
                            "/api/items" => "items v1",
                            _ => "ok",
                        };
                        let response = http::Response::builder()
                            .header("content-type", "text/plain")
                            .header("x-answer-id", format!("answer-{n}"))
                            .body(Full::new(Bytes::from(body)))
                            .expect("response");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

fn config(service: std::net::SocketAddr, recording: Option<&Path>) -> String {
    let recording = recording.map_or(String::new(), |path| {
        format!(
            "recording:\n  path: \"{}\"\n  responses: true\n",
            path.display()
        )
    });
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc: {{ instances: ["{service}"] }}
routes:
  - {{ name: api, match: {{ path: /api/* }}, upstream: svc }}
{recording}"#
    )
}

async fn start_gateway(config: &str) -> gateway::GatewayHandle {
    let runtime = gateway::config::load_str("<test>", config).unwrap_or_else(|d| {
        panic!(
            "config: {}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            ]),
            ..Default::default()
        },
    )
    .await
    .expect("the gateway starts")
}

/// The recorded traffic: (request id, path).
const REQUESTS: [(&str, &str); 6] = [
    ("rq-1", "/api/items"),
    ("rq-2", "/api/health"),
    ("rq-3", "/api/items"),
    ("rq-4", "/api/users/1"),
    ("rq-5", "/api/health"),
    ("rq-6", "/api/users/2"),
];

/// Sends the requests through a recording gateway and waits until every line is written.
async fn record(service: std::net::SocketAddr, path: &Path) {
    let gateway = start_gateway(&config(service, Some(path))).await;
    let client = simulator::http_client::new();
    for (id, target) in REQUESTS {
        let request = http::Request::get(format!("http://{}{target}", gateway.address()))
            .header("x-request-id", id)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, _) = simulator::http_client::send(&client, request)
            .await
            .expect("the gateway answers");
        assert_eq!(status, 200, "{id}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = std::fs::read_to_string(path).unwrap_or_default();
        if lines.lines().filter(|l| l.contains("\"response\"")).count() == REQUESTS.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recording never held every request with its response:\n{lines}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.shutdown().await;
}

/// Runs `simulator replay` off the runtime's threads (the gateway it replays to runs on them).
async fn replay(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
            .arg("replay")
            .args(&args)
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
    })
    .await
    .expect("the replay's thread")
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    recording: PathBuf,
    service: Arc<Service>,
    target: gateway::GatewayHandle,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let recording = path.join("traffic.jsonl");
        let service = Arc::new(Service::default());
        let address = start_service(service.clone()).await;
        record(address, &recording).await;
        let target = start_gateway(&config(address, None)).await;
        Setup {
            _dir: dir,
            dir: path,
            recording,
            service,
            target,
        }
    }

    /// `replay RECORDING --target GATEWAY --rate 200 --quiet --diff-responses
    /// --diff-header '*' --json FILE` and `extra`; the exit code, the output and the report.
    async fn replay(&self, name: &str, extra: &[&str]) -> (i32, String, ReplayReport) {
        let json = self.dir.join(format!("{name}.json"));
        let mut args: Vec<String> = vec![
            self.recording.display().to_string(),
            "--target".into(),
            format!("http://{}", self.target.address()),
            "--rate".into(),
            "200".into(),
            "--quiet".into(),
            "--diff-responses".into(),
            "--diff-header".into(),
            "*".into(),
            "--json".into(),
            json.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let (code, out) = replay(args).await;
        let report = ReplayReport::read(&json).unwrap_or_else(|e| panic!("{e}\n{out}"));
        (code, out, report)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_diffs_flag_a_changed_body_and_not_a_header_learned_as_noise() {
    let s = Setup::new().await;

    // Without noise runs, the fresh `x-answer-id` differs from the recorded one every time.
    let (code, out, report) = s.replay("plain", &[]).await;
    assert_eq!(code, 4, "{out}");
    let diff = report.responses.expect("the response diff is in the JSON");
    assert_eq!((diff.compared, diff.changed), (6, 6), "{out}");
    assert_eq!(diff.groups.len(), 1, "{out}");
    assert_eq!(
        diff.groups[0].fields,
        [ResponseField::Header("x-answer-id".into())],
        "{out}"
    );
    assert!(
        out.contains("response diff: 6 responses compared, 6 changed (100%)"),
        "{out}"
    );
    assert!(report.noise.is_none());

    // Two baseline runs first: the header varies between them, so it is noise; nothing else
    // changed.
    let (code, out, report) = s.replay("noise", &["--noise-runs", "2"]).await;
    assert_eq!(code, 0, "{out}");
    let noise = report.noise.expect("the learned noise is in the JSON");
    assert_eq!((noise.runs, noise.compared), (2, 6), "{out}");
    assert!(noise.headers.contains_key("x-answer-id"), "{noise:?}");
    assert!(
        noise.body.is_empty() && noise.status.is_empty(),
        "{noise:?}"
    );
    let diff = report.responses.expect("the response diff");
    assert_eq!((diff.compared, diff.changed), (6, 0), "{out}");
    assert_eq!(diff.skipped_as_noise.get("header:x-answer-id"), Some(&6));
    assert!(
        out.contains("noise: 2 baseline runs, 6 request pairs compared"),
        "{out}"
    );
    assert!(
        out.contains("response diff: 6 responses compared, none changed"),
        "{out}"
    );

    // The service's items endpoint now answers another body: those two requests are flagged,
    // by their body alone, and the noise still hides the header.
    s.service.items_changed.store(true, Ordering::Relaxed);
    let junit = s.dir.join("responses.xml");
    let junit_arg = junit.display().to_string();
    let (code, out, report) = s
        .replay("changed", &["--noise-runs", "2", "--junit", &junit_arg])
        .await;
    assert_eq!(code, 4, "{out}");
    let diff = report.responses.expect("the response diff");
    assert_eq!((diff.compared, diff.changed), (6, 2), "{out}");
    let ids: Vec<&str> = diff.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["rq-1", "rq-3"], "{out}");
    assert_eq!(diff.groups[0].title(), "200 → 200 [body]", "{out}");
    assert!(out.contains("  2  200 → 200 [body]"), "{out}");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
    assert!(xml.contains(": responses"), "{xml}");
    assert!(xml.contains("200 → 200 [body]"), "{xml}");
    assert!(xml.contains("<failure"), "{xml}");

    // Within --max-changed the same diff passes.
    let (code, out, _) = s
        .replay("allowed", &["--noise-runs", "2", "--max-changed", "0.5"])
        .await;
    assert_eq!(code, 0, "{out}");

    // A field --ignore does not know is refused before anything is sent.
    let answers = s.service.answers.load(Ordering::Relaxed);
    let (code, out) = replay(vec![
        s.recording.display().to_string(),
        "--target".into(),
        format!("http://{}", s.target.address()),
        "--diff-responses".into(),
        "--ignore".into(),
        "cookie".into(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--ignore: `cookie`"), "{out}");
    assert_eq!(s.service.answers.load(Ordering::Relaxed), answers);
    s.target.shutdown().await;
}

/// In-process, `--against`: both configs' fake upstreams answer alike, so the responses that
/// differ are the ones the candidate config answers itself — here the admin paths it now refuses,
/// each a request the config review flags too. The recording is a GoReplay capture (requests
/// only: with `--against` the baseline is the first config's run, not the recording).
#[test]
fn against_a_config_that_refuses_admin_paths_exactly_those_responses_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let routes = |admin: &str| {
        format!(
            r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc: {{ instances: ["127.0.0.1:9"] }}
routes:
{admin}  - {{ name: api, match: {{ path: /api/* }}, upstream: svc }}
"#
        )
    };
    let baseline = write("old.yaml", &routes(""));
    let candidate = write(
        "new.yaml",
        &routes("  - { name: admin, match: { path: /api/admin/* }, respond: { status: 403 } }\n"),
    );
    let mut capture = String::new();
    for (i, path) in [
        "/api/users/1",
        "/api/admin/keys",
        "/api/users/2",
        "/api/admin/audit",
    ]
    .iter()
    .enumerate()
    {
        capture.push_str(&format!(
            "1 {i:040x} {} 0\nGET {path} HTTP/1.1\nHost: api.example.com\n\n\n🐵🙈🙉\n",
            1_700_000_000_000_000_000u64 + i as u64 * 10_000_000
        ));
    }
    let recording = write("capture.gor", &capture);
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("replay")
        .arg(&recording)
        .arg("--config")
        .arg(&baseline)
        .arg("--against")
        .arg(&candidate)
        .args([
            "--quiet",
            "--diff-responses",
            "--max-changed",
            "0.6",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("simulator runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Half the requests changed, within --max-changed 0.6.
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report = ReplayReport::read(&json).expect("the JSON report");
    let responses = report.responses.expect("the response diff");
    assert_eq!((responses.compared, responses.changed), (4, 2), "{text}");
    let paths: Vec<&str> = responses.requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/api/admin/keys", "/api/admin/audit"], "{text}");
    assert_eq!(
        responses.groups[0].title(),
        "200 → 403 [status, body]",
        "{text}"
    );
    let review = report.diff.expect("the config review");
    let flagged: Vec<&str> = review["requests"]
        .as_array()
        .expect("changed requests")
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert_eq!(flagged, paths, "{text}");
    assert!(
        text.contains("response diff: 4 responses compared, 2 changed (50%)"),
        "{text}"
    );
}

/// `--noise-runs` without `--diff-responses` is a usage error (exit 1); `--tui` off a terminal
/// exits 3 before anything is sent.
#[test]
fn noise_runs_need_diff_responses_and_the_tui_needs_a_terminal() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let simulator = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
            .current_dir(&root)
            .args([
                "replay",
                "fixtures/recordings/day.jsonl",
                "--config",
                "fixtures/testbed.yaml",
            ])
            .args(extra)
            .output()
            .expect("simulator runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = simulator(&["--noise-runs", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--diff-responses"), "{err}");
    let (code, err) = simulator(&["--tui"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--tui: the TUI needs a terminal"), "{err}");
}
