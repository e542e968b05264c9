//! What the TUI counts as records arrive — stops per stage and reason, rates over the last few
//! seconds, latency per route — kept cheap per record so the TUI keeps up with a busy gateway.

use std::collections::VecDeque;
use std::sync::Arc;

use gateway::clock::Nanos;
use hdrhistogram::Histogram;

/// Seconds of history behind the live rates.
pub const RATE_SECONDS: usize = 5;
/// One second of the TUI's clock.
pub(super) const SECOND: Nanos = 1_000_000_000;

/// Stops at one stage, by reason, in order of first appearance (few reasons per stage, so a
/// linear scan beats hashing and never allocates once a reason is known).
#[derive(Debug, Clone, Default)]
pub struct StageStops {
    pub total: u64,
    pub reasons: Vec<(String, u64)>,
}

impl StageStops {
    pub(super) fn add(&mut self, reason: &str) {
        self.total += 1;
        match self.reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => self.reasons.push((reason.to_owned(), 1)),
        }
    }
}

/// Outcome slots: the eight stages, then "passed" (the upstream answered), then answered at
/// the gateway without a stop (a CORS preflight: `stopped_at` none, no upstream).
pub(super) const OUTCOMES: usize = 10;
pub(super) const PASSED: usize = 8;
pub(super) const ANSWERED_HERE: usize = 9;

/// Counts per second, for the last [`RATE_SECONDS`] complete seconds.
#[derive(Debug, Clone, Default)]
pub(super) struct Rates {
    /// The second `current` counts for.
    second: u64,
    pub(super) current: [u64; OUTCOMES],
    /// Complete seconds, newest last.
    history: VecDeque<[u64; OUTCOMES]>,
}

impl Rates {
    pub(super) fn advance(&mut self, now: Nanos) {
        let second = now / SECOND;
        if second <= self.second {
            return;
        }
        // The second that ended, then any idle seconds after it (as zeros).
        let gap = second - self.second;
        self.history.push_back(std::mem::take(&mut self.current));
        for _ in 1..gap.min(RATE_SECONDS as u64 + 1) {
            self.history.push_back([0; OUTCOMES]);
        }
        while self.history.len() > RATE_SECONDS {
            self.history.pop_front();
        }
        self.second = second;
    }

    /// Per second over the complete seconds seen (up to RATE_SECONDS).
    pub(super) fn per_second(&self, slot: usize) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        self.history.iter().map(|s| s[slot]).sum::<u64>() as f64 / self.history.len() as f64
    }
}

/// Who answered a request, for latency: the upstream's answers take its time, the gateway's own
/// answers (stops, preflights) take microseconds, so one histogram of both would describe
/// neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Upstream,
    Gateway,
}

impl Answered {
    pub const fn as_str(self) -> &'static str {
        match self {
            Answered::Upstream => "upstream",
            Answered::Gateway => "gateway",
        }
    }
}

/// Latency of one route and who answered, in microseconds.
#[derive(Debug, Clone)]
pub struct RouteLatency {
    pub route: Arc<str>,
    pub answered: Answered,
    pub histogram: Histogram<u64>,
}

/// An empty latency histogram, in microseconds.
pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 2 significant digits: 1% resolution is plenty for a screen.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant, valid histogram bounds")
}
