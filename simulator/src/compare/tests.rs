//! The engine on small traces worked out by hand, and against the gateway's algorithms driven
//! directly.

use gateway::ratelimit::lease::LeaseSettings;
use gateway::ratelimit::{AnyLimiter, AnyState};

use super::traffic::{Profile, read_recording};
use super::*;

const MS: u64 = 1_000_000;

/// One key; 2 per second (T = 500 ms), burst 2. A burst of three at 0, then 500, 1000 ×2, 1500.
fn small() -> Trace {
    Trace::from_events(
        "small",
        [0, 0, 0, 500, 1000, 1000, 1500].map(|ms| (ms * MS, "k", 1)),
    )
}

fn small_comparison() -> Comparison {
    compare(
        &small(),
        &CompareParams::new(Quota::per_second(2), Algorithm::ALL.to_vec()),
    )
}

#[test]
fn each_algorithm_on_a_small_trace_admits_and_errs_exactly_as_worked_out_by_hand() {
    let c = small_comparison();
    // (admitted, rejected, false allows, false denies, largest burst)
    let expected = [
        // 0 0 | 0✗ | 500 (the window still holds the two of 0: a false allow) | 1000 | 1000✗
        // (the exact log admits both at 1000: a false deny) | 1500
        (Algorithm::TokenBucket, (5, 2, 1, 1, 2)),
        (Algorithm::Gcra, (5, 2, 1, 1, 2)),
        // 0 0 | 0✗ 500✗ | 1000 1000 | 1500✗
        (Algorithm::FixedWindow, (4, 3, 0, 0, 2)),
        (Algorithm::SlidingLog, (4, 3, 0, 0, 2)),
        // At 1000 the previous window still weighs 2: both refused though the exact log admits
        // them (false denies); at 1500 it weighs 1: admitted.
        (Algorithm::SlidingWindowCounter, (3, 4, 0, 2, 2)),
    ];
    for (algorithm, want) in expected {
        let r = c.result(algorithm).expect("result");
        let got = (
            r.admitted,
            r.rejected,
            r.false_allows,
            r.false_denies,
            r.largest_burst,
        );
        assert_eq!(got, want, "{algorithm}");
    }
}

#[test]
fn recovery_is_the_exact_retry_after_at_each_refusal_runs_first_refusal() {
    let c = small_comparison();
    // (runs, retry-after mean, max; observed runs, observed mean)
    let expected = [
        (Algorithm::TokenBucket, (2, 500.0, 500.0, 2, 500.0)),
        (Algorithm::Gcra, (2, 500.0, 500.0, 2, 500.0)),
        // Refused at 0 until the window ends at 1000; refused at 1500 until 2000 (never seen).
        (Algorithm::FixedWindow, (2, 750.0, 1000.0, 1, 1000.0)),
        (Algorithm::SlidingLog, (2, 750.0, 1000.0, 1, 1000.0)),
        // Refused at 0: the current window's 2 weigh 1 only half-way into the next, at 1500.
        (
            Algorithm::SlidingWindowCounter,
            (1, 1500.0, 1500.0, 1, 1500.0),
        ),
    ];
    for (algorithm, want) in expected {
        let r = &c.result(algorithm).expect("result").recovery;
        let got = (
            r.runs,
            r.retry_after_mean_ms,
            r.retry_after_max_ms,
            r.observed_runs,
            r.observed_mean_ms,
        );
        assert_eq!(got, want, "{algorithm}");
    }
}

#[test]
fn state_bytes_and_redis_costs_are_the_gateways_own() {
    let c = small_comparison();
    let bytes = |a| c.result(a).expect("result").state_bytes_per_key;
    assert_eq!(bytes(Algorithm::TokenBucket).max, 16);
    assert_eq!(bytes(Algorithm::Gcra).max, 8);
    assert_eq!(bytes(Algorithm::FixedWindow).max, 16);
    assert_eq!(bytes(Algorithm::SlidingWindowCounter).max, 24);
    // The sliding log: 48 bytes and its ring of 16-byte entries (at most `limit` of them).
    let log = bytes(Algorithm::SlidingLog).max;
    assert!((48 + 16..=48 + 2 * 16).contains(&log), "{log}");
    let redis = c.result(Algorithm::SlidingLog).expect("result").redis;
    assert_eq!((redis.round_trips, redis.keys_touched), (1, 2));
    let redis = c.result(Algorithm::Gcra).expect("result").redis;
    assert_eq!(
        (
            redis.round_trips,
            redis.keys_touched,
            redis.commands_admitted
        ),
        (1, 1, (3, 3))
    );
}

