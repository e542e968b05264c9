//! What identity costs per request: verifying an RS256, ES256 and EdDSA token from scratch
//! (parse, signature, claims, identity), and the whole `authn` stage for a token the
//! verified-token cache already holds (the common case: a client reuses its token).
//!
//! The stage runs against a gateway started in-process whose issuer is a real JWKS endpoint on
//! loopback, so the warm path measured is exactly the one requests take.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use gateway::config::load_str;
use gateway::identity::jwks::VerifyKey;
use gateway::identity::jwt;
use gateway::{GatewayHandle, StartOptions};
use jsonwebtoken::Algorithm;
use tokio::net::TcpListener;

mod support;
use support::{jwks_server, signer, unix_now};

async fn gateway(jwks: SocketAddr) -> GatewayHandle {
    let config = format!(
        r#"
listeners: [{{ name: bench, address: "127.0.0.1:0" }}]
access_log: off
auth:
  issuers:
    - {{ name: bench, issuer: "https://issuer.bench", jwks_url: "http://{jwks}/jwks", audiences: [bench-api] }}
upstreams:
  svc: {{ instances: ["127.0.0.1:9"] }}
routes:
  - {{ name: users, match: {{ path: /users/* }}, upstream: svc, auth: {{ scopes: [users:read] }} }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    );
    let runtime = load_str("<bench>", &config).expect("bench config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    gateway::start(
        runtime,
        StartOptions {
            listeners: Some(vec![listener]),
            ..StartOptions::default()
        },
    )
    .await
    .expect("start")
}

fn request_parts(token: &str) -> http::request::Parts {
    let (parts, ()) = http::Request::get("/users/7")
        .header("authorization", format!("Bearer {token}"))
        .header("host", "api.example.com")
        .body(())
        .expect("request")
        .into_parts();
    parts
}

fn verify(c: &mut Criterion) {
    let runtime = gateway::config::load_str(
        "<bench>",
        r#"
auth:
  issuers:
    - { name: bench, issuer: "https://issuer.bench", jwks_url: "http://127.0.0.1:9/jwks", audiences: [bench-api] }
routes:
  - { name: catch-all, match: { path: /* }, respond: { status: 404 } }
"#,
    )
    .expect("config");
    let issuer = runtime.auth.issuers[0].clone();
    let mut group = c.benchmark_group("verify_token");
    for (name, alg, kid) in [
        ("RS256", Algorithm::RS256, "rsa"),
        ("ES256", Algorithm::ES256, "ec"),
        ("EdDSA", Algorithm::EdDSA, "ed"),
    ] {
        let s = signer(alg, kid);
        let key = VerifyKey::from_jwk(&s.jwk).expect("verify key");
        let token = s.token("user-7");
        let now = unix_now();
        group.bench_function(name, |b| {
            b.iter(|| {
                let parsed = jwt::parse(black_box(&token)).expect("parse");
                jwt::verify_signature(&parsed, &key).expect("signature");
                jwt::validate_claims(&parsed.claims, &issuer, now).expect("claims");
                black_box(
                    jwt::identity(
                        &parsed.claims,
                        &issuer,
                        parsed.kid.as_deref(),
                        Default::default(),
                    )
                    .expect("identity"),
                )
            })
        });
    }
    group.finish();
}

fn authn_stage(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let signers = [
        signer(Algorithm::RS256, "rsa"),
        signer(Algorithm::ES256, "ec"),
        signer(Algorithm::EdDSA, "ed"),
    ];
    let keys = signers.iter().map(|s| s.jwk.clone()).collect();
    let handle = rt.block_on(async {
        let jwks = jwks_server(keys).await;
        gateway(jwks).await
    });
    let state = handle.state().clone();
    let active = state.active.load_full();
    let runtime = &active.config;
    let route = runtime
        .routes
        .routes()
        .iter()
        .find(|r| &*r.name == "users")
        .cloned()
        .expect("users route");
    // Warm: the keys fetched, each token verified once and cached.
    let tokens: Vec<String> = signers.iter().map(|s| s.token("user-7")).collect();
    rt.block_on(async {
        for token in &tokens {
            for attempt in 0.. {
                let mut parts = request_parts(token);
                let result = gateway::stage::authn::authenticate(
                    &state,
                    runtime,
                    Some(&route),
                    None,
                    &mut parts,
                )
                .await;
                if result.is_ok() {
                    break;
                }
                assert!(attempt < 500, "the bench issuer's keys never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    let (state, route) = (&state, &route);
    let mut group = c.benchmark_group("authn_stage_warm_cache");
    for (signer, token) in signers.iter().zip(&tokens) {
        group.bench_function(format!("{:?}", signer.alg), |b| {
            // A cached token is verified without ever waiting, so the future is polled once in
            // place: the figure is the stage's own cost, not an executor round trip per call.
            let _runtime = rt.enter();
            b.iter_batched(
                || request_parts(token),
                |mut parts| {
                    let identity = gateway::stage::authn::authenticate(
                        state,
                        runtime,
                        Some(route),
                        None,
                        &mut parts,
                    )
                    .now_or_never()
                    .expect("a cached token is verified without waiting")
                    .expect("authenticated");
                    black_box((identity, parts))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    let hits = state.sinks.metrics.identity.token_cache_hits.get();
    assert!(hits > 0, "the warm path was served from the cache");
    rt.block_on(handle.shutdown());
}

criterion_group!(benches, verify, authn_stage);
criterion_main!(benches);
