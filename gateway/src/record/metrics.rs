//! Prometheus metrics, fed from request records. Labels are bounded: route templates (never raw
//! paths), a fixed set of methods, status classes and stage ids — never a user id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use std::sync::Arc;

use http::Method;
use parking_lot::Mutex;

use super::RequestRecord;
use super::duration_histogram::DurationHistogram;
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
    pub request_duration: Family<RouteLabels, DurationHistogram>,
    pub stage_duration: Family<StageLabels, DurationHistogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub access_log_dropped: Counter,
    /// Recording lines lost: the writer's queue was full, or the write failed.
    pub recording_dropped: Counter,
    /// Recording lines written to the file.
    pub recording_written: Counter,
    /// `stage_duration`'s eight series, resolved once.
    stages: [DurationHistogram; 8],
    /// The handles of requests that matched no route.
    unmatched: Arc<RouteMetrics>,
    /// JWKS fetches, TLS handshakes, the verified-token cache (identity/metrics.rs).
    pub identity: crate::identity::metrics::IdentityMetrics,
    /// Decisions, store errors and fallbacks, the memory store's keys (ratelimit/metrics.rs).
    pub ratelimit: crate::ratelimit::metrics::RateLimitMetrics,
    /// Breakers, retries, ejections, instances in rotation, reloads (resilience/metrics.rs).
    pub resilience: crate::resilience::metrics::ResilienceMetrics,
    /// Requests in flight and connections open, with their refusals: the counts the gateway's
    /// own limits admit by (resilience/concurrency.rs).
    pub concurrency: crate::resilience::concurrency::ConcurrencyMetrics,
    /// The heap trims after connections let go of their buffers (resilience/heap.rs).
    pub heap: crate::resilience::heap::HeapMetrics,
}

/// One route's request handles (see [`Metrics::for_route`]). The counters by method, status
/// class and stopping stage are found in their family the first time each combination occurs —
/// a route sees a handful — and kept here.
pub struct RouteMetrics {
    route: String,
    duration: DurationHistogram,
    requests: Mutex<Vec<(u16, Counter)>>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
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
        let request_duration =
            Family::<RouteLabels, DurationHistogram>::new_with_constructor(|| {
                DurationHistogram::new(latency_buckets())
            });
        registry.register(
            "request_duration_seconds",
            "Time from arrival to the end of the response, by route template",
            request_duration.clone(),
        );
        let stage_duration = Family::<StageLabels, DurationHistogram>::new_with_constructor(|| {
            DurationHistogram::new(prometheus_client::metrics::histogram::exponential_buckets(
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
        let recording_dropped = Counter::default();
        registry.register(
            "recording_dropped",
            "Recording lines dropped because the writer fell behind or could not write",
            recording_dropped.clone(),
        );
        let recording_written = Counter::default();
        registry.register(
            "recording_written",
            "Recording lines written",
            recording_written.clone(),
        );
        let identity = crate::identity::metrics::IdentityMetrics::register(&mut registry);
        let ratelimit = crate::ratelimit::metrics::RateLimitMetrics::register(&mut registry);
        let resilience = crate::resilience::metrics::ResilienceMetrics::register(&mut registry);
        let concurrency =
            crate::resilience::concurrency::ConcurrencyMetrics::register(&mut registry);
        let heap = crate::resilience::heap::HeapMetrics::register(&mut registry);
        let stages = StageId::ALL.map(|stage| {
            stage_duration
                .get_or_create(&StageLabels {
                    stage: stage.as_str(),
                })
                .clone()
        });
        let unmatched = Arc::new(RouteMetrics {
            route: "unmatched".to_string(),
            duration: request_duration
                .get_or_create(&RouteLabels {
                    route: "unmatched".to_string(),
                })
                .clone(),
            requests: Mutex::new(Vec::new()),
        });
        Self {
            registry,
            stages,
            unmatched,
            identity,
            ratelimit,
            resilience,
            concurrency,
            heap,
            requests,
            request_duration,
            stage_duration,
            upstream_errors,
            access_log_dropped,
            recording_dropped,
            recording_written,
        }
    }

    /// One route's request metrics, resolved when a config is bound so that observing a record
    /// builds no label strings and searches no family map.
    pub fn for_route(&self, template: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            route: template.to_string(),
            duration: self
                .request_duration
                .get_or_create(&RouteLabels {
                    route: template.to_string(),
                })
                .clone(),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// Counts a record: on its route's handles when the request matched one (`route`), else on
    /// the `unmatched` ones.
    pub fn observe(&self, record: &RequestRecord, route: Option<&RouteMetrics>) {
        let route = route.unwrap_or(&self.unmatched);
        let method = method_index(&record.method);
        let class = usize::from(record.status / 100).clamp(1, 5) - 1;
        let stop = record.stopped_at.map_or(StageId::ALL.len(), StageId::index);
        let key = ((method * 5 + class) * (StageId::ALL.len() + 1) + stop) as u16;
        let counter = {
            let mut seen = route.requests.lock();
            match seen.iter().find(|(k, _)| *k == key) {
                Some((_, counter)) => counter.clone(),
                None => {
                    let counter = self
                        .requests
                        .get_or_create(&RequestLabels {
                            route: route.route.clone(),
                            method: method_label(method),
                            status_class: record.status_class(),
                            stopped_at: record.stopped_at.map_or("none", StageId::as_str),
                        })
                        .clone();
                    seen.push((key, counter.clone()));
                    counter
                }
            }
        };
        counter.inc();
        route.duration.observe_ns(record.duration_ns);
        for stage in StageId::ALL {
            if let Some(ns) = record.stage_ns.get(stage) {
                self.stages[stage.index()].observe_ns(ns);
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
/// The bounded method labels; extension methods share `OTHER`.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

fn method_label(index: usize) -> &'static str {
    METHODS.get(index).map_or("OTHER", Method::as_str)
}
