//! The `--virtual-time` sender: no pacer and no wall clock. One request at a time in plan
//! order, the in-process gateway's [`ManualClock`] first set to the request's due time, then
//! the answer and the gateway's record waited for before the clock moves again — so every
//! window edge falls the same way on every run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::clock::{Clock, ManualClock, SharedClock};
use gateway::record::RequestRecord;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Connection, Job, SendOptions, SendResult, Shared, bodies_of, wire_ids_of};
use crate::replay::model::Exchange;
use crate::replay::schedule::Planned;

/// The clock of a `--virtual-time` run: the [`ManualClock`] the in-process gateway runs on,
/// reading 0 until the first send, and the Unix time of the plan's time zero.
#[derive(Debug, Clone)]
pub struct VirtualTime {
    clock: Arc<ManualClock>,
    origin_unix_nanos: u64,
}

impl VirtualTime {
    /// Plan time zero at this Unix time: the first planned exchange's recorded time, so a
    /// replay as recorded runs each request at the very instant it was recorded.
    pub fn starting_at(origin_unix_nanos: u64) -> VirtualTime {
        VirtualTime {
            clock: Arc::new(ManualClock::new(origin_unix_nanos / 1_000_000)),
            origin_unix_nanos,
        }
    }

    /// The clock to start the gateway on. It must start on it before the first [`set`]: the
    /// gateway's store reads the clock's Unix origin and monotonic zero once, at start.
    ///
    /// [`set`]: VirtualTime::set
    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    /// The plan's time zero, Unix nanoseconds.
    pub fn origin_unix_nanos(&self) -> u64 {
        self.origin_unix_nanos
    }

    /// Moves the clock to `due_ns` after time zero. A `ManualClock`'s Unix origin is whole
    /// milliseconds, so the origin's sub-millisecond part leads every setting: the gateway's
    /// store ticks (its Unix origin plus its monotonic reading) then read exactly time zero +
    /// `due_ns`, which is what `predict::PredictOptions::origin_unix_micros` assumes.
    pub fn set(&self, due_ns: u64) {
        self.clock.set(self.origin_unix_nanos % 1_000_000 + due_ns);
    }

    /// The clock's Unix time in whole seconds: what credentials are minted for.
    pub fn now_unix(&self) -> u64 {
        self.clock.unix_millis() / 1_000
    }
}

/// Sends `plan` over `exchanges` in virtual time: one request at a time in plan order, the
/// clock set to its due time first, its credentials minted for that time, then its answer and
/// (when `records` is given) the gateway's record with its id waited for, up to `record_wait`,
/// before the next. Outcomes have `scheduled_ns = sent_ns = due_ns`; their latency is measured
/// in real time from the send (connection set-up included) to the response's end — the
/// gateway's service time for one request on its own, not a figure under load. Stops between
/// two sends when the interrupt is raised.
pub async fn send_virtual(
    exchanges: Arc<Vec<Exchange>>,
    plan: Vec<Planned>,
    time: &VirtualTime,
    mut records: Option<broadcast::Receiver<Arc<RequestRecord>>>,
    record_wait: Duration,
    options: SendOptions,
) -> SendResult {
    let total = plan.len();
    options
        .progress
        .planned
        .fetch_add(total as u64, Ordering::Relaxed);
    let wire_ids = wire_ids_of(&plan);
    let shared = Shared {
        bodies: bodies_of(&exchanges),
        exchanges,
        options: options.clone(),
        start: Instant::now(),
        start_unix_nanos: time.origin_unix_nanos,
        pool: parking_lot::Mutex::new(Vec::new()),
        pooled_open: std::sync::atomic::AtomicUsize::new(0),
        returned: tokio::sync::Notify::new(),
    };
    let mut connection: Option<Connection> = None;
    let mut outcomes = Vec::with_capacity(total);
    for (slot, (planned, wire)) in plan.into_iter().zip(&wire_ids).enumerate() {
        if options.interrupt.is_raised() {
            break;
        }
        time.set(planned.due_ns);
        let job = Job {
            slot,
            planned,
            wire: wire.clone(),
            request: None,
        };
        let started = Instant::now();
        let mut outcome = shared
            .exchange_alone(&job, time.now_unix(), &mut connection)
            .await;
        let latency = started.elapsed();
        if outcome.status.is_some()
            && let Some(records) = records.as_mut()
        {
            wait_for_record(records, &job.wire, record_wait).await;
        }
        outcome.scheduled_ns = job.planned.due_ns;
        outcome.sent_ns = job.planned.due_ns;
        outcome.latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        outcomes.push(outcome);
    }
    let mut wire_ids = wire_ids;
    wire_ids.truncate(outcomes.len());
    SendResult {
        interrupted: outcomes.len() < total,
        outcomes,
        wire_ids,
        started_unix_nanos: time.origin_unix_nanos,
    }
}

/// Waits for the record with request id `wire`, up to `within`; false when it did not come
/// (records emitted meanwhile for other ids are passed over).
async fn wait_for_record(
    records: &mut broadcast::Receiver<Arc<RequestRecord>>,
    wire: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, records.recv()).await {
            Ok(Ok(record)) if record.request_id == wire => return true,
            Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return false,
        }
    }
}
