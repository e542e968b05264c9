//! A Prometheus histogram of durations that takes no lock to observe. prometheus-client's
//! `Histogram` takes a write lock per observation, and every request observes nine (its route's
//! duration and each stage's), from every worker into the same eight stage series: a lock each
//! time, and the same cache lines fought over between cores. Here each observation is two relaxed
//! atomic additions — its bucket and the sum in nanoseconds — and the count is the buckets' total,
//! read when the series is encoded. A scrape racing an observation may see the bucket without
//! the sum for an instant; the next one sees both.

use std::iter::once;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// One histogram series; clones share it.
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<Series>,
}

#[derive(Debug)]
struct Series {
    /// Upper bounds (inclusive, as Prometheus' `le`), in nanoseconds and as exposed in seconds.
    bounds_ns: Box<[u64]>,
    bounds_seconds: Box<[f64]>,
    /// One count per bound, and a last one for `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// A series with these upper bounds, in seconds and ascending (an implicit `+Inf` follows).
    pub fn new(bounds_seconds: impl IntoIterator<Item = f64>) -> Self {
        let bounds_seconds: Box<[f64]> = bounds_seconds.into_iter().collect();
        let bounds_ns = bounds_seconds
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect();
        let buckets = (0..=bounds_seconds.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            inner: Arc::new(Series {
                bounds_ns,
                bounds_seconds,
                buckets,
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one duration of `ns` nanoseconds.
    pub fn observe_ns(&self, ns: u64) {
        let series = &*self.inner;
        // A walk from the smallest bound, not a binary search: most durations land in the first
        // few buckets, where the walk ends in a compare or two.
        let bucket = series
            .bounds_ns
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(series.bounds_ns.len());
        if let Some(count) = series.buckets.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        series.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let series = &*self.inner;
        // Per-bucket counts, as prometheus-client's encoder takes them (it makes them
        // cumulative); its `+Inf` bucket is the one with `f64::MAX`.
        let buckets: Vec<(f64, u64)> = series
            .bounds_seconds
            .iter()
            .copied()
            .chain(once(f64::MAX))
            .zip(series.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = series.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    fn exposition(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn it_exposes_what_prometheus_clients_histogram_exposes_for_the_same_durations() {
        let bounds = || exponential_buckets(0.000_000_5, 2.0, 26);
        let ours = DurationHistogram::new(bounds());
        let theirs = Histogram::new(bounds());
        // On a bound, either side of one, past the last, and zero.
        let durations_ns = [0, 499, 500, 501, 1_000, 7_777, 1_000_000, 40_000_000_000];
        for ns in durations_ns {
            ours.observe_ns(ns);
            theirs.observe(ns as f64 / 1e9);
        }
        let ours = exposition(|r| r.register("d", "durations", ours));
        let theirs = exposition(|r| r.register("d", "durations", theirs));
        assert_eq!(ours, theirs);
        assert!(ours.contains("d_count 8"), "{ours}");
        assert!(ours.contains("d_bucket{le=\"+Inf\"} 8"), "{ours}");
        assert!(ours.contains("d_bucket{le=\"5e-7\"} 3"), "{ours}");
    }

    #[test]
    fn clones_count_into_one_series() {
        let histogram = DurationHistogram::new([0.001]);
        let clone = histogram.clone();
        histogram.observe_ns(10);
        clone.observe_ns(2_000_000);
        let text = exposition(|r| r.register("d", "durations", histogram));
        assert!(text.contains("d_bucket{le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("d_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("d_sum 0.00200001"), "{text}");
    }
}
