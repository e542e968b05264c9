//! The rate-limit algorithm lab: every algorithm on the same arrivals, in virtual time, measured
//! against the exact sliding log.
//!
//! The algorithms are the gateway's own (`gateway::ratelimit`), driven through their [`Limiter`]
//! trait with static dispatch — nothing here re-implements a limit. What this module adds is the
//! measurement around them, per algorithm:
//!
//! - **admitted / rejected**;
//! - **false allows**, judged on the algorithm's own admissions (as `gateway::ratelimit`'s docs
//!   and property tests define them): admitting a request when the units this algorithm admitted
//!   for that key in `(t − period, t]` plus its cost exceed `limit`;
//! - **false denies**, judged against the exact sliding log's admissions: refusing an arrival the
//!   exact sliding log, run on the same arrivals, admitted at that moment. (The own-admissions
//!   reading — refused though its own window had room — is kept as `refusals_with_room`; it lets
//!   an algorithm that over-admitted earlier off the refusals that follow);
//! - **largest burst**: the most units one key had admitted within any span `(t − T, t]`, where
//!   `T = ⌈period / limit⌉` is the spacing the sustained rate allows;
//! - **recovery**: for each refusal run (consecutive refusals of one key), the decision's exact
//!   retry-after at its first refusal — how long until that key is admitted again if it waits —
//!   and, observed on the trace, the time from that first refusal to the key's next admission;
//! - **state bytes per key**: `Limiter::state_bytes` of every key's state at the end of the run
//!   (the sliding log's ring never shrinks, so that is its peak);
//! - **Redis operations per decision**: a constant per algorithm read off `ratelimit.lua`
//!   ([`RedisCost`]), and with `--redis` measured in a real Redis ([`redis`]);
//! - **fairness**: Jain's index over keys of `admitted / entitled`, where a key's entitlement is
//!   what the exact sliding log admits for it on the same arrivals (1.0: every key got the same
//!   share of what the exact limit allows it; keys entitled to nothing are left out);
//! - admitted and rejected per time bin, and rejected per key, for the plots.
//!
//! A **lease** row (`lease:<algorithm>`, [`LeaseParams`]) runs the gateway's local lease rule
//! (`gateway::ratelimit::lease`) on `nodes` simulated gateway nodes behind a round-robin balancer,
//! each with its own slice per key, over one shared counter of the algorithm (what Redis holds),
//! fetches taking no virtual time. It is scored like the others, so its false allows are the
//! algorithm's own plus what the slices add, and its Redis cost is the fetches it made.

pub mod cli;
pub mod policies;
pub mod redis;
pub mod table;
pub mod traffic;

use std::collections::VecDeque;

use gateway::clock::Nanos;
use gateway::ratelimit::lease::{self, LeaseRule, LeaseSettings, LeaseState, Local};
use gateway::ratelimit::{
    Algorithm, Decision, FixedWindow, Gcra, Limiter, NEVER, Quota, SlidingLog,
    SlidingWindowCounter, TokenBucket,
};
use serde::Serialize;

pub use traffic::{KeyField, TrafficError, TrafficSpec};

/// One request of a trace: when it arrives (ns from the trace's start), whose key it counts
/// against (an index into [`Trace::keys`]) and its cost in units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: Nanos,
    pub key: u32,
    pub cost: u32,
}

/// Arrivals in time order, the same for every algorithm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// What the arrivals came from: a file name or a profile with its parameters.
    pub source: String,
    /// Non-decreasing `at`; the first arrival is at 0.
    pub arrivals: Vec<Arrival>,
    /// Key names, by index.
    pub keys: Vec<String>,
}

impl Trace {
    /// Time from 0 (the first arrival, unless built by hand) to the last arrival.
    pub fn span(&self) -> Nanos {
        self.arrivals.last().map_or(0, |a| a.at)
    }

