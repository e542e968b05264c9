//! Fixed window: at most `limit` units per aligned window `[k·period, (k+1)·period)`.
//!
//! One counter per window, reset when a request arrives in a later window. Cheap and the easiest to
//! port to Redis (`INCRBY` + `EXPIRE`), but a client that spends a window's quota at its end and the
//! next window's at its start gets up to `2·limit` units within one period across the boundary.
//! It never denies what the exact sliding log would admit: the aligned window so far is part of
//! the sliding window ending now. Windows are aligned to `now = 0`; `burst` is ignored.

use super::{Decision, Limiter, NEVER, Quota};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    quota: Quota,
    period: Nanos,
    limit: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    /// Index `k` of the latest window seen (`now / period`).
    window: u64,
    /// Units admitted in that window.
    count: u64,
}

impl FixedWindow {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            period: quota.period(),
            limit: quota.limit,
        }
    }
}

impl Limiter for FixedWindow {
    type State = FixedWindowState;

    #[inline]
    fn decide(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) -> Decision {
        let window = now / self.period;
        if window > state.window {
            state.window = window;
            state.count = 0;
        }
        // An earlier window (time went backwards) counts as the latest one.
        let window_end = state.window.saturating_add(1).saturating_mul(self.period);
        let until_end = window_end.saturating_sub(now);
        let left = self.limit.saturating_sub(state.count);
        let reset = |count: u64| if count == 0 { 0 } else { until_end };
        if cost > self.limit {
            Decision::deny(left, NEVER, reset(state.count))
        } else if cost <= left {
            state.count += cost;
            Decision::allow(left - cost, reset(state.count))
        } else {
            Decision::deny(left, until_end, until_end)
        }
    }

    one_algorithm!(FixedWindow);
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn limit_per_aligned_window_then_retry_at_the_window_edge() {
        let fw = FixedWindow::new(Quota::per_minute(3));
        let mut s = FixedWindowState::default();
        let t = 10 * S;
        assert_eq!(fw.decide(&mut s, t, 1), Decision::allow(2, 50 * S));
        assert_eq!(fw.decide(&mut s, t, 2), Decision::allow(0, 50 * S));
        assert_eq!(fw.decide(&mut s, t, 1), Decision::deny(0, 50 * S, 50 * S));
        assert_eq!(fw.decide(&mut s, 60 * S - 1, 1), Decision::deny(0, 1, 1));
        assert_eq!(fw.decide(&mut s, 60 * S, 1), Decision::allow(2, 60 * S));
    }

    #[test]
    fn a_boundary_admits_twice_the_limit_within_one_period() {
        let fw = FixedWindow::new(Quota::per_minute(3));
        let mut s = FixedWindowState::default();
        let admitted = [60 * S - 1, 60 * S - 1, 60 * S - 1, 60 * S, 60 * S, 60 * S]
            .into_iter()
            .filter(|&t| fw.decide(&mut s, t, 1).allowed)
            .count();
        assert_eq!(admitted, 6);
    }

    #[test]
    fn an_empty_window_reports_a_full_quota_and_no_reset() {
        let fw = FixedWindow::new(Quota::per_second(5));
        let mut s = FixedWindowState::default();
        assert_eq!(fw.decide(&mut s, 3 * S + 7, 0), Decision::allow(5, 0));
        assert_eq!(fw.decide(&mut s, 3 * S + 7, 6), Decision::deny(5, NEVER, 0));
    }

    #[test]
    fn time_going_backwards_counts_in_the_latest_window() {
        let fw = FixedWindow::new(Quota::per_second(2));
        let mut s = FixedWindowState::default();
        assert!(fw.decide(&mut s, 5 * S, 2).allowed);
        // 4.5 s is in the previous window, which must not come back with a fresh count.
        assert_eq!(
            fw.decide(&mut s, 4 * S + S / 2, 1),
            Decision::deny(0, 3 * S / 2, 3 * S / 2)
        );
        assert!(fw.decide(&mut s, 6 * S, 1).allowed);
    }

    #[test]
    fn the_last_window_of_the_timeline_neither_overflows_nor_returns_a_zero_wait() {
        let fw = FixedWindow::new(Quota::new(1, 1));
        let mut s = FixedWindowState::default();
        assert!(fw.decide(&mut s, u64::MAX, 1).allowed);
        assert_eq!(fw.decide(&mut s, u64::MAX, 1).retry_after_nanos, 1);
    }
}
