//! Natural batching for the single-Redis store: concurrent requests' decisions share one script
//! call (the `batch` form of `ratelimit.lua`), which decides each request's checks
//! all-or-nothing on its own, in arrival order — the outcome of one call per request, for the
//! price of one.
//!
//! One driver task per store owns the queue. A request queues its checks and waits for its
//! answer; the driver sends at once whatever is queued (at most `max_batch` requests) as long as
//! fewer than [`MAX_IN_FLIGHT`] calls are out, and otherwise waits for one to come back. So an idle
//! store adds no wait (a lone request goes out alone, at once) and a busy one sends ever larger
//! calls: while a call is in flight, the requests that arrive meanwhile queue for the next.
//!
//! Why a task and not "whoever finds no call in flight sends the queue": a request's future can
//! be dropped at any point (its client went away, its own timeout fired), and a request that
//! carried others' checks would take their answers with it. The driver outlives every request,
//! so a dropped request only drops its own answer; the driver skips requests already given up
//! before sending them, so a timed-out request is not charged later. The hop it adds is per
//! request, but redis-rs's own hop to its connection task becomes one per batch.
//!
//! A call that fails (Redis gone, the script refused, no answer within the timeout) fails every
//! request in it with the same error, which each request then treats exactly as a failed call of
//! its own (the breaker, its policies' `on_store_error`). Script calls are not transactions: if
//! Redis fails mid-script, requests decided before the failure stay charged — as a request whose
//! own call timed out after Redis ran it.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::redis::call::{Conn, SCRIPT, StoreError, TTL_MARGIN_MS, decisions};
use super::redis::log_key;
use crate::ratelimit::Decision;
use crate::ratelimit::metrics::BatchSizes;

/// Calls out at once. Two keep Redis busy while one answer travels back and the next call is
/// built; more would only split the queue into smaller calls.
pub const MAX_IN_FLIGHT: usize = 2;

/// Requests per call unless the config says otherwise.
pub const DEFAULT_MAX_BATCH: usize = 64;

/// Most requests per call allowed in the config: bounds one script's run (Redis runs nothing else
/// meanwhile) and the reply's size.
pub const MAX_BATCH_LIMIT: usize = 1_024;

/// One check's parameters as the script reads them.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub code: &'static str,
    pub limit: u64,
    pub period: u64,
    pub burst: u64,
    pub cost: u64,
}

/// One request waiting for its decisions.
struct Pending {
    now: u64,
    /// Each check's state key (its log's key is this plus `:log`).
    keys: Vec<String>,
    params: Vec<Params>,
    reply: oneshot::Sender<Result<Vec<Decision>, StoreError>>,
}

/// The store's handle on its driver; dropping it stops the driver once the calls out are back.
pub struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Starts the driver. Must run inside a Tokio runtime. The queue needs no bound of its own:
    /// each request in it is one the gateway holds, and waits at most the store's timeout.
    pub(super) fn spawn(
        conn: Conn,
        hash: String,
        max_batch: usize,
        timeout: Duration,
        sizes: BatchSizes,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            conn,
            hash,
            max_batch: max_batch.clamp(1, MAX_BATCH_LIMIT),
            timeout,
            sizes,
        };
        tokio::spawn(driver.run(rx));
        Self { queue }
    }

    /// Queues one request's checks (decided at `now`, all-or-nothing) and waits for their
    /// decisions, in check order.
    pub async fn decide(
        &self,
        now: u64,
        keys: Vec<String>,
        params: Vec<Params>,
    ) -> Result<Vec<Decision>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Connection("the Redis batch driver stopped".into());
        self.queue
            .send(Pending {
                now,
                keys,
                params,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

struct Driver {
    conn: Conn,
    hash: String,
    max_batch: usize,
    timeout: Duration,
    sizes: BatchSizes,
}

impl Driver {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut in_flight = FuturesUnordered::new();
        let mut taken = Vec::with_capacity(self.max_batch);
        loop {
            tokio::select! {
                // Answers first: a slot freed is a call the queue can go out in.
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                n = rx.recv_many(&mut taken, self.max_batch), if in_flight.len() < MAX_IN_FLIGHT => {
                    if n == 0 {
                        break; // the store is gone and the queue is empty
                    }
                    let batch: Vec<Pending> =
                        taken.drain(..).filter(|p| !p.reply.is_closed()).collect();
                    if !batch.is_empty() {
                        in_flight.push(self.call(batch));
                    }
                }
            }
        }
        while in_flight.next().await.is_some() {}
    }

    /// One script call for `batch`; every request gets its own decisions or the call's error.
    async fn call(&self, batch: Vec<Pending>) {
        self.sizes.0.observe(batch.len() as f64);
        let checks: usize = batch.iter().map(|p| p.keys.len()).sum();
        let fill = |cmd: &mut redis::Cmd| {
            cmd.arg(checks * 2);
            for p in &batch {
                for key in &p.keys {
                    cmd.arg(key).arg(log_key(key));
                }
            }
            cmd.arg("batch").arg(TTL_MARGIN_MS);
            for p in &batch {
                cmd.arg(p.now).arg(p.params.len());
                for c in &p.params {
                    cmd.arg(c.code)
                        .arg(c.limit)
                        .arg(c.period)
                        .arg(c.burst)
                        .arg(c.cost);
                }
            }
        };
        let answer = match tokio::time::timeout(
            self.timeout,
            self.conn.eval(&self.hash, SCRIPT, fill),
        )
        .await
        {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(values) => values.and_then(|v| decisions(&v, checks)),
        };
        match answer {
            Ok(all) => {
                let mut all = all.into_iter();
                for p in batch {
                    let mine: Vec<Decision> = all.by_ref().take(p.keys.len()).collect();
                    let _ = p.reply.send(Ok(mine));
                }
            }
            Err(error) => {
                for p in batch {
                    let _ = p.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