#[test]
fn bins_count_admitted_and_rejected_over_time() {
    let mut params = CompareParams::new(Quota::per_second(2), vec![Algorithm::FixedWindow]);
    params.bin_nanos = 500 * MS;
    let c = compare(&small(), &params);
    assert_eq!(c.bin_ms, 500.0);
    assert_eq!(c.offered_per_bin, vec![3, 1, 2, 1]);
    let r = &c.results[0];
    assert_eq!(r.admitted_per_bin, vec![2, 0, 2, 0]);
    assert_eq!(r.rejected_per_bin, vec![1, 1, 0, 1]);
}

#[test]
fn jains_index_is_one_when_even_and_lower_when_not() {
    assert_eq!(jain(&[5, 10], &[5, 10]), 1.0);
    // Shares 1 and 0.5: (1.5)² / (2 · 1.25) = 0.9.
    assert!((jain(&[2, 1], &[2, 2]) - 0.9).abs() < 1e-12);
    // Keys entitled to nothing are left out.
    assert_eq!(jain(&[2, 7], &[2, 0]), 1.0);
}

#[test]
fn fairness_across_keys_measures_shares_of_the_exact_entitlement() {
    // Two keys of the same pattern, offset so one key's burst straddles a fixed-window boundary.
    let mut events = Vec::new();
    for &(key, offset) in &[("a", 0u64), ("b", 998 * MS)] {
        for t in [0, 1, 2, 3] {
            events.push((offset + t * MS, key, 1));
        }
    }
    let c = compare(
        &Trace::from_events("two keys", events),
        &CompareParams::new(
            Quota::per_second(2),
            vec![Algorithm::SlidingLog, Algorithm::FixedWindow],
        ),
    );
    assert_eq!(c.result(Algorithm::SlidingLog).expect("log").fairness, 1.0);
    // The fixed window gives `b` (whose burst crosses 1 s) 4 of its 2 entitled; `a` gets 2.
    let fw = c.result(Algorithm::FixedWindow).expect("fw");
    assert_eq!(fw.admitted_per_key, vec![2, 4]);
    assert!((fw.fairness - 0.9).abs() < 1e-12, "{}", fw.fairness);
}

/// The trace of `gateway::ratelimit::properties::comparison_against_the_sliding_log_on_a_seeded_bursty_trace`,
/// at its own times (not shifted to start at 0: the window algorithms align to time 0).
fn seeded_bursty() -> Trace {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut at = 0;
    let arrivals = (0..100_000)
        .map(|_| {
            at += if rng.u8(0..10) < 3 {
                0
            } else {
                rng.u64(0..=200 * MS)
            };
            Arrival {
                at,
                key: 0,
                cost: 1,
            }
        })
        .collect();
    Trace {
        source: "seeded bursty".into(),
        arrivals,
        keys: vec!["k".into()],
    }
}

#[test]
fn on_the_gateways_seeded_bursty_trace_the_engine_reproduces_its_snapshot() {
    // The numbers are the gateway's own snapshot in ratelimit/properties.rs.
    let c = compare(
        &seeded_bursty(),
        &CompareParams::new(Quota::per_second(10), Algorithm::ALL.to_vec()),
    );
    // The snapshot's false denies are judged on each algorithm's own admissions: here they are
    // `refusals_with_room`. Against the exact log's admissions the over-admitting algorithms
    // refuse plenty the exact limit would have let through.
    let got: Vec<(Algorithm, u64, u64, u64, u64)> = c
        .results
        .iter()
        .map(|r| {
            (
                r.algorithm,
                r.admitted,
                r.false_allows,
                r.refusals_with_room,
                r.false_denies,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Algorithm::TokenBucket, 69741, 34747, 0, 7310),
            (Algorithm::Gcra, 69741, 34747, 0, 7310),
            (Algorithm::FixedWindow, 68954, 32908, 0, 15603),
            (Algorithm::SlidingLog, 62060, 0, 0, 0),
            (Algorithm::SlidingWindowCounter, 60344, 2417, 24235, 12587),
        ]
    );
}

