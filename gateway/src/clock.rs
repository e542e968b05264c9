//! The only place that reads the system clock.
//!
//! Every time-dependent rule (stage timings, token expiry, rate-limit windows, breaker state) asks a
//! [`Clock`], so the simulator and the tests can drive the same code in virtual time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds on a monotonic timeline whose origin is the clock's own start.
pub type Nanos = u64;

pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for durations and windows.
    fn now(&self) -> Nanos;
    /// Wall-clock time in milliseconds since the Unix epoch, for records and token claims.
    fn unix_millis(&self) -> u64;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clock. Monotonic readings count from the moment it was made.
#[derive(Debug)]
pub struct SystemClock {
    /// `CLOCK_MONOTONIC` when the clock was made, in nanoseconds.
    origin: Nanos,
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads, taken as one integer. A request
/// reads it about 16 times, and `Instant::elapsed` with its `Duration` arithmetic cost ~120
/// instructions a reading against ~30 for this.
fn monotonic_nanos() -> Nanos {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // Both fields are non-negative for CLOCK_MONOTONIC; u64 nanoseconds last 584 years.
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            origin: monotonic_nanos(),
        }
    }

    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        monotonic_nanos().saturating_sub(self.origin)
    }

    #[allow(clippy::disallowed_methods)] // this is the one sanctioned reader of the system clock
    fn unix_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The instant `after` from now on tokio's timer, for transport deadlines (a call given up on a
/// socket). It lives here so that this file stays the one reader of time; tokio's timer is the
/// one that paused test time drives, so these deadlines run in virtual time too.
pub fn timer_deadline(after: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + after
}

/// A clock that moves only when told to: virtual time for tests and the comparison engine.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    unix_origin_millis: u64,
}

impl ManualClock {
    pub fn new(unix_origin_millis: u64) -> Self {
        Self {
            nanos: AtomicU64::new(0),
            unix_origin_millis,
        }
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::Relaxed);
    }

    pub fn set(&self, at: Nanos) {
        self.nanos.store(at, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.nanos.load(Ordering::Relaxed)
    }

    fn unix_millis(&self) -> u64 {
        self.unix_origin_millis + self.now() / 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now(), 0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), 1_500_000_000);
        assert_eq!(clock.unix_millis(), 2_500);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(clock.unix_millis() > 1_600_000_000_000);
    }
}