    /// Builds a trace from `(time, key, cost)` triples in any order: sorted by time (stably),
    /// shifted to start at 0, keys interned in order of first appearance.
    pub fn from_events<K: AsRef<str>>(
        source: impl Into<String>,
        events: impl IntoIterator<Item = (Nanos, K, u32)>,
    ) -> Self {
        let mut index = std::collections::HashMap::<String, u32>::new();
        let mut keys = Vec::new();
        let mut arrivals: Vec<Arrival> = events
            .into_iter()
            .map(|(at, key, cost)| {
                let key = key.as_ref();
                let id = match index.get(key) {
                    Some(id) => *id,
                    None => {
                        let id = u32::try_from(keys.len()).unwrap_or(u32::MAX);
                        index.insert(key.to_owned(), id);
                        keys.push(key.to_owned());
                        id
                    }
                };
                Arrival { at, key: id, cost }
            })
            .collect();
        arrivals.sort_by_key(|a| a.at);
        let origin = arrivals.first().map_or(0, |a| a.at);
        for a in &mut arrivals {
            a.at -= origin;
        }
        Self {
            source: source.into(),
            arrivals,
            keys,
        }
    }
}

/// What to compare: one quota for all, the algorithms, and how finely to cut time for the plots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareParams {
    /// `limit` per `period` for every algorithm; `burst` for the token bucket and GCRA.
    pub quota: Quota,
    pub algorithms: Vec<Algorithm>,
    /// Width of a time bin; 0 picks one giving about [`DEFAULT_BINS`] bins over the trace.
    pub bin_nanos: Nanos,
    /// Leased rows, after the algorithms' own.
    pub leases: Vec<LeaseParams>,
}

/// A `lease:<algorithm>` row: the algorithm's counter shared by `nodes` nodes, each deciding from
/// slices of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseParams {
    pub algorithm: Algorithm,
    pub nodes: u32,
    /// Size in units (resolved from a share when given as one) and sync interval in ns.
    pub settings: LeaseSettings,
}

/// What a lease row adds to its result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LeaseView {
    pub nodes: u32,
    pub size: u64,
    pub sync_interval_ms: f64,
    /// `E` of `gateway::ratelimit::lease`: units beyond the algorithm's own admissions allowed in
    /// any interval.
    pub extra_bound: u64,
    /// Round trips to the shared counter.
    pub fetches: u64,
    /// `fetches` per decision.
    pub round_trips_per_decision: f64,
}

/// About this many bins over a trace when the width is not given.
pub const DEFAULT_BINS: u64 = 120;

impl CompareParams {
    pub fn new(quota: Quota, algorithms: Vec<Algorithm>) -> Self {
        Self {
            quota,
            algorithms,
            bin_nanos: 0,
            leases: Vec::new(),
        }
    }
}

/// What one Redis-backed decision costs, read off `gateway/src/ratelimit/store/ratelimit.lua` for
/// a request under one policy. Every algorithm is one `EVALSHA` round trip; the commands are the
/// ones the script runs inside Redis for that check (they cost Redis CPU, not round trips).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedisCost {
    pub round_trips: u8,
    /// Keys the check reads or writes (the script is passed two per check; only the sliding log
    /// uses its sorted set).
    pub keys_touched: u8,
    /// Commands inside the script when the request is admitted: fewest, most.
    pub commands_admitted: (u8, u8),
    /// Commands inside the script when the request is refused: fewest, most.
    pub commands_refused: (u8, u8),
}

impl RedisCost {
    /// Token bucket, GCRA, fixed window, sliding-window counter: `HMGET` the state hash (`HGET`
    /// for GCRA's one field), `HSET` it back, `PEXPIRE` it — admitted or refused alike (a refused
    /// single check stores what its own decision left). The sliding log: `HMGET` (`u`, `l`), `ZRANGEBYSCORE` of the expired
    /// entries, `ZREMRANGEBYSCORE` when there are any, `ZRANGE` of the newest; then, admitted,
    /// `ZREM` when it merges with a same-time entry, `ZADD`, `HSET`, `PEXPIRE` ×2; refused,
    /// `ZRANGE 0 -1` (its reply grows with the log, up to `limit` entries) to find the retry-after,
    /// `HSET`, `PEXPIRE` ×2.
    pub const fn of(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::SlidingLog => Self {
                round_trips: 1,
                keys_touched: 2,
                commands_admitted: (7, 9),
                commands_refused: (7, 8),
            },
            _ => Self {
                round_trips: 1,
                keys_touched: 1,
                commands_admitted: (3, 3),
                commands_refused: (3, 3),
            },
        }
    }
}

