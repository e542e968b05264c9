//! A circuit breaker around a store: after `threshold` consecutive failures it opens, and for
//! `cooldown` every decision takes its policy's fallback at once — a dead Redis costs no
//! per-request timeout once detected. Then one request at a time probes the store (half-open);
//! the first success closes the breaker, a failure opens it for another cooldown. Time comes from
//! the gateway's monotonic clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::clock::Nanos;

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Nanos,
    failures: AtomicU32,
    /// 0 while closed; otherwise when the next probe may go (monotonic nanoseconds, at least 1).
    open_until: AtomicU64,
    probing: AtomicBool,
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: ask the store.
    Ask,
    /// Half-open: this caller is the one probe; report the result.
    Probe,
    /// Open: take the fallback without asking.
    Refuse,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Nanos) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub fn admit(&self, now: Nanos) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            Admit::Ask
        } else if now < until {
            Admit::Refuse
        } else if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Admit::Probe
        } else {
            Admit::Refuse
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// The store answered. Returns true when this closed an open breaker.
    pub fn success(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        let was_open = self.open_until.swap(0, Ordering::AcqRel) != 0;
        self.probing.store(false, Ordering::Release);
        was_open
    }

    /// The store failed. Returns true when this opened (or re-opened) the breaker.
    pub fn failure(&self, now: Nanos, probe: bool) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if probe || failures >= self.threshold {
            self.open_until
                .store(now.saturating_add(self.cooldown).max(1), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Time until the next probe (0 when closed or due).
    pub fn cooldown_left(&self, now: Nanos) -> Nanos {
        self.open_until.load(Ordering::Acquire).saturating_sub(now)
    }

    pub fn cooldown(&self) -> Nanos {
        self.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_once_and_closes_on_success() {
        let b = Breaker::new(3, 1_000);
        assert_eq!(b.admit(0), Admit::Ask);
        assert!(!b.failure(0, false));
        b.success();
        assert!(!b.failure(1, false));
        assert!(!b.failure(2, false));
        assert!(b.failure(3, false), "the third in a row opens it");
        assert_eq!(b.admit(500), Admit::Refuse);
        assert_eq!(b.cooldown_left(500), 503);
        assert_eq!(b.admit(1_003), Admit::Probe);
        assert_eq!(b.admit(1_003), Admit::Refuse, "one probe at a time");
        assert!(b.failure(1_010, true), "a failed probe re-opens");
        assert_eq!(b.admit(1_500), Admit::Refuse);
        assert_eq!(b.admit(2_010), Admit::Probe);
        assert!(b.success());
        assert_eq!(b.admit(2_011), Admit::Ask);
    }
}
