//! `ratelimit` with the in-memory store, end to end: real sockets, a manual clock.

use std::time::Duration;

use super::ratelimit_support::*;
use super::util::*;

const FREE: &str = "  default_tier: free
  legacy_headers: true
  policies:
    - id: free
      algorithm: fixed-window
      limit: 3
      period: 1m
      key: client_ip
      tiers: [free]
";

#[tokio::test]
async fn a_fourth_request_in_the_window_is_refused_with_honest_headers_and_a_record() {
    let upstream = Upstream::start().await;
    let (mut gw, clock) = start_on_manual_clock(&config_with_limits(upstream.address, FREE)).await;
    // 10 s into a minute: the window ends in 50 s.
    clock.advance(Duration::from_secs(10));
    for remaining in [2, 1, 0] {
        let reply = gw.get("/api/users").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-policy"), Some("\"free\";q=3;w=60"));
        assert_eq!(
            reply.header("ratelimit"),
            Some(format!("\"free\";r={remaining};t=50").as_str())
        );
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            reply.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        assert_eq!(reply.header("retry-after"), None);
        let record = gw.record().await;
        let limit = record.limit.as_ref().expect("the record names the limit");
        assert_eq!(&*limit.policy, "free");
        assert_eq!(limit.subject, "ip:127.0.0.1");
        assert_eq!(limit.remaining, remaining);
    }
    clock.advance(Duration::from_millis(500));
    let refused = gw.get("/api/users").await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("retry-after"),
        Some("50"),
        "49.5 s, rounded up"
    );
    assert_eq!(refused.header("ratelimit"), Some("\"free\";r=0;t=50"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"free\";q=3;w=60")
    );
    let problem = refused.problem();
    assert_eq!(problem["type"], "urn:gatehouse:problem:quota-exceeded");
    assert_eq!(problem["stage"], "ratelimit");
    assert_eq!(problem["status"], 429);
    let record = gw.record().await;
    assert_eq!(record.stopped_at.map(|s| s.as_str()), Some("ratelimit"));
    assert_eq!(record.reason.as_deref(), Some("quota-exceeded"));
    let limit = record.limit.as_ref().expect("limit");
    assert_eq!((limit.remaining, limit.retry_after_secs), (0, Some(50)));
    assert_eq!(
        upstream.seen().len(),
        3,
        "the refused request never reached the upstream"
    );

    // The next window admits again.
    clock.advance(Duration::from_secs(50));
    assert_eq!(gw.get("/api/users").await.status, 200);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "gatehouse_ratelimit_decisions_total{policy=\"free\",outcome=\"denied\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn retry_after_is_never_zero_and_a_retry_at_that_time_succeeds() {
    let upstream = Upstream::start().await;
    let limits = "  policies:
    - {id: burst, algorithm: gcra, limit: 10, period: 1s, burst: 2, key: client_ip}
";
    let (gw, clock) = start_on_manual_clock(&config_with_limits(upstream.address, limits)).await;
    assert_eq!(gw.get("/api/a").await.status, 200);
    assert_eq!(gw.get("/api/a").await.status, 200);
    let refused = gw.get("/api/a").await;
    assert_eq!(refused.status, 429);
    // 100 ms to wait: Retry-After says 1, never 0.
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"burst\";q=2;w=1")
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(gw.get("/api/a").await.status, 200);
}

