//! A client connection's activity: which exchanges are running on it, and since when it has had
//! none — what the server's idle timeout and the stream guard read. A response body or a
//! WebSocket relay holds the connection [`Busy`] until it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::{Nanos, SharedClock};

/// A client connection's exchanges in progress — a request waiting for its answer, a response
/// body still streaming, a WebSocket relaying — and when the last of them ended: what the
/// server's idle timeout reads. A connection is idle only while nothing runs on it.
#[derive(Debug, Default)]
pub struct ConnectionActivity {
    running: AtomicUsize,
    last_nanos: AtomicU64,
    /// The stream guard waiting for the last exchange to end (a refused head is answered after
    /// the answers before it).
    idle: futures_util::task::AtomicWaker,
    /// The server wants the connection parked at its next idle read (`crate::wire::Guarded`).
    park: AtomicBool,
}

impl ConnectionActivity {
    /// A connection that last did something at `now` (its accept).
    pub fn new(now: Nanos) -> Self {
        Self {
            running: AtomicUsize::new(0),
            last_nanos: AtomicU64::new(now),
            idle: futures_util::task::AtomicWaker::new(),
            park: AtomicBool::new(false),
        }
    }

    /// Asks the stream guard to park the connection at its next idle read; `false` withdraws.
    pub fn request_park(&self, park: bool) {
        self.park.store(park, Ordering::Release);
    }

    /// How long the connection has had nothing running, at `now`; 0 while something runs.
    pub fn idle_for(&self, now: Nanos) -> u64 {
        if self.running.load(Ordering::Acquire) > 0 {
            return 0;
        }
        now.saturating_sub(self.last_nanos.load(Ordering::Acquire))
    }
}

/// One exchange running on a connection, until dropped.
pub struct Busy {
    activity: Arc<ConnectionActivity>,
    clock: SharedClock,
    /// When the exchange ended, when whoever ends it has just read the clock.
    ended_at: Option<Nanos>,
}

impl Busy {
    /// Ends the exchange at `now`, a reading just taken: the clock is not read again.
    pub fn end_at(mut self, now: Nanos) {
        self.ended_at = Some(now);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ended = self.ended_at.unwrap_or_else(|| self.clock.now());
        // The end time first: a check between the two sees "running", never a stale "idle since".
        self.activity.last_nanos.fetch_max(ended, Ordering::AcqRel);
        if self.activity.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity.idle.wake();
        }
    }
}

impl crate::wire::Exchanges for ConnectionActivity {
    fn running(&self) -> bool {
        self.running.load(Ordering::Acquire) > 0
    }

    fn wake_when_idle(&self, waker: &std::task::Waker) {
        self.idle.register(waker);
    }

    fn park_requested(&self) -> bool {
        self.park.load(Ordering::Acquire)
    }
}

/// What each request on a connection is handed (in its extensions) so that whatever outlives
/// its response head — the response body, a WebSocket relay — keeps the connection busy and
/// respects the stream duration limit.
#[derive(Clone)]
pub struct StreamTracker {
    activity: Arc<ConnectionActivity>,
    clock: SharedClock,
    max_duration: Option<Duration>,
}

impl StreamTracker {
    pub fn new(
        activity: Arc<ConnectionActivity>,
        clock: SharedClock,
        max_duration: Option<Duration>,
    ) -> Self {
        Self {
            activity,
            clock,
            max_duration,
        }
    }

    /// Counts one more exchange running on the connection until the guard is dropped.
    pub fn begin(&self) -> Busy {
        self.activity.running.fetch_add(1, Ordering::AcqRel);
        Busy {
            activity: self.activity.clone(),
            clock: self.clock.clone(),
            ended_at: None,
        }
    }

    /// `limits.max_stream_duration` of the connection's config.
    pub fn max_duration(&self) -> Option<Duration> {
        self.max_duration
    }
}
