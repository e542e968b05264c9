//! Rate-limit algorithms in memory: the cost of one decision on a warm state, through the concrete
//! type (what the simulator's inner loop uses) and through `AnyLimiter` (what a store holding
//! mixed policies uses), and a virtual-time run of 1,000,000 decisions over a bursty synthetic
//! trace, reported as decisions per second on one core.
//!
//! `cargo bench -p gateway --bench ratelimit -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use gateway::clock::Nanos;
use gateway::ratelimit::{
    Algorithm, AnyLimiter, FixedWindow, Gcra, Limiter, Quota, SlidingLog, SlidingWindowCounter,
    TokenBucket,
};

const MS: u64 = 1_000_000;

/// DESIGN.md's paid tier: 1,000 per minute sustained, bursts of 100 (window algorithms: 1,000).
const QUOTA: Quota = Quota::per_minute(1_000).with_burst(100);

/// Arrivals every 30 ms: twice the sustained rate, so about half are admitted.
const STEP: Nanos = 30 * MS;

const RUN: usize = 1_000_000;

/// One key's arrivals: 30% in bursts (same nanosecond), the rest 0–120 ms apart (~1.7× the rate).
fn trace() -> Vec<Nanos> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut at = 0;
    (0..RUN)
        .map(|_| {
            if rng.u8(0..10) >= 3 {
                at += rng.u64(0..=120 * MS);
            }
            at
        })
        .collect()
}

fn decide_one<L: Limiter>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, limiter: &L) {
    let mut state = L::State::default();
    let mut now = 0;
    // Warm: a full period of traffic, so the state (and the sliding log's ring) is in steady use.
    for _ in 0..10_000 {
        now += STEP;
        limiter.decide(&mut state, now, 1);
    }
    group.bench_function(name, |b| {
        b.iter(|| {
            now += STEP;
            black_box(limiter.decide(&mut state, black_box(now), black_box(1)))
        })
    });
}

fn run_trace<L: Limiter>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    limiter: &L,
    trace: &[Nanos],
) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut state = L::State::default();
            let mut admitted = 0u32;
            for &now in trace {
                admitted += u32::from(limiter.decide(&mut state, black_box(now), 1).allowed);
            }
            black_box(admitted)
        })
    });
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    decide_one(&mut group, "token-bucket", &TokenBucket::new(QUOTA));
    decide_one(&mut group, "gcra", &Gcra::new(QUOTA));
    decide_one(&mut group, "fixed-window", &FixedWindow::new(QUOTA));
    decide_one(&mut group, "sliding-log", &SlidingLog::new(QUOTA));
    decide_one(
        &mut group,
        "sliding-window-counter",
        &SlidingWindowCounter::new(QUOTA),
    );
    group.finish();

    let mut group = c.benchmark_group("decide_any");
    group.throughput(Throughput::Elements(1));
    for algorithm in Algorithm::ALL {
        decide_one(
            &mut group,
            algorithm.as_str(),
            &AnyLimiter::new(algorithm, QUOTA),
        );
    }
    group.finish();
}

fn virtual_time_run(c: &mut Criterion) {
    let trace = trace();
    let mut group = c.benchmark_group("run_1m");
    group.throughput(Throughput::Elements(RUN as u64));
    group.sample_size(10);
    run_trace(&mut group, "token-bucket", &TokenBucket::new(QUOTA), &trace);
    run_trace(&mut group, "gcra", &Gcra::new(QUOTA), &trace);
    run_trace(&mut group, "fixed-window", &FixedWindow::new(QUOTA), &trace);
    run_trace(&mut group, "sliding-log", &SlidingLog::new(QUOTA), &trace);
    run_trace(
        &mut group,
        "sliding-window-counter",
        &SlidingWindowCounter::new(QUOTA),
        &trace,
    );
    group.finish();
}

criterion_group!(benches, decide, virtual_time_run);
criterion_main!(benches);
