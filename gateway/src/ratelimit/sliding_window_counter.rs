//! Sliding-window counter: Cloudflare's two-window approximation of the sliding log.
//!
//! Counts are kept per aligned window `[k·period, (k+1)·period)`, like the fixed window, plus the
//! previous window's count. At `e` nanoseconds into the current window the previous count is
//! weighted by the share of the sliding window that still overlaps it, as if its requests had been
//! spread evenly: a request of cost `c` is admitted iff
//!
//! ```text
//! prev·(period − e)/period + curr + c ≤ limit
//! ```
//!
//! compared exactly as `prev·(period − e) ≤ (limit − curr − c)·period` in 128-bit integers — no
//! floats, no rounding. It errs both ways against the exact sliding log (it denies when the previous
//! window's requests came early, admits when they came late) but never admits more than `limit` per
//! aligned window, nor more than `limit + ⌊limit·(period − 1)/period⌋ ≤ 2·limit − 1` in any window
//! of length `period`. Its retry-after solves the same inequality for the earliest later time, so it
//! is exact too. Windows are aligned to `now = 0`; `burst` is ignored.

use super::{Decision, Limiter, NEVER, Quota};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowCounter {
    quota: Quota,
    period: Nanos,
    limit: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowCounterState {
    /// Index `k` of the latest window seen (`now / period`).
    window: u64,
    /// Units admitted in window `k − 1`.
    prev: u64,
    /// Units admitted in window `k`.
    curr: u64,
}

impl SlidingWindowCounter {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            period: quota.period(),
            limit: quota.limit,
        }
    }

    /// `⌈prev·weight / period⌉`: the previous window's share, in whole units (at most `prev`).
    fn prev_share(&self, prev: u64, weight: Nanos) -> u64 {
        let scaled = u128::from(prev) * u128::from(weight);
        let share = match u64::try_from(scaled) {
            Ok(scaled) => u128::from(scaled.div_ceil(self.period)),
            Err(_) => scaled.div_ceil(u128::from(self.period)),
        };
        u64::try_from(share).unwrap_or(u64::MAX)
    }

    /// Earliest time `t` at or after the window's start (≥ `now` for a denied request) at which
    /// `cost` units fit, given the state and nothing else arriving.
    fn admits_from(&self, s: &SlidingWindowCounterState, start: Nanos, cost: u64) -> Nanos {
        let period = u128::from(self.period);
        // Later in this window, where the previous window's weight keeps shrinking: the least
        // `e` with `prev·(period − e) ≤ (limit − curr − cost)·period`.
        if let Some(room) = self
            .limit
            .checked_sub(s.curr)
            .and_then(|l| l.checked_sub(cost))
        {
            if s.prev > 0 {
                let slack = u128::from(room) * period / u128::from(s.prev);
                if slack > 0 && slack < period {
                    // slack < period ≤ u64::MAX: the cast is exact.
                    return start.saturating_add(self.period - slack as u64);
                }
            }
        }
        // In the next window the current count becomes the previous one.
        let next = start.saturating_add(self.period);
        let e = if s.curr == 0 {
            0
        } else {
            let slack = u128::from(self.limit - cost) * period / u128::from(s.curr);
            if slack >= period {
                0
            } else {
                // slack < period ≤ u64::MAX. `e == period` is the window after next, whose
                // previous count is 0.
                self.period - slack as u64
            }
        };
        next.saturating_add(e)
    }
}

impl Limiter for SlidingWindowCounter {
    type State = SlidingWindowCounterState;

    #[inline]
    fn decide(&self, state: &mut SlidingWindowCounterState, now: Nanos, cost: u64) -> Decision {
        let window = now / self.period;
        if window > state.window {
            state.prev = if window == state.window + 1 {
                state.curr
            } else {
                0
            };
            state.curr = 0;
            state.window = window;
        }
        // `window ≤ u64::MAX / period`, so `start` does not overflow. An earlier `now` (time going
        // backwards) is read as no later than the latest window's start: stricter, never laxer.
        let start = state.window * self.period;
        let weight = self.period - now.saturating_sub(start).min(self.period - 1);
        let share = self.prev_share(state.prev, weight);
        let left = |curr: u64| self.limit.saturating_sub(curr).saturating_sub(share);
        let reset = |s: &SlidingWindowCounterState| {
            let until = |offset: u64| {
                start
                    .saturating_add(offset.saturating_mul(self.period))
                    .saturating_sub(now)
            };
            if s.curr > 0 {
                until(2)
            } else if s.prev > 0 {
                until(1)
            } else {
                0
            }
        };
        if cost == 0 {
            return Decision::allow(left(state.curr), reset(state));
        }
        if cost > self.limit {
            return Decision::deny(left(state.curr), NEVER, reset(state));
        }
        let fits = self
            .limit
            .checked_sub(state.curr)
            .and_then(|l| l.checked_sub(cost))
            .is_some_and(|room| {
                u128::from(state.prev) * u128::from(weight)
                    <= u128::from(room) * u128::from(self.period)
            });
        if fits {
            state.curr += cost;
            Decision::allow(left(state.curr), reset(state))
        } else {
            let retry = self.admits_from(state, start, cost).saturating_sub(now);
            Decision::deny(left(state.curr), retry, reset(state))
        }
    }

