//! When to hand the heap's free memory back to the system (`limits.shrink_heap`).
//!
//! A client connection that parks or closes frees its HTTP buffers (about 40 KiB), but glibc's
//! `malloc` keeps freed memory for reuse: after a burst of new connections the process holds
//! what the burst's peak used, because the small long-lived pieces of the connections that stay
//! sit between the freed buffers. Trimming the heap (`malloc_trim`) returns the free pages in
//! between. This module says when: once `RELEASES_PER_TRIM` connections have let go of their
//! buffers, and then when releases have been quiet for `SETTLE` — the burst is over, and what it
//! freed will not be asked for again at once — or, under a steady churn that is never quiet,
//! `MAX_WAIT` after the count was reached; never sooner than `SPACING` after the trim before.
//! Trimming in the middle of a churn would hand back pages the next connections fault in again,
//! and each trim holds the allocator's locks for about a millisecond, so a churn costs at most one
//! every `MAX_WAIT`. Envoy's overload manager has the same lever (`shrink_heap`, tcmalloc's
//! release of free memory).
//!
//! Pure: the caller passes `now`, waits as told, and carries out the trim; the metrics count
//! what it returned.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::clock::Nanos;

/// Connections that released their buffers before a trim is worth its cost: at ~40 KiB each,
/// about 1.3 MiB to hand back.
pub const RELEASES_PER_TRIM: u32 = 32;
/// How long releases must have been quiet before a trim.
pub const SETTLE: Nanos = 100_000_000;
/// The longest a trim waits for quiet once the count is reached.
pub const MAX_WAIT: Nanos = 2_000_000_000;
/// The least time between two trims.
pub const SPACING: Nanos = 500_000_000;

/// The releases counted since the last trim, and the wait for the next.
#[derive(Debug, Default)]
pub struct TrimSchedule {
    released: u32,
    last_release: Nanos,
    /// Since when the count has been reached and a trim waits; `None`: none does.
    waiting_since: Option<Nanos>,
    /// When the last trim started.
    last_trim: Option<Nanos>,
}

/// What the waiting trim does at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimStep {
    /// Trim now; the releases counted so far are what it covers.
    Trim,
    /// Check again then.
    WaitUntil(Nanos),
}

impl TrimSchedule {
    /// A connection let go of its buffers at `now`. When this release completes the count, a
    /// trim starts waiting: returns when to [`check`](Self::check) it first. `None` when the
    /// count is short or a trim already waits.
    pub fn released(&mut self, now: Nanos) -> Option<Nanos> {
        self.released = self.released.saturating_add(1);
        self.last_release = now;
        if self.waiting_since.is_some() || self.released < RELEASES_PER_TRIM {
            return None;
        }
        self.waiting_since = Some(now);
        Some(self.due())
    }

    /// The waiting trim's check at `now`: trim, or wait until a later check.
    pub fn check(&mut self, now: Nanos) -> TrimStep {
        let due = self.due();
        if now < due {
            return TrimStep::WaitUntil(due);
        }
        self.trimming(now);
        TrimStep::Trim
    }

    /// A trim starts at `now`, whatever the wait would say (its caller ran out of checks): the
    /// releases counted so far are what it covers, and the next trim is spaced from it.
    pub fn trimming(&mut self, now: Nanos) {
        self.released = 0;
        self.waiting_since = None;
        self.last_trim = Some(now);
    }

    /// When the waiting trim may run: quiet for `SETTLE`, or waited `MAX_WAIT`, and spaced.
    fn due(&self) -> Nanos {
        let since = self.waiting_since.unwrap_or(self.last_release);
        let quiet = self.last_release.saturating_add(SETTLE);
        let spaced = self.last_trim.map_or(0, |t| t.saturating_add(SPACING));
        quiet.min(since.saturating_add(MAX_WAIT)).max(spaced)
    }
}

