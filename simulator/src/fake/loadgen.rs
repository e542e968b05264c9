//! Maximum-rate load: `connections` workers, each on its own keep-alive connection, sending the
//! next request as soon as the last one is answered. This is how the load generator is compared
//! with wrk or oha against a fixed target: if it cannot saturate a target they can, latencies
//! would measure the generator, not the gateway. (Scenario phases use the pooled client of
//! `scenario::run`, since open-model arrivals need more connections than workers.)

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;

use http_body_util::BodyExt;

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
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` names no host"))?
        .clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let authority = authority.clone();
        let path = path.clone();
        workers.spawn(async move { worker(authority, path, deadline).await });
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

/// One keep-alive connection owned by one worker, as wrk and oha do: no pool lookups or locks
/// between requests. A connection that fails is replaced.
async fn worker(
    authority: http::uri::Authority,
    path: String,
    deadline: tokio::time::Instant,
) -> Result<(u64, u64, Histogram<u64>), String> {
    let mut latencies =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut sender = None;
    while tokio::time::Instant::now() < deadline {
        if sender.is_none() {
            match connect(&authority).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let request = http::Request::get(path.as_str())
            .header(http::header::HOST, authority.as_str())
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let t0 = tokio::time::Instant::now();
        let answered = match s.send_request(request).await {
            Ok(response) => response.into_body().collect().await.is_ok(),
            Err(_) => false,
        };
        if answered {
            ok += 1;
        } else {
            errors += 1;
            sender = None;
        }
        let _ = latencies.record((t0.elapsed().as_micros() as u64).clamp(1, 60_000_000));
    }
    Ok((ok, errors, latencies))
}

async fn connect(
    authority: &http::uri::Authority,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}
