//! The active health prober: one task per checked instance, sending `GET <path>` through the
//! upstream's own pool and feeding the verdict to the instance's state machine.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::{Request, header};
use http_body_util::BodyExt;

use super::pool::UpstreamClient;
use crate::body::UpstreamRequestBody;
use crate::resilience::InstanceState;
use crate::resilience::settings::HealthCheck;

/// Longest health-check response body read (so the connection can be reused); longer ones are
/// dropped unread.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// Probes `instance` every `config.interval` until aborted.
pub async fn run_checker(
    instance: Arc<InstanceState>,
    config: HealthCheck,
    client: UpstreamClient,
    scheme: http::uri::Scheme,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let passed = probe(&instance, &config, &client, &scheme).await;
        if let Some(healthy) = instance.observe_active(passed, &config) {
            if healthy {
                tracing::info!(
                    upstream = %instance.upstream,
                    instance = %instance.address,
                    "instance passed its health checks; back in rotation"
                );
            } else {
                tracing::warn!(
                    upstream = %instance.upstream,
                    instance = %instance.address,
                    "instance failed its health checks; out of rotation"
                );
            }
        }
    }
}

async fn probe(
    instance: &InstanceState,
    config: &HealthCheck,
    client: &UpstreamClient,
    scheme: &http::uri::Scheme,
) -> bool {
    let uri = format!("{scheme}://{}{}", instance.address, config.path);
    let Ok(request) = Request::get(uri)
        .header(header::HOST, instance.address.to_string())
        .header(header::USER_AGENT, "gatehouse-health-check")
        .body(UpstreamRequestBody::new(
            None,
            0,
            Arc::new(AtomicU64::new(0)),
        ))
    else {
        return false;
    };
    let answered = tokio::time::timeout(config.timeout, async {
        let (response, _lease) = client.request(instance.address, request).await.ok()?;
        let passed = config.expects(response.status().as_u16());
        let mut body = response.into_body();
        let mut read = 0;
        while read <= MAX_CHECK_BODY {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) => return Some(false),
                None => break,
            }
        }
        Some(passed)
    })
    .await;
    matches!(answered, Ok(Some(true)))
}