    one_algorithm!(SlidingWindowCounter);
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// 10 per 100 ns: small numbers keep the weights readable.
    fn counter() -> SlidingWindowCounter {
        SlidingWindowCounter::new(Quota::new(10, 100))
    }

    #[test]
    fn previous_window_weight_decays_and_retry_after_solves_for_it() {
        let swc = counter();
        let mut s = SlidingWindowCounterState::default();
        for t in 0..10 {
            assert!(swc.decide(&mut s, t, 1).allowed);
        }
        assert!(!swc.decide(&mut s, 99, 1).allowed);
        // At 100 the previous 10 weigh in fully; one unit fits once 10·(100 − e) ≤ 9·100.
        assert_eq!(swc.decide(&mut s, 100, 1), Decision::deny(0, 10, 100));
        assert_eq!(swc.decide(&mut s, 109, 1), Decision::deny(0, 1, 91));
        assert_eq!(swc.decide(&mut s, 110, 1), Decision::allow(0, 190));
        // Half-way through, the previous window counts 5: 10 − 1 − 5 = 4 left.
        assert_eq!(swc.decide(&mut s, 150, 0), Decision::allow(4, 150));
        assert_eq!(swc.decide(&mut s, 150, 4), Decision::allow(0, 150));
    }

    #[test]
    fn cloudflare_example_weighs_42_previous_at_three_quarters() {
        // 50 per minute, 42 in the previous minute, 18 so far, 15 s in: 42·0.75 + 18 = 49.5,
        // so one more request (50.5) does not fit.
        let swc = SlidingWindowCounter::new(Quota::per_minute(50));
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 0, 42).allowed);
        assert!(swc.decide(&mut s, 75 * S, 18).allowed);
        let denied = swc.decide(&mut s, 75 * S, 1);
        // It fits once 42·(60 s − e) ≤ 31·60 s: e = 60 s − ⌊31·60 s / 42⌋ = 15.714285715 s.
        assert_eq!(denied, Decision::deny(0, 714_285_715, 105 * S));
        assert!(!swc.decide(&mut s.clone(), 75 * S + 714_285_714, 1).allowed);
        assert!(swc.decide(&mut s, 75 * S + 714_285_715, 1).allowed);
    }

    #[test]
    fn a_full_current_window_retries_in_the_next_one() {
        let swc = counter();
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 50, 10).allowed);
        // In window 1 the 10 weigh 10·(100 − e)/100: one unit fits from e = 10.
        assert_eq!(swc.decide(&mut s, 60, 1), Decision::deny(0, 50, 140));
        assert!(!swc.decide(&mut s.clone(), 109, 1).allowed);
        assert!(swc.decide(&mut s, 110, 1).allowed);
        // A full-quota request waits until the 10 no longer weigh at all: window 2.
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 50, 10).allowed);
        assert_eq!(swc.decide(&mut s, 60, 10), Decision::deny(0, 140, 140));
        assert!(!swc.decide(&mut s.clone(), 199, 10).allowed);
        assert!(swc.decide(&mut s, 200, 10).allowed);
    }

    #[test]
    fn a_late_previous_window_lets_two_limits_minus_one_through_in_one_period() {
        let swc = counter();
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 99, 10).allowed);
        let late = (0..20)
            .filter(|_| swc.decide(&mut s, 198, 1).allowed)
            .count();
        // Window (98, 198] holds 10 + 9 = 19 units: the proven bound 2·limit − 1.
        assert_eq!(late, 9);
    }

    #[test]
    fn skipping_a_window_forgets_both_counts() {
        let swc = counter();
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 0, 10).allowed);
        assert_eq!(swc.decide(&mut s, 250, 0), Decision::allow(10, 0));
    }

    #[test]
    fn time_going_backwards_is_stricter_never_laxer() {
        let swc = counter();
        let mut s = SlidingWindowCounterState::default();
        assert!(swc.decide(&mut s, 0, 10).allowed);
        assert_eq!(swc.decide(&mut s, 150, 0).remaining, 5);
        // 130 weighs the previous window more than 150 did; 90 is read as window 1's start.
        assert_eq!(swc.decide(&mut s, 130, 0).remaining, 3);
        assert_eq!(swc.decide(&mut s, 90, 0).remaining, 0);
        assert_eq!(swc.decide(&mut s, 90, 1), Decision::deny(0, 20, 110));
    }
}
