//! Instance health, active and passive.
//!
//! - **Active**: a prober per instance sends `GET <path>` every `interval`; `unhealthy_threshold`
//!   failed checks in a row take the instance out of rotation, `healthy_threshold` passed checks
//!   in a row bring it back. An instance starts healthy, so a fresh gateway or a reload does not
//!   refuse traffic while the first checks run.
//! - **Passive** (outlier ejection): real requests' outcomes are counted; `consecutive_5xx`
//!   failures (5xx answers, resets, timeouts) or `consecutive_connect_failures` in a row eject the
//!   instance for `base_ejection_time × n` (n = how many times it was ejected recently), at most
//!   `max_ejection_time`. The count is forgiven once the instance has stayed in rotation for
//!   `max_ejection_time`.
//!
//! The state machines are pure (explicit `now`); the prober task is `crate::state::upstreams::probe`.

use std::time::Duration;

use super::settings::{HealthCheck, OutlierEjection};
use crate::clock::Nanos;

/// Active-check bookkeeping toward the thresholds.
#[derive(Debug)]
pub struct ActiveHealth {
    pub healthy: bool,
    passed_in_a_row: u32,
    failed_in_a_row: u32,
}

impl Default for ActiveHealth {
    fn default() -> Self {
        Self {
            healthy: true,
            passed_in_a_row: 0,
            failed_in_a_row: 0,
        }
    }
}

impl ActiveHealth {
    /// Counts one check; returns the new verdict when it changed.
    pub fn observe(&mut self, passed: bool, config: &HealthCheck) -> Option<bool> {
        if passed {
            self.passed_in_a_row += 1;
            self.failed_in_a_row = 0;
            if !self.healthy && self.passed_in_a_row >= config.healthy_threshold {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.failed_in_a_row += 1;
            self.passed_in_a_row = 0;
            if self.healthy && self.failed_in_a_row >= config.unhealthy_threshold {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

/// How one try at an instance ended, as health and the breaker count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response, a reset before the response, or no response within the timeout.
    Failure,
    /// The connection was refused or not accepted in time.
    ConnectFailure,
    /// Says nothing about the upstream (the client's body was too large, the try was never sent).
    Neutral,
}

/// Outlier-ejection bookkeeping for one instance.
#[derive(Debug, Default)]
pub struct Passive {
    failures_in_a_row: u32,
    connect_failures_in_a_row: u32,
    /// Ejections not yet forgiven; the next ejection lasts this many + 1 base times.
    ejections: u32,
    /// When the last ejection ended (or ends).
    last_until: Nanos,
}

impl Passive {
    /// Counts one outcome; true when a trigger's threshold is reached.
    pub fn observe(&mut self, outcome: Outcome, config: &OutlierEjection) -> bool {
        match outcome {
            Outcome::Success => {
                self.failures_in_a_row = 0;
                self.connect_failures_in_a_row = 0;
                false
            }
            Outcome::Failure => {
                self.failures_in_a_row += 1;
                config.consecutive_5xx > 0 && self.failures_in_a_row >= config.consecutive_5xx
            }
            Outcome::ConnectFailure => {
                self.connect_failures_in_a_row += 1;
                config.consecutive_connect_failures > 0
                    && self.connect_failures_in_a_row >= config.consecutive_connect_failures
            }
            Outcome::Neutral => false,
        }
    }

    /// Ejects from `now`; returns when the instance comes back.
    pub fn eject(&mut self, now: Nanos, config: &OutlierEjection) -> Nanos {
        let max = nanos(config.max_ejection_time);
        if self.ejections > 0 && now >= self.last_until.saturating_add(max) {
            self.ejections = 0;
        }
        self.ejections += 1;
        let base = nanos(config.base_ejection_time);
        let length = base.saturating_mul(u64::from(self.ejections)).min(max);
        self.failures_in_a_row = 0;
        self.connect_failures_in_a_row = 0;
        self.last_until = now.saturating_add(length);
        self.last_until
    }

    pub fn ejections(&self) -> u32 {
        self.ejections
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_status: Vec::new(),
        }
    }

    fn outlier() -> OutlierEjection {
        OutlierEjection {
            consecutive_5xx: 3,
            consecutive_connect_failures: 2,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn active_checks_need_a_run_of_results_to_change_the_verdict() {
        let mut h = ActiveHealth::default();
        assert!(h.healthy, "an instance starts healthy");
        assert_eq!(h.observe(false, &check()), None);
        assert_eq!(h.observe(false, &check()), None);
        assert_eq!(h.observe(true, &check()), None, "a pass breaks the run");
        assert_eq!(h.observe(false, &check()), None);
        assert_eq!(h.observe(false, &check()), None);
        assert_eq!(h.observe(false, &check()), Some(false));
        assert_eq!(h.observe(true, &check()), None);
        assert_eq!(h.observe(true, &check()), Some(true));
    }

    #[test]
    fn each_trigger_counts_its_own_run_and_a_success_resets_both() {
        let mut p = Passive::default();
        assert!(!p.observe(Outcome::Failure, &outlier()));
        assert!(!p.observe(Outcome::ConnectFailure, &outlier()));
        assert!(!p.observe(Outcome::Failure, &outlier()));
        assert!(!p.observe(Outcome::Neutral, &outlier()));
        assert!(
            p.observe(Outcome::Failure, &outlier()),
            "third failure in a row"
        );
        let mut p = Passive::default();
        assert!(!p.observe(Outcome::ConnectFailure, &outlier()));
        assert!(!p.observe(Outcome::Success, &outlier()));
        assert!(!p.observe(Outcome::ConnectFailure, &outlier()));
        assert!(p.observe(Outcome::ConnectFailure, &outlier()));
    }

    #[test]
    fn ejections_grow_with_repeat_offences_up_to_the_max_and_are_forgiven() {
        let clock = ManualClock::new(0);
        let mut p = Passive::default();
        let secs = |n: u64| n * 1_000_000_000;
        assert_eq!(p.eject(clock.now(), &outlier()), secs(10));
        clock.set(secs(11));
        assert_eq!(p.eject(clock.now(), &outlier()), secs(11 + 20));
        clock.set(secs(32));
        assert_eq!(p.eject(clock.now(), &outlier()), secs(32 + 25), "capped");
        assert_eq!(p.ejections(), 3);
        // In rotation for max_ejection_time since the last one ended: forgiven.
        clock.set(secs(57 + 25));
        assert_eq!(p.eject(clock.now(), &outlier()), secs(82 + 10));
        assert_eq!(p.ejections(), 1);
    }

    #[test]
    fn the_ejected_share_is_capped_but_one_instance_may_always_go() {
        let o = outlier();
        assert_eq!(o.max_ejected(1), 1);
        assert_eq!(o.max_ejected(2), 1);
        assert_eq!(o.max_ejected(5), 2);
        let none = OutlierEjection {
            max_ejected_percent: 0,
            ..o
        };
        assert_eq!(none.max_ejected(10), 0);
    }
}