#[test]
fn the_engines_decisions_equal_the_gateways_algorithms_driven_directly() {
    let trace = seeded_bursty();
    let quota = Quota::per_second(10).with_burst(4);
    let c = compare(&trace, &CompareParams::new(quota, Algorithm::ALL.to_vec()));
    for algorithm in Algorithm::ALL {
        let limiter = AnyLimiter::new(algorithm, quota);
        let mut state = AnyState::default();
        let direct: Vec<Decision> = trace
            .arrivals
            .iter()
            .map(|a| limiter.decide(&mut state, a.at, u64::from(a.cost)))
            .collect();
        assert_eq!(decisions(algorithm, quota, &trace), direct, "{algorithm}");
        let admitted = direct.iter().filter(|d| d.allowed).count() as u64;
        let r = c.result(algorithm).expect("result");
        assert_eq!(r.admitted, admitted, "{algorithm}");
        assert_eq!(r.rejected, trace.arrivals.len() as u64 - admitted);
    }
}

#[test]
fn keys_are_limited_apart() {
    let trace = Trace::from_events("keys", [(0, "a", 1), (0, "b", 1), (0, "a", 1)]);
    let c = compare(
        &trace,
        &CompareParams::new(Quota::per_second(1), vec![Algorithm::Gcra]),
    );
    let r = &c.results[0];
    assert_eq!((r.admitted, r.rejected), (2, 1));
    assert_eq!(r.rejected_per_key, vec![1, 0]);
    assert_eq!(c.top_rejected_keys.len(), 1);
    assert_eq!(c.top_rejected_keys[0].key, "a");
    assert_eq!(c.top_rejected_keys[0].arrivals, 2);
}

#[test]
fn nice_bins_are_round_milliseconds() {
    assert_eq!(nice_bin(60_000 * MS, 120), 500 * MS);
    assert_eq!(nice_bin(10 * MS, 120), MS);
    assert_eq!(nice_bin(1_000_000 * MS, 120), 10_000 * MS);
}

