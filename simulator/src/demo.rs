//! `simulator demo`: the whole testbed in-process on embedded defaults — the reference gateway
//! with identity and in-memory rate limits (fixtures/testbed.yaml), fake upstreams (one down, one
//! slow and flaky), a fake issuer rotating its key, and a client mix that exercises every stop.
//! Prints a live line per second and a final table of requests per stage and reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::fake::issuer::{Hostile, IdentitySpec};
use crate::fake::upstream::{Behaviour, Latency};
use crate::http_client::{self, send};
use crate::scenario::fakes::{point_config_at_fakes, spawn_issuer_timeline};
use crate::scenario::model::{FakeIssuerSpec, FakeUpstream, IssuerChange, RequestSpec, RotateStep};

/// The embedded gateway config: the reference routing table with identity and rate limits on.
pub const DEMO_CONFIG: &str = include_str!("../../fixtures/testbed.yaml");

/// One stream of the client mix: a request sent at a steady rate, as an identity or not.
struct Stream {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// An identity of [`identities`], whose token the fake issuer mints per request.
    identity: Option<&'static str>,
    hostile: Option<Hostile>,
    per_second: u32,
}

const fn stream(
    method: &'static str,
    path: &'static str,
    identity: Option<&'static str>,
    per_second: u32,
) -> Stream {
    Stream {
        method,
        path,
        headers: &[],
        identity,
        hostile: None,
        per_second,
    }
}

/// Most traffic passes — about three requests in four, as on a healthy gateway — and every stop
/// the gateway can make still shows up within seconds. The paid tier allows 1,000 a minute
/// (about 16.7/s) per subject, so the steady traffic is spread over five readers under it; each
/// stop has a small stream of its own, so one noisy stop does not drown the rest.
const MIX: &[Stream] = &[
    stream("GET", "/api/v1/users/42", Some("reader-1"), 9),
    stream("GET", "/api/v1/users/43", Some("reader-2"), 9),
    stream("GET", "/api/v1/users/44", Some("reader-3"), 9),
    stream("GET", "/api/v1/users/45", Some("reader-4"), 9),
    stream("GET", "/api/v1/users/46", Some("reader-5"), 9),
    stream("POST", "/api/v1/users", Some("writer"), 10),
    // A paid customer trying v2 beta at 8/s: its 5/s beta limit stops the rest at ratelimit.
    stream("GET", "/api/v2/users/7", Some("beta"), 8),
    // A free-tier client at 8/s against 100 a minute: most of it stopped at ratelimit once
    // its burst of 10 is spent.
    stream("GET", "/api/v1/users/9", Some("free"), 8),
    stream("GET", "/api/admin/reports", Some("admin"), 3),
    // A reader on an admin route: authz.
    stream("GET", "/api/admin/reports", Some("reader-1"), 1),
    // The payments upstream is down: forward.
    stream("POST", "/api/payments/charges", Some("writer"), 3),
    // No token: authn.
    stream("GET", "/api/v1/users/42", None, 3),
    Stream {
        hostile: Some(Hostile::Expired),
        ..stream("GET", "/api/v1/users/42", Some("reader-2"), 1)
    },
    Stream {
        hostile: Some(Hostile::BadSignature),
        ..stream("GET", "/api/v1/users/42", Some("reader-3"), 1)
    },
    Stream {
        hostile: Some(Hostile::UnknownKid),
        ..stream("GET", "/api/v1/users/42", Some("reader-4"), 1)
    },
    stream("GET", "/api/unknown", Some("reader-5"), 2),
    // A request target longer than the edge allows (replaced at send time): 414 at tls.
    stream("GET", LONG_URI, None, 1),
    stream("GET", "/api/v1/../admin/users", Some("reader-2"), 1),
    Stream {
        headers: &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ],
        ..stream("OPTIONS", "/api/v1/users/1", None, 2)
    },
    Stream {
        headers: &[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "GET"),
        ],
        ..stream("OPTIONS", "/api/v1/users/1", None, 1)
    },
];

/// Stands for a 9,000-byte path, built when sent.
const LONG_URI: &str = "<long uri>";

