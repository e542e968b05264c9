//! The circuit breaker, one per upstream: **closed** (traffic flows; outcomes are counted in a
//! rolling window) → **open** when the failure ratio over the window reaches the threshold (with
//! at least `min_requests` seen) or `consecutive_failures` fail in a row → after `open_for`,
//! **half-open**: up to `half_open_probes` requests are let through as probes; every probe
//! succeeding closes the breaker, any probe failing opens it again.
//!
//! Pure logic over an explicit `now` (from [`crate::clock::Clock`]), so it is tested in virtual
//! time. The caller gets told of every transition so it can count it.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::settings::BreakerConfig;
use super::window::Window;
use crate::clock::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Permission for one try, from [`Breaker::admit`]; hand it back through [`Breaker::record`] or
/// [`Breaker::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// A half-open probe: its outcome decides the breaker's next state.
    pub probe: bool,
    /// The state the breaker was in when it let the try through.
    pub state: BreakerState,
}

/// The breaker refused: how long until it lets a probe through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    core: Mutex<Core>,
}

#[derive(Debug)]
struct Core {
    phase: Phase,
    /// (successes, failures) while closed.
    window: Window,
    consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Nanos },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            core: Mutex::new(Core {
                phase: Phase::Closed,
                window: Window::new(config.window),
                consecutive_failures: 0,
            }),
            config,
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Core> {
        self.core.lock()
    }

    /// May a try go out now? The second value is the state the breaker moved to, if it moved.
    pub fn admit(&self, now: Nanos) -> (Result<Ticket, Refused>, Option<BreakerState>) {
        let mut core = self.lock();
        let mut moved = None;
        if let Phase::Open { until } = core.phase {
            if now < until {
                let retry_after = Duration::from_nanos(until - now);
                return (Err(Refused { retry_after }), None);
            }
            core.phase = Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            };
            moved = Some(BreakerState::HalfOpen);
        }
        let result = match &mut core.phase {
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded < self.config.half_open_probes {
                    *in_flight += 1;
                    Ok(Ticket {
                        probe: true,
                        state: BreakerState::HalfOpen,
                    })
                } else {
                    // The probes are out; their outcome decides. Ask again shortly.
                    Err(Refused {
                        retry_after: Duration::from_secs(1),
                    })
                }
            }
            // Closed: an open phase was either returned above or turned half-open.
            _ => Ok(Ticket {
                probe: false,
                state: BreakerState::Closed,
            }),
        };
        (result, moved)
    }

    /// The outcome of a try `admit` let through. Returns the state the breaker moved to, if it
    /// moved.
    pub fn record(&self, now: Nanos, ticket: Ticket, success: bool) -> Option<BreakerState> {
        let mut core = self.lock();
        let before = core.phase.state();
        match core.phase {
            Phase::Closed => {
                core.window
                    .add(now, u64::from(success), u64::from(!success));
                if success {
                    core.consecutive_failures = 0;
                } else {
                    core.consecutive_failures += 1;
                    let (ok, failed) = core.window.totals(now);
                    let total = ok + failed;
                    let by_ratio = total >= u64::from(self.config.min_requests)
                        && failed as f64 >= self.config.failure_ratio * total as f64;
                    let in_a_row = self.config.consecutive_failures > 0
                        && core.consecutive_failures >= self.config.consecutive_failures;
                    if by_ratio || in_a_row {
                        self.open(&mut core, now);
                    }
                }
            }
            // Late results of tries let through before the breaker opened say nothing new.
            Phase::Open { .. } => {}
            Phase::HalfOpen {
                ref mut in_flight,
                ref mut succeeded,
            } => {
                if ticket.probe {
                    *in_flight = in_flight.saturating_sub(1);
                    if success {
                        *succeeded += 1;
                        if *succeeded >= self.config.half_open_probes {
                            core.phase = Phase::Closed;
                            core.window.clear();
                            core.consecutive_failures = 0;
                        }
                    } else {
                        self.open(&mut core, now);
                    }
                }
            }
        }
        let after = core.phase.state();
        (after != before).then_some(after)
    }

    /// A try that was admitted but never reached the upstream (stopped by a later stage).
    pub fn release(&self, ticket: Ticket) {
        if !ticket.probe {
            return;
        }
        let mut core = self.lock();
        if let Phase::HalfOpen { in_flight, .. } = &mut core.phase {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    fn open(&self, core: &mut Core, now: Nanos) {
        core.phase = Phase::Open {
            until: now.saturating_add(nanos(self.config.open_for)),
        };
        core.window.clear();
        core.consecutive_failures = 0;
    }

    /// The state as an observer sees it at `now`: an open breaker whose time is up shows as
    /// half-open (it becomes so with the next request).
    pub fn state(&self, now: Nanos) -> BreakerState {
        match self.lock().phase {
            Phase::Open { until } if now >= until => BreakerState::HalfOpen,
            phase => phase.state(),
        }
    }
}

/// A breaker's permission held by a request. Reported through [`BoundUpstream::report`]; if the
/// try never happens (a later stage stopped the request) dropping it gives a probe slot back.
pub struct Admission {
    breaker: Arc<Breaker>,
    ticket: Option<Ticket>,
}

impl Admission {
    pub fn new(breaker: Arc<Breaker>, ticket: Ticket) -> Self {
        Self {
            breaker,
            ticket: Some(ticket),
        }
    }

    pub fn state(&self) -> Option<BreakerState> {
        self.ticket.map(|t| t.state)
    }

    /// Reports the try this admission let through: `Some(success)` feeds the breaker, `None` (a
    /// neutral outcome) gives the slot back. Returns the state the breaker moved to, if it moved.
    pub fn report(mut self, now: Nanos, success: Option<bool>) -> Option<BreakerState> {
        let ticket = self.ticket.take()?;
        match success {
            Some(success) => self.breaker.record(now, ticket, success),
            None => {
                self.breaker.release(ticket);
                None
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.release(ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            failure_ratio: 0.5,
            min_requests: 4,
            consecutive_failures: 0,
            open_for: Duration::from_secs(30),
            half_open_probes: 2,
        }
    }

    fn run(b: &Breaker, clock: &ManualClock, success: bool) -> Option<BreakerState> {
        let (ticket, _) = b.admit(clock.now());
        b.record(clock.now(), ticket.expect("admitted"), success)
    }

    #[test]
    fn the_failure_ratio_opens_only_with_enough_requests() {
        let clock = ManualClock::new(0);
        let b = Breaker::new(config());
        assert_eq!(
            run(&b, &clock, false),
            None,
            "1 of 1 failed, below min_requests"
        );
        assert_eq!(run(&b, &clock, true), None);
        assert_eq!(run(&b, &clock, true), None);
        // 2 failures of 4: ratio 0.5 reached with min_requests seen.
        assert_eq!(run(&b, &clock, false), Some(BreakerState::Open));
        let (refused, _) = b.admit(clock.now());
        assert_eq!(
            refused,
            Err(Refused {
                retry_after: Duration::from_secs(30)
            })
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let clock = ManualClock::new(0);
        let b = Breaker::new(config());
        run(&b, &clock, false);
        run(&b, &clock, false);
        clock.advance(Duration::from_secs(11));
        run(&b, &clock, true);
        run(&b, &clock, true);
        run(&b, &clock, true);
        assert_eq!(run(&b, &clock, false), None, "1 of 4 in the window");
        assert_eq!(b.state(clock.now()), BreakerState::Closed);
    }

    #[test]
    fn consecutive_failures_open_regardless_of_the_ratio() {
        let clock = ManualClock::new(0);
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: 3,
            min_requests: 1000,
            ..config()
        });
        for _ in 0..20 {
            run(&b, &clock, true);
        }
        assert_eq!(run(&b, &clock, false), None);
        assert_eq!(run(&b, &clock, false), None);
        assert_eq!(run(&b, &clock, false), Some(BreakerState::Open));
    }

    #[test]
    fn half_open_probes_close_it_or_a_failed_probe_reopens_it() {
        let clock = ManualClock::new(0);
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            ..config()
        });
        assert_eq!(run(&b, &clock, false), Some(BreakerState::Open));
        clock.advance(Duration::from_secs(29));
        assert!(b.admit(clock.now()).0.is_err(), "still open at 29 s");
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(clock.now()), BreakerState::HalfOpen);

        // Two probes go out; a third request is refused while they are in flight.
        let (first, moved) = b.admit(clock.now());
        assert_eq!(moved, Some(BreakerState::HalfOpen));
        let first = first.expect("probe");
        assert!(first.probe);
        let second = b.admit(clock.now()).0.expect("probe");
        assert!(b.admit(clock.now()).0.is_err(), "only two probes");
        assert_eq!(b.record(clock.now(), first, true), None);
        assert_eq!(
            b.record(clock.now(), second, true),
            Some(BreakerState::Closed)
        );

        // Open again, and this time a probe fails.
        assert_eq!(run(&b, &clock, false), Some(BreakerState::Open));
        clock.advance(Duration::from_secs(30));
        let probe = b.admit(clock.now()).0.expect("probe");
        assert_eq!(
            b.record(clock.now(), probe, false),
            Some(BreakerState::Open)
        );
        assert!(b.admit(clock.now()).0.is_err());
    }

    #[test]
    fn a_released_probe_frees_its_slot_and_late_results_are_ignored() {
        let clock = ManualClock::new(0);
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            half_open_probes: 1,
            ..config()
        });
        let before_open = b.admit(clock.now()).0.expect("closed");
        run(&b, &clock, false);
        assert_eq!(
            b.record(clock.now(), before_open, true),
            None,
            "a late success does not close an open breaker"
        );
        clock.advance(Duration::from_secs(30));
        let probe = b.admit(clock.now()).0.expect("probe");
        assert!(b.admit(clock.now()).0.is_err());
        b.release(probe);
        let probe = b.admit(clock.now()).0.expect("the slot is free again");
        assert_eq!(
            b.record(clock.now(), probe, true),
            Some(BreakerState::Closed)
        );
    }
}