fn profile(spec: &str) -> Profile {
    match TrafficSpec::parse(spec, KeyField::Auto, Quota::per_second(10)).expect(spec) {
        TrafficSpec::Profile(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn profiles_take_defaults_from_the_quota_and_parameters_from_the_argument() {
    assert_eq!(
        profile("steady"),
        Profile::Steady {
            rate: 15.0,
            duration: std::time::Duration::from_secs(60),
            keys: 1
        }
    );
    let steady = profile("steady:rate=4,duration=2s,keys=2")
        .generate(Quota::per_second(10))
        .expect("steady");
    assert_eq!(steady.arrivals.len(), 8);
    assert_eq!(
        steady.arrivals[1],
        Arrival {
            at: 250 * MS,
            key: 1,
            cost: 1
        }
    );
    assert_eq!(steady.keys, vec!["key-0", "key-1"]);
    for bad in ["steady:rate=x", "steady:bogus=1", "steady:rate", "nosuch"] {
        let err = TrafficSpec::parse(bad, KeyField::Auto, Quota::per_second(10)).unwrap_err();
        assert!(matches!(err, TrafficError::Usage(_)), "{bad}: {err:?}");
    }
}

#[test]
fn synthetic_profiles_are_deterministic_and_shaped_as_named() {
    let quota = Quota::per_second(10);
    let bursty = profile("bursty:duration=30s")
        .generate(quota)
        .expect("bursty");
    assert_eq!(
        bursty,
        profile("bursty:duration=30s")
            .generate(quota)
            .expect("again")
    );
    // Three bursts of 30 (3 × the limit) at once, 10 s apart, over a background of 5/s.
    let mut same_time = std::collections::BTreeMap::<u64, u64>::new();
    for a in &bursty.arrivals {
        *same_time.entry(a.at).or_default() += 1;
    }
    let bursts: Vec<u64> = same_time
        .iter()
        .filter(|(_, n)| **n >= 30)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(bursts.len(), 3, "{bursts:?}");
    assert_eq!(bursts[1] - bursts[0], 10_000 * MS);
    assert!(
        (120..220).contains(&(bursty.arrivals.len() - 90)),
        "{}",
        bursty.arrivals.len()
    );

    // The storm: 5 clients at most 10 req/s each when admitted, retrying at 1 ms when not.
    let storm = profile("retry-storm:duration=2s")
        .generate(quota)
        .expect("storm");
    assert!(storm.arrivals.len() > 1_000, "{}", storm.arrivals.len());
    assert_eq!(storm.keys.len(), 1);

    let many = profile("many-keys:keys=100,rate=1000,duration=10s")
        .generate(quota)
        .expect("many");
    let mut per_key = vec![0u64; 100];
    for a in &many.arrivals {
        per_key[a.key as usize] += 1;
    }
    assert!((9_000..11_000).contains(&many.arrivals.len()));
    assert!(per_key[0] > 10 * per_key[99], "Zipf: {per_key:?}");
}

#[test]
fn a_recording_reads_time_and_key_and_names_file_and_line_of_a_bad_record() {
    let dir = std::env::temp_dir().join(format!("gatehouse-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("good.jsonl");
    let trace = Trace::from_events(
        "t",
        [(0, "a", 1), (1_500 * MS, "b", 1), (1_500 * MS, "a", 1)],
    );
    let mut out = Vec::new();
    traffic::write_records(&trace, 1_700_000_000_000, &mut out).expect("write");
    out.extend_from_slice(b"\n{\"lagged\":3}\n");
    std::fs::write(&good, &out).expect("write");
    let read = read_recording(&good, KeyField::Auto).expect("read");
    assert_eq!(read.arrivals, trace.arrivals);
    assert_eq!(read.keys, trace.keys);
    let by_peer = read_recording(&good, KeyField::Peer).expect("read");
    assert_eq!(by_peer.keys, vec!["192.0.2.1"]);

    let bad = dir.join("bad.jsonl");
    let mut text = String::from_utf8(out).expect("utf8");
    text.push_str("{\"request_id\": 5}\n");
    std::fs::write(&bad, text).expect("write");
    match read_recording(&bad, KeyField::Auto) {
        Err(TrafficError::Parse { file, line, .. }) => {
            assert!(file.ends_with("bad.jsonl"));
            assert_eq!(line, 6);
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn with_lease(algorithm: Algorithm, nodes: u32, size: u64, sync: Nanos) -> LeaseParams {
    LeaseParams {
        algorithm,
        nodes,
        settings: LeaseSettings {
            size,
            sync_interval: sync,
        },
    }
}

#[test]
fn on_one_node_with_slices_of_one_a_lease_decides_as_its_algorithm_does() {
    let trace = seeded_bursty();
    let quota = Quota::per_second(10).with_burst(5);
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindowCounter,
    ] {
        let mut params = CompareParams::new(quota, vec![algorithm]);
        params.leases = vec![with_lease(algorithm, 1, 1, 100 * MS)];
        let c = compare(&trace, &params);
        let (plain, leased) = (
            c.result(algorithm).expect("own"),
            c.lease_result(algorithm).expect("lease"),
        );
        assert_eq!(
            leased.admitted_per_key, plain.admitted_per_key,
            "{algorithm}"
        );
        assert_eq!(leased.false_allows, plain.false_allows, "{algorithm}");
        // A remembered refusal asks nothing: fewer fetches than decisions.
        let view = leased.lease.expect("lease view");
        assert!(
            view.fetches < leased.admitted + leased.rejected,
            "{algorithm}"
        );
        assert_eq!(leased.name(), format!("lease:{algorithm}"));
    }
}

#[test]
fn lease_rows_on_several_nodes_fetch_a_fraction_of_the_decisions_and_the_log_takes_none() {
    // One hot key: 100 per second for 10 s, against 20 per second. (On a trace of many quiet
    // keys a lease saves little: each node's slice of a key lapses before that key comes back.)
    let trace = Trace::from_events("hot", (0..1_000u64).map(|i| (i * 10 * MS, "k", 1)));
    let quota = Quota::per_second(20);
    let mut params = CompareParams::new(quota, vec![Algorithm::FixedWindow]);
    params.leases = vec![
        with_lease(Algorithm::FixedWindow, 3, 5, 200 * MS),
        with_lease(Algorithm::SlidingLog, 3, 5, 200 * MS),
    ];
    let c = compare(&trace, &params);
    assert_eq!(c.results.len(), 2, "no lease row for the sliding log");
    let leased = c.lease_result(Algorithm::FixedWindow).expect("lease");
    let own = c.result(Algorithm::FixedWindow).expect("own");
    let view = leased.lease.expect("view");
    assert_eq!((view.nodes, view.size, view.extra_bound), (3, 5, 0));
    assert!(view.round_trips_per_decision < 0.5, "{view:?}");
    // A slice never outlives its window: never more than the window's own admissions per window.
    assert!(
        leased.admitted <= own.admitted,
        "{} > {}",
        leased.admitted,
        own.admitted
    );
    assert!(leased.admitted > 0);
}
