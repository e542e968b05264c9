//! What the whole pipeline costs per request, with no network: one request through
//! `pipeline::handle` — context, the eight stages, `mutate_response`, the record — and its
//! response body consumed so the record is emitted (access log off).
//!
//! - `respond`: a public route the gateway answers itself (routing only, no upstream);
//! - `jwt_ratelimit_respond`: the same answer behind an ES256 JWT the verified-token cache
//!   already holds, plus an in-memory token bucket that never refuses;
//! - `authn_refused`: the protected route without a token, stopped at `authn` with a problem body;
//! - `respond_recorded` and `jwt_ratelimit_respond_recorded`: the first two through a second
//!   gateway with `recording:` on at `sample: 1` (lines written to `/dev/null`, so the figure is
//!   the recording's CPU, not the disk's): the capture on the request task, the line built and
//!   written on the writer thread.
//!
//! The gateway is started in-process (its issuer a real JWKS endpoint on loopback) and each
//! request is polled once in place, as `benches/authn.rs` does: nothing on these paths waits.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use gateway::body::ResponseBody;
use gateway::stage::context::{ClientAddress, ConnectionInfo};
use gateway::state::GatewayState;
use gateway::vocab::Scheme;
use gateway::{GatewayHandle, StartOptions};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use jsonwebtoken::Algorithm;

mod support;
use support::{jwks_server, signer};
use tokio::net::TcpListener;

async fn gateway(jwks: SocketAddr, recording: &str) -> GatewayHandle {
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
{recording}
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

fn connection() -> Arc<ConnectionInfo> {
    Arc::new(ConnectionInfo {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        scheme: Scheme::Http,
        tls: None,
        alpn: None,
        id: 1,
        listener_requests: Default::default(),
        listener: 0,
        client_address: ClientAddress::of(SocketAddr::from(([127, 0, 0, 1], 40000)), Scheme::Http),
        upstream_timer: Default::default(),
    })
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
    conn: Arc<ConnectionInfo>,
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
    let key = signer(Algorithm::ES256, "ec");
    let (handle, recorded) = rt.block_on(async {
        let jwks = jwks_server(vec![key.jwk.clone()]).await;
        (
            gateway(jwks, "").await,
            gateway(
                jwks,
                "recording: { path: /dev/null, rotate_bytes: 0, queue: 65536 }",
            )
            .await,
        )
    });
    let token = key.token("user-7");

    // Warm: the issuer's keys fetched and the token verified once, so it is now cached.
    for state in [handle.state(), recorded.state()] {
        rt.block_on(async {
            for attempt in 0.. {
                let response = gateway::pipeline::handle(
                    state,
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
    }

    let (plain, recording) = (handle.state(), recorded.state());
    let cases = [
        (
            "respond",
            plain,
            "/open/7",
            None,
            (StatusCode::NOT_FOUND, false),
        ),
        (
            "jwt_ratelimit_respond",
            plain,
            "/guarded/7",
            Some(token.as_str()),
            (StatusCode::NOT_FOUND, true),
        ),
        (
            "authn_refused",
            plain,
            "/guarded/7",
            None,
            (StatusCode::UNAUTHORIZED, false),
        ),
        (
            "respond_recorded",
            recording,
            "/open/7",
            None,
            (StatusCode::NOT_FOUND, false),
        ),
        (
            "jwt_ratelimit_respond_recorded",
            recording,
            "/guarded/7",
            Some(token.as_str()),
            (StatusCode::NOT_FOUND, true),
        ),
    ];
    let mut group = c.benchmark_group("pipeline");
    for (name, state, path, token, expected) in cases {
        let identity = &state.sinks.metrics.identity;
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
    let metrics = &recording.sinks.metrics;
    println!(
        "recording: {} lines written, {} dropped",
        metrics.recording_written.get(),
        metrics.recording_dropped.get()
    );
    rt.block_on(handle.shutdown());
    rt.block_on(recorded.shutdown());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
