//! The compare engine's speed: every algorithm on the same arrivals in virtual time, with the
//! whole measurement (ground truth, bursts, recovery, bins, per-key tallies), reported as
//! decisions per second on one core. "all five" makes five decisions per arrival (the exact
//! sliding log is also the fairness reference, run once); each single-algorithm run makes two
//! (the algorithm and that reference).
//!
//! `cargo bench -p simulator --bench compare -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::ratelimit::{Algorithm, Quota};
use simulator::compare::{CompareParams, KeyField, Trace, TrafficSpec, compare};

fn trace(spec: &str, quota: Quota) -> Trace {
    TrafficSpec::parse(spec, KeyField::Auto, quota)
        .and_then(|t| t.load(quota))
        .expect("a profile")
}

fn engine(c: &mut Criterion) {
    let quota = Quota::per_second(10);
    let cases = [
        // 1,000 keys of Zipf popularity at 10,000/s for 60 s: about 600,000 arrivals.
        (
            "many-keys",
            trace("many-keys:keys=1000,rate=10000,duration=60s", quota),
        ),
        // One key, 5 buggy clients retrying at 1 ms: about 240,000 arrivals.
        ("retry-storm", trace("retry-storm:duration=60s", quota)),
    ];
    let mut group = c.benchmark_group("compare");
    group.sample_size(10);
    for (name, trace) in &cases {
        let arrivals = trace.arrivals.len() as u64;
        let all = CompareParams::new(quota, Algorithm::ALL.to_vec());
        group.throughput(Throughput::Elements(arrivals * 5));
        group.bench_function(format!("{name}/all five"), |b| {
            b.iter(|| black_box(compare(black_box(trace), &all)))
        });
        for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindowCounter] {
            let one = CompareParams::new(quota, vec![algorithm]);
            group.throughput(Throughput::Elements(arrivals * 2));
            group.bench_function(format!("{name}/{algorithm} + reference"), |b| {
                b.iter(|| black_box(compare(black_box(trace), &one)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