/// What the trims did, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct HeapMetrics {
    pub trims: Counter,
    /// Resident memory returned, by the process's resident size before and after each trim.
    pub returned_bytes: Counter,
}

impl HeapMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "heap_trims",
            "Trims of the heap after client connections parked or closed (limits.shrink_heap)",
            m.trims.clone(),
        );
        registry.register(
            "heap_returned_bytes",
            "Resident memory the heap trims returned to the system",
            m.returned_bytes.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    /// Releases `count` connections `gap` apart from `start`; returns what each said.
    fn release(
        schedule: &mut TrimSchedule,
        start: Nanos,
        gap: Nanos,
        count: u32,
    ) -> Vec<Option<Nanos>> {
        (0..count)
            .map(|i| schedule.released(start + Nanos::from(i) * gap))
            .collect()
    }

    #[test]
    fn the_release_that_completes_the_count_starts_the_wait_and_the_trim_comes_once_quiet() {
        let mut schedule = TrimSchedule::default();
        let said = release(&mut schedule, 0, MS, RELEASES_PER_TRIM);
        let last = Nanos::from(RELEASES_PER_TRIM - 1) * MS;
        assert!(
            said[..said.len() - 1].iter().all(Option::is_none),
            "{said:?}"
        );
        assert_eq!(said.last(), Some(&Some(last + SETTLE)));
        assert_eq!(
            schedule.check(last + SETTLE - 1),
            TrimStep::WaitUntil(last + SETTLE)
        );
        assert_eq!(schedule.check(last + SETTLE), TrimStep::Trim);
    }

    #[test]
    fn releases_while_a_trim_waits_start_no_second_wait_and_push_the_quiet_back() {
        let mut schedule = TrimSchedule::default();
        release(&mut schedule, 0, MS, RELEASES_PER_TRIM);
        let more = release(&mut schedule, 40 * MS, 10 * MS, 3 * RELEASES_PER_TRIM);
        assert!(more.iter().all(Option::is_none), "{more:?}");
        let last = 40 * MS + Nanos::from(3 * RELEASES_PER_TRIM - 1) * 10 * MS;
        // The first check, at the first due time, finds the wave still releasing.
        assert_eq!(schedule.check(131 * MS), TrimStep::WaitUntil(last + SETTLE));
        assert_eq!(schedule.check(last + SETTLE), TrimStep::Trim);
    }

    #[test]
    fn a_churn_that_is_never_quiet_is_trimmed_at_the_longest_wait() {
        let mut schedule = TrimSchedule::default();
        // A release every 50 ms, for 10 s: never SETTLE quiet.
        let said = release(&mut schedule, 0, 50 * MS, 200);
        let reached = Nanos::from(RELEASES_PER_TRIM - 1) * 50 * MS;
        assert!(said.iter().flatten().count() == 1, "{said:?}");
        assert_eq!(schedule.check(reached + MAX_WAIT), TrimStep::Trim);
    }

    #[test]
    fn a_trim_covers_the_releases_before_it_and_the_next_is_spaced_from_it() {
        let mut schedule = TrimSchedule::default();
        release(&mut schedule, 0, MS, RELEASES_PER_TRIM);
        assert_eq!(schedule.check(131 * MS), TrimStep::Trim);
        // Short of the count again: nothing waits.
        let short = release(&mut schedule, 140 * MS, MS, RELEASES_PER_TRIM - 1);
        assert!(short.iter().all(Option::is_none), "{short:?}");
        // The release that completes it, 200 ms after the trim: due at the spacing, not sooner.
        assert_eq!(schedule.released(331 * MS), Some(131 * MS + SPACING));
        assert_eq!(schedule.check(131 * MS + SPACING), TrimStep::Trim);
        // Long after: the settle time alone.
        release(&mut schedule, 5_000 * MS, MS, RELEASES_PER_TRIM - 1);
        assert_eq!(schedule.released(6_000 * MS), Some(6_000 * MS + SETTLE));
    }
}