/// Recovery after refusals: one entry per refusal run (consecutive refusals of one key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Recovery {
    /// Refusal runs on the trace.
    pub runs: u64,
    /// Exact retry-after at a run's first refusal, mean and max, in ms (refusals that no wait can
    /// admit — cost above capacity — are left out).
    pub retry_after_mean_ms: f64,
    pub retry_after_max_ms: f64,
    /// Time until the quota was fully restored, at a run's first refusal: max, in ms.
    pub full_reset_max_ms: f64,
    /// Observed: from a run's first refusal to that key's next admission, over the runs that
    /// ended on the trace (mean, max, in ms).
    pub observed_runs: u64,
    pub observed_mean_ms: f64,
    pub observed_max_ms: f64,
}

/// Memory per key, from `Limiter::state_bytes` at the end of the run, over keys that saw traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StateBytes {
    pub mean: f64,
    pub max: usize,
}

/// One algorithm's outcome on the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlgorithmResult {
    pub algorithm: Algorithm,
    pub admitted: u64,
    pub rejected: u64,
    /// Admissions that took this algorithm's own admissions in `(t − P, t]` over the limit.
    pub false_allows: u64,
    /// Refusals the exact limit would have admitted: the exact sliding log, run on the same
    /// arrivals, admitted that very arrival. (The exact log's own are 0 by construction.)
    pub false_denies: u64,
    /// The old, weaker reading of a false deny: refusals when this algorithm's own admissions
    /// in `(t − P, t]` left room. An algorithm that over-admits earlier is not charged for the
    /// refusals that follow, so this undercounts; kept for comparison with older reports.
    pub refusals_with_room: u64,
    /// Most units one key had admitted within any `(t − T, t]`.
    pub largest_burst: u64,
    pub recovery: Recovery,
    pub state_bytes_per_key: StateBytes,
    pub redis: RedisCost,
    /// Jain's index over keys of admitted / entitled (see the module docs); 1.0 is even.
    pub fairness: f64,
    /// Admitted requests per time bin.
    pub admitted_per_bin: Vec<u64>,
    /// Rejected requests per time bin.
    pub rejected_per_bin: Vec<u64>,
    /// Rejected requests per key, by key index (see [`Comparison::top_rejected_keys`]).
    #[serde(skip)]
    pub rejected_per_key: Vec<u64>,
    /// Admitted requests per key, by key index.
    #[serde(skip)]
    pub admitted_per_key: Vec<u64>,
    /// Set on a lease row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
}

impl AlgorithmResult {
    /// The row's name: the algorithm's, or `lease:<algorithm>`.
    pub fn name(&self) -> String {
        match self.lease {
            Some(_) => format!("lease:{}", self.algorithm),
            None => self.algorithm.as_str().to_owned(),
        }
    }
}

/// The quota as it appears in reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuotaView {
    pub limit: u64,
    pub period_ms: f64,
    pub burst: u64,
    /// `T = ⌈period / limit⌉`, in ms.
    pub emission_interval_ms: f64,
}

/// A summary of the trace for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub source: String,
    pub arrivals: u64,
    pub keys: u64,
    pub span_ms: f64,
}

/// Every algorithm's outcome on one trace, with what the plots need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub trace: TraceSummary,
    pub quota: QuotaView,
    pub bin_ms: f64,
    /// Arrivals per time bin (the offered load).
    pub offered_per_bin: Vec<u64>,
    pub results: Vec<AlgorithmResult>,
    /// Up to [`TOP_KEYS`] keys with the most rejections under any algorithm, with each
    /// algorithm's rejections for them (same order as `results`).
    pub top_rejected_keys: Vec<KeyRejections>,
    /// With `--redis`: each algorithm's cost per decision measured in a real Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_measured: Option<Vec<redis::RedisMeasured>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRejections {
    pub key: String,
    pub arrivals: u64,
    pub rejected: Vec<u64>,
}

/// Keys listed in [`Comparison::top_rejected_keys`].
pub const TOP_KEYS: usize = 12;

impl Comparison {
    pub fn result(&self, algorithm: Algorithm) -> Option<&AlgorithmResult> {
        self.results
            .iter()
            .find(|r| r.algorithm == algorithm && r.lease.is_none())
    }

