//! Token bucket: `burst` tokens, starting full, refilled by one token every `T = ⌈period / limit⌉`.
//!
//! Tokens are kept as nanoseconds of refill credit (one token = `T` ns), so refill is continuous and
//! exact in integers: the bucket holds `burst·T` ns of credit, a request of cost `c` spends `c·T`,
//! and every elapsed nanosecond earns one back. The state stores what the bucket *lacks* (its
//! deficit), so the all-zero default is a full bucket. In any closed interval of length `t` it
//! admits at most `burst + ⌊t / T⌋` units, and it makes exactly the decisions [`Gcra`] makes.
//!
//! [`Gcra`]: super::Gcra

use super::{Decision, Limiter, NEVER, Quota};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    quota: Quota,
    /// `T`: nanoseconds of credit per token.
    interval: Nanos,
    /// Tokens the bucket holds when full (0 when the quota admits nothing).
    burst: u64,
    /// `burst·T`: the credit of a full bucket.
    capacity: Nanos,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucketState {
    /// Credit the bucket lacks to be full, in nanoseconds (0: full).
    deficit: Nanos,
    /// The latest `now` seen; an earlier `now` is read as this one.
    last: Nanos,
}

impl TokenBucket {
    pub fn new(quota: Quota) -> Self {
        let interval = quota.emission_interval_nanos();
        let burst = if quota.limit == 0 { 0 } else { quota.burst };
        Self {
            quota,
            interval,
            burst,
            capacity: burst.saturating_mul(interval),
        }
    }
}

impl Limiter for TokenBucket {
    type State = TokenBucketState;

    #[inline]
    fn decide(&self, state: &mut TokenBucketState, now: Nanos, cost: u64) -> Decision {
        let now = now.max(state.last);
        let deficit = state.deficit.saturating_sub(now - state.last);
        state.last = now;
        state.deficit = deficit;
        let tokens = |deficit: Nanos| (self.capacity.saturating_sub(deficit)) / self.interval;
        if cost > self.burst {
            return Decision::deny(tokens(deficit), NEVER, deficit);
        }
        let after = deficit.saturating_add(cost.saturating_mul(self.interval));
        if after <= self.capacity {
            state.deficit = after;
            Decision::allow(tokens(after), after)
        } else {
            Decision::deny(tokens(deficit), after - self.capacity, deficit)
        }
    }

    one_algorithm!(TokenBucket);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 10 per second (T = 100 ms), burst 3.
    fn bucket() -> TokenBucket {
        TokenBucket::new(Quota::per_second(10).with_burst(3))
    }

    #[test]
    fn burst_is_admitted_at_once_then_one_token_per_interval() {
        let tb = bucket();
        let mut s = TokenBucketState::default();
        let d = |s: &mut _, t, c| tb.decide(s, t, c);
        assert_eq!(d(&mut s, 0, 1), Decision::allow(2, 100 * MS));
        assert_eq!(d(&mut s, 0, 1), Decision::allow(1, 200 * MS));
        assert_eq!(d(&mut s, 0, 1), Decision::allow(0, 300 * MS));
        assert_eq!(d(&mut s, 0, 1), Decision::deny(0, 100 * MS, 300 * MS));
        assert_eq!(d(&mut s, 40 * MS, 1), Decision::deny(0, 60 * MS, 260 * MS));
        assert_eq!(
            d(&mut s, 100 * MS - 1, 1),
            Decision::deny(0, 1, 200 * MS + 1)
        );
        assert_eq!(d(&mut s, 100 * MS, 1), Decision::allow(0, 300 * MS));
        // A long pause refills only up to the burst.
        assert_eq!(d(&mut s, 10_000 * MS, 0), Decision::allow(3, 0));
    }

    #[test]
    fn retry_after_of_a_multi_token_request_waits_for_all_its_tokens() {
        let tb = bucket();
        let mut s = TokenBucketState::default();
        assert!(tb.decide(&mut s, 0, 3).allowed);
        let denied = tb.decide(&mut s, 50 * MS, 2);
        assert_eq!(denied, Decision::deny(0, 150 * MS, 250 * MS));
        assert!(!tb.decide(&mut s.clone(), 200 * MS - 1, 2).allowed);
        assert!(tb.decide(&mut s, 200 * MS, 2).allowed);
    }

    #[test]
    fn cost_above_burst_is_denied_forever_and_spends_nothing() {
        let tb = bucket();
        let mut s = TokenBucketState::default();
        assert_eq!(tb.decide(&mut s, 5, 4), Decision::deny(3, NEVER, 0));
        assert_eq!(s.deficit, 0);
    }

    #[test]
    fn time_going_backwards_counts_as_no_time_passing() {
        let tb = bucket();
        let mut s = TokenBucketState::default();
        for _ in 0..3 {
            assert!(tb.decide(&mut s, 1_000 * MS, 1).allowed);
        }
        assert_eq!(
            tb.decide(&mut s, 0, 1),
            Decision::deny(0, 100 * MS, 300 * MS)
        );
        assert_eq!(s.last, 1_000 * MS);
    }

    #[test]
    fn a_quota_of_zero_admits_nothing_but_cost_zero() {
        for quota in [Quota::per_second(0), Quota::per_second(5).with_burst(0)] {
            let tb = TokenBucket::new(quota);
            let mut s = TokenBucketState::default();
            assert_eq!(tb.decide(&mut s, 7, 1), Decision::deny(0, NEVER, 0));
            assert!(tb.decide(&mut s, 7, 0).allowed);
        }
    }
}
