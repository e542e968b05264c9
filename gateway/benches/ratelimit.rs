//! Rate-limit algorithms in memory: the cost of one decision on a warm state, through the concrete
//! type (what the simulator's inner loop uses) and through `AnyLimiter` (what a store holding
//! mixed policies uses), and a virtual-time run of 1,000,000 decisions over a bursty synthetic
//! trace, reported as decisions per second on one core.
//!
//! The stores: one decision through the in-memory store per algorithm (shard lock, hash lookup,
//! the algorithm), many threads contending on few keys, and Redis-backed decisions per second
//! through `RedisStore` (64 requests in flight, multiplexed on one connection; batched as the
//! gateway does by default, and one script call per request) against
//! `redis-benchmark` on the same `redis-server` in the same run — printed as a ratio.
//!
//! `cargo bench -p gateway --bench ratelimit -- --warm-up-time 1 --measurement-time 2`

// A benchmark measures wall time; the injected-clock rule is for the gateway's rules.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use gateway::clock::Nanos;
use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::Check;
use gateway::ratelimit::store::RedisConfig;
use gateway::ratelimit::store::batch::DEFAULT_MAX_BATCH;
use gateway::ratelimit::store::memory::MemoryStore;
use gateway::ratelimit::store::redis::{RedisStore, SCRIPT};
use gateway::ratelimit::{
    Algorithm, AnyLimiter, FixedWindow, Gcra, Limiter, Quota, SlidingLog, SlidingWindowCounter,
    TokenBucket,
};

const MS: u64 = 1_000_000;

/// The paid tier of the testbed (fixtures/testbed.yaml): 1,000 per minute sustained, bursts of 100 (window algorithms: 1,000).
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

/// The paid tier in store ticks (microseconds), and the arrival step.
const TICK_QUOTA: Quota = Quota::new(1_000, 60_000_000).with_burst(100);
const TICK_STEP: u64 = 30_000;
/// 2024 in ticks.
const EPOCH: u64 = 1_704_067_200_000_000;

