//! What identity and client-address headers an upstream can believe, on real sockets with real
//! signatures and real mTLS: UTF-8 claims percent-encoded or refused (`auth.identity_headers`),
//! `X-Forwarded-For` / `Forwarded` / `X-Real-IP` rewritten unless a trusted proxy sent them,
//! RFC 9440 `Client-Cert` forwarded where a route asks and never from a client, and a verified
//! client certificate as the identity authz tenant rules and rate limits use.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use gateway::vocab::StageId;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::identity_support::*;
use super::util::*;

/// A gateway on `auth_config` with the issuer's keys fetched and a JWT route answering.
async fn jwt_gateway(extra_auth: &str) -> (Upstream, TestGateway, SigningKey, FakeIssuer) {
    let key = SigningKey::rsa("rsa-1", 1);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "ttl: 10m",
        extra_auth,
    ))
    .await;
    issuer.wait_for_fetches(1).await;
    let token = key.sign(&claims("warm-up"));
    eventually(
        "a JWT route answers 200 once the keys are in",
        Duration::from_secs(5),
        async || {
            let reply = bearer(&gw, "/jwt/warm", &token).await;
            let _ = gw.record().await;
            match reply.status.as_u16() {
                200 => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
    upstream.seen.lock().expect("seen").clear();
    (upstream, gw, key, issuer)
}

async fn bearer(gw: &TestGateway, path: &str, token: &str) -> Reply {
    gw.send(
        request("GET", &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .expect("request"),
    )
    .await
}

fn utf8_claims() -> serde_json::Value {
    let c = with(claims("José Ñ"), "tenant", json!("Zürich"));
    with(c, "scope", json!("users:read lire:é 100%"))
}

#[tokio::test]
async fn utf8_claims_are_percent_encoded_into_identity_headers_by_default() {
    let (upstream, mut gw, key, _issuer) = jwt_gateway("").await;
    let reply = bearer(&gw, "/users/1", &key.sign(&utf8_claims())).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let seen = upstream.last().headers;
    assert_eq!(seen["x-user-id"], "Jos%C3%A9%20%C3%91");
    assert_eq!(seen["x-tenant-id"], "Z%C3%BCrich");
    assert_eq!(seen["x-auth-scopes"], "users:read lire:%C3%A9 100%25");
    let record = gw.record().await;
    assert_eq!(
        record.identity.as_ref().map(|i| i.subject.as_str()),
        Some("José Ñ"),
        "the record keeps the claim as it was"
    );
    // Control characters stay refused, C1 ones included.
    for sub in ["a\r\nX-Admin: 1", "a\u{85}b"] {
        let reply = bearer(&gw, "/users/1", &key.sign(&claims(sub))).await;
        assert_refused(&reply, 401, "authn", "invalid-claim");
        let record = gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Authn));
        assert_eq!(record.reason.as_deref(), Some("invalid-claim"));
    }
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn utf8_claims_are_refused_under_non_ascii_reject() {
    let (upstream, mut gw, key, _issuer) =
        jwt_gateway("  identity_headers: { non_ascii: reject }").await;
    for c in [
        utf8_claims(),
        with(claims("user-1"), "tenant", json!("Zürich")),
        with(claims("user-1"), "scope", json!("users:read lire:é")),
    ] {
        let reply = bearer(&gw, "/users/1", &key.sign(&c)).await;
        assert_refused(&reply, 401, "authn", "invalid-claim");
        let record = gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Authn));
        assert_eq!(record.reason.as_deref(), Some("invalid-claim"));
        assert!(upstream.seen().is_empty());
    }
    // The canary, on a fresh connection; and under `reject` an ASCII `%` goes verbatim.
    let canary = format!(
        "GET /users/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        key.sign(&claims("100%-user"))
    );
    let (answer, _) = raw_exchange(
        gw.handle.address(),
        canary.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(upstream.last().headers["x-user-id"], "100%-user");
}

fn plain_config(upstream: SocketAddr, trusted: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
rate_limits: {{ trusted_proxies: [{trusted}] }}
upstreams: {{ svc: {{ instances: ["{upstream}"] }} }}
routes:
  - {{ name: all, match: {{ path: /* }}, upstream: svc }}
"#
    )
}

async fn spoofing(gw: &TestGateway) -> Reply {
    gw.send(
        request("GET", &gw.url("/x"))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-for", "198.51.100.1")
            .header("forwarded", "for=203.0.113.9;proto=https")
            .header("x-real-ip", "203.0.113.9")
            .body(empty())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn client_address_headers_are_replaced_unless_a_trusted_proxy_sent_them() {
    let upstream = Upstream::start().await;
    // The test client is 127.0.0.1: not within 10.0.0.0/8.
    let untrusted = TestGateway::start(&plain_config(upstream.address, "10.0.0.0/8")).await;
    assert_eq!(spoofing(&untrusted).await.status, 200);
    let seen = upstream.last().headers;
    assert_eq!(seen.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.get_all("forwarded").iter().count(), 1);
    assert_eq!(seen["forwarded"], "for=127.0.0.1;proto=http");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    // Without any such header the same three are set.
    assert_eq!(untrusted.get("/x").await.status, 200);
    let seen = upstream.last().headers;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["forwarded"], "for=127.0.0.1;proto=http");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");

    let trusted = TestGateway::start(&plain_config(upstream.address, "127.0.0.1")).await;
    assert_eq!(spoofing(&trusted).await.status, 200);
    let seen = upstream.last().headers;
    assert_eq!(
        seen["x-forwarded-for"],
        "203.0.113.9, 198.51.100.1, 127.0.0.1"
    );
    assert_eq!(
        seen["forwarded"],
        "for=203.0.113.9;proto=https, for=127.0.0.1;proto=http"
    );
    assert_eq!(seen["x-real-ip"], "203.0.113.9", "the proxy's word is kept");
    // A trusted proxy's X-Real-IP that is no address is replaced.
    let reply = trusted
        .send(
            request("GET", &trusted.url("/x"))
                .header("x-real-ip", "not-an-address")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().headers["x-real-ip"], "127.0.0.1");
}

fn mtls_config(pki: &Pki, upstream: SocketAddr, mapping: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: "127.0.0.1:0"
    tls:
      client_ca_file: "{ca}"
      certificates:
        - {{ cert_file: "{server}", key_file: "{server_key}", hosts: [localhost], client_auth: optional }}
access_log: off
auth:
  client_cert: {mapping}
rate_limits:
  policies:
    - {{ id: per-cert, algorithm: fixed-window, limit: 1, period: 1m, key: subject, routes: [limited] }}
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: cert, match: {{ path: /cert/* }}, upstream: svc, forward_client_cert: true }}
  - {{ name: tenants, match: {{ path: "/tenants/{{tenant}}/*" }}, upstream: svc, auth: {{ tenant: {{ path_param: tenant }} }} }}
  - {{ name: acme, match: {{ path: /acme/* }}, upstream: svc, auth: {{ tenant: {{ equals: acme }} }} }}
  - {{ name: limited, match: {{ path: /limited/* }}, upstream: svc, auth: {{ credentials: [client_cert] }} }}
  - {{ name: plain, match: {{ path: /* }}, upstream: svc }}
"#,
        ca = pki.path_str("ca.pem"),
        server = pki.path_str("server.pem"),
        server_key = pki.path_str("server.key"),
    )
}

async fn over_tls(
    gw: &TestGateway,
    pki: &Pki,
    cert: ClientCert,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let connector = tls_client(pki, cert, &[b"h2", b"http/1.1"]);
    let (reply, _) = tls_get(
        gw.handle.address(),
        &connector,
        "localhost",
        "localhost",
        path,
        headers,
    )
    .await
    .expect("exchange");
    reply
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// An RFC 8941 sf-binary (`:base64:`) back to its bytes.
fn sf_binary(value: &str) -> Vec<u8> {
    let inner = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .unwrap_or_else(|| panic!("`{value}` is no sf-binary"));
    base64::engine::general_purpose::STANDARD
        .decode(inner)
        .expect("standard base64")
}

const FORGED: [(&str, &str); 2] = [
    ("client-cert", ":QUJD:"),
    ("client-cert-chain", ":QUJD:, :REVG:"),
];

#[tokio::test]
async fn client_cert_is_forwarded_where_the_route_asks_and_client_sent_copies_never_are() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&mtls_config(&pki, upstream.address, "{ subject: cn }")).await;

    let reply = over_tls(&gw, &pki, ClientCert::Trusted, "/cert/x", &FORGED).await;
    assert_eq!(reply.status, 200);
    let seen = upstream.last().headers;
    assert_eq!(seen.get_all("client-cert").iter().count(), 1);
    let forwarded = seen["client-cert"].to_str().expect("ASCII");
    assert_eq!(
        sf_binary(forwarded),
        der(&pki.client_cert_pem),
        "the verified DER"
    );
    assert!(
        !seen.contains_key("client-cert-chain"),
        "the client sent no chain"
    );
    let _ = gw.record().await;

    // Without a certificate, or on a route that does not forward it: nothing, forged or not.
    for (cert, path) in [
        (ClientCert::None, "/cert/x"),
        (ClientCert::Trusted, "/plain/x"),
        (ClientCert::None, "/plain/x"),
    ] {
        let reply = over_tls(&gw, &pki, cert, path, &FORGED).await;
        assert_eq!(reply.status, 200, "{cert:?} {path}");
        let seen = upstream.last().headers;
        assert!(!seen.contains_key("client-cert"), "{cert:?} {path}");
        assert!(!seen.contains_key("client-cert-chain"), "{cert:?} {path}");
        let _ = gw.record().await;
    }
    // On plaintext too (another gateway: no TLS listener), forged copies are removed.
    let plain = TestGateway::start(&plain_config(upstream.address, "")).await;
    let mut builder = request("GET", &plain.url("/x"));
    for (name, value) in FORGED {
        builder = builder.header(name, value);
    }
    assert_eq!(
        plain
            .send(builder.body(empty()).expect("request"))
            .await
            .status,
        200
    );
    assert!(!upstream.last().headers.contains_key("client-cert"));
}

#[tokio::test]
async fn a_client_certificate_is_an_identity_for_tenant_rules_and_rate_limits() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&mtls_config(
        &pki,
        upstream.address,
        "{ subject: cn, tenant: { ou: true } }",
    ))
    .await;

    let reply = over_tls(
        &gw,
        &pki,
        ClientCert::Tenant,
        "/tenants/acme/orders",
        &[("x-user-id", "admin")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let seen = upstream.last().headers;
    assert_eq!(seen["x-user-id"], "svc-orders");
    assert_eq!(seen["x-tenant-id"], "acme");
    let record = gw.record().await;
    let identity = record.identity.as_ref().expect("an identity");
    assert_eq!(identity.subject, "svc-orders");
    assert_eq!(identity.tenant.as_deref(), Some("acme"));
    assert_eq!(
        over_tls(&gw, &pki, ClientCert::Tenant, "/acme/x", &[])
            .await
            .status,
        200
    );
    let _ = gw.record().await;

    // Another tenant's path, a certificate without an OU, no certificate at all.
    let refusals = [
        (
            ClientCert::Tenant,
            "/tenants/globex/orders",
            403,
            "authz",
            "tenant-mismatch",
        ),
        (
            ClientCert::Trusted,
            "/acme/x",
            403,
            "authz",
            "tenant-mismatch",
        ),
        (
            ClientCert::None,
            "/acme/x",
            401,
            "authn",
            "missing-credentials",
        ),
    ];
    let before = upstream.seen().len();
    for (cert, path, status, stage, reason) in refusals {
        let reply = over_tls(&gw, &pki, cert, path, &[]).await;
        assert_refused(&reply, status, stage, reason);
        let record = gw.record().await;
        assert_eq!(record.stopped_at.map(|s| s.as_str()), Some(stage), "{path}");
        assert_eq!(record.reason.as_deref(), Some(reason), "{path}");
        assert_eq!(
            upstream.seen().len(),
            before,
            "{path}: the upstream got nothing"
        );
    }

    // The rate limit counts by the certificate's subject: svc-orders' second call is refused,
    // client.localhost's first is not.
    assert_eq!(
        over_tls(&gw, &pki, ClientCert::Tenant, "/limited/x", &[])
            .await
            .status,
        200
    );
    let record = gw.record().await;
    assert_eq!(
        record.limit.as_ref().map(|l| l.subject.as_str()),
        Some("sub:svc-orders")
    );
    let reply = over_tls(&gw, &pki, ClientCert::Tenant, "/limited/x", &[]).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.problem()["type"],
        "urn:gatehouse:problem:quota-exceeded"
    );
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Ratelimit));
    assert_eq!(upstream.seen().len(), before + 1);
    assert_eq!(
        over_tls(&gw, &pki, ClientCert::Trusted, "/limited/x", &[])
            .await
            .status,
        200
    );
    assert_eq!(upstream.last().headers["x-user-id"], "client.localhost");
}

#[tokio::test]
async fn a_spiffe_id_can_be_the_subject_and_name_the_tenant() {
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&mtls_config(
        &pki,
        upstream.address,
        "{ subject: san_uri, tenant: { san_uri_pattern: 'spiffe://acme.test/tenants/{tenant}/*' } }",
    ))
    .await;
    let reply = over_tls(&gw, &pki, ClientCert::Tenant, "/acme/x", &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let seen = upstream.last().headers;
    assert_eq!(seen["x-user-id"], "spiffe://acme.test/tenants/acme/orders");
    assert_eq!(seen["x-tenant-id"], "acme");
    let _ = gw.record().await;
    // client.localhost's certificate has no URI SAN: it proves no subject here.
    let reply = over_tls(&gw, &pki, ClientCert::Trusted, "/acme/x", &[]).await;
    assert_refused(&reply, 401, "authn", "missing-claim");
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("missing-claim"));
    assert_eq!(upstream.seen().len(), 1);
}
