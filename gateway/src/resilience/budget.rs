//! The retry budget, one per upstream: retries may add at most `ratio` of the requests seen in
//! the recent `window`, plus `min_per_second` so a quiet upstream can still be retried. When an
//! upstream fails every request, retries stop at that share instead of multiplying the load on
//! it (the failure mode of per-request retry counts alone).

use parking_lot::Mutex;

use super::settings::BudgetConfig;
use super::window::Window;
use crate::clock::Nanos;

#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    /// (first tries, retries)
    window: Mutex<Window>,
}

impl RetryBudget {
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            window: Mutex::new(Window::new(config.window)),
            config,
        }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Window> {
        self.window.lock()
    }

    /// A request's first try: it earns the upstream `ratio` of a retry.
    pub fn record_request(&self, now: Nanos) {
        self.lock().add(now, 1, 0);
    }

    /// Takes one retry from the budget, or says there is none left.
    pub fn try_retry(&self, now: Nanos) -> bool {
        let mut window = self.lock();
        let (requests, retries) = window.totals(now);
        let allowed = self.config.ratio * requests as f64
            + self.config.min_per_second * self.config.window.as_secs_f64();
        if (retries + 1) as f64 <= allowed {
            window.add(now, 0, 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn retries_are_a_share_of_recent_requests() {
        let clock = ManualClock::new(0);
        let budget = RetryBudget::new(BudgetConfig {
            ratio: 0.2,
            min_per_second: 0.0,
            window: Duration::from_secs(10),
        });
        assert!(!budget.try_retry(clock.now()), "nothing earned yet");
        for _ in 0..10 {
            budget.record_request(clock.now());
        }
        assert!(budget.try_retry(clock.now()));
        assert!(budget.try_retry(clock.now()));
        assert!(!budget.try_retry(clock.now()), "20% of 10 is 2");
        // More requests earn more; old ones age out of the window, and the budget with them.
        clock.advance(Duration::from_secs(5));
        for _ in 0..5 {
            budget.record_request(clock.now());
        }
        assert!(budget.try_retry(clock.now()), "15 requests earn 3 retries");
        assert!(!budget.try_retry(clock.now()));
        clock.advance(Duration::from_secs(6));
        // Only the 5 requests and 1 retry of t = 5 s are still in the window: 1 allowed, 1 taken.
        assert!(!budget.try_retry(clock.now()));
    }

    #[test]
    fn a_minimum_rate_lets_a_quiet_upstream_be_retried() {
        let clock = ManualClock::new(0);
        let budget = RetryBudget::new(BudgetConfig {
            ratio: 0.0,
            min_per_second: 0.5,
            window: Duration::from_secs(4),
        });
        assert!(budget.try_retry(clock.now()));
        assert!(budget.try_retry(clock.now()));
        assert!(
            !budget.try_retry(clock.now()),
            "0.5 per second over 4 s is 2"
        );
        clock.advance(Duration::from_secs(5));
        assert!(budget.try_retry(clock.now()), "the window moved on");
    }
}
