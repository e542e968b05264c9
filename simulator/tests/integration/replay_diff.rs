//! The config review on the real gateway's own records: the same requests through two configs
//! (in-process gateways, one fake upstream), each record read into a replay outcome, and the two
//! runs compared. A renamed route, a tightened limit and a new scope requirement each flag
//! exactly the requests they affect; the JUnit and HTML renderings of that diff read back.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use simulator::fake::upstream::{Behaviour, FakeInstance};
use simulator::replay::diff::{Field, diff_decisions};
use simulator::replay::model::{Decision, ExchangeOutcome};

fn config(upstream: std::net::SocketAddr, candidate: bool) -> String {
    let (users, orders_limit, admin_scopes) = if candidate {
        ("users-v2", 3, "[admin:write]")
    } else {
        ("users", 100, "[]")
    };
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
auth:
  api_keys:
    keys:
      - {{ id: k1, key: secret-one, subject: alice, scopes: [orders:read] }}
upstreams:
  app:
    instances: [{upstream}]
rate_limits:
  policies:
    - {{ id: per-key, algorithm: fixed-window, limit: {orders_limit}, period: 1m, key: api_key, routes: [orders] }}
routes:
  - {{ name: {users}, match: {{ path: /v1/users/* }}, upstream: app, rewrite: {{ strip_prefix: /v1 }} }}
  - {{ name: orders, match: {{ path: /orders/* }}, upstream: app, auth: {{ scopes: [orders:read] }} }}
  - {{ name: admin, match: {{ path: /admin/* }}, upstream: app, auth: {{ scopes: {admin_scopes} }} }}
  - {{ name: health, match: {{ path: /health }}, upstream: app }}
  - {{ name: rest, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

/// The recording both configs get: (path, with the API key).
const REQUESTS: [(&str, bool); 12] = [
    ("/v1/users/1", false),
    ("/orders/1", true),
    ("/health", false),
    ("/orders/2", true),
    ("/v1/users/2", false),
    ("/orders/3", true),
    ("/admin/keys", true),
    ("/orders/4", true),
    ("/orders/5", true),
    ("/admin/audit", true),
    ("/orders/6", true),
    ("/health", false),
];

/// Sends the requests one after the other through a fresh gateway with `config`, and turns each
/// one's record into an outcome (ids `r1`..).
async fn run(config: &str) -> Vec<ExchangeOutcome> {
    let runtime = gateway::config::load_str("<test>", config).unwrap_or_else(|d| {
        panic!(
            "config: {}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let handle = gateway::start(
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
    .expect("start the gateway");
    let mut records = handle.subscribe();
    let client = simulator::http_client::new();
    let mut outcomes = Vec::new();
    for (i, (path, keyed)) in REQUESTS.iter().enumerate() {
        let mut request = http::Request::get(format!("http://{}{path}", handle.address()));
        if *keyed {
            request = request.header("x-api-key", "secret-one");
        }
        let response = client
            .request(request.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        response.into_body().collect().await.expect("body");
        // Sent one at a time, so the next record is this request's.
        let record = tokio::time::timeout(Duration::from_secs(10), records.recv())
            .await
            .expect("a record in time")
            .expect("the record stream");
        assert_eq!(record.path, *path, "records arrive in send order");
        outcomes.push(ExchangeOutcome {
            id: format!("r{}", i + 1),
            position: i as u64 + 1,
            method: "GET".to_owned(),
            path: (*path).to_owned(),
            status: Some(status),
            error: None,
            decision: Some(Decision::of(&record)),
            response: None,
            scheduled_ns: i as u64 * 1_000_000,
            sent_ns: i as u64 * 1_000_000,
            latency_ns: record.duration_ns,
        });
    }
    handle.shutdown().await;
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_route_a_tightened_limit_and_a_new_scope_flag_exactly_their_requests() {
    let upstream = FakeInstance::start(Behaviour::default())
        .await
        .expect("upstream");
    let baseline = run(&config(upstream.address, false)).await;
    let candidate = run(&config(upstream.address, true)).await;
    assert!(
        baseline.iter().all(|o| o.status == Some(200)),
        "the baseline admits everything: {baseline:?}"
    );

    // Two runs of the same config: nothing changes, though the limit's `remaining` did.
    let again = run(&config(upstream.address, false)).await;
    assert_eq!(diff_decisions(&baseline, &again).changed, 0);

    let diff = diff_decisions(&baseline, &candidate);
    assert_eq!(diff.compared, 12);
    let changed: Vec<&str> = diff.requests.iter().map(|r| r.id.as_str()).collect();
    // The users requests (renamed route), the 4th to 6th orders (limit 3), both admin requests.
    assert_eq!(changed, ["r1", "r5", "r7", "r8", "r9", "r10", "r11"]);
    let groups: Vec<(String, u64)> = diff.groups.iter().map(|g| (g.title(), g.count)).collect();
    assert_eq!(
        groups,
        [
            (
                "orders: passed → orders: ratelimit/quota-exceeded".to_owned(),
                3
            ),
            (
                "admin: passed → admin: authz/insufficient-scope".to_owned(),
                2
            ),
            ("users: passed → users-v2: passed".to_owned(), 2),
        ],
        "{}",
        diff.render_text()
    );
    let orders = &diff.groups[0];
    assert!(orders.fields.contains(&Field::Limit) && orders.fields.contains(&Field::Status));
    assert_eq!(diff.groups[2].fields, [Field::Route]);
    // The third order was admitted by both, with less remaining: not a change.
    assert!(!changed.contains(&"r6"));
    assert!(diff.exceeds(0.5) && !diff.exceeds(0.6), "7 of 12");

    let xml = simulator::replay::junit::junit("old → new", &diff, None, 0.0).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("XML");
    let failed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|n| n.children().any(|c| c.has_tag_name("failure")))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert_eq!(
        failed,
        [
            "orders: passed → orders: ratelimit/quota-exceeded",
            "admin: passed → admin: authz/insufficient-scope",
            "users: passed → users-v2: passed",
            "changed share within --max-changed",
        ]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let written = simulator::replay::plot::write_html(
        dir.path(),
        "old → new",
        &[("old", &baseline), ("new", &candidate)],
        Some(&diff),
        &diff.render_text(),
    )
    .expect("html");
    let page = std::fs::read_to_string(&written[2]).expect("index.html");
    assert!(page.contains("orders: ratelimit/quota-exceeded"));
    assert!(
        std::fs::read_to_string(&written[0])
            .expect("rate.svg")
            .contains("<svg")
    );
}
