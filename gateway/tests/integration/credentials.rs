//! Credential hygiene on real sockets with real signatures: every credential the gateway reads —
//! `Authorization`, the API-key headers, the `access_token`, `jwt` and configured query tokens —
//! is gone from what the upstream receives on every route (public ones, and routes that take
//! only another kind), the rest of the query byte for byte; and a request carrying two
//! credentials, of any kinds and places, is refused `duplicate-credentials` on every route.

use std::time::Duration;

use gateway::vocab::StageId;

use super::identity_support::*;
use super::util::*;

fn config(upstream: std::net::SocketAddr, jwks_url: &str) -> String {
    let key_digest = sha256_hex(b"partner-secret-key");
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
auth:
  issuers:
    - {{ name: main, issuer: "{ISS}", jwks_url: "{jwks_url}", audiences: [{AUD}], algorithms: [RS256] }}
  api_keys:
    header: X-Partner-Key
    keys:
      - {{ id: partner-1, sha256: "{key_digest}", subject: partner-app, tenant: acme }}
  token_query_param: token
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: jwt, match: {{ path: /jwt/* }}, upstream: svc, auth: {{ credentials: [jwt] }} }}
  - {{ name: key, match: {{ path: /key/* }}, upstream: svc, auth: {{ credentials: [api_key] }} }}
  - {{ name: jwt-opt, match: {{ path: /jwt-opt/* }}, upstream: svc, auth: {{ credentials: [jwt], optional: true }} }}
  - {{ name: key-opt, match: {{ path: /key-opt/* }}, upstream: svc, auth: {{ credentials: [api_key], optional: true }} }}
  - {{ name: acme, match: {{ path: /acme/* }}, upstream: svc, auth: {{ tenant: {{ equals: acme }} }} }}
  - {{ name: globex, match: {{ path: /globex/* }}, upstream: svc, auth: {{ tenant: {{ equals: globex }} }} }}
  - {{ name: public, match: {{ path: /public/* }}, upstream: svc }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

struct Setup {
    upstream: Upstream,
    gw: TestGateway,
    key: SigningKey,
    _issuer: FakeIssuer,
}

async fn setup() -> Setup {
    let key = SigningKey::rsa("rsa-1", 0);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, &issuer.url())).await;
    issuer.wait_for_fetches(1).await;
    let token = key.sign(&claims("warm-up"));
    eventually(
        "a JWT route answers 200 once the keys are in",
        Duration::from_secs(5),
        async || {
            let reply = send(
                &gw,
                "/jwt/warm",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
            let _ = gw.record().await;
            match reply.status.as_u16() {
                200 => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
    upstream.seen.lock().expect("seen").clear();
    Setup {
        upstream,
        gw,
        key,
        _issuer: issuer,
    }
}

async fn send(gw: &TestGateway, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = request("GET", &gw.url(target));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    gw.send(builder.body(empty()).expect("request")).await
}

/// The query around the credential: encoded bytes, `+`, an empty value and an odd order, all
/// of which must reach the upstream exactly as sent.
const BEFORE: &str = "z=1&b=%2F+x%3D";
const AFTER: &str = "&a=&c=%E2%9C%93";

#[tokio::test]
async fn every_credential_is_removed_on_public_routes_and_routes_that_take_another_kind() {
    let mut s = setup().await;
    let token = s.key.sign(&claims("user-1"));
    let bearer = format!("Bearer {token}");
    // (what, header or query parameter, the routes that let it through without reading it)
    let header_cases: &[(&str, &str, &[&str])] = &[
        ("authorization", &bearer, &["/public/x", "/key-opt/x"]),
        (
            "authorization",
            "Basic dXNlcjpwYXNz",
            &["/public/x", "/key-opt/x"],
        ),
        (
            "x-partner-key",
            "partner-secret-key",
            &["/public/x", "/jwt-opt/x"],
        ),
        (
            "x-api-key",
            "some-other-key",
            &["/public/x", "/jwt-opt/x", "/key-opt/x"],
        ),
    ];
    for (name, value, routes) in header_cases {
        for route in *routes {
            let target = format!("{route}?{BEFORE}{AFTER}");
            let reply = send(&s.gw, &target, &[(name, value)]).await;
            assert_eq!(reply.status, 200, "{name} on {route}: {:?}", reply.body);
            let seen = s.upstream.last();
            assert!(
                !seen.headers.contains_key(*name),
                "{name} reached the upstream on {route}"
            );
            assert!(
                !seen.headers.contains_key("x-user-id"),
                "{name} on {route}: anonymous"
            );
            assert_eq!(
                seen.target, target,
                "{name} on {route}: the query is untouched"
            );
            assert_eq!(s.gw.record().await.status, 200);
        }
    }
    let query_cases: &[(&str, &[&str])] = &[
        ("access_token", &["/public/x", "/key-opt/x", "/jwt-opt/x"]),
        ("jwt", &["/public/x", "/key-opt/x", "/jwt-opt/x"]),
        ("token", &["/public/x", "/key-opt/x"]),
        // The name as the upstream's framework will decode it.
        ("%61ccess_token", &["/public/x", "/key-opt/x"]),
        ("jw%74", &["/public/x"]),
    ];
    for (param, routes) in query_cases {
        for route in *routes {
            let target = format!("{route}?{BEFORE}&{param}={token}{AFTER}");
            let reply = send(&s.gw, &target, &[]).await;
            assert_eq!(reply.status, 200, "{param} on {route}: {:?}", reply.body);
            let seen = s.upstream.last();
            assert_eq!(
                seen.target,
                format!("{route}?{BEFORE}{AFTER}"),
                "{param} on {route}: removed, the rest byte for byte and in order"
            );
            assert!(!seen.target.contains(&token));
            assert_eq!(s.gw.record().await.status, 200);
        }
    }
    // A token that is the whole query leaves no `?` behind; one the route reads is removed too.
    let reply = send(&s.gw, &format!("/jwt/x?token={token}"), &[]).await;
    assert_eq!(reply.status, 200);
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/jwt/x");
    assert_eq!(seen.headers["x-user-id"], "user-1");
    let _ = s.gw.record().await;
    let reply = send(
        &s.gw,
        "/key/x?access_token=t",
        &[("x-partner-key", "partner-secret-key")],
    )
    .await;
    assert_eq!(
        reply.status, 401,
        "two credentials: a key and a query token"
    );
    let _ = s.gw.record().await;
}

/// What a case is, the request-target, the headers it sends.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn two_credentials_of_any_kinds_and_places_are_refused_on_every_route() {
    let mut s = setup().await;
    let token = s.key.sign(&claims("user-1"));
    let bearer = format!("Bearer {token}");
    let key = "partner-secret-key";
    let cases: Vec<Case> = vec![
        (
            "header and query",
            format!("/jwt/x?token={token}"),
            vec![("authorization", &bearer)],
        ),
        (
            "header and a conventional query token",
            format!("/jwt/x?access_token={token}"),
            vec![("authorization", &bearer)],
        ),
        (
            "two query tokens",
            format!("/jwt/x?token={token}&jwt={token}"),
            vec![],
        ),
        (
            "the query token twice",
            format!("/jwt/x?token={token}&token={token}"),
            vec![],
        ),
        (
            "two Authorization headers",
            "/jwt/x".into(),
            vec![("authorization", &bearer), ("authorization", &bearer)],
        ),
        (
            "a JWT and an API key where only JWTs count",
            "/jwt/x".into(),
            vec![("authorization", &bearer), ("x-partner-key", key)],
        ),
        (
            "a JWT and an API key where only keys count",
            "/key/x".into(),
            vec![("authorization", &bearer), ("x-partner-key", key)],
        ),
        (
            "two API-key headers",
            "/key/x".into(),
            vec![("x-partner-key", key), ("x-api-key", key)],
        ),
        (
            "one API-key header twice",
            "/key/x".into(),
            vec![("x-partner-key", key), ("x-partner-key", key)],
        ),
        (
            "an API key and a query token",
            format!("/key/x?jwt={token}"),
            vec![("x-partner-key", key)],
        ),
        (
            "two kinds on a public route",
            "/public/x".into(),
            vec![("authorization", &bearer), ("x-api-key", key)],
        ),
        (
            "two query tokens on a public route",
            format!("/public/x?access_token={token}&jwt={token}"),
            vec![],
        ),
        (
            "an optional route",
            "/jwt-opt/x".into(),
            vec![("authorization", &bearer), ("x-partner-key", key)],
        ),
    ];
    for (what, target, headers) in &cases {
        let reply = send(&s.gw, target, headers).await;
        assert_refused(&reply, 401, "authn", "duplicate-credentials");
        let challenge = reply.header("www-authenticate").expect("challenge");
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{what}: {challenge}"
        );
        assert!(
            !reply.problem().to_string().contains(&token),
            "{what}: the body never echoes a credential"
        );
        let record = s.gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Authn), "{what}");
        assert_eq!(
            record.reason.as_deref(),
            Some("duplicate-credentials"),
            "{what}"
        );
        assert!(
            s.upstream.seen().is_empty(),
            "{what}: the upstream got nothing"
        );
    }
    // Exact bytes on a raw socket: a token in the header and an API key in another.
    let hostile = format!(
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nAuthorization: {bearer}\r\nX-Partner-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    let (answer, closed) = raw_exchange(
        s.gw.handle.address(),
        hostile.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("urn:gatehouse:problem:duplicate-credentials"),
        "{answer}"
    );
    assert!(
        answer.contains("(header authorization, header x-partner-key)"),
        "the detail names where, never what: {answer}"
    );
    assert!(closed, "Connection: close is honoured");
    assert_eq!(
        s.gw.record().await.reason.as_deref(),
        Some("duplicate-credentials")
    );
    assert!(s.upstream.seen().is_empty());
    // The canary: one credential on a fresh connection is served.
    let canary = format!(
        "GET /jwt/x HTTP/1.1\r\nHost: gw\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n"
    );
    let (answer, _) = raw_exchange(
        s.gw.handle.address(),
        canary.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers["x-user-id"], "user-1");
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test]
async fn a_route_for_one_fixed_tenant_refuses_every_other() {
    let mut s = setup().await;
    let acme = format!("Bearer {}", s.key.sign(&claims("user-1")));
    let globex = format!(
        "Bearer {}",
        s.key
            .sign(&with(claims("user-2"), "tenant", "globex".into()))
    );
    let reply = send(&s.gw, "/acme/x", &[("authorization", &globex)]).await;
    assert_refused(&reply, 403, "authz", "tenant-mismatch");
    let record = s.gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Authz));
    assert_eq!(record.reason.as_deref(), Some("tenant-mismatch"));
    assert!(s.upstream.seen().is_empty());
    // An API key names its tenant too: acme's key is not globex's.
    let reply = send(
        &s.gw,
        "/globex/x",
        &[("x-partner-key", "partner-secret-key")],
    )
    .await;
    assert_refused(&reply, 403, "authz", "tenant-mismatch");
    let _ = s.gw.record().await;
    assert!(s.upstream.seen().is_empty());
    for (route, bearer, tenant) in [("/acme/x", &acme, "acme"), ("/globex/x", &globex, "globex")] {
        let reply = send(&s.gw, route, &[("authorization", bearer)]).await;
        assert_eq!(reply.status, 200, "{route}");
        assert_eq!(s.upstream.last().headers["x-tenant-id"], tenant);
        let _ = s.gw.record().await;
    }
}
