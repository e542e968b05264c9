//! [`AnyLimiter`]: any of the five algorithms behind one `match`, so a store can keep one map of
//! key → [`AnyState`] for policies of different algorithms.
//!
//! The state starts as [`AnyState::Fresh`] (a full quota for every algorithm); a state of another
//! algorithm — say the policy changed algorithm on a config reload — is started afresh.

use super::{
    Algorithm, Decision, FixedWindow, FixedWindowState, Gcra, GcraState, Limiter, Quota,
    SlidingLog, SlidingLogState, SlidingWindowCounter, SlidingWindowCounterState, TokenBucket,
    TokenBucketState,
};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyLimiter {
    TokenBucket(TokenBucket),
    Gcra(Gcra),
    FixedWindow(FixedWindow),
    SlidingLog(SlidingLog),
    SlidingWindowCounter(SlidingWindowCounter),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AnyState {
    /// No decision yet: a full quota, whatever the algorithm.
    #[default]
    Fresh,
    TokenBucket(TokenBucketState),
    Gcra(GcraState),
    FixedWindow(FixedWindowState),
    SlidingLog(SlidingLogState),
    SlidingWindowCounter(SlidingWindowCounterState),
}

impl AnyLimiter {
    pub fn new(algorithm: Algorithm, quota: Quota) -> Self {
        match algorithm {
            Algorithm::TokenBucket => Self::TokenBucket(TokenBucket::new(quota)),
            Algorithm::Gcra => Self::Gcra(Gcra::new(quota)),
            Algorithm::FixedWindow => Self::FixedWindow(FixedWindow::new(quota)),
            Algorithm::SlidingLog => Self::SlidingLog(SlidingLog::new(quota)),
            Algorithm::SlidingWindowCounter => {
                Self::SlidingWindowCounter(SlidingWindowCounter::new(quota))
            }
        }
    }

    fn fresh_state(&self) -> AnyState {
        match self {
            Self::TokenBucket(_) => AnyState::TokenBucket(TokenBucketState::default()),
            Self::Gcra(_) => AnyState::Gcra(GcraState::default()),
            Self::FixedWindow(_) => AnyState::FixedWindow(FixedWindowState::default()),
            Self::SlidingLog(_) => AnyState::SlidingLog(SlidingLogState::default()),
            Self::SlidingWindowCounter(_) => {
                AnyState::SlidingWindowCounter(SlidingWindowCounterState::default())
            }
        }
    }
}

impl Limiter for AnyLimiter {
    type State = AnyState;

    #[inline]
    fn decide(&self, state: &mut AnyState, now: Nanos, cost: u64) -> Decision {
        match (self, &mut *state) {
            (Self::TokenBucket(l), AnyState::TokenBucket(s)) => l.decide(s, now, cost),
            (Self::Gcra(l), AnyState::Gcra(s)) => l.decide(s, now, cost),
            (Self::FixedWindow(l), AnyState::FixedWindow(s)) => l.decide(s, now, cost),
            (Self::SlidingLog(l), AnyState::SlidingLog(s)) => l.decide(s, now, cost),
            (Self::SlidingWindowCounter(l), AnyState::SlidingWindowCounter(s)) => {
                l.decide(s, now, cost)
            }
            // Fresh, or another algorithm's state: start afresh (once; the state now matches).
            _ => {
                *state = self.fresh_state();
                self.decide(state, now, cost)
            }
        }
    }

    fn state_bytes(state: &AnyState) -> usize {
        let heap = match state {
            AnyState::SlidingLog(s) => SlidingLog::state_bytes(s) - size_of::<SlidingLogState>(),
            _ => 0,
        };
        size_of::<AnyState>() + heap
    }

    fn quota(&self) -> Quota {
        match self {
            Self::TokenBucket(l) => l.quota(),
            Self::Gcra(l) => l.quota(),
            Self::FixedWindow(l) => l.quota(),
            Self::SlidingLog(l) => l.quota(),
            Self::SlidingWindowCounter(l) => l.quota(),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Self::TokenBucket(l) => l.algorithm(),
            Self::Gcra(l) => l.algorithm(),
            Self::FixedWindow(l) => l.algorithm(),
            Self::SlidingLog(l) => l.algorithm(),
            Self::SlidingWindowCounter(l) => l.algorithm(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_is_built_from_its_name_with_its_quota() {
        let quota = Quota::per_minute(1_000).with_burst(100);
        for algorithm in Algorithm::ALL {
            let limiter = AnyLimiter::new(algorithm, quota);
            assert_eq!(limiter.algorithm(), algorithm);
            assert_eq!(limiter.quota(), quota);
        }
    }

    #[test]
    fn a_fresh_or_foreign_state_starts_afresh_for_the_limiter_at_hand() {
        let quota = Quota::per_second(2);
        let window = AnyLimiter::new(Algorithm::FixedWindow, quota);
        let bucket = AnyLimiter::new(Algorithm::TokenBucket, quota);
        let mut state = AnyState::default();
        assert!(window.decide(&mut state, 0, 2).allowed);
        assert!(!window.decide(&mut state, 0, 1).allowed);
        assert!(matches!(state, AnyState::FixedWindow(_)));
        assert!(bucket.decide(&mut state, 0, 2).allowed);
        assert!(matches!(state, AnyState::TokenBucket(_)));
    }

    #[test]
    fn state_bytes_counts_the_sliding_logs_ring_buffer() {
        let log = AnyLimiter::new(Algorithm::SlidingLog, Quota::per_second(10));
        let mut state = AnyState::default();
        for t in 0..10 {
            log.decide(&mut state, t, 1);
        }
        assert!(AnyLimiter::state_bytes(&state) >= size_of::<AnyState>() + 10 * 16);
        let gcra = AnyLimiter::new(Algorithm::Gcra, Quota::per_second(10));
        gcra.decide(&mut state, 0, 1);
        assert_eq!(AnyLimiter::state_bytes(&state), size_of::<AnyState>());
    }
}
