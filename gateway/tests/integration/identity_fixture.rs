//! `fixtures/identity.yaml` — the reference table with identity on — loaded from a file (paths
//! relative to it), served on a plaintext and a TLS listener, and walked route by route.

use gateway::StartOptions;
use gateway::vocab::StageId;
use serde_json::json;
use tokio::net::TcpListener;

use super::identity_support::*;
use super::util::*;

const FIXTURE: &str = include_str!("../../../fixtures/identity.yaml");
const API_KEYS: &str = include_str!("../../../fixtures/identity/api-keys.yaml");

#[tokio::test]
async fn the_identity_fixture_guards_the_reference_table() {
    let pki = Pki::generate();
    let key = SigningKey::rsa("fixture", 0);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;

    // The fixture as shipped, pointed at the test's issuer and upstream, certificates beside it.
    let text = FIXTURE
        .replace("identity/", "")
        .replace("https://issuer.example.com/", ISS)
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("access_log: stdout", "access_log: off");
    let text = point_at(&text, upstream.address)
        .replace("http://localhost:9200/.well-known/jwks.json", &issuer.url());
    let text = text.replace(
        &format!("address: {}", upstream.address),
        "address: 127.0.0.1:0",
    );
    let config = write_file(pki.dir.path(), "identity.yaml", &text);
    write_file(pki.dir.path(), "api-keys.yaml", API_KEYS);
    let runtime = gateway::config::load_file(&config).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(runtime.listeners.len(), 2);
    assert!(runtime.listeners[1].tls.is_some());

    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tls = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = gateway::start(
        runtime,
        StartOptions {
            listeners: Some(vec![plain, tls]),
            admin_listener: Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")),
            ..StartOptions::default()
        },
    )
    .await
    .expect("start");
    let records = handle.subscribe();
    let mut gw = TestGateway {
        handle,
        records,
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    };
    issuer.wait_for_fetches(1).await;

    let token = |scope: &str, roles: serde_json::Value| {
        let claims = with(
            with(claims("user-7"), "scope", json!(scope)),
            "roles",
            roles,
        );
        key.sign(&with(claims, "tenant_id", json!("acme")))
    };
    let base = format!("http://{}", gw.handle.address());
    let send = |method: &str, path: &str, bearer: Option<&str>| {
        let mut r = request(method, &format!("{base}{path}"));
        if let Some(t) = bearer {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(empty()).expect("request")
    };

    // GET /api/v1/users/7 → users-svc as /users/7, with the identity and without the token.
    let reader = token("users:read", json!([]));
    eventually(
        "GET /api/v1/users/7 answers 200 once the keys are in",
        std::time::Duration::from_secs(5),
        async || match gw
            .send(send("GET", "/api/v1/users/7", Some(&reader)))
            .await
            .status
        {
            http::StatusCode::OK => Ok(()),
            status => Err(status),
        },
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.target, "/users/7");
    assert_eq!(seen.headers["x-user-id"], "user-7");
    assert_eq!(seen.headers["x-tenant-id"], "acme");
    assert!(!seen.headers.contains_key("authorization"));
    while gw.records.try_recv().is_ok() {}

    // POST /api/v1/users needs users:write.
    let reply = gw.send(send("POST", "/api/v1/users", Some(&reader))).await;
    assert_refused(&reply, 403, "authz", "insufficient-scope");
    let writer = token("users:read users:write", json!([]));
    assert_eq!(
        gw.send(send("POST", "/api/v1/users", Some(&writer)))
            .await
            .status,
        200
    );
    assert_eq!(upstream.last().target, "/users");

    // Admin needs the admin role.
    let reply = gw
        .send(send("GET", "/api/admin/stats", Some(&reader)))
        .await;
    assert_refused(&reply, 403, "authz", "missing-role");
    let admin = token("users:read", json!(["admin"]));
    assert_eq!(
        gw.send(send("GET", "/api/admin/stats", Some(&admin)))
            .await
            .status,
        200
    );

    // The partner's API key reads users, and only that.
    let with_key = |path: &str| {
        request("GET", &format!("{base}{path}"))
            .header("x-api-key", "partner-demo-key")
            .body(empty())
            .expect("request")
    };
    assert_eq!(gw.send(with_key("/api/v1/users/7")).await.status, 200);
    assert_eq!(upstream.last().headers["x-user-id"], "partner-demo-app");
    assert_refused(
        &gw.send(with_key("/api/admin/stats")).await,
        401,
        "authn",
        "missing-credentials",
    );

    // Payments: a token is not enough without a client certificate...
    let payer = token("payments:write", json!([]));
    let reply = gw
        .send(send("POST", "/api/payments/charge", Some(&payer)))
        .await;
    assert_refused(&reply, 403, "authn", "client-cert-required");
    let seen_before = upstream.seen().len();
    // ...over TLS with one, it passes.
    let tls_address = gw.handle.addresses()[1];
    let client = tls_client(&pki, ClientCert::Trusted, &[b"h2", b"http/1.1"]);
    let (reply, _) = tls_get(
        tls_address,
        &client,
        "payments.localhost",
        "payments.localhost",
        "/api/payments/charge",
        &[("authorization", &format!("Bearer {payer}"))],
    )
    .await
    .expect("exchange");
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen().len(), seen_before + 1);
    assert_eq!(upstream.last().headers["x-forwarded-proto"], "https");

    // Every stop above was recorded with its stage.
    let mut stops = Vec::new();
    while let Ok(record) = gw.records.try_recv() {
        if let Some(stage) = record.stopped_at {
            stops.push((
                stage,
                record.reason.clone().unwrap_or_default().into_owned(),
            ));
        }
    }
    assert!(
        stops.contains(&(StageId::Authn, "client-cert-required".into())),
        "{stops:?}"
    );
}