fn memory_store(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_store");
    group.throughput(Throughput::Elements(1));
    for algorithm in Algorithm::ALL {
        let store = MemoryStore::new(1_000_000, RateLimitMetrics::default());
        let limiter = AnyLimiter::new(algorithm, TICK_QUOTA);
        let check = Check {
            policy: "paid:0123abcd",
            subject: "key:customer-42",
            limiter: &limiter,
            cost: 1,
        };
        let mut now = EPOCH;
        for _ in 0..10_000 {
            now += TICK_STEP;
            store.decide(&check, now);
        }
        group.bench_function(algorithm.as_str(), |b| {
            b.iter(|| {
                now += TICK_STEP;
                black_box(store.decide(black_box(&check), now))
            })
        });
    }
    group.finish();

    // Contention: 8 threads (on 2 cores) deciding on 1 or 16 keys of one store.
    let mut group = c.benchmark_group("memory_store_contended");
    group.throughput(Throughput::Elements(1));
    for keys in [1usize, 16] {
        let store = MemoryStore::new(1_000_000, RateLimitMetrics::default());
        let limiter = AnyLimiter::new(Algorithm::Gcra, TICK_QUOTA);
        let subjects: Vec<String> = (0..keys).map(|k| format!("key:{k}")).collect();
        group.bench_function(format!("8-threads-{keys}-keys"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(8);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..8u64 {
                        let (store, limiter, subjects) = (&store, &limiter, &subjects);
                        scope.spawn(move || {
                            for i in 0..per_thread {
                                let subject = &subjects[((t + i) as usize) % subjects.len()];
                                let check = Check {
                                    policy: "paid:0123abcd",
                                    subject,
                                    limiter,
                                    cost: 1,
                                };
                                black_box(store.decide(&check, EPOCH + i * TICK_STEP));
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// A `redis-server` of the bench's own on a free port; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (./scripts/test installs it)");
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                return RedisServer { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }
}

impl RedisServer {
    /// The server's CPU time so far (user + system) in microseconds, from `/proc/<pid>/stat`
    /// (fields 14 and 15, in USER_HZ ticks: 100 per second on Linux); 0 where there is no procfs.
    fn cpu_micros(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The command name (field 2) may hold spaces; the fields after its `)` do not.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After `)`: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
        (ticks(11) + ticks(12)) * 10_000
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-benchmark -q` requests per second for `command` with 64 connections.
fn redis_benchmark(port: u16, requests: u64, command: &[&str]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "64",
            "-n",
            &requests.to_string(),
            "-q",
        ])
        .args(command)
        .output()
        .expect("redis-benchmark (comes with redis-server)");
    let text = String::from_utf8_lossy(&out.stdout);
    // `SET: 123456.79 requests per second, p50=...`; progress lines end in `\r`.
    text.rsplit('\r')
        .flat_map(|l| l.lines())
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .filter_map(|n| n.parse::<f64>().ok())
        .next_back()
        .unwrap_or(0.0)
}

/// `decisions` through `RedisStore` with 64 in flight over 4,096 subjects; decisions per second.
fn redis_store_run(rt: &tokio::runtime::Runtime, store: &Arc<RedisStore>, decisions: u64) -> f64 {
    let limiter = Arc::new(AnyLimiter::new(Algorithm::Gcra, TICK_QUOTA));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64u64 {
            let (store, limiter) = (store.clone(), limiter.clone());
            tasks.spawn(async move {
                let mut i = t;
                while i < decisions {
                    let subject = format!("key:{}", i % 4_096);
                    let check = Check {
                        policy: "paid:0123abcd",
                        subject: &subject,
                        limiter: &limiter,
                        cost: 1,
                    };
                    let _ = black_box(store.decide_all(&[check], EPOCH + i * 10, 0).await);
                    i += 64;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    decisions as f64 / started.elapsed().as_secs_f64()
}

fn redis_store(c: &mut Criterion) {
    // Under `cargo test --benches` (no `--bench`), run each part once and small.
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 200_000 } else { 2_000 };
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = RedisConfig {
        url: format!("redis://127.0.0.1:{}", server.port),
        cluster_nodes: Vec::new(),
        key_prefix: "bench:".into(),
        timeout: Duration::from_secs(5),
        breaker_failures: 1_000,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: DEFAULT_MAX_BATCH,
    };
    let make = |config: &RedisConfig| {
        let _guard = rt.enter();
        Arc::new(RedisStore::new(config, RateLimitMetrics::default()).expect("store"))
    };
    let store = make(&config);
    let single = make(&RedisConfig {
        max_batch: 1,
        ..config.clone()
    });
    // Warm: connection, script loaded.
    redis_store_run(&rt, &store, 1_000);
    redis_store_run(&rt, &single, 1_000);

    // Each run with the redis-server CPU it cost, in µs per decision.
    let measured = |store: &Arc<RedisStore>| {
        let cpu_before = server.cpu_micros();
        let rate = redis_store_run(&rt, store, n);
        (rate, (server.cpu_micros() - cpu_before) as f64 / n as f64)
    };
    let (unbatched, unbatched_cpu) = measured(&single);
    let (ours, server_cpu) = measured(&store);
    let set = redis_benchmark(server.port, n, &["-t", "set"]);
    let sha = redis::Script::new(SCRIPT).get_hash().to_string();
    let now = (EPOCH + 1).to_string();
    let evalsha = redis_benchmark(
        server.port,
        n,
        &[
            "EVALSHA",
            &sha,
            "2",
            "bench:{k}",
            "bench:{k}:log",
            &now,
            "1000",
            "gcra",
            "1000",
            "60000000",
            "100",
            "1",
        ],
    );
    eprintln!(
        "redis: RedisStore {ours:.0} decisions/s (64 in flight, one multiplexed connection, \
         max_batch {DEFAULT_MAX_BATCH}), redis-server CPU {server_cpu:.1} µs per decision; \
         unbatched (max_batch 1) {unbatched:.0} decisions/s, {unbatched_cpu:.1} µs; \
         redis-benchmark -c 64: SET {set:.0}/s, EVALSHA of the script {evalsha:.0}/s; \
         ratio to SET {:.2}, to EVALSHA {:.2}",
        ours / set.max(1.0),
        ours / evalsha.max(1.0)
    );

    let mut group = c.benchmark_group("redis_store");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for (name, store) in [
        ("gcra-64-in-flight", &store),
        ("gcra-64-in-flight-unbatched", &single),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                redis_store_run(&rt, store, iters.max(64));
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide, virtual_time_run, memory_store, redis_store);
criterion_main!(benches);
