//! authn and authz with bearer JWTs and API keys: every way a credential is refused, each
//! asserting the status, the reason in the problem body and in the record, and that the
//! upstream received nothing; and what a verified identity looks like upstream.

use gateway::vocab::StageId;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::identity_support::*;
use super::util::*;

struct Setup {
    upstream: Upstream,
    gw: TestGateway,
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    _issuer: FakeIssuer,
}

async fn setup(extra_auth: &str) -> Setup {
    let rsa = SigningKey::rsa("rsa-1", 0);
    let ec = SigningKey::es256("ec-1");
    let ed = SigningKey::ed25519("ed-1");
    let issuer = FakeIssuer::start(&[&rsa, &ec, &ed]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&auth_config(
        upstream.address,
        &issuer.url(),
        "ttl: 10m",
        extra_auth,
    ))
    .await;
    // Start never waits for the issuer; the tests do, once.
    issuer.wait_for_fetches(1).await;
    let mut setup = Setup {
        upstream,
        gw,
        rsa,
        ec,
        ed,
        _issuer: issuer,
    };
    // Until the first fetch is stored a protected route answers 401 keys-unavailable.
    let token = setup.rsa.sign(&claims("warm-up"));
    eventually(
        "a protected route answers 200 once the keys are in",
        std::time::Duration::from_secs(5),
        async || {
            let reply = setup.bearer("/jwt/warm", &token).await;
            let _ = setup.gw.record().await;
            match reply.status {
                http::StatusCode::OK => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
    setup.upstream.seen.lock().expect("seen").clear();
    setup
}

impl Setup {
    async fn bearer(&self, path: &str, token: &str) -> Reply {
        self.gw
            .send(
                request("GET", &self.gw.url(path))
                    .header("authorization", format!("Bearer {token}"))
                    .body(empty())
                    .expect("request"),
            )
            .await
    }
}

/// The refusal table: a token, the reason it is refused with. Every case is a 401 at `authn`
/// and never reaches the upstream.
#[tokio::test]
async fn every_bad_token_is_refused_at_authn_with_its_reason_and_never_reaches_the_upstream() {
    let mut s = setup("  max_token_bytes: 4096").await;
    let now = now();
    let good = claims("user-1");
    let tampered = {
        let token = s.rsa.sign(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = base64url(
            serde_json::to_string(&with(good.clone(), "sub", json!("admin")))
                .expect("json")
                .as_bytes(),
        );
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","kid":"rsa-1"}"#),
        base64url(good.to_string().as_bytes())
    );
    // Algorithm confusion: HS256 "signed" with the issuer's public key as the HMAC secret.
    let confusion = {
        let public_pem = {
            let pair = rcgen::KeyPair::from_pem(&s.rsa.private_pem).expect("pair");
            pair.public_key_pem()
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .expect("hs256")
    };
    let stranger = SigningKey::rsa("rsa-1", 1); // same kid, a key the issuer never published
    let ghost = SigningKey::rsa("ghost", 2);
    let other_ec = SigningKey::es256("ec-1");
    let embedded = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.jwk = serde_json::from_value(s.rsa.jwk.clone()).ok();
        s.rsa.sign_with(&header, &good)
    };
    let jku = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.jku = Some("http://127.0.0.1:1/evil-jwks".into());
        s.rsa.sign_with(&header, &good)
    };
    let crit = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        header.crit = Some(vec!["exp".into()]);
        s.rsa.sign_with(&header, &good)
    };
    let mut no_exp = good.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    let oversized = s
        .rsa
        .sign(&with(good.clone(), "padding", json!("x".repeat(5000))));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            s.rsa.sign(&with(
                with(good.clone(), "exp", json!(now - 60)),
                "iat",
                json!(now - 600),
            )),
            "token-expired",
        ),
        (
            "not yet valid",
            s.rsa.sign(&with(good.clone(), "nbf", json!(now + 300))),
            "token-not-yet-valid",
        ),
        (
            "issued in the future",
            s.rsa.sign(&with(good.clone(), "iat", json!(now + 300))),
            "token-not-yet-valid",
        ),
        (
            "wrong issuer",
            s.rsa
                .sign(&with(good.clone(), "iss", json!("https://evil.test"))),
            "wrong-issuer",
        ),
        (
            "wrong audience",
            s.rsa.sign(&with(good.clone(), "aud", json!("other-api"))),
            "wrong-audience",
        ),
        ("alg none", alg_none, "algorithm-not-allowed"),
        (
            "HS256 keyed with the public key",
            confusion,
            "algorithm-not-allowed",
        ),
        ("payload changed after signing", tampered, "bad-signature"),
        (
            "signed by an unpublished key under a published kid",
            stranger.sign(&good),
            "bad-signature",
        ),
        (
            "ES256 by another key",
            other_ec.sign(&good),
            "bad-signature",
        ),
        ("unknown kid", ghost.sign(&good), "unknown-kid"),
        ("embedded jwk", embedded, "embedded-key"),
        ("jku", jku, "embedded-key"),
        ("crit", crit, "unsupported-crit"),
        ("no exp", s.rsa.sign(&no_exp), "missing-claim"),
        (
            "lifetime over max_lifetime",
            s.rsa
                .sign(&with(good.clone(), "exp", json!(now + 4 * 3600))),
            "token-lifetime-too-long",
        ),
        (
            "CR LF in the subject",
            s.rsa
                .sign(&with(good.clone(), "sub", json!("u\r\nX-User-Id: admin"))),
            "invalid-claim",
        ),
        (
            "NUL in the tenant",
            s.rsa
                .sign(&with(good.clone(), "tenant", json!("acme\u{0}"))),
            "invalid-claim",
        ),
        ("oversized", oversized, "token-too-large"),
        ("not a JWT", "abc.def".to_string(), "malformed-token"),
        // Bytes past ASCII (obs-text, which a field value may carry) are no token68.
        (
            "obs-text in the token",
            "ab\u{e9}c.def.ghi".to_string(),
            "malformed-token",
        ),
    ];
    for (what, token, reason) in &cases {
        let reply = s.bearer("/jwt/x", token).await;
        assert_refused(&reply, 401, "authn", reason);
        let challenge = reply.header("www-authenticate").expect("challenge");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{what}: {challenge}"
        );
        let record = s.gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Authn), "{what}");
        assert_eq!(record.reason.as_deref(), Some(*reason), "{what}");
        assert!(record.identity.is_none(), "{what}");
    }
    assert!(s.upstream.seen().is_empty(), "nothing reached the upstream");
    // The ES256 and EdDSA keys verify their own tokens, so the refusals above are about the
    // tokens, not the keys.
    for key in [&s.ec, &s.ed] {
        assert_eq!(s.bearer("/jwt/x", &key.sign(&good)).await.status, 200);
    }
}

