//! Sliding log: exactly `limit` units in every window `(now − period, now]` — the ground truth.
//!
//! The state is a ring buffer ([`VecDeque`]) of the admitted requests still inside the window,
//! as (time, cost) entries — same-time admissions share one entry — and their running sum.
//! Entries leave when they are `period` old. A request is admitted iff the sum plus its cost stays
//! within `limit`; when denied, it will fit the moment enough of the oldest entries have left,
//! which is the exact retry-after. Memory is not fixed: at most `limit` entries of 16 bytes (each
//! entry holds at least one unit), reserved by doubling as the log grows, so a warm key does not
//! allocate per decision. `burst` is ignored.

use std::collections::VecDeque;

use super::{Decision, Limiter, NEVER, Quota};
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLog {
    quota: Quota,
    period: Nanos,
    limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLogState {
    /// Admissions still in the window, oldest first, at strictly increasing times.
    log: VecDeque<Entry>,
    /// Sum of the costs in `log`.
    used: u64,
    /// The latest `now` seen; an earlier `now` is read as this one.
    last: Nanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    at: Nanos,
    cost: u64,
}

impl SlidingLog {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            period: quota.period(),
            limit: quota.limit,
        }
    }

    /// Time until entry `at` leaves the window.
    fn until_gone(&self, at: Nanos, now: Nanos) -> Nanos {
        at.saturating_add(self.period).saturating_sub(now)
    }
}

impl Limiter for SlidingLog {
    type State = SlidingLogState;

    #[inline]
    fn decide(&self, state: &mut SlidingLogState, now: Nanos, cost: u64) -> Decision {
        let now = now.max(state.last);
        state.last = now;
        while let Some(oldest) = state.log.front() {
            if oldest.at.saturating_add(self.period) > now {
                break;
            }
            state.used = state.used.saturating_sub(oldest.cost);
            state.log.pop_front();
        }
        let left = self.limit.saturating_sub(state.used);
        let reset = |log: &VecDeque<Entry>| log.back().map_or(0, |e| self.until_gone(e.at, now));
        if cost == 0 {
            return Decision::allow(left, reset(&state.log));
        }
        if cost > self.limit {
            return Decision::deny(left, NEVER, reset(&state.log));
        }
        if cost <= left {
            state.used += cost;
            match state.log.back_mut() {
                Some(newest) if newest.at == now => newest.cost += cost,
                _ => {
                    if state.log.len() == state.log.capacity() {
                        // Double, but never past `limit` entries: each entry holds a unit.
                        let len = state.log.len();
                        let cap = usize::try_from(self.limit).unwrap_or(usize::MAX);
                        state
                            .log
                            .reserve_exact(len.max(4).min(cap.saturating_sub(len)).max(1));
                    }
                    state.log.push_back(Entry { at: now, cost });
                }
            }
            return Decision::allow(left - cost, self.until_gone(now, now));
        }
        // Denied: wait until the oldest entries have freed `cost − left` units.
        let excess = cost - left;
        let mut freed = 0u64;
        let mut retry = NEVER;
        for entry in &state.log {
            freed = freed.saturating_add(entry.cost);
            if freed >= excess {
                retry = self.until_gone(entry.at, now);
                break;
            }
        }
        Decision::deny(left, retry, reset(&state.log))
    }

    fn state_bytes(state: &SlidingLogState) -> usize {
        size_of::<SlidingLogState>() + state.log.capacity() * size_of::<Entry>()
    }

    one_algorithm!(SlidingLog);
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn limit_in_any_window_then_retry_when_the_oldest_entry_leaves() {
        let sl = SlidingLog::new(Quota::per_minute(3));
        let mut s = SlidingLogState::default();
        assert_eq!(sl.decide(&mut s, 10 * S, 1), Decision::allow(2, 60 * S));
        assert_eq!(sl.decide(&mut s, 20 * S, 1), Decision::allow(1, 60 * S));
        assert_eq!(sl.decide(&mut s, 30 * S, 1), Decision::allow(0, 60 * S));
        assert_eq!(
            sl.decide(&mut s, 40 * S, 1),
            Decision::deny(0, 30 * S, 50 * S)
        );
        // No aligned boundary helps: at 60 s all three are still in the window.
        assert!(!sl.decide(&mut s, 60 * S, 1).allowed);
        assert_eq!(
            sl.decide(&mut s, 70 * S - 1, 1),
            Decision::deny(0, 1, 20 * S + 1)
        );
        assert_eq!(sl.decide(&mut s, 70 * S, 1), Decision::allow(0, 60 * S));
    }

    #[test]
    fn retry_after_of_a_multi_unit_request_waits_for_enough_entries_to_leave() {
        let sl = SlidingLog::new(Quota::per_minute(4));
        let mut s = SlidingLogState::default();
        for t in [0, 10 * S, 20 * S, 30 * S] {
            assert!(sl.decide(&mut s, t, 1).allowed);
        }
        // Three units must leave: the third entry, at 20 s, leaves at 80 s.
        assert_eq!(
            sl.decide(&mut s, 45 * S, 3),
            Decision::deny(0, 35 * S, 45 * S)
        );
        assert!(!sl.decide(&mut s.clone(), 80 * S - 1, 3).allowed);
        assert!(sl.decide(&mut s, 80 * S, 3).allowed);
    }

    #[test]
    fn same_time_admissions_share_one_entry_and_memory_stays_within_limit_entries() {
        let sl = SlidingLog::new(Quota::per_second(100));
        let mut s = SlidingLogState::default();
        assert_eq!(SlidingLog::state_bytes(&s), size_of::<SlidingLogState>());
        for _ in 0..100 {
            assert!(sl.decide(&mut s, 5, 1).allowed);
        }
        assert_eq!(s.log.len(), 1);
        // From the moment the burst has left, exactly the sustained rate: all admitted.
        let mut t = 5 + S - 10_000_000;
        for _ in 0..10_000 {
            t += 10_000_000;
            assert!(sl.decide(&mut s, t, 1).allowed);
        }
        assert!(s.log.len() <= 100);
        assert!(s.log.capacity() <= 100, "capacity {}", s.log.capacity());
        assert!(SlidingLog::state_bytes(&s) <= size_of::<SlidingLogState>() + 100 * 16);
    }

    #[test]
    fn time_going_backwards_counts_as_no_time_passing() {
        let sl = SlidingLog::new(Quota::per_second(1));
        let mut s = SlidingLogState::default();
        assert!(sl.decide(&mut s, 10 * S, 1).allowed);
        assert!(sl.decide(&mut s, 11 * S, 1).allowed);
        // At 10.5 s the entry of 10 s would still count; read as 11 s it has left, and the
        // one of 11 s has not.
        assert_eq!(
            sl.decide(&mut s, 10 * S + S / 2, 1),
            Decision::deny(0, S, S)
        );
    }

    #[test]
    fn cost_zero_reads_and_cost_above_limit_is_denied_forever() {
        let sl = SlidingLog::new(Quota::per_second(2));
        let mut s = SlidingLogState::default();
        assert!(sl.decide(&mut s, 0, 1).allowed);
        assert_eq!(sl.decide(&mut s, S / 4, 0), Decision::allow(1, 3 * S / 4));
        assert_eq!(
            sl.decide(&mut s, S / 4, 3),
            Decision::deny(1, NEVER, 3 * S / 4)
        );
        assert_eq!(s.used, 1);
    }
}
