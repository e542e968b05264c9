//! Maximum-rate load: `connections` workers, each sending the next request as soon as the last
//! one is answered, through the same pooled client and `send` the scenario runner uses. This is
//! how the load generator is compared with wrk or oha against a fixed target: if it cannot
//! saturate a target they can, scenario latencies would measure the generator, not the gateway.

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;

use crate::scenario::run::{http_client, send};

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn saturate(
    url: &str,
    connections: usize,
    duration: Duration,
) -> Result<LoadReport, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let client = http_client();
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let client = client.clone();
        let uri = uri.clone();
        workers.spawn(async move {
            let mut latencies =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let (mut ok, mut errors) = (0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                let request = http::Request::get(uri.clone())
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let t0 = tokio::time::Instant::now();
                match send(&client, request).await {
                    Ok(_) => ok += 1,
                    Err(_) => errors += 1,
                }
                let _ = latencies.record((t0.elapsed().as_micros() as u64).clamp(1, 60_000_000));
            }
            Ok::<_, String>((ok, errors, latencies))
        });
    }
    let mut total =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let (mut requests, mut errors) = (0, 0);
    while let Some(done) = workers.join_next().await {
        let (ok, failed, latencies) = done.map_err(|e| e.to_string())??;
        requests += ok;
        errors += failed;
        total.add(latencies).map_err(|e| e.to_string())?;
    }
    Ok(LoadReport {
        requests,
        errors,
        elapsed: started.elapsed(),
        p50_us: total.value_at_quantile(0.5),
        p99_us: total.value_at_quantile(0.99),
    })
}
