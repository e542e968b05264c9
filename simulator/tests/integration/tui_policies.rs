//! The TUI's lab starts from the watched gateway's own policies: `tui --attach` reads them from
//! the gateway's admin `/config`, here from a real gateway started in-process.

use std::time::Duration;

use gateway::ratelimit::Quota;
use simulator::tui::app::LabPolicy;
use tokio::net::TcpListener;

#[tokio::test]
async fn attach_reads_the_gateways_policies_from_its_admin_config() {
    let config = r#"
listeners: [{ name: public, address: "127.0.0.1:0" }]
access_log: off
rate_limits:
  policies:
    - { id: per-ip, algorithm: gcra, limit: 5, period: 1s, burst: 2, key: client_ip }
    - { id: per-route, algorithm: fixed-window, limit: 100, period: 1m, key: route }
routes:
  - { name: all, match: { path: /* }, respond: { status: 404 } }
"#;
    let runtime = gateway::config::load_str("<test>", config).expect("config");
    let handle = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![TcpListener::bind("127.0.0.1:0").await.expect("bind")]),
            admin_listener: Some(TcpListener::bind("127.0.0.1:0").await.expect("bind admin")),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    let admin = handle.admin_address().expect("admin address");
    let policies = tokio::time::timeout(
        Duration::from_secs(10),
        simulator::tui::term::admin_policies(&format!("http://{admin}")),
    )
    .await
    .expect("in time")
    .expect("policies");
    assert_eq!(
        policies,
        vec![
            LabPolicy {
                id: "per-ip".into(),
                quota: Quota {
                    limit: 5,
                    period_nanos: 1_000_000_000,
                    burst: 2
                },
            },
            LabPolicy {
                id: "per-route".into(),
                quota: Quota {
                    limit: 100,
                    period_nanos: 60_000_000_000,
                    burst: 100
                },
            },
        ]
    );
    handle.shutdown().await;
}
