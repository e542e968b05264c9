//! When to hand the heap's free memory back to the system (`limits.shrink_heap`).
//!
//! A client connection that parks or closes frees its HTTP buffers (about 40 KiB), but glibc's
//! `malloc` keeps freed memory for reuse: after a burst of new connections the process holds
//! what the burst's peak used, because the small long-lived pieces of the connections that stay
//! sit between the freed buffers. Trimming the heap (`malloc_trim`) returns the free pages in
//! between. This module says when: once `RELEASES_PER_TRIM` connections have let go of their
//! buffers, `SETTLE` after the release that made the count (so one trim covers a wave, not its
//! first connections), and never sooner than `SPACING` after the trim before, so a steady churn
//! of connections costs at most a trim every `SPACING`. Envoy's overload manager has the same
//! lever (`shrink_heap`, tcmalloc's release of free memory).
//!
//! Pure: the caller passes `now` and carries out the trim; the metrics count what it returned.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::clock::Nanos;

/// Connections that released their buffers before a trim is worth its cost: at ~40 KiB each,
/// about 1.3 MiB to hand back.
pub const RELEASES_PER_TRIM: u32 = 32;
/// How long after the release that completes the count the trim waits, for the rest of its wave.
pub const SETTLE: Nanos = 100_000_000;
/// The least time between two trims.
pub const SPACING: Nanos = 500_000_000;

/// The releases counted since the last trim, and the trim they have scheduled.
#[derive(Debug, Default)]
pub struct TrimSchedule {
    released: u32,
    /// When the scheduled trim is due; `None`: none is.
    due: Option<Nanos>,
    /// When the last trim started.
    last: Option<Nanos>,
}

impl TrimSchedule {
    /// A connection let go of its buffers at `now`. Returns when a trim is due if this release
    /// scheduled one; `None` when the count is short or a trim is already scheduled.
    pub fn released(&mut self, now: Nanos) -> Option<Nanos> {
        self.released = self.released.saturating_add(1);
        if self.due.is_some() || self.released < RELEASES_PER_TRIM {
            return None;
        }
        let spaced = self.last.map_or(0, |last| last.saturating_add(SPACING));
        let due = now.saturating_add(SETTLE).max(spaced);
        self.due = Some(due);
        Some(due)
    }

    /// The scheduled trim starts at `now`: the releases counted so far are what it covers, and
    /// the next trim is spaced from this one.
    pub fn trimming(&mut self, now: Nanos) {
        self.released = 0;
        self.due = None;
        self.last = Some(now);
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

    /// Releases `count` connections one millisecond apart from `start`; returns what each said.
    fn release(schedule: &mut TrimSchedule, start: Nanos, count: u32) -> Vec<Option<Nanos>> {
        (0..count)
            .map(|i| schedule.released(start + Nanos::from(i) * MS))
            .collect()
    }

    #[test]
    fn a_trim_is_scheduled_by_the_release_that_completes_the_count_and_settles_after_it() {
        let mut schedule = TrimSchedule::default();
        let said = release(&mut schedule, 0, RELEASES_PER_TRIM);
        let last = Nanos::from(RELEASES_PER_TRIM - 1) * MS;
        assert!(
            said[..said.len() - 1].iter().all(Option::is_none),
            "{said:?}"
        );
        assert_eq!(said.last(), Some(&Some(last + SETTLE)));
    }

    #[test]
    fn releases_while_a_trim_is_scheduled_schedule_no_second_one() {
        let mut schedule = TrimSchedule::default();
        release(&mut schedule, 0, RELEASES_PER_TRIM);
        let more = release(&mut schedule, 40 * MS, 3 * RELEASES_PER_TRIM);
        assert!(more.iter().all(Option::is_none), "{more:?}");
    }

    #[test]
    fn a_trim_covers_the_releases_before_it_and_the_next_is_spaced_from_it() {
        let mut schedule = TrimSchedule::default();
        release(&mut schedule, 0, RELEASES_PER_TRIM);
        schedule.trimming(131 * MS);
        // Short of the count again: nothing is scheduled.
        let short = release(&mut schedule, 140 * MS, RELEASES_PER_TRIM - 1);
        assert!(short.iter().all(Option::is_none), "{short:?}");
        // The release that completes it, 200 ms after the trim: due at the spacing, not sooner.
        assert_eq!(schedule.released(331 * MS), Some(131 * MS + SPACING));
        schedule.trimming(131 * MS + SPACING);
        // Long after: the settle time alone.
        release(&mut schedule, 5_000 * MS, RELEASES_PER_TRIM - 1);
        assert_eq!(schedule.released(6_000 * MS), Some(6_000 * MS + SETTLE));
    }
}