#[tokio::test]
async fn the_paid_tier_and_several_policies_all_must_pass_and_the_tightest_speaks() {
    let upstream = Upstream::start().await;
    // The testbed's paid tier as two policies (1,000 per minute, 100 per second), plus a per-route
    // cap on /other only. Without an identity the tier is the default, `paid` here.
    let limits = "  default_tier: paid
  tiers: [free]
  policies:
    - {id: paid-minute, algorithm: sliding-window-counter, limit: 1000, period: 1m, key: api_key, tiers: [paid]}
    - {id: paid-second, algorithm: fixed-window, limit: 100, period: 1s, key: api_key, tiers: [paid]}
    - {id: free, algorithm: fixed-window, limit: 1, period: 1m, key: client_ip, tiers: [free]}
    - {id: other-route, algorithm: token-bucket, limit: 5, period: 1m, key: route, routes: [other]}
";
    let (mut gw, clock) =
        start_on_manual_clock(&config_with_limits(upstream.address, limits)).await;
    clock.advance(Duration::from_millis(100));
    let mut admitted = 0;
    for _ in 0..150 {
        if gw.get("/api/x").await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100, "the per-second policy refuses the rest");
    let mut last = None;
    while let Ok(r) = gw.records.try_recv() {
        last = Some(r);
    }
    let last = last.expect("records");
    let limit = last.limit.as_ref().expect("limit");
    assert_eq!(&*limit.policy, "paid-second", "the refusing policy speaks");
    assert_eq!(
        limit.subject, "ip:127.0.0.1",
        "no identity yet: counted per client IP"
    );
    // The refused 50 did not eat the minute's quota: 1000 − 100 left.
    clock.advance(Duration::from_secs(1));
    let reply = gw.get("/api/x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("ratelimit"),
        Some("\"paid-second\";r=99;t=1"),
        "99 left this second is tighter than 899 this minute"
    );
    // /other adds its own policy, the tightest there.
    let reply = gw.get("/other/y").await;
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some("\"other-route\";q=5;w=60")
    );
    assert_eq!(reply.header("ratelimit"), Some("\"other-route\";r=4;t=12"));
}

#[tokio::test]
async fn a_reload_keeps_the_counters_of_unchanged_policies_and_restarts_changed_ones() {
    let upstream = Upstream::start().await;
    let before = "  policies:
    - {id: kept, algorithm: fixed-window, limit: 2, period: 1m, key: client_ip}
    - {id: changed, algorithm: fixed-window, limit: 5, period: 1m, key: client_ip}
";
    let (gw, clock) = start_on_manual_clock(&config_with_limits(upstream.address, before)).await;
    clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        assert_eq!(gw.get("/api/a").await.status, 200);
    }
    // A reload swaps the runtime; the counters live beside it, in the gateway state.
    let after = before.replace("limit: 5", "limit: 6");
    let runtime =
        gateway::config::load_str("<reload>", &config_with_limits(upstream.address, &after))
            .expect("valid");
    gateway::reload::install(gw.handle.state(), runtime);
    let refused = gw.get("/api/a").await;
    assert_eq!(refused.status, 429, "`kept` remembers its two requests");
    assert_eq!(refused.header("ratelimit"), Some("\"kept\";r=0;t=59"));
    // `changed` started afresh: with `kept` out of the way it reports its full quota minus one.
    let only_changed = after.replace(
        "limit: 2, period: 1m, key: client_ip",
        "limit: 2, period: 1m, key: client_ip, routes: [not-found]",
    );
    let runtime = gateway::config::load_str(
        "<reload>",
        &config_with_limits(upstream.address, &only_changed),
    )
    .expect("valid");
    gateway::reload::install(gw.handle.state(), runtime);
    let reply = gw.get("/api/a").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("ratelimit"), Some("\"changed\";r=5;t=59"));
}

#[tokio::test]
async fn a_header_keyed_policy_counts_per_value_and_never_stores_the_value() {
    let upstream = Upstream::start().await;
    let limits = "  policies:
    - {id: per-key, algorithm: sliding-log, limit: 1, period: 10s, key: header:x-api-key, when_missing: skip}
";
    let (mut gw, _clock) =
        start_on_manual_clock(&config_with_limits(upstream.address, limits)).await;
    let url = gw.url("/api/a");
    let send = |key: &'static str| {
        request("GET", &url)
            .header("x-api-key", key)
            .body(empty())
            .expect("request")
    };
    assert_eq!(gw.send(send("secret-one")).await.status, 200);
    let record = gw.record().await;
    let subject = &record.limit.as_ref().expect("limit").subject;
    assert!(
        subject.starts_with("h:") && !subject.contains("secret"),
        "{subject}"
    );
    assert_eq!(gw.send(send("secret-one")).await.status, 429);
    assert_eq!(gw.send(send("secret-two")).await.status, 200);
    // Without the header the policy does not apply (when_missing: skip).
    let reply = gw.get("/api/a").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("ratelimit"), None);
}
