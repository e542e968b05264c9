//! What the whole pipeline costs per request, with no network: one request through
//! `pipeline::handle` — context, the eight stages, `mutate_response`, the record — and its
//! response body consumed so the record is emitted (access log off).
//!
//! - `respond`: a public route the gateway answers itself (routing only, no upstream);
//! - `jwt_ratelimit_respond`: the same answer behind an ES256 JWT the verified-token cache
//!   already holds, plus an in-memory token bucket that never refuses;
//! - `authn_refused`: the protected route without a token, stopped at `authn` with a problem body.
//!
//! The gateway is started in-process (its issuer a real JWKS endpoint on loopback) and each
//! request is polled once in place, as `benches/authn.rs` does: nothing on these paths waits.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use gateway::body::ResponseBody;
use gateway::stage::context::ConnectionInfo;
use gateway::state::GatewayState;
use gateway::vocab::Scheme;
use gateway::{GatewayHandle, StartOptions};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// An ES256 key pair: the private half signs the token, the public half is served as a JWKS.
fn es256() -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some("ec".into());
    (key, serde_json::to_value(jwk).expect("jwk json"))
}

fn token(key: &EncodingKey) -> String {
    #[allow(clippy::disallowed_methods)] // the bench mints its token against the real clock
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let claims = json!({
        "iss": "https://issuer.bench", "aud": "bench-api", "sub": "user-7", "tenant": "acme",
        "scope": "users:read users:write", "roles": ["member"], "tier": "paid",
        "iat": now, "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

async fn jwks_server(jwk: Value) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let body = Bytes::from(json!({ "keys": [jwk] }).to_string());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

async fn gateway(jwks: SocketAddr) -> GatewayHandle {
    let config = format!(
        r#"
listeners: [{{ name: bench, address: "127.0.0.1:0" }}]
access_log: off
auth:
  issuers:
    - {{ name: bench, issuer: "https://issuer.bench", jwks_url: "http://{jwks}/jwks", audiences: [bench-api] }}
rate_limits:
  policies:
    - {{ id: bench, algorithm: token-bucket, limit: 1000000000, period: 1s, key: subject, routes: [guarded] }}
routes:
  - {{ name: open, match: {{ path: /open/* }}, respond: {{ status: 404, detail: answered by the gateway }} }}
  - {{ name: guarded, match: {{ path: /guarded/* }}, respond: {{ status: 404, detail: answered by the gateway }}, auth: {{ scopes: [users:read] }} }}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    );
    let runtime = gateway::config::load_str("<bench>", &config).expect("bench config");
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

fn request(path: &str, token: Option<&str>) -> http::Request<Option<Incoming>> {
    let mut builder = http::Request::get(path)
        .header("host", "api.example.com")
        .header("user-agent", "bench/1")
        .header("accept", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(None).expect("request")
}

fn connection() -> ConnectionInfo {
    ConnectionInfo {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        scheme: Scheme::Http,
        tls: None,
    }
}

/// Reads the body to its end, which emits the request's record; a gateway-written body never waits.
fn consume(response: http::Response<ResponseBody>) -> (StatusCode, bool) {
    let status = response.status();
    let limited = response.headers().contains_key("ratelimit");
    let mut body = response.into_body();
    while let Some(frame) = body
        .frame()
        .now_or_never()
        .expect("a written body is ready")
    {
        black_box(frame.expect("frame"));
    }
    (status, limited)
}

/// One request through the pipeline, polled once in place, its body consumed. Never inlined, so
/// a profiler can count it alone: `valgrind --tool=callgrind --toggle-collect=pipeline::one_request`.
#[inline(never)]
fn one_request(
    state: &GatewayState,
    conn: ConnectionInfo,
    request: http::Request<Option<Incoming>>,
) -> (StatusCode, bool) {
    let response = gateway::pipeline::handle(state, conn, request)
        .now_or_never()
        .expect("nothing on this path waits");
    consume(response)
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let (key, jwk) = es256();
    let handle = rt.block_on(async {
        let jwks = jwks_server(jwk).await;
        gateway(jwks).await
    });
    let state = handle.state().clone();
    let token = token(&key);

    // Warm: the issuer's keys fetched and the token verified once, so it is now cached.
    rt.block_on(async {
        for attempt in 0.. {
            let response = gateway::pipeline::handle(
                &state,
                connection(),
                request("/guarded/7", Some(&token)),
            )
            .await;
            if consume(response) == (StatusCode::NOT_FOUND, true) {
                break;
            }
            assert!(attempt < 500, "the bench issuer's keys never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let cases = [
        ("respond", "/open/7", None, (StatusCode::NOT_FOUND, false)),
        (
            "jwt_ratelimit_respond",
            "/guarded/7",
            Some(token.as_str()),
            (StatusCode::NOT_FOUND, true),
        ),
        (
            "authn_refused",
            "/guarded/7",
            None,
            (StatusCode::UNAUTHORIZED, false),
        ),
    ];
    let state = &state;
    let identity = &state.sinks.metrics.identity;
    let mut group = c.benchmark_group("pipeline");
    for (name, path, token, expected) in cases {
        group.bench_function(name, |b| {
            let _runtime = rt.enter();
            let misses = identity.token_cache_misses.get();
            let hits = identity.token_cache_hits.get();
            b.iter_batched(
                || (connection(), request(path, token)),
                |(conn, request)| {
                    let outcome = one_request(state, conn, request);
                    assert_eq!(outcome, expected, "{name}");
                    outcome
                },
                BatchSize::SmallInput,
            );
            assert_eq!(
                identity.token_cache_misses.get(),
                misses,
                "{name}: no token verified afresh"
            );
            if token.is_some() {
                assert!(
                    identity.token_cache_hits.get() > hits,
                    "{name}: served from the token cache"
                );
            }
        });
    }
    group.finish();
    rt.block_on(handle.shutdown());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
