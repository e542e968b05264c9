//! `limits.body_read_timeout` and `limits.min_body_rate`: the rule a streaming request body is
//! held to, decided over an explicit `now` so it runs in virtual time, and the alarm that asks it
//! again while the client sends nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::{Nanos, SharedClock};

/// `limits.body_read_timeout` and `limits.min_body_rate`: the rule a streaming request body is
/// held to, over an explicit `now`. A body stalls when no bytes came for `read_timeout`, or —
/// once `grace` has passed since it started — when its average rate since it started is below
/// `min_rate` bytes per second (an average, so a pause is forgiven when bytes came fast before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    pub read_timeout: Duration,
    /// Bytes per second, and the grace before it applies.
    pub min_rate: Option<(u64, Duration)>,
}

/// Where a body stands under its pace rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceState {
    /// When the body was first asked for bytes (the gateway starts sending it upstream then;
    /// time spent in the stages before is not the client's).
    pub started: Nanos,
    /// When the last bytes came (`started` before any).
    pub last: Nanos,
    pub seen: u64,
}

impl BodyPace {
    /// The body's pace rule under `limits`.
    pub fn of(limits: &crate::config::raw::RawLimits) -> Self {
        Self {
            read_timeout: limits.body_read_timeout,
            min_rate: limits
                .min_body_rate
                .map(|rate| (rate, limits.min_body_rate_grace)),
        }
    }

    /// When the body stalls if no more bytes come, and as what: the earlier of the read
    /// timeout's deadline and the moment the average rate drops below the minimum.
    pub fn stalls_at(&self, state: &PaceState) -> (Nanos, BodyStalled) {
        let idle = (
            state.last.saturating_add(duration_nanos(self.read_timeout)),
            BodyStalled::Idle(self.read_timeout),
        );
        let Some((rate, grace)) = self.min_rate.filter(|(rate, _)| *rate > 0) else {
            return idle;
        };
        // seen / elapsed < rate exactly when elapsed > seen / rate.
        let earned = u64::try_from(u128::from(state.seen) * 1_000_000_000 / u128::from(rate))
            .unwrap_or(u64::MAX);
        let slow = state
            .started
            .saturating_add(earned.max(duration_nanos(grace)));
        if slow < idle.0 {
            (slow, BodyStalled::Slow(rate))
        } else {
            idle
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A body's pace rule with its state and its alarm. The rule decides with the injected clock —
/// one reading per chunk, no timer touched per chunk — and a tokio timer only wakes the body to
/// ask it again: set for when the body would stall, it may ring early (bytes came since), never
/// late.
pub(super) struct Pacing {
    rule: BodyPace,
    clock: SharedClock,
    state: Option<PaceState>,
    /// Made the first time the body waits: a body that never waits costs no timer.
    alarm: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the alarm is set for; `None` when it has rung.
    alarm_at: Option<Nanos>,
}

impl Pacing {
    pub(super) fn new(rule: BodyPace, clock: SharedClock) -> Self {
        Self {
            rule,
            clock,
            state: None,
            alarm: None,
            alarm_at: None,
        }
    }

    pub(super) fn start(&mut self) {
        if self.state.is_none() {
            let now = self.clock.now();
            self.state = Some(PaceState {
                started: now,
                last: now,
                seen: 0,
            });
        }
    }

    pub(super) fn saw(&mut self, seen: u64) {
        if let Some(state) = &mut self.state {
            state.last = self.clock.now();
            state.seen = seen;
        }
    }

    /// With the client's body pending: the stall, if it has come; else the alarm is set.
    pub(super) fn poll_stall(&mut self, cx: &mut Context<'_>) -> Option<BodyStalled> {
        let state = self.state?;
        loop {
            let now = self.clock.now();
            let (at, stall) = self.rule.stalls_at(&state);
            if now >= at {
                return Some(stall);
            }
            let wait = Duration::from_nanos(at - now);
            let alarm = match &mut self.alarm {
                Some(alarm) => {
                    if self.alarm_at.is_none_or(|set| set > at) {
                        alarm.set(tokio::time::sleep(wait));
                        self.alarm_at = Some(at);
                    }
                    alarm
                }
                None => {
                    self.alarm_at = Some(at);
                    self.alarm.insert(Box::pin(tokio::time::sleep(wait)))
                }
            };
            match alarm.as_mut().poll(cx) {
                Poll::Ready(()) => self.alarm_at = None,
                Poll::Pending => return None,
            }
        }
    }
}

/// The client's body stopped, or came too slowly; `forward` turns it into a 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyStalled {
    #[error("no request-body bytes came for {0:?} (limits.body_read_timeout)")]
    Idle(Duration),
    #[error("the request body came slower than {0} bytes per second (limits.min_body_rate)")]
    Slow(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn state(started: u64, last: u64, seen: u64) -> PaceState {
        PaceState {
            started: started * MS,
            last: last * MS,
            seen,
        }
    }

    #[test]
    fn a_body_stalls_a_read_timeout_after_its_last_bytes() {
        let pace = BodyPace {
            read_timeout: Duration::from_millis(300),
            min_rate: None,
        };
        let idle = BodyStalled::Idle(Duration::from_millis(300));
        assert_eq!(pace.stalls_at(&state(0, 0, 0)), (300 * MS, idle));
        // Each chunk moves the deadline: it counts from the last bytes, not from the start.
        assert_eq!(pace.stalls_at(&state(0, 1000, 5)), (1300 * MS, idle));
    }

    #[test]
    fn a_body_below_the_minimum_rate_stalls_once_the_grace_has_passed() {
        let pace = BodyPace {
            read_timeout: Duration::from_secs(60),
            min_rate: Some((1000, Duration::from_millis(500))),
        };
        let slow = BodyStalled::Slow(1000);
        // 100 bytes at 1000 B/s are earned in 100 ms: the grace decides.
        assert_eq!(pace.stalls_at(&state(0, 50, 100)), (500 * MS, slow));
        // 2000 bytes earn 2 s from the start, however late they came.
        assert_eq!(pace.stalls_at(&state(0, 1900, 2000)), (2000 * MS, slow));
        // The read timeout stays the bound when it comes first.
        let tight = BodyPace {
            read_timeout: Duration::from_millis(50),
            ..pace
        };
        assert_eq!(
            tight.stalls_at(&state(0, 1900, 2000)),
            (1950 * MS, BodyStalled::Idle(Duration::from_millis(50)))
        );
    }

    #[test]
    fn the_rate_rule_never_overflows() {
        let pace = BodyPace {
            read_timeout: Duration::MAX,
            min_rate: Some((1, Duration::MAX)),
        };
        let (at, _) = pace.stalls_at(&PaceState {
            started: u64::MAX - 1,
            last: u64::MAX,
            seen: u64::MAX,
        });
        assert_eq!(at, u64::MAX);
    }
}
