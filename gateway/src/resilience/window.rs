//! A rolling window of two counters in ten buckets, over an explicit `now`: what the circuit
//! breaker (successes, failures) and the retry budget (requests, retries) count recent traffic
//! with. Old buckets are cleared as time moves on, so memory is constant.

use std::time::Duration;

use crate::clock::Nanos;

const BUCKETS: usize = 10;

#[derive(Debug, Clone)]
pub struct Window {
    buckets: [(u64, u64); BUCKETS],
    bucket_nanos: u64,
    /// Absolute index (`now / bucket_nanos`) of the newest bucket.
    newest: u64,
}

impl Window {
    pub fn new(span: Duration) -> Self {
        let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Self {
            buckets: [(0, 0); BUCKETS],
            bucket_nanos: (span / BUCKETS as u64).max(1),
            newest: 0,
        }
    }

    fn advance(&mut self, now: Nanos) {
        let index = now / self.bucket_nanos;
        if index <= self.newest {
            return;
        }
        let steps = (index - self.newest).min(BUCKETS as u64);
        for k in 1..=steps {
            self.buckets[((self.newest + k) % BUCKETS as u64) as usize] = (0, 0);
        }
        self.newest = index;
    }

    pub fn add(&mut self, now: Nanos, a: u64, b: u64) {
        self.advance(now);
        let bucket = &mut self.buckets[(self.newest % BUCKETS as u64) as usize];
        bucket.0 += a;
        bucket.1 += b;
    }

    /// Both counters summed over the window ending at `now`.
    pub fn totals(&mut self, now: Nanos) -> (u64, u64) {
        self.advance(now);
        self.buckets
            .iter()
            .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
    }

    pub fn clear(&mut self) {
        self.buckets = [(0, 0); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn counts_fall_out_of_the_window_bucket_by_bucket() {
        let mut w = Window::new(Duration::from_secs(1));
        w.add(0, 1, 0);
        w.add(450 * MS, 0, 2);
        assert_eq!(w.totals(900 * MS), (1, 2));
        // The first bucket (0..100 ms) leaves once the window ends past it.
        assert_eq!(w.totals(1_050 * MS), (0, 2));
        assert_eq!(w.totals(1_450 * MS), (0, 0));
        // A long silence clears everything without looping over it.
        w.add(1_500 * MS, 3, 3);
        assert_eq!(w.totals(u64::MAX / 2), (0, 0));
    }
}