fn identities() -> BTreeMap<String, IdentitySpec> {
    let who = |subject: &str, scopes: &[&str], roles: &[&str], tier: &str| IdentitySpec {
        subject: subject.into(),
        tenant: Some("acme".into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        tier: Some(tier.into()),
    };
    let readers = (1..=5).map(|i| {
        let name = format!("reader-{i}");
        let spec = who(&name, &["users:read"], &[], "paid");
        (name, spec)
    });
    let mut all = BTreeMap::from([
        (
            "beta".to_string(),
            who("beta", &["users:read"], &[], "paid"),
        ),
        (
            "writer".to_string(),
            who("writer", &["users:read", "users:write"], &[], "paid"),
        ),
        (
            "free".to_string(),
            who("hobbyist", &["users:read"], &[], "free"),
        ),
        (
            "admin".to_string(),
            who("ops", &["users:read"], &["admin"], "paid"),
        ),
    ]);
    all.extend(readers);
    all
}

fn fakes() -> BTreeMap<String, FakeUpstream> {
    let upstream = |behaviour: Behaviour| FakeUpstream {
        instances: 2,
        protocol: None,
        behaviour,
        timeline: Vec::new(),
    };
    let mut specs = BTreeMap::new();
    specs.insert(
        "users-svc".to_string(),
        upstream(Behaviour {
            latency: Some(Latency::Lognormal {
                median: Duration::from_millis(3),
                sigma: 0.6,
            }),
            body_bytes: 256,
            ..Behaviour::default()
        }),
    );
    specs.insert(
        "admin-svc".to_string(),
        upstream(Behaviour {
            latency: Some(Latency::Uniform {
                min: Duration::from_millis(50),
                max: Duration::from_millis(1_500),
            }),
            error_rate: 0.1,
            error_status: 503,
            ..Behaviour::default()
        }),
    );
    specs.insert(
        "payments-svc".to_string(),
        upstream(Behaviour {
            down: true,
            ..Behaviour::default()
        }),
    );
    specs
}

type Tally = Arc<Mutex<BTreeMap<(String, String), u64>>>;

/// What the demo's clients got: requests by where they stopped (`passed`: no stop) and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub counts: BTreeMap<(String, String), u64>,
}

impl Summary {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Requests no stage stopped (the upstream answered, or the gateway answered a preflight).
    pub fn passed(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((stage, _), _)| stage == "passed")
            .map(|(_, n)| n)
            .sum()
    }

    /// The table printed when the demo ends, with the share that passed on its last line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "\n{:<18} {:<24} {:>8}\n",
            "stopped at", "reason", "requests"
        );
        for ((stage, reason), n) in &self.counts {
            out.push_str(&format!("{stage:<18} {reason:<24} {n:>8}\n"));
        }
        out.push_str(&format!("{:<18} {:<24} {:>8}\n", "total", "", self.total()));
        let share = self.passed() as f64 * 100.0 / self.total().max(1) as f64;
        out.push_str(&format!(
            "passed the gateway: {} of {} ({share:.0}%)\n",
            self.passed(),
            self.total()
        ));
        out
    }
}

pub async fn run(duration: Duration) -> anyhow::Result<()> {
    run_with(duration, false).await
}

