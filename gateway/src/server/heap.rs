//! Hands the heap's free memory back to the system after client connections let go of their
//! buffers (`limits.shrink_heap`): `resilience::heap` says when, this module does it, with
//! glibc's `malloc_trim` on a blocking thread so that no connection's task waits for the walk.
//!
//! The crate's one `unsafe` block is here (a tidy test holds it to this file): `malloc_trim` is
//! a C function that no maintained crate wraps, and the alternative, an allocator of our own
//! choosing that returns memory itself, was measured against glibc's and kept more per idle
//! connection (docs/PERFORMANCE.md, mimalloc).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::SharedClock;
use crate::resilience::heap::{HeapMetrics, MAX_WAIT, SETTLE, TrimSchedule, TrimStep};

/// Whether this build can trim its heap: glibc's allocator on Linux. musl's and the other
/// systems' allocators have no such call and return large free blocks themselves.
const CAN_TRIM: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// The most checks a waiting trim makes: enough for `MAX_WAIT` with a release just before each.
const MAX_CHECKS: u64 = MAX_WAIT / SETTLE + 2;

/// One gateway's count of the connections that released their buffers, and its trims.
pub(super) struct HeapRelease {
    schedule: Mutex<TrimSchedule>,
    clock: SharedClock,
    metrics: HeapMetrics,
}

impl HeapRelease {
    pub(super) fn new(clock: SharedClock, metrics: HeapMetrics) -> Arc<Self> {
        Arc::new(Self {
            schedule: Mutex::new(TrimSchedule::default()),
            clock,
            metrics,
        })
    }

    /// A client connection let go of its buffers: it parked, or it closed. When this release
    /// makes a trim due, a task waits for it and runs it.
    pub(super) fn released(self: &Arc<Self>) {
        if !CAN_TRIM {
            return;
        }
        let now = self.clock.now();
        let Some(due) = self.schedule.lock().released(now) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let (mut due, mut checks) = (due, 0);
            loop {
                let now = this.clock.now();
                tokio::time::sleep(Duration::from_nanos(due.saturating_sub(now))).await;
                let now = this.clock.now();
                let mut schedule = this.schedule.lock();
                checks += 1;
                // Bounded, for a clock that does not move (the simulator's virtual time): past
                // the bound the trim runs rather than wait on it for ever.
                if checks >= MAX_CHECKS {
                    schedule.trimming(now);
                    break;
                }
                match schedule.check(now) {
                    TrimStep::Trim => break,
                    TrimStep::WaitUntil(later) => due = later,
                }
            }
            let clock = this.clock.clone();
            let Ok((returned, took)) = tokio::task::spawn_blocking(move || trim(&clock)).await
            else {
                return;
            };
            this.metrics.trims.inc();
            this.metrics.returned_bytes.inc_by(returned);
            tracing::debug!(returned, ?took, "heap trimmed");
        });
    }
}

/// Trims every arena of the heap; returns the resident bytes it gave back and how long it took.
fn trim(clock: &SharedClock) -> (u64, Duration) {
    let before = resident_bytes();
    let started = clock.now();
    malloc_trim();
    let took = Duration::from_nanos(clock.now().saturating_sub(started));
    let returned = before
        .zip(resident_bytes())
        .map_or(0, |(before, after)| before.saturating_sub(after));
    (returned, took)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "glibc's malloc_trim has no safe wrapper")]
fn malloc_trim() {
    // SAFETY: `malloc_trim` takes no pointer and touches only glibc's own free lists, under
    // each arena's lock (MT-Safe, malloc_trim(3)); live allocations are not moved.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() {}

/// The process's resident size (`VmRSS`), in bytes; `None` where `/proc` does not say.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
