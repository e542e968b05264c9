//! Rate-limit algorithms as pure code: five ways to decide whether a request fits a [`Quota`].
//!
//! Every algorithm implements [`Limiter`]: `decide(&self, &mut State, now, cost) -> Decision`.
//! The limiter holds the quota's precomputed parameters and is shared by every key; the state is
//! small, per key, and owned by whoever stores it (the gateway's in-memory store, a simulator run).
//! Time arrives as an explicit `now: Nanos` argument: nothing here reads a clock, allocates per
//! decision (the sliding log grows its ring buffer by doubling, up to `limit` entries) or uses
//! floating point, so the gateway, the simulator's comparison engine in virtual time and the Redis
//! store's Lua ports all run the same, deterministic math.
//!
//! # What each algorithm admits
//!
//! Costs are in requests ("units"); a request of cost `c` needs `c` units at once. `P` is
//! `quota.period_nanos` (a period of 0 counts as 1 ns), `L` is `quota.limit`, `B` is `quota.burst`.
//!
//! | algorithm | admits | state |
//! |---|---|---|
//! | [`TokenBucket`] | a bucket of `B` tokens, starting full, refilled by one token every `T = ⌈P / L⌉` ns (continuously, in nanosecond credit); in any closed interval of length `t`: at most `B + ⌊t / T⌋ ≤ B + L·t/P` units | 16 bytes |
//! | [`Gcra`] | the same set as the token bucket — decision for decision — as a theoretical arrival time: conforming iff `now ≥ TAT + (c − 1)·T − τ`, with `τ = (B − 1)·T` | 8 bytes |
//! | [`FixedWindow`] | at most `L` units per aligned window `[k·P, (k+1)·P)`; across a boundary up to `2·L` in a window of length `P` | 16 bytes |
//! | [`SlidingLog`] | exactly: at most `L` units in every window `(t − P, t]` — the ground truth the others are measured against | 48 bytes + ≤ `L` × 16 bytes |
//! | [`SlidingWindowCounter`] | Cloudflare's approximation: `prev·(P − e)/P + curr + c ≤ L` (`e` = time into the current aligned window), compared exactly in integers; at most `L` per aligned window and `L + ⌊L·(P − 1)/P⌋ ≤ 2·L − 1` in any window of length `P` | 24 bytes |
//!
//! The window algorithms ignore `burst` (they admit `L` at once); a quota with `limit` 0 admits
//! nothing, and so does a bucket quota with `burst` 0. `T` is rounded up so the sustained rate is
//! never above `L` per `P`; it is exact whenever `L` divides `P` (1,000 per minute: `T` = 60 ms).
//! Fixed and sliding-counter windows are aligned to `now = 0`, i.e. to the clock's origin.
//!
//! # Decisions
//!
//! - A request of cost 0 is always admitted and changes nothing: it reads the remaining quota.
//! - A request that can never fit (cost above `B` for the buckets, above `L` for the windows)
//!   is denied with `retry_after_nanos == `[`NEVER`].
//! - Otherwise a denial's `retry_after_nanos` is exact: if nothing else arrives, the same request
//!   is denied at `now + retry_after − 1` and admitted at `now + retry_after` (the property tests
//!   check this for all five algorithms). [`retry_after_secs`] rounds it up for the header.
//! - `now` going backwards is never a panic and never admits more than at the latest time seen:
//!   token bucket, fixed window and sliding log store that time and read an earlier one as no time
//!   passing; GCRA and the counter, which do not, are stricter instead.
//! - No input panics or overflows: arithmetic saturates (a quota whose `B·T` exceeds 584 years
//!   saturates at `u64::MAX` nanoseconds).
//!
//! # Against the exact sliding log
//!
//! With `burst = limit`, judged on its own admissions (a false allow admits a request that puts
//! more than `L` units in `(t − P, t]`; a false deny refuses one that would not): the fixed window
//! never falsely denies; the token bucket and GCRA never falsely deny when `L` divides `P`; both
//! falsely allow after idle time refills them. The counter errs both ways. The property tests hold
//! these; `properties::comparison_against_the_sliding_log_on_a_seeded_bursty_trace` snapshots the
//! rates on one trace.
//!
//! [`lease`] adds a local lease over any of them but the sliding log: a node takes a slice of a
//! shared counter as one decision and spends it locally, with a documented over-admission bound.
//!
//! Static dispatch (`TokenBucket::decide` on `TokenBucketState`) is what the simulator uses in
//! its inner loop; [`AnyLimiter`] and [`AnyState`] dispatch on the algorithm with one `match`, so a
//! store can hold one map of key → [`AnyState`] (48 bytes plus the sliding log's ring) whatever
//! each policy's algorithm is.

/// `quota` and `algorithm` of a [`Limiter`] that is one fixed algorithm over a `quota` field, as
/// each of the five is; only [`AnyLimiter`], which may be any of them, answers otherwise. Defined
/// before the algorithms' modules so they can use it.
macro_rules! one_algorithm {
    ($algorithm:ident) => {
        fn quota(&self) -> $crate::ratelimit::Quota {
            self.quota
        }

        fn algorithm(&self) -> $crate::ratelimit::Algorithm {
            $crate::ratelimit::Algorithm::$algorithm
        }
    };
}