/// The demo; with `tui`, the terminal UI replaces the line per second until the user quits.
/// Either way it ends — at `q`, Ctrl-C or the end of `duration` — by printing the summary.
pub async fn run_with(duration: Duration, tui: bool) -> anyhow::Result<()> {
    let issuer = FakeIssuerSpec {
        name: None,
        // The issuer rotates its key abruptly every 5 s; the gateway follows without a false 401.
        timeline: (1..=720)
            .map(|i| IssuerChange {
                at: Duration::from_secs(5 * i),
                rotate: Some(RotateStep::Abruptly),
                mode: None,
            })
            .collect(),
    };
    let (config, mut fakes) =
        point_config_at_fakes("<embedded demo>", DEMO_CONFIG, &fakes(), Some(&issuer))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    fakes.identities = identities();
    let fakes = Arc::new(fakes);
    let rotation = spawn_issuer_timeline(issuer.timeline.clone(), fakes.clone());
    let runtime = gateway::config::load_str("<embedded demo>", &config).map_err(|d| {
        anyhow::anyhow!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let policies = crate::tui::app::policies_of(&runtime.rate_limits);
    let bind = |what: &'static str| async move {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the {what} listener: {e}"))
    };
    let gateway = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![bind("gateway").await?]),
            // A free port, so the demo never collides with a gateway already running.
            admin_listener: Some(bind("admin").await?),
            ..gateway::StartOptions::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let address = gateway.address();
    let admin = gateway
        .admin_address()
        .map_or("-".to_owned(), |a| format!("http://{a}"));
    println!(
        "gatehouse demo: gateway on http://{address}, admin on {admin}, {} client streams, {}",
        MIX.len(),
        humantime::format_duration(duration)
    );
    println!("  watch it from another terminal: simulator tui --attach {admin}");

    let tally: Tally = Arc::default();
    let mut records = gateway.subscribe();
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

    let client = http_client::new();
    let deadline = tokio::time::Instant::now() + duration;
    let mut senders = Vec::new();
    for stream in MIX {
        let client = client.clone();
        let fakes = fakes.clone();
        senders.push(tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / f64::from(stream.per_second.max(1)));
            let mut next = tokio::time::Instant::now();
            let mut inflight = tokio::task::JoinSet::new();
            while next < deadline {
                tokio::time::sleep_until(next).await;
                next += gap;
                let path = if stream.path == LONG_URI {
                    format!("/api/v1/users/{}", "x".repeat(9000))
                } else {
                    stream.path.to_string()
                };
                let mut builder = http::Request::builder()
                    .method(stream.method)
                    .uri(format!("http://{address}{path}"));
                for (k, v) in stream.headers {
                    builder = builder.header(*k, *v);
                }
                let spec = RequestSpec {
                    method: Some(stream.method.into()),
                    path: stream.path.into(),
                    headers: BTreeMap::new(),
                    body: None,
                    as_identity: stream.identity.map(str::to_owned),
                    hostile: stream.hostile,
                    http2: None,
                    grpc: None,
                };
                if let Ok(Some(authorization)) = fakes.authorization(&spec) {
                    builder = builder.header(http::header::AUTHORIZATION, authorization);
                }
                let body = if stream.method == "POST" {
                    Bytes::from_static(b"{\"demo\":true}")
                } else {
                    Bytes::new()
                };
                if let Ok(request) = builder.body(Full::new(body)) {
                    let client = client.clone();
                    inflight.spawn(async move { send(&client, request).await });
                }
                while inflight.try_join_next().is_some() {}
            }
            // Requests still in flight at the end are abandoned: the demo is bounded in time.
            inflight.abort_all();
        }));
    }

    let summary = |tally: &Tally| Summary {
        counts: tally.lock().map(|t| t.clone()).unwrap_or_default(),
    };
    if tui {
        // The TUI on the gateway's records instead of the line per second, until `q`; the
        // footer says when the clients have stopped, so a quiet screen is not a mystery.
        let (tx, feed) = tokio::sync::mpsc::channel(65_536);
        let mut from_gateway = crate::tui::term::from_broadcast(gateway.subscribe());
        let forward = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(item) = from_gateway.recv().await {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            })
        };
        // Quitting stops the clients too, though the task awaiting them holds their handles.
        let clients: Vec<tokio::task::AbortHandle> =
            senders.iter().map(|s| s.abort_handle()).collect();
        let clients_done = {
            let senders = std::mem::take(&mut senders);
            tokio::spawn(async move {
                for s in senders {
                    let _ = s.await;
                }
                let _ = tx
                    .send(crate::tui::term::Feed::Note(
                        "the clients have stopped (end of --duration); q quits".into(),
                    ))
                    .await;
            })
        };
        let app =
            crate::tui::app::App::live_with_policies(format!("demo on http://{address}"), policies);
        let result = crate::tui::term::run(app, Some(feed)).await;
        clients.iter().for_each(tokio::task::AbortHandle::abort);
        clients_done.abort();
        forward.abort();
        gateway.shutdown().await;
        collector.abort();
        rotation.abort();
        result?;
        print!("{}", summary(&tally).render());
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_total = 0u64;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = ticker.tick() => {}
            // Ctrl-C ends the demo early, still with its summary.
            _ = &mut interrupted => {
                println!("interrupted");
                senders.iter().for_each(|s| s.abort());
                break;
            }
        }
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
    gateway.shutdown().await;
    collector.abort();
    rotation.abort();
    print!("{}", summary(&tally).render());
    Ok(())
}
