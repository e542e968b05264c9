//! Fake clients: load profiles and the load generator. Open model by default — arrivals follow
//! the schedule whatever the responses do — and latency is measured from each request's
//! *scheduled* send time, so a stall shows up in the tail instead of being hidden by coordinated
//! omission. The buggy retry loop is the one closed-loop profile, on purpose: that is the bug.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Profile {
    /// `rate` requests per second for `duration`, evenly spaced.
    Steady {
        rate: f64,
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// `count` requests at once, every `every`, `times` times.
    Burst {
        count: u32,
        #[serde(with = "humantime_serde")]
        every: Duration,
        times: u32,
    },
    /// Rate rising linearly from `from` to `to` requests per second over `duration`.
    Ramp {
        from: f64,
        to: f64,
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// A cron job misconfigured to fire every second instead of every minute: `count` requests
    /// at each tick for `duration`.
    Cron {
        count: u32,
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// `clients` buggy clients that retry a 429 at once, without backoff, for `duration`; after a
    /// success each waits `think` before its next request.
    RetryStorm {
        clients: u32,
        #[serde(with = "humantime_serde")]
        duration: Duration,
        #[serde(default = "default_think", with = "humantime_serde")]
        think: Duration,
    },
}

fn default_think() -> Duration {
    Duration::from_millis(100)
}

/// Hard ceiling on the requests one phase may schedule, so a typo cannot flood even loopback.
pub const MAX_REQUESTS_PER_PHASE: usize = 1_000_000;

impl Profile {
    /// Send offsets from the phase start, for open-model profiles; `None` for the closed loop.
    pub fn schedule(&self) -> Option<Vec<Duration>> {
        let mut out = Vec::new();
        match self {
            Profile::Steady { rate, duration } => {
                if *rate > 0.0 {
                    let gap = 1.0 / rate;
                    let n = (duration.as_secs_f64() * rate).floor() as usize;
                    out.extend(
                        (0..n.min(MAX_REQUESTS_PER_PHASE))
                            .map(|i| Duration::from_secs_f64(i as f64 * gap)),
                    );
                }
            }
            Profile::Burst {
                count,
                every,
                times,
            } => {
                for t in 0..*times {
                    for _ in 0..*count {
                        out.push(*every * t);
                    }
                }
            }
            Profile::Ramp { from, to, duration } => {
                // Invert the cumulative count n(t) = from·t + (to−from)·t²/(2D) at n = 1, 2, 3, ...
                let d = duration.as_secs_f64();
                let a = (to - from) / (2.0 * d);
                let total = from * d + a * d * d;
                let n = total.max(0.0).floor() as usize;
                for k in 1..=n.min(MAX_REQUESTS_PER_PHASE) {
                    let k = k as f64;
                    let t = if a.abs() < 1e-12 {
                        k / from
                    } else {
                        (-from + (from * from + 4.0 * a * k).sqrt()) / (2.0 * a)
                    };
                    if t.is_finite() && t >= 0.0 && t <= d {
                        out.push(Duration::from_secs_f64(t));
                    }
                }
            }
            Profile::Cron { count, duration } => {
                let ticks = duration.as_secs().max(1);
                for tick in 0..ticks {
                    for _ in 0..*count {
                        out.push(Duration::from_secs(tick));
                    }
                }
            }
            Profile::RetryStorm { .. } => return None,
        }
        out.truncate(MAX_REQUESTS_PER_PHASE);
        Some(out)
    }

    /// How long the phase lasts.
    pub fn duration(&self) -> Duration {
        match self {
            Profile::Steady { duration, .. }
            | Profile::Ramp { duration, .. }
            | Profile::Cron { duration, .. }
            | Profile::RetryStorm { duration, .. } => *duration,
            Profile::Burst { every, times, .. } => *every * times.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_spaces_requests_evenly() {
        let s = Profile::Steady {
            rate: 10.0,
            duration: Duration::from_secs(2),
        }
        .schedule()
        .unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s[1], Duration::from_millis(100));
        assert_eq!(s[19], Duration::from_millis(1900));
    }

    #[test]
    fn ramp_sends_the_integral_of_its_rate() {
        let s = Profile::Ramp {
            from: 0.0,
            to: 100.0,
            duration: Duration::from_secs(2),
        }
        .schedule()
        .unwrap();
        assert_eq!(s.len(), 100, "area under 0→100/s over 2 s");
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        // Rising rate: by half time only a quarter has gone (the 25th request leaves at 1 s sharp).
        let first_half = s.iter().filter(|t| **t <= Duration::from_secs(1)).count();
        assert_eq!(first_half, 25);
    }

    #[test]
    fn bursts_and_cron_fire_at_ticks() {
        let b = Profile::Burst {
            count: 3,
            every: Duration::from_secs(1),
            times: 2,
        }
        .schedule()
        .unwrap();
        assert_eq!(
            b,
            vec![
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(1)
            ]
        );
        let c = Profile::Cron {
            count: 2,
            duration: Duration::from_secs(3),
        }
        .schedule()
        .unwrap();
        assert_eq!(c.len(), 6);
        assert!(
            Profile::RetryStorm {
                clients: 2,
                duration: Duration::from_secs(1),
                think: Duration::ZERO
            }
            .schedule()
            .is_none()
        );
    }
}