mod any;
mod fixed_window;
mod gcra;
pub mod lease;
pub mod metrics;
mod sliding_log;
mod sliding_window_counter;
pub mod store;
mod token_bucket;

#[cfg(test)]
mod properties;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Nanos;

pub use any::{AnyLimiter, AnyState};
pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use sliding_window_counter::{SlidingWindowCounter, SlidingWindowCounterState};
pub use token_bucket::{TokenBucket, TokenBucketState};

/// Of several policies' decisions on one request, the one that speaks for it (its `RateLimit`
/// fields, the 429's policy): a refusal with the longest wait (a store refusal before one an
/// `on_store_error` fallback took), else the admission with the least remaining (then the latest
/// reset), fallback admissions last — they know no quota. The last of equals wins. Each item is
/// a decision and whether a fallback took it. The gateway's ratelimit stage and the simulator's
/// prediction both name the refusal through this one rule.
pub fn tightest<'d>(decisions: impl IntoIterator<Item = (&'d Decision, bool)>) -> Option<usize> {
    decisions
        .into_iter()
        .map(|(d, fallback)| {
            (
                !d.allowed,
                !fallback,
                if d.allowed { 0 } else { d.retry_after_nanos },
                u64::MAX - d.remaining,
                d.reset_nanos,
            )
        })
        .enumerate()
        .max_by_key(|(_, rank)| *rank)
        .map(|(i, _)| i)
}

/// `retry_after_nanos` of a request that no wait can admit: its cost exceeds the capacity.
pub const NEVER: Nanos = u64::MAX;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How much a key may do: `limit` units sustained per `period_nanos`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Sustained units admitted per period.
    pub limit: u64,
    /// The period, in nanoseconds. 0 is read as 1.
    pub period_nanos: u64,
    /// Most units admitted at once by the bucket algorithms (token bucket, GCRA); the window
    /// algorithms ignore it and admit `limit` per window.
    pub burst: u64,
}

impl Quota {
    /// `limit` per `period_nanos`, with `burst = limit`.
    pub const fn new(limit: u64, period_nanos: u64) -> Self {
        Self {
            limit,
            period_nanos,
            burst: limit,
        }
    }

    /// `limit` per `period` (saturating at 584 years), with `burst = limit`.
    pub const fn per(limit: u64, period: Duration) -> Self {
        let nanos = period.as_nanos();
        let period_nanos = if nanos > u64::MAX as u128 {
            u64::MAX
        } else {
            nanos as u64
        };
        Self::new(limit, period_nanos)
    }

    pub const fn per_second(limit: u64) -> Self {
        Self::new(limit, NANOS_PER_SEC)
    }

    pub const fn per_minute(limit: u64) -> Self {
        Self::new(limit, 60 * NANOS_PER_SEC)
    }

    pub const fn per_hour(limit: u64) -> Self {
        Self::new(limit, 3_600 * NANOS_PER_SEC)
    }

    /// The same sustained rate with another burst (bucket algorithms only).
    pub const fn with_burst(self, burst: u64) -> Self {
        Self { burst, ..self }
    }

    /// The period actually used: `period_nanos`, at least 1.
    pub const fn period(&self) -> Nanos {
        if self.period_nanos == 0 {
            1
        } else {
            self.period_nanos
        }
    }

    /// `T = ⌈period / limit⌉`: the nanoseconds to earn one unit back ([`NEVER`] when `limit` is 0).
    pub const fn emission_interval_nanos(&self) -> Nanos {
        if self.limit == 0 {
            NEVER
        } else {
            self.period().div_ceil(self.limit)
        }
    }
}

/// The five algorithms, by their stable kebab-case names (config values, metric labels, reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    TokenBucket,
    Gcra,
    FixedWindow,
    SlidingLog,
    SlidingWindowCounter,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::TokenBucket,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingLog,
        Algorithm::SlidingWindowCounter,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token-bucket",
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed-window",
            Algorithm::SlidingLog => "sliding-log",
            Algorithm::SlidingWindowCounter => "sliding-window-counter",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown rate-limit algorithm `{0}`, expected one of: token-bucket, gcra, fixed-window, sliding-log, sliding-window-counter"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownAlgorithm(name.to_owned()))
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole units that could be admitted right now, after this decision.
    pub remaining: u64,
    /// 0 when allowed; otherwise the exact wait before the same request would be admitted if
    /// nothing else arrives (at least 1), or [`NEVER`].
    pub retry_after_nanos: Nanos,
    /// Time until the quota is fully restored if nothing else arrives (0 when it is full), for
    /// the `RateLimit` header's `t` parameter.
    pub reset_nanos: Nanos,
}

impl Decision {
    const fn allow(remaining: u64, reset_nanos: Nanos) -> Self {
        Self {
            allowed: true,
            remaining,
            retry_after_nanos: 0,
            reset_nanos,
        }
    }