    /// The lease row over `algorithm`.
    pub fn lease_result(&self, algorithm: Algorithm) -> Option<&AlgorithmResult> {
        self.results
            .iter()
            .find(|r| r.algorithm == algorithm && r.lease.is_some())
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// A bin width that is a round number of milliseconds (1, 2, 5 × 10ⁿ) giving about `bins` bins.
pub fn nice_bin(span: Nanos, bins: u64) -> Nanos {
    let raw = (span / bins.max(1)).max(1);
    let mut step: Nanos = 1_000_000;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= raw || candidate == u64::MAX {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Runs every algorithm of `params` on `trace`.
pub fn compare(trace: &Trace, params: &CompareParams) -> Comparison {
    let quota = params.quota;
    let bin = if params.bin_nanos == 0 {
        nice_bin(trace.span(), DEFAULT_BINS)
    } else {
        params.bin_nanos
    };
    let bins = usize::try_from(trace.span() / bin + 1).unwrap_or(usize::MAX);
    let mut offered_per_bin = vec![0u64; bins];
    let mut arrivals_per_key = vec![0u64; trace.keys.len()];
    for a in &trace.arrivals {
        offered_per_bin[(a.at / bin) as usize] += 1;
        arrivals_per_key[a.key as usize] += 1;
    }
    // The entitlement for fairness: what the exact sliding log admits per key. It runs whether
    // or not it was asked for, and is reused when it was.
    // Its decisions are also the truth false denies are judged by.
    let mut exact = Vec::with_capacity(trace.arrivals.len());
    let mut keep = |_: &Arrival, d: &Decision| exact.push(d.allowed);
    let reference = run_one(
        Algorithm::SlidingLog,
        quota,
        trace,
        bin,
        None,
        Some(&mut keep),
    );
    let entitled = reference.admitted_per_key.clone();
    let results: Vec<AlgorithmResult> = params
        .algorithms
        .iter()
        .map(|&algorithm| {
            let mut result = if algorithm == Algorithm::SlidingLog {
                reference.clone()
            } else {
                run_one(algorithm, quota, trace, bin, Some(&exact), None)
            };
            result.fairness = jain(&result.admitted_per_key, &entitled);
            result
        })
        .chain(params.leases.iter().filter_map(|lease| {
            let mut result = run_lease(lease, quota, trace, bin, &exact)?;
            result.fairness = jain(&result.admitted_per_key, &entitled);
            Some(result)
        }))
        .collect();

    let mut worst: Vec<(u64, usize)> = (0..trace.keys.len())
        .map(|k| {
            (
                results
                    .iter()
                    .map(|r| r.rejected_per_key[k])
                    .max()
                    .unwrap_or(0),
                k,
            )
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    worst.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let top_rejected_keys = worst
        .into_iter()
        .take(TOP_KEYS)
        .map(|(_, k)| KeyRejections {
            key: trace.keys[k].clone(),
            arrivals: arrivals_per_key[k],
            rejected: results.iter().map(|r| r.rejected_per_key[k]).collect(),
        })
        .collect();

    Comparison {
        trace: TraceSummary {
            source: trace.source.clone(),
            arrivals: trace.arrivals.len() as u64,
            keys: trace.keys.len() as u64,
            span_ms: ms(trace.span()),
        },
        quota: QuotaView {
            limit: quota.limit,
            period_ms: ms(quota.period()),
            burst: quota.burst,
            emission_interval_ms: ms(quota.emission_interval_nanos()),
        },
        bin_ms: ms(bin),
        offered_per_bin,
        results,
        top_rejected_keys,
        redis_measured: None,
    }
}

/// Jain's fairness index of `admitted[k] / entitled[k]` over keys entitled to something.
pub fn jain(admitted: &[u64], entitled: &[u64]) -> f64 {
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0u64);
    for (a, e) in admitted.iter().zip(entitled) {
        if *e == 0 {
            continue;
        }
        let x = *a as f64 / *e as f64;
        sum += x;
        sum_sq += x * x;
        n += 1;
    }
    if n == 0 || sum_sq == 0.0 {
        return 1.0;
    }
    sum * sum / (n as f64 * sum_sq)
}

/// Sees every decision of a run, in arrival order.
type Observer<'a> = &'a mut dyn FnMut(&Arrival, &Decision);

/// One algorithm over the trace, dispatched statically to the gateway's type for it.
fn run_one(
    algorithm: Algorithm,
    quota: Quota,
    trace: &Trace,
    bin: Nanos,
    exact: Option<&[bool]>,
    observer: Option<Observer<'_>>,
) -> AlgorithmResult {
    match algorithm {
        Algorithm::TokenBucket => {
            run_limiter(&TokenBucket::new(quota), trace, bin, exact, observer)
        }
        Algorithm::Gcra => run_limiter(&Gcra::new(quota), trace, bin, exact, observer),
        Algorithm::FixedWindow => {
            run_limiter(&FixedWindow::new(quota), trace, bin, exact, observer)
        }
        Algorithm::SlidingLog => run_limiter(&SlidingLog::new(quota), trace, bin, exact, observer),
        Algorithm::SlidingWindowCounter => run_limiter(
            &SlidingWindowCounter::new(quota),
            trace,
            bin,
            exact,
            observer,
        ),
    }
}

/// Every decision one algorithm makes on the trace, in arrival order — for tests that check the
/// engine against the gateway's algorithms driven directly, and for tools that want the raw
/// decisions.
pub fn decisions(algorithm: Algorithm, quota: Quota, trace: &Trace) -> Vec<Decision> {
    let mut out = Vec::with_capacity(trace.arrivals.len());
    let mut push = |_: &Arrival, d: &Decision| out.push(*d);
    run_one(
        algorithm,
        quota,
        trace,
        nice_bin(trace.span(), 1),
        None,
        Some(&mut push),
    );
    out
}

/// The ground truth for one key: this algorithm's own admissions still inside `(t − P, t]`,
/// same-time admissions merged, and a suffix of them inside `(t − T, t]` for the burst size.
#[derive(Debug, Default, Clone)]
struct Oracle {
    log: VecDeque<(Nanos, u64)>,
    /// Units in `log`.
    used: u64,
    /// Index in `log` of the first entry inside the burst span.
    burst_from: usize,
    /// Units from `burst_from` on.
    burst_used: u64,
}

/// Per-key bookkeeping beside the limiter's state.
#[derive(Debug, Default, Clone, Copy)]
struct KeyTally {
    admitted: u64,
    rejected: u64,
    /// Start of the current refusal run, when the key's last decision was a refusal.
    refused_since: Option<Nanos>,
}

/// Where the engine gets its decisions: one algorithm's keys, or leasing nodes over them.
trait Decider {
    fn decide(&mut self, key: usize, now: Nanos, cost: u64) -> Decision;
    /// Memory the key costs at the end of the run.
    fn state_bytes(&self, key: usize) -> usize;
}

/// One algorithm, one state per key.
struct Plain<'l, L: Limiter> {
    limiter: &'l L,
    states: Vec<L::State>,
}

impl<L: Limiter> Decider for Plain<'_, L> {
    #[inline]
    fn decide(&mut self, key: usize, now: Nanos, cost: u64) -> Decision {
        self.limiter.decide(&mut self.states[key], now, cost)
    }

    fn state_bytes(&self, key: usize) -> usize {
        L::state_bytes(&self.states[key])
    }
}

/// `nodes` gateway nodes behind a round-robin balancer, each with a [`LeaseState`] per key, over
/// one shared state per key (the Redis counter): the gateway's lease rule on both sides.
struct Leasing<'l, L: Limiter> {
    limiter: &'l L,
    rule: LeaseRule,
    shared: Vec<L::State>,
    /// `local[key * nodes + node]`.
    local: Vec<LeaseState>,
    nodes: usize,
    /// Arrivals so far: the balancer's turn.
    turn: usize,
    fetches: u64,
}

impl<L: Limiter> Decider for Leasing<'_, L> {
    fn decide(&mut self, key: usize, now: Nanos, cost: u64) -> Decision {
        let node = self.turn % self.nodes;
        self.turn += 1;
        let local = &mut self.local[key * self.nodes + node];
        match self.rule.local(local, now, cost) {
            Local::Decided(d) => d,
            Local::Fetch { want } => {
                self.fetches += 1;
                let grant = lease::take(self.limiter, &mut self.shared[key], now, cost, want);
                self.rule.granted(local, now, cost, grant)
            }
        }
    }

    fn state_bytes(&self, key: usize) -> usize {
        L::state_bytes(&self.shared[key]) + self.nodes * size_of::<LeaseState>()
    }
}

/// A lease row, dispatched statically to the gateway's type for its algorithm; `None` for the
/// sliding log, which takes no lease.
fn run_lease(
    lease: &LeaseParams,
    quota: Quota,
    trace: &Trace,
    bin: Nanos,
    exact: &[bool],
) -> Option<AlgorithmResult> {
    match lease.algorithm {
        Algorithm::TokenBucket => run_leasing(&TokenBucket::new(quota), lease, trace, bin, exact),
        Algorithm::Gcra => run_leasing(&Gcra::new(quota), lease, trace, bin, exact),
        Algorithm::FixedWindow => run_leasing(&FixedWindow::new(quota), lease, trace, bin, exact),
        Algorithm::SlidingWindowCounter => {
            run_leasing(&SlidingWindowCounter::new(quota), lease, trace, bin, exact)
        }
        Algorithm::SlidingLog => None,
    }
}

fn run_leasing<L: Limiter>(
    limiter: &L,
    lease: &LeaseParams,
    trace: &Trace,
    bin: Nanos,
    exact: &[bool],
) -> Option<AlgorithmResult> {
    let rule = LeaseRule::new(limiter, lease.settings)?;
    let nodes = lease.nodes.max(1) as usize;
    let keys = trace.keys.len();
    let mut leasing = Leasing {
        limiter,
        rule,
        shared: vec![L::State::default(); keys],
        local: vec![LeaseState::default(); keys * nodes],
        nodes,
        turn: 0,
        fetches: 0,
    };
    let mut result = run_decider(&mut leasing, limiter, trace, bin, Some(exact), None);
    let decisions = (result.admitted + result.rejected).max(1);
    result.lease = Some(LeaseView {
        nodes: lease.nodes.max(1),
        size: lease.settings.size,
        sync_interval_ms: ms(lease.settings.sync_interval),
        extra_bound: rule.extra_bound(limiter, nodes as u64),
        fetches: leasing.fetches,
        round_trips_per_decision: leasing.fetches as f64 / decisions as f64,
    });
    Some(result)
}

fn run_limiter<L: Limiter>(
    limiter: &L,
    trace: &Trace,
    bin: Nanos,
    exact: Option<&[bool]>,
    observer: Option<Observer<'_>>,
) -> AlgorithmResult {
    let mut plain = Plain {
        limiter,
        states: vec![L::State::default(); trace.keys.len()],
    };
    run_decider(&mut plain, limiter, trace, bin, exact, observer)
}

/// The engine: `decider`'s decisions on the trace, measured. `limiter` names the quota and the
/// algorithm.
fn run_decider<D: Decider, L: Limiter>(
    decider: &mut D,
    limiter: &L,
    trace: &Trace,
    bin: Nanos,
    exact: Option<&[bool]>,
    mut observer: Option<Observer<'_>>,
) -> AlgorithmResult {
    let quota = limiter.quota();
    let period = quota.period();
    let limit = quota.limit;
    let burst_span = quota.emission_interval_nanos().min(period);
    let keys = trace.keys.len();
    let bins = usize::try_from(trace.span() / bin + 1).unwrap_or(usize::MAX);

    let mut oracles: Vec<Oracle> = vec![Oracle::default(); keys];
    let mut tallies: Vec<KeyTally> = vec![KeyTally::default(); keys];
    let mut admitted_per_bin = vec![0u64; bins];
    let mut rejected_per_bin = vec![0u64; bins];
    let (mut false_allows, mut false_denies, mut largest_burst) = (0u64, 0u64, 0u64);
    let mut refusals_with_room = 0u64;
    let mut recovery = Recovery::default();
    let (mut retry_sum, mut retry_n, mut retry_max, mut reset_max) = (0u128, 0u64, 0u64, 0u64);
    let (mut observed_sum, mut observed_max) = (0u128, 0u64);

    for (i, arrival) in trace.arrivals.iter().enumerate() {
        let k = arrival.key as usize;
        let (now, cost) = (arrival.at, u64::from(arrival.cost));
        let decision = decider.decide(k, now, cost);
        if let Some(observe) = observer.as_mut() {
            observe(arrival, &decision);
        }
        let bin_index = (now / bin) as usize;

        // Ground truth on this algorithm's own admissions.
        let oracle = &mut oracles[k];
        while let Some(&(at, units)) = oracle.log.front() {
            if at.saturating_add(period) > now {
                break;
            }
            oracle.log.pop_front();
            oracle.used -= units;
            if oracle.burst_from > 0 {
                oracle.burst_from -= 1;
            } else {
                oracle.burst_used -= units;
            }
        }
        let fits = oracle.used.saturating_add(cost) <= limit;
        let tally = &mut tallies[k];
        if decision.allowed {
            if !fits {
                false_allows += 1;
            }
            tally.admitted += 1;
            admitted_per_bin[bin_index] += 1;
            if let Some(since) = tally.refused_since.take() {
                let waited = now - since;
                recovery.observed_runs += 1;
                observed_sum += u128::from(waited);
                observed_max = observed_max.max(waited);
            }
            if cost > 0 {
                match oracle.log.back_mut() {
                    Some(newest) if newest.0 == now => newest.1 += cost,
                    _ => oracle.log.push_back((now, cost)),
                }
                oracle.used += cost;
                oracle.burst_used += cost;
                while let Some(&(at, units)) = oracle.log.get(oracle.burst_from) {
                    if at.saturating_add(burst_span) > now {
                        break;
                    }
                    oracle.burst_from += 1;
                    oracle.burst_used -= units;
                }
                largest_burst = largest_burst.max(oracle.burst_used);
            }
        } else {
            if fits {
                refusals_with_room += 1;
            }
            // Without the exact log's decisions this run is the exact log: it never refuses
            // what it would admit.
            if exact.is_some_and(|admitted| admitted[i]) {
                false_denies += 1;
            }
            tally.rejected += 1;
            rejected_per_bin[bin_index] += 1;
            if tally.refused_since.is_none() {
                tally.refused_since = Some(now);
                recovery.runs += 1;
                if decision.retry_after_nanos != NEVER {
                    retry_sum += u128::from(decision.retry_after_nanos);
                    retry_n += 1;
                    retry_max = retry_max.max(decision.retry_after_nanos);
                }
                reset_max = reset_max.max(decision.reset_nanos);
            }
        }
    }

    if retry_n > 0 {
        recovery.retry_after_mean_ms = retry_sum as f64 / retry_n as f64 / 1e6;
    }
    recovery.retry_after_max_ms = ms(retry_max);
    recovery.full_reset_max_ms = ms(reset_max);
    if recovery.observed_runs > 0 {
        recovery.observed_mean_ms = observed_sum as f64 / recovery.observed_runs as f64 / 1e6;
    }
    recovery.observed_max_ms = ms(observed_max);

    let (mut bytes_sum, mut bytes_max, mut active) = (0usize, 0usize, 0usize);
    for (k, tally) in tallies.iter().enumerate() {
        if tally.admitted + tally.rejected == 0 {
            continue;
        }
        let bytes = decider.state_bytes(k);
        bytes_sum += bytes;
        bytes_max = bytes_max.max(bytes);
        active += 1;
    }
    let (admitted, rejected) = tallies
        .iter()
        .fold((0, 0), |(a, r), t| (a + t.admitted, r + t.rejected));
    AlgorithmResult {
        algorithm: limiter.algorithm(),
        admitted,
        rejected,
        false_allows,
        false_denies,
        refusals_with_room,
        largest_burst,
        recovery,
        state_bytes_per_key: StateBytes {
            mean: if active == 0 {
                0.0
            } else {
                bytes_sum as f64 / active as f64
            },
            max: bytes_max,
        },
        redis: RedisCost::of(limiter.algorithm()),
        fairness: 1.0,
        admitted_per_bin,
        rejected_per_bin,
        rejected_per_key: tallies.iter().map(|t| t.rejected).collect(),
        admitted_per_key: tallies.iter().map(|t| t.admitted).collect(),
        lease: None,
    }
}

#[cfg(test)]
mod tests;
