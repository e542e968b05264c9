//! GCRA, the generic cell rate algorithm: a token bucket kept as one timestamp.
//!
//! With emission interval `T = ⌈period / limit⌉` and tolerance `τ = (burst − 1)·T`, the state is
//! the theoretical arrival time `TAT` of the next request on a perfectly paced schedule. A request
//! of cost `c` conforms iff `now ≥ max(TAT, now) + c·T − (τ + T)`, i.e. iff pushing the schedule by
//! `c·T` keeps it within `τ + T = burst·T` of now; if it conforms, `TAT ← max(TAT, now) + c·T`.
//! `TAT − now` is exactly the token bucket's deficit, so for non-decreasing `now` every decision
//! (admitted, remaining, retry-after, reset) equals [`TokenBucket`]'s — the property tests assert
//! it — in half the state, which is why the Redis store keeps GCRA's single integer.
//!
//! GCRA does not store the latest `now`: an earlier `now` widens `TAT − now`, so it is stricter,
//! never laxer, than at the latest time seen.
//!
//! [`TokenBucket`]: super::TokenBucket

use super::{Decision, Limiter, NEVER, Quota};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    quota: Quota,
    /// `T`, the emission interval.
    interval: Nanos,
    /// Units admitted at once (0 when the quota admits nothing).
    burst: u64,
    /// `τ + T = burst·T`: how far ahead of now the schedule may run.
    horizon: Nanos,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    /// Theoretical arrival time; at or before now means the quota is full.
    tat: Nanos,
}

impl Gcra {
    pub fn new(quota: Quota) -> Self {
        let interval = quota.emission_interval_nanos();
        let burst = if quota.limit == 0 { 0 } else { quota.burst };
        Self {
            quota,
            interval,
            burst,
            horizon: burst.saturating_mul(interval),
        }
    }

    /// `τ = (burst − 1)·T`, the tolerance of the textbook formulation.
    pub fn tolerance_nanos(&self) -> Nanos {
        self.horizon.saturating_sub(self.interval)
    }
}

impl Limiter for Gcra {
    type State = GcraState;

    #[inline]
    fn decide(&self, state: &mut GcraState, now: Nanos, cost: u64) -> Decision {
        let tat = state.tat.max(now);
        let remaining = |tat: Nanos| self.horizon.saturating_sub(tat - now) / self.interval;
        if cost > self.burst {
            return Decision::deny(remaining(tat), NEVER, tat - now);
        }
        let new_tat = tat.saturating_add(cost.saturating_mul(self.interval));
        // The earliest arrival that conforms: the schedule may run at most `τ + T` ahead.
        let conforming_from = new_tat.saturating_sub(self.horizon);
        if now >= conforming_from {
            state.tat = new_tat;
            Decision::allow(remaining(new_tat), new_tat - now)
        } else {
            Decision::deny(remaining(tat), conforming_from - now, tat - now)
        }
    }

    one_algorithm!(Gcra);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 10 per second (T = 100 ms), burst 3 (τ = 200 ms).
    fn gcra() -> Gcra {
        Gcra::new(Quota::per_second(10).with_burst(3))
    }

    #[test]
    fn tolerance_is_burst_minus_one_intervals() {
        assert_eq!(gcra().tolerance_nanos(), 200 * MS);
        assert_eq!(
            Gcra::new(Quota::per_minute(1_000).with_burst(100)).tolerance_nanos(),
            99 * 60 * MS
        );
    }

    #[test]
    fn burst_is_admitted_at_once_then_one_per_emission_interval() {
        let g = gcra();
        let mut s = GcraState::default();
        let t0 = 5_000 * MS;
        assert_eq!(g.decide(&mut s, t0, 1), Decision::allow(2, 100 * MS));
        assert_eq!(s.tat, t0 + 100 * MS);
        assert_eq!(g.decide(&mut s, t0, 1), Decision::allow(1, 200 * MS));
        assert_eq!(g.decide(&mut s, t0, 1), Decision::allow(0, 300 * MS));
        assert_eq!(
            g.decide(&mut s, t0, 1),
            Decision::deny(0, 100 * MS, 300 * MS)
        );
        assert_eq!(
            g.decide(&mut s, t0 + 100 * MS - 1, 1),
            Decision::deny(0, 1, 200 * MS + 1)
        );
        assert_eq!(
            g.decide(&mut s, t0 + 100 * MS, 1),
            Decision::allow(0, 300 * MS)
        );
        assert_eq!(s.tat, t0 + 400 * MS);
    }

    #[test]
    fn retry_after_of_a_multi_unit_request_waits_for_the_whole_cost() {
        let g = gcra();
        let mut s = GcraState::default();
        assert!(g.decide(&mut s, 0, 3).allowed);
        assert_eq!(
            g.decide(&mut s, 50 * MS, 2),
            Decision::deny(0, 150 * MS, 250 * MS)
        );
        assert!(!g.decide(&mut s.clone(), 200 * MS - 1, 2).allowed);
        assert!(g.decide(&mut s, 200 * MS, 2).allowed);
    }

    #[test]
    fn time_going_backwards_is_stricter_never_laxer() {
        let g = gcra();
        let mut s = GcraState::default();
        assert!(g.decide(&mut s, 1_000 * MS, 2).allowed);
        // At the latest time one unit is left; 150 ms earlier the schedule looks further ahead.
        assert!(g.decide(&mut s.clone(), 1_000 * MS, 1).allowed);
        assert_eq!(
            g.decide(&mut s, 850 * MS, 1),
            Decision::deny(0, 150 * MS, 350 * MS)
        );
    }

    #[test]
    fn cost_above_burst_is_denied_forever() {
        let g = gcra();
        let mut s = GcraState::default();
        assert_eq!(g.decide(&mut s, 9, 4), Decision::deny(3, NEVER, 0));
        assert_eq!(s, GcraState::default());
    }
}
