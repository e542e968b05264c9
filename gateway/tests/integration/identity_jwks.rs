//! The JWKS cache against a real issuer on loopback: key rotation under traffic without false
//! rejections, a flood of unknown kids with bounded fetches, an issuer that is down at start or
//! goes down (503, hangs, garbage) later, bounded staleness, cached tokens dying with their key.

use std::time::Duration;

use gateway::vocab::StageId;
use tokio::net::TcpListener;

use super::identity_support::*;
use super::util::*;

async fn bearer(gw: &TestGateway, path: &str, token: &str) -> Reply {
    gw.send(
        request("GET", &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .expect("request"),
    )
    .await
}

/// Sends until the answer has `status`, bounded; returns how many tries it took.
async fn until_status(gw: &TestGateway, path: &str, token: &str, status: u16) -> usize {
    let mut attempt = 0;
    eventually(
        &format!("{path} answers {status}"),
        Duration::from_secs(10),
        async || {
            attempt += 1;
            match bearer(gw, path, token).await.status {
                s if s == status => Ok(attempt),
                s => Err(s),
            }
        },
    )
    .await
}

async fn metrics(gw: &TestGateway) -> String {
    let admin = gw.handle.admin_address().expect("admin");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    String::from_utf8(reply.body.to_vec()).expect("metrics text")
}

/// The JWKS fetch counters of a metrics text, for a failure message.
fn fetch_lines(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| l.starts_with("gatehouse_jwks_fetches_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn counter(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn keys_rotate_under_traffic_without_a_single_false_401() {
    let old = SigningKey::rsa("2024-old", 0);
    let new = SigningKey::es256("2025-new");
    let issuer = FakeIssuer::start(&[&old]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ ttl: 10m, refetch_cooldown: 30s }",
        "",
    ))
    .await;
    until_status(&gw, "/jwt/x", &old.sign(&claims("warm")), 200).await;
    let fetches_before = issuer.fetches();

    // Traffic from many clients throughout; the issuer publishes the new key, then every
    // client switches to tokens signed with it (each with its own subject, so none is cached).
    let gw = std::sync::Arc::new(gw);
    let phase = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        let gw = gw.clone();
        let phase = phase.clone();
        let (old, new) = (old.clone(), new.clone());
        clients.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..60 {
                let key = if phase.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    &old
                } else {
                    &new
                };
                let token = key.sign(&claims(&format!("client-{c}-{i}")));
                statuses.push(bearer(&gw, "/jwt/x", &token).await.status.as_u16());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            statuses
        });
    }
    // The scenario: the rotation lands while the clients are already sending.
    tokio::time::sleep(Duration::from_millis(40)).await;
    issuer.publish(&[&old, &new]);
    phase.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    while let Some(statuses) = clients.join_next().await {
        let statuses = statuses.expect("client");
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a false rejection: {statuses:?}"
        );
    }
    assert_eq!(total, 480);
    assert_eq!(
        issuer.fetches() - fetches_before,
        1,
        "the first token with the new kid fetched once; the others waited for that fetch"
    );
    assert!(upstream.seen().len() >= 480);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_issuer_one_fetch_per_cooldown() {
    let key = SigningKey::rsa("real", 0);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ ttl: 10m, refetch_cooldown: 30s }",
        "",
    ))
    .await;
    until_status(&gw, "/jwt/x", &key.sign(&claims("warm")), 200).await;
    let fetches_before = issuer.fetches();
    let mut rx = gw.handle.subscribe();
    let gw_ref = std::sync::Arc::new(gw.handle.address());
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..200 {
        let forged = SigningKey {
            kid: format!("random-{i}-{}", fastrand::u64(..)),
            ..key.clone()
        };
        let token = forged.sign(&claims("attacker"));
        let address = *gw_ref;
        flood.spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let request = http::Request::get(format!("http://{address}/jwt/x"))
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Empty::new())
                .expect("request");
            client
                .request(request)
                .await
                .expect("answer")
                .status()
                .as_u16()
        });
    }
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.expect("task"), 401);
    }
    let fetched = issuer.fetches() - fetches_before;
    assert!(fetched <= 1, "200 unknown kids made {fetched} fetches");
    let mut unknown = 0;
    for _ in 0..200 {
        let record = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("record")
            .expect("open");
        assert_eq!(record.stopped_at, Some(StageId::Authn));
        if record.reason.as_deref() == Some("unknown-kid") {
            unknown += 1;
        }
    }
    assert_eq!(unknown, 200);
    let text = metrics(&gw).await;
    assert!(
        counter(
            &text,
            "gatehouse_jwks_refetches_suppressed_total{issuer=\"main\"}"
        ) >= 1,
        "{text}"
    );
    assert!(
        upstream.seen().len() == 1,
        "only the warm-up reached the upstream"
    );
    // Real tokens are unaffected.
    assert_eq!(
        bearer(&gw, "/jwt/x", &key.sign(&claims("user")))
            .await
            .status,
        200
    );
    let _ = gw.record().await;
}