#[tokio::test]
async fn missing_or_foreign_scheme_credentials_are_401_with_a_plain_challenge() {
    let mut s = setup("").await;
    let reply = s.gw.get("/jwt/x").await;
    assert_refused(&reply, 401, "authn", "missing-credentials");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="gatehouse""#)
    );
    assert_eq!(
        s.gw.record().await.reason.as_deref(),
        Some("missing-credentials")
    );
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/jwt/x"))
                .header("authorization", "Basic dXNlcjpwYXNz")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_refused(&reply, 401, "authn", "unsupported-auth-scheme");
    assert_eq!(
        s.gw.record().await.reason.as_deref(),
        Some("unsupported-auth-scheme")
    );
    // The scheme is case-insensitive.
    let token = s.rsa.sign(&claims("user-1"));
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/jwt/x"))
                .header("authorization", format!("bEaReR {token}"))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(s.upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_verified_identity_reaches_the_upstream_in_its_headers_and_the_credential_does_not() {
    let mut s = setup("").await;
    for key in [&s.rsa, &s.ec, &s.ed] {
        let token = key.sign(&claims("user-7"));
        let reply =
            s.gw.send(
                request("GET", &s.gw.url("/users/7"))
                    .header("authorization", format!("Bearer {token}"))
                    // Spoofed identity headers: replaced, never passed on.
                    .header("x-user-id", "admin")
                    .header("x-tenant-id", "other-tenant")
                    .header("x-auth-scopes", "everything")
                    .body(empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", key.alg);
        let seen = s.upstream.last().headers;
        assert_eq!(seen["x-user-id"], "user-7");
        assert_eq!(seen["x-tenant-id"], "acme");
        assert_eq!(seen["x-auth-scopes"], "users:read users:write");
        assert_eq!(seen.get_all("x-user-id").iter().count(), 1);
        assert!(
            !seen.contains_key("authorization"),
            "the token is not forwarded"
        );
        let record = s.gw.record().await;
        assert_eq!(record.stopped_at, None);
        let identity = record.identity.as_ref().expect("identity in the record");
        assert_eq!(identity.subject, "user-7");
        assert_eq!(identity.tier.as_deref(), Some("paid"));
        assert_eq!(identity.signing_key_id.as_deref(), Some(key.kid.as_str()));
        assert_eq!(identity.api_key_id, None, "a JWT caller has no API key");
        let line = serde_json::to_string(&*record).expect("record JSON");
        assert!(
            !line.contains(&token),
            "the token never appears in the record"
        );
    }
}

#[tokio::test]
async fn spoofed_identity_headers_without_a_credential_never_reach_the_upstream() {
    let mut s = setup("").await;
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/users/7"))
                .header("x-user-id", "admin")
                .header("x-auth-scopes", "users:read")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_refused(&reply, 401, "authn", "missing-credentials");
    assert_eq!(
        s.gw.record().await.reason.as_deref(),
        Some("missing-credentials")
    );
    assert!(s.upstream.seen().is_empty());
    // On a public route the request passes, without them.
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/public/x"))
                .header("x-user-id", "admin")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(!s.upstream.last().headers.contains_key("x-user-id"));
}

#[tokio::test]
async fn duplicated_credentials_are_refused_never_first_one_wins() {
    let mut s = setup("  token_query_param: access_token").await;
    let token = s.rsa.sign(&claims("user-1"));
    let bearer = format!("Bearer {token}");
    let cases: Vec<(&str, http::request::Builder)> = vec![
        (
            "two Authorization headers",
            request("GET", &s.gw.url("/users/1"))
                .header("authorization", &bearer)
                .header("authorization", &bearer),
        ),
        (
            "header and query",
            request("GET", &s.gw.url(&format!("/users/1?access_token={token}")))
                .header("authorization", &bearer),
        ),
        (
            "the query parameter twice",
            request(
                "GET",
                &s.gw.url(&format!(
                    "/users/1?access_token={token}&access_token={token}"
                )),
            ),
        ),
        (
            "a token and an API key",
            request("GET", &s.gw.url("/users/1"))
                .header("authorization", &bearer)
                .header("x-api-key", "partner-secret-key"),
        ),
        (
            "two API keys",
            request("GET", &s.gw.url("/users/1"))
                .header("x-api-key", "partner-secret-key")
                .header("x-api-key", "partner-secret-key"),
        ),
    ];
    for (what, builder) in cases {
        let reply = s.gw.send(builder.body(empty()).expect("request")).await;
        assert_refused(&reply, 401, "authn", "duplicate-credentials");
        let record = s.gw.record().await;
        assert_eq!(
            record.reason.as_deref(),
            Some("duplicate-credentials"),
            "{what}"
        );
    }
    assert!(s.upstream.seen().is_empty());
    // One token in the query is accepted, and removed before forwarding.
    let reply =
        s.gw.get(&format!("/users/1?page=2&access_token={token}&sort=asc"))
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(s.upstream.last().target, "/users/1?page=2&sort=asc");
}

#[tokio::test]
async fn api_keys_map_to_their_identity_and_never_travel_or_get_recorded() {
    let mut s = setup("").await;
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/users/1"))
                .header("x-api-key", "partner-secret-key")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = s.upstream.last().headers;
    assert_eq!(seen["x-user-id"], "partner-app");
    assert_eq!(seen["x-tenant-id"], "acme");
    assert!(!seen.contains_key("x-api-key"), "the key is not forwarded");
    let record = s.gw.record().await;
    let identity = record.identity.as_ref().expect("identity");
    assert_eq!(identity.api_key_id.as_deref(), Some("partner-1"));
    assert_eq!(identity.tier.as_deref(), Some("free"));
    let line = serde_json::to_string(&*record).expect("record JSON");
    assert!(!line.contains("partner-secret-key"));

    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/users/1"))
                .header("x-api-key", "partner-secret-kez")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_refused(&reply, 401, "authn", "invalid-api-key");
    let record = s.gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("invalid-api-key"));
    assert!(
        !serde_json::to_string(&*record)
            .expect("json")
            .contains("partner-secret-kez")
    );
    // A route that takes only JWTs does not look at API keys.
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/jwt/1"))
                .header("x-api-key", "partner-secret-key")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_refused(&reply, 401, "authn", "missing-credentials");
    assert_eq!(s.upstream.seen().len(), 1);
}

#[tokio::test]
async fn authz_says_which_rule_failed() {
    let mut s = setup("").await;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "/users/1",
            with(claims("u"), "scope", json!("orders:read")),
            "insufficient-scope",
        ),
        ("/admin/x", claims("u"), "missing-role"),
        ("/tenants/globex/orders", claims("u"), "tenant-mismatch"),
    ];
    for (path, claims, reason) in cases {
        let reply = s.bearer(path, &s.rsa.sign(&claims)).await;
        assert_refused(&reply, 403, "authz", reason);
        let challenge = reply.header("www-authenticate").expect("challenge");
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        let record = s.gw.record().await;
        assert_eq!(record.stopped_at, Some(StageId::Authz));
        assert_eq!(record.reason.as_deref(), Some(reason));
        assert!(record.identity.is_some(), "the record says who was refused");
    }
    assert!(s.upstream.seen().is_empty());
    let scope = s
        .bearer(
            "/users/1",
            &s.rsa.sign(&with(claims("u"), "scope", json!("a"))),
        )
        .await;
    assert!(
        scope
            .header("www-authenticate")
            .is_some_and(|c| c.contains(r#"scope="users:read""#))
    );
    let _ = s.gw.record().await;
    for (path, claims) in [
        (
            "/admin/x",
            with(claims("u"), "roles", json!(["member", "admin"])),
        ),
        ("/tenants/acme/orders", claims("u")),
    ] {
        assert_eq!(
            s.bearer(path, &s.rsa.sign(&claims)).await.status,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_optional_route_passes_anonymous_but_still_refuses_a_bad_credential() {
    let mut s = setup("").await;
    let reply = s.gw.get("/maybe/x").await;
    assert_eq!(reply.status, 200);
    assert!(s.gw.record().await.identity.is_none());
    let expired = s.rsa.sign(&with(claims("u"), "exp", json!(now() - 60)));
    let reply = s.bearer("/maybe/x", &expired).await;
    assert_refused(&reply, 401, "authn", "token-expired");
    assert_eq!(s.upstream.seen().len(), 1);
}

/// `key: api_key` counts by the API key that authenticated a request, never by the `kid` of the
/// key that signed a JWT (which every caller of an issuer shares and which changes at each
/// rotation): two JWT users never share a bucket; API-key callers are counted per key.
#[tokio::test]
async fn an_api_key_policy_counts_api_keys_and_never_the_signing_key_of_a_jwt() {
    let rsa = SigningKey::rsa("rsa-1", 0);
    let issuer = FakeIssuer::start(&[&rsa]).await;
    let upstream = Upstream::start().await;
    let config = auth_config(upstream.address, &issuer.url(), "ttl: 10m", "")
        + r#"
rate_limits:
  policies:
    - id: per-api-key
      algorithm: fixed-window
      limit: 2
      period: 1m
      key: api_key
      when_missing: skip
      routes: [users]
"#;
    let mut gw = TestGateway::start(&config).await;
    issuer.wait_for_fetches(1).await;
    let url = gw.url("/users/1");
    let bearer = |token: &str| {
        request("GET", &url)
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .expect("request")
    };
    let with_key = || {
        request("GET", &url)
            .header("x-api-key", "partner-secret-key")
            .body(empty())
            .expect("request")
    };
    let alice = rsa.sign(&claims("alice"));
    let bob = rsa.sign(&claims("bob"));
    eventually(
        "the issuer's keys are in",
        std::time::Duration::from_secs(5),
        async || {
            let status = gw.send(bearer(&alice)).await.status;
            let _ = gw.record().await;
            match status {
                http::StatusCode::OK => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
    // Over the policy's limit of two, for alice and then for bob, all signed by one key.
    for token in [&alice, &alice, &alice, &bob, &bob, &bob] {
        let reply = gw.send(bearer(token)).await;
        assert_eq!(reply.status, 200, "a JWT caller has no API key to count");
        let record = gw.record().await;
        let identity = record.identity.as_ref().expect("identity");
        assert_eq!(identity.signing_key_id.as_deref(), Some("rsa-1"));
        assert_eq!(identity.api_key_id, None);
        assert!(record.limit.is_none(), "the policy does not apply to JWTs");
    }
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(gw.send(with_key()).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "the API key is counted");
    let _ = gw.record().await;
    let _ = gw.record().await;
    let refused = gw.record().await;
    let limit = refused.limit.as_ref().expect("the refusal names the limit");
    assert_eq!(&*limit.policy, "per-api-key");
    assert_eq!(limit.subject, "key:partner-1");
}
