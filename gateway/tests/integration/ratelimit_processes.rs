//! Two `gateway` processes sharing one `redis-server` hold one global limit: a client spreads
//! its requests across both and the admitted count stays within the policy.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ratelimit_support::*;
use super::util::*;

/// A `gateway run` process; killed on drop.
struct GatewayProcess {
    child: Child,
    address: SocketAddr,
}

impl GatewayProcess {
    fn start(config: &std::path::Path) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // `gateway run` logs `listening address=<bound address>` per listener; keep draining
        // afterwards so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening address=") {
                    let _ = tx.send(line[at + "listening address=".len()..].trim().to_string());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the gateway logs its address")
            .parse()
            .expect("an address");
        GatewayProcess { child, address }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // measures real elapsed time, which is the point
async fn two_gateway_processes_sharing_redis_admit_within_one_limit() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    // 20 per minute, all at once allowed: a token bucket refilling one every 3 s.
    let limits = format!(
        "  store: redis
  redis: {{url: \"{}\"}}
  policies:
    - {{id: global, algorithm: token-bucket, limit: 20, period: 1m, key: route, on_store_error: deny}}
",
        redis.url()
    );
    let config = config_with_limits(upstream.address, &limits)
        + "listeners:\n  - name: public\n    address: 127.0.0.1:0\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).expect("write config");
    let a = GatewayProcess::start(&path);
    let b = GatewayProcess::start(&path);

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let started = Instant::now();
    let mut admitted = [0u32; 2];
    let mut refused = 0;
    for i in 0..100 {
        let (gw, slot) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
        let uri: http::Uri = format!("http://{}/api/x", gw.address).parse().expect("uri");
        let status = client.get(uri).await.expect("answer").status();
        match status.as_u16() {
            200 => admitted[slot] += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed();
    // The bucket starts with 20 and earns one every 3 s: over `elapsed`, at most
    // 20 + ⌊elapsed / 3 s⌋ — the tolerance is the refill during the run, nothing else, because
    // every decision is one atomic script run on the one Redis.
    let refill = (elapsed.as_secs_f64() / 3.0).floor() as u32;
    let total = admitted[0] + admitted[1];
    assert!(
        (20..=20 + refill).contains(&total),
        "admitted {total} ({admitted:?}) in {elapsed:?}"
    );
    assert!(
        admitted[0] > 0 && admitted[1] > 0,
        "both processes admitted some: {admitted:?}"
    );
    assert_eq!(total + refused, 100);
}