#[tokio::test]
async fn the_gateway_starts_while_the_issuer_is_down_and_serves_once_it_is_up() {
    let key = SigningKey::rsa("k", 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = FakeIssuer::serve(listener, &[&key], IssuerMode::Down);
    let upstream = Upstream::start().await;
    #[allow(clippy::disallowed_methods)] // timing the test itself
    let started = std::time::Instant::now();
    let mut gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ ttl: 10m, refetch_cooldown: 50ms, fetch_timeout: 500ms }",
        "",
    ))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start does not wait for the issuer"
    );
    issuer.wait_for_fetches(1).await;
    // Alive, but not ready: protected routes would refuse every token.
    let admin = gw.handle.admin_address().expect("admin address");
    let health = gw.get_absolute(&format!("http://{admin}/healthz")).await;
    assert_eq!(health.status, 200);
    let ready = gw.get_absolute(&format!("http://{admin}/readyz")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        String::from_utf8_lossy(&ready.body),
        "not ready: no signing keys fetched yet from issuer main\n"
    );

    let token = key.sign(&claims("user"));
    let reply = bearer(&gw, "/jwt/x", &token).await;
    assert_refused(&reply, 401, "authn", "keys-unavailable");
    assert_eq!(
        gw.record().await.reason.as_deref(),
        Some("keys-unavailable")
    );
    assert_eq!(
        gw.get("/public/x").await.status,
        200,
        "public routes work meanwhile"
    );
    assert_eq!(upstream.seen().len(), 1);

    issuer.set_mode(IssuerMode::Up);
    until_status(&gw, "/jwt/x", &token, 200).await;
    let ready = gw.get_absolute(&format!("http://{admin}/readyz")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(String::from_utf8_lossy(&ready.body), "ready\n");
    let text = metrics(&gw).await;
    assert!(
        counter(
            &text,
            "gatehouse_jwks_fetches_total{issuer=\"main\",cause=\"start\",outcome=\"bad-status\"}"
        ) == 1,
        "{text}"
    );
    let ok: u64 = ["no-keys", "refresh"]
        .iter()
        .map(|cause| counter(&text, &format!("gatehouse_jwks_fetches_total{{issuer=\"main\",cause=\"{cause}\",outcome=\"ok\"}}")))
        .sum();
    assert!(ok >= 1, "{text}");
}

#[tokio::test]
async fn start_does_not_wait_for_an_issuer_that_hangs() {
    let key = SigningKey::rsa("k", 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = FakeIssuer::serve(listener, &[&key], IssuerMode::Hang);
    let upstream = Upstream::start().await;
    #[allow(clippy::disallowed_methods)] // timing the test itself
    let started = std::time::Instant::now();
    let mut gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ fetch_timeout: 300ms, refetch_cooldown: 50ms }",
        "",
    ))
    .await;
    let reply = bearer(&gw, "/jwt/x", &key.sign(&claims("user"))).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_refused(&reply, 401, "authn", "keys-unavailable");
    assert_eq!(
        gw.record().await.reason.as_deref(),
        Some("keys-unavailable")
    );
    // The hung fetch times out and is counted.
    eventually(
        "a timed-out fetch is counted",
        Duration::from_secs(5),
        async || {
            let text = metrics(&gw).await;
            match counter(
                &text,
                "gatehouse_jwks_fetches_total{issuer=\"main\",cause=\"start\",outcome=\"timeout\"}",
            ) {
                1 => Ok(()),
                _ => Err(fetch_lines(&text)),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn last_good_keys_are_served_while_the_issuer_fails_but_not_forever() {
    let key = SigningKey::rsa("k", 0);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ ttl: 100ms, refetch_cooldown: 50ms, fetch_timeout: 200ms, max_stale: 3s }",
        "",
    ))
    .await;
    until_status(&gw, "/jwt/x", &key.sign(&claims("warm")), 200).await;

    // The issuer goes bad three ways in turn; tokens (fresh ones, so never from the token
    // cache) keep verifying with the last good keys.
    for (mode, outcome) in [
        (IssuerMode::Down, "bad-status"),
        (IssuerMode::Garbage, "invalid"),
        (IssuerMode::Hang, "timeout"),
    ] {
        issuer.set_mode(mode);
        let prefix = format!(
            "gatehouse_jwks_fetches_total{{issuer=\"main\",cause=\"refresh\",outcome=\"{outcome}\"}}"
        );
        let mut i = 0;
        eventually(
            &format!("a failed refresh ({outcome}) was counted"),
            Duration::from_secs(3),
            async || {
                i += 1;
                let token = key.sign(&claims(&format!("{outcome}-{i}")));
                assert_eq!(bearer(&gw, "/jwt/x", &token).await.status, 200, "{mode:?}");
                let text = metrics(&gw).await;
                if counter(&text, &prefix) > 0 {
                    Ok(())
                } else {
                    Err(fetch_lines(&text))
                }
            },
        )
        .await;
    }
    // Past max_stale the keys are no longer trusted.
    issuer.set_mode(IssuerMode::Down);
    let token = key.sign(&claims("late"));
    until_status(&gw, "/jwt/x", &token, 401).await;
    issuer.set_mode(IssuerMode::Up);
    until_status(&gw, "/jwt/x", &token, 200).await;
}

#[tokio::test]
async fn a_cached_token_dies_with_its_key() {
    let old = SigningKey::rsa("old", 0);
    let new = SigningKey::rsa("new", 1);
    let issuer = FakeIssuer::start(&[&old, &new]).await;
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "{ ttl: 100ms, refetch_cooldown: 50ms }",
        "",
    ))
    .await;
    let token = old.sign(&claims("user"));
    until_status(&gw, "/jwt/x", &token, 200).await;
    // Served from the verified-token cache now.
    assert_eq!(bearer(&gw, "/jwt/x", &token).await.status, 200);
    assert!(counter(&metrics(&gw).await, "gatehouse_token_cache_hits_total") >= 1);
    while gw.records.try_recv().is_ok() {}
    issuer.publish(&[&new]);
    let tries = until_status(&gw, "/jwt/x", &token, 401).await;
    assert!(tries < 300);
    while let Ok(record) = gw.records.try_recv() {
        if record.status == 401 {
            assert_eq!(record.reason.as_deref(), Some("unknown-kid"));
        }
    }
}