    const fn deny(remaining: u64, retry_after_nanos: Nanos, reset_nanos: Nanos) -> Self {
        Self {
            allowed: false,
            remaining,
            // A denial always asks for a wait: 0 only at the very end of the u64 timeline.
            retry_after_nanos: if retry_after_nanos == 0 {
                1
            } else {
                retry_after_nanos
            },
            reset_nanos,
        }
    }
}

/// `Retry-After` in whole seconds: the wait rounded up, and never 0.
pub const fn retry_after_secs(decision: &Decision) -> u64 {
    let secs = decision.retry_after_nanos.div_ceil(NANOS_PER_SEC);
    if secs == 0 { 1 } else { secs }
}

/// The reset time in whole seconds, rounded up (0 when the quota is full).
pub const fn reset_secs(decision: &Decision) -> u64 {
    decision.reset_nanos.div_ceil(NANOS_PER_SEC)
}

/// One rate-limit algorithm bound to one quota. The limiter is immutable and shared by all keys;
/// each key owns a `State`, which starts as `State::default()` (a full quota).
pub trait Limiter {
    type State: Default + Clone + Send + 'static;

    /// Decide whether `cost` units fit at `now`, and account them if they do.
    fn decide(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision;

    /// Memory one key costs, heap included: by default the state itself, which is all a state
    /// without heap memory costs.
    fn state_bytes(_state: &Self::State) -> usize {
        size_of::<Self::State>()
    }

    fn quota(&self) -> Quota;

    fn algorithm(&self) -> Algorithm;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_through_parse_display_and_serde() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::parse(algorithm.as_str()), Some(algorithm));
            assert_eq!(algorithm.to_string().parse::<Algorithm>(), Ok(algorithm));
            let json = serde_json::to_string(&algorithm).unwrap();
            assert_eq!(json, format!("\"{}\"", algorithm.as_str()));
            assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), algorithm);
        }
        let err = "leaky-bucket".parse::<Algorithm>().unwrap_err();
        assert!(err.to_string().contains("`leaky-bucket`"));
        assert!(err.to_string().contains("sliding-window-counter"));
    }

    #[test]
    fn quota_constructors_state_the_period_and_default_burst_to_limit() {
        assert_eq!(Quota::per_second(10), Quota::new(10, 1_000_000_000));
        assert_eq!(Quota::per_minute(1_000).period_nanos, 60_000_000_000);
        assert_eq!(Quota::per_hour(5).period_nanos, 3_600_000_000_000);
        assert_eq!(Quota::per_minute(1_000).burst, 1_000);
        assert_eq!(Quota::per_minute(1_000).with_burst(100).burst, 100);
        assert_eq!(
            Quota::per(3, Duration::from_millis(1500)),
            Quota::new(3, 1_500_000_000)
        );
        assert_eq!(Quota::per(1, Duration::MAX).period_nanos, u64::MAX);
    }

    #[test]
    fn emission_interval_rounds_up_so_the_rate_is_never_exceeded() {
        // The testbed's paid tier (fixtures/testbed.yaml): exact.
        assert_eq!(
            Quota::per_minute(1_000).emission_interval_nanos(),
            60_000_000
        );
        assert_eq!(Quota::per_second(3).emission_interval_nanos(), 333_333_334);
        assert_eq!(Quota::new(5, 0).emission_interval_nanos(), 1);
        assert_eq!(Quota::new(0, 10).emission_interval_nanos(), NEVER);
    }

    #[test]
    fn state_sizes_per_key_are_as_documented() {
        assert_eq!(TokenBucket::state_bytes(&Default::default()), 16);
        assert_eq!(Gcra::state_bytes(&Default::default()), 8);
        assert_eq!(FixedWindow::state_bytes(&Default::default()), 16);
        assert_eq!(SlidingLog::state_bytes(&Default::default()), 48);
        assert_eq!(SlidingWindowCounter::state_bytes(&Default::default()), 24);
        // The variant tag hides in a niche of the sliding log's `VecDeque`.
        assert_eq!(AnyLimiter::state_bytes(&AnyState::Fresh), 48);
    }

    #[test]
    fn retry_after_secs_rounds_up_and_is_never_zero() {
        let denied = |nanos| Decision::deny(0, nanos, 0);
        assert_eq!(retry_after_secs(&denied(1)), 1);
        assert_eq!(retry_after_secs(&denied(999_999_999)), 1);
        assert_eq!(retry_after_secs(&denied(1_000_000_000)), 1);
        assert_eq!(retry_after_secs(&denied(1_000_000_001)), 2);
        assert_eq!(retry_after_secs(&denied(NEVER)), 18_446_744_074);
        assert_eq!(retry_after_secs(&Decision::allow(3, 0)), 1);
        assert_eq!(Decision::deny(0, 0, 0).retry_after_nanos, 1);
        assert_eq!(reset_secs(&Decision::allow(3, 0)), 0);
        assert_eq!(reset_secs(&Decision::allow(3, 1_500_000_000)), 2);
    }
}
