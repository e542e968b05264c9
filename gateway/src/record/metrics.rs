//! Prometheus metrics, fed from request records. Labels are bounded: route templates (never raw
//! paths), a fixed set of methods, status classes and stage ids — never a user id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::RequestRecord;
use crate::vocab::StageId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status_class: &'static str,
    pub stopped_at: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub stage_duration: Family<StageLabels, Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub access_log_dropped: Counter,
    /// JWKS fetches, TLS handshakes, the verified-token cache (identity/metrics.rs).
    pub identity: crate::identity::metrics::IdentityMetrics,
    /// Decisions, store errors and fallbacks, the memory store's keys (ratelimit/metrics.rs).
    pub ratelimit: crate::ratelimit::metrics::RateLimitMetrics,
    /// Breakers, retries, ejections, instances in rotation, reloads (resilience/metrics.rs).
    pub resilience: crate::resilience::metrics::ResilienceMetrics,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 50 µs .. ~26 s, doubling: gateway overhead and slow upstreams both land in a bucket.
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 20)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route template, method, status class and the stage that stopped them (none when the upstream answered)",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "request_duration_seconds",
            "Time from arrival to the end of the response, by route template",
            request_duration.clone(),
        );
        let stage_duration = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_000_5,
                2.0,
                26,
            ))
        });
        registry.register(
            "stage_duration_seconds",
            "Time spent in each stage",
            stage_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed forwards by upstream and reason",
            upstream_errors.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let identity = crate::identity::metrics::IdentityMetrics::register(&mut registry);
        let ratelimit = crate::ratelimit::metrics::RateLimitMetrics::register(&mut registry);
        let resilience = crate::resilience::metrics::ResilienceMetrics::register(&mut registry);
        Self {
            registry,
            identity,
            ratelimit,
            resilience,
            requests,
            request_duration,
            stage_duration,
            upstream_errors,
            access_log_dropped,
        }
    }

    pub fn observe(&self, record: &RequestRecord) {
        let route = record
            .route_template
            .as_deref()
            .unwrap_or("unmatched")
            .to_string();
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method_label(&record.method),
                status_class: record.status_class(),
                stopped_at: record.stopped_at.map_or("none", StageId::as_str),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(record.duration_ns as f64 / 1e9);
        for stage in StageId::ALL {
            if let Some(ns) = record.stage_ns.get(stage) {
                self.stage_duration
                    .get_or_create(&StageLabels {
                        stage: stage.as_str(),
                    })
                    .observe(ns as f64 / 1e9);
            }
        }
        if let (Some(StageId::Forward), Some(upstream), Some(reason)) =
            (record.stopped_at, &record.upstream, &record.reason)
        {
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    upstream: upstream.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Methods outside the standard set share one label so a client cannot mint label values.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}
