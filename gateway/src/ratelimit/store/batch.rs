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
//! request; there is no second one, because the driver reads and writes its connection itself
//! ([`Link`], our own RESP: see `redis/resp.rs` for why not redis-rs here).
//!
//! The connection carries up to [`MAX_IN_FLIGHT`] calls at once and Redis answers them in order.
//! A reply that does not come by its call's deadline fails that call and every later one, and
//! the connection goes with them: a late reply would otherwise be read as the next call's. The
//! next call opens a new connection (authenticated, its database selected, as the URL says).
//!
//! A call that fails (Redis gone, the script refused, no answer within the timeout) fails every
//! request in it with the same error, which each request then treats exactly as a failed call of
//! its own (the breaker, its policies' `on_store_error`). Script calls are not transactions: if
//! Redis fails mid-script, requests decided before the failure stay charged — as a request whose
//! own call timed out after Redis ran it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::redis::call::{SCRIPT, StoreError, TTL_MARGIN_MS, decisions, refusal};
use super::redis::keys::log_key;
use super::redis::link::{Endpoint, Link};
use super::redis::resp::{Command, Reply};
use crate::clock::timer_deadline;
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
        endpoint: Endpoint,
        hash: String,
        max_batch: usize,
        timeout: Duration,
        sizes: BatchSizes,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            endpoint,
            hash,
            max_batch: max_batch.clamp(1, MAX_BATCH_LIMIT),
            timeout,
            sizes,
            link: None,
            in_flight: VecDeque::with_capacity(MAX_IN_FLIGHT),
            command: Command::default(),
            out: Vec::new(),
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

/// A script call out on the connection, waiting for its reply (replies come back in order).
struct Call {
    batch: Vec<Pending>,
    checks: usize,
    /// When the call is given up, the connection with it.
    deadline: Instant,
    /// Sent as `EVAL` with the script's text, after Redis answered `NOSCRIPT` to `EVALSHA`.
    as_eval: bool,
}

struct Driver {
    endpoint: Endpoint,
    hash: String,
    max_batch: usize,
    timeout: Duration,
    sizes: BatchSizes,
    /// `None` until the first call, and after a failure until the next: with no connection,
    /// no call is out.
    link: Option<Link>,
    in_flight: VecDeque<Call>,
    /// Reused for every call: the arguments, then the framed command.
    command: Command,
    out: Vec<u8>,
}

/// The next reply on `link`; never ready without one (no call is out then).
async fn next_reply(link: &mut Option<Link>) -> Result<Reply, StoreError> {
    match link {
        Some(link) => link.reply().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut taken = Vec::with_capacity(self.max_batch);
        let mut open = true;
        while open || !self.in_flight.is_empty() {
            let deadline = self.in_flight.front().map(|c| c.deadline);
            tokio::select! {
                // Answers first: a slot freed is a call the queue can go out in.
                biased;
                reply = next_reply(&mut self.link), if !self.in_flight.is_empty() => {
                    self.answer(reply).await;
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(|| timer_deadline(Duration::ZERO))), if deadline.is_some() => {
                    // Replies come in order: the late one would come before any other, so the
                    // connection goes with it.
                    self.fail_all(&StoreError::Timeout(self.timeout));
                }
                n = rx.recv_many(&mut taken, self.max_batch), if open && self.in_flight.len() < MAX_IN_FLIGHT => {
                    if n == 0 {
                        open = false; // the store is gone and the queue is empty
                        continue;
                    }
                    let batch: Vec<Pending> =
                        taken.drain(..).filter(|p| !p.reply.is_closed()).collect();
                    if !batch.is_empty() {
                        self.sizes.0.observe(batch.len() as f64);
                        let checks = batch.iter().map(|p| p.keys.len()).sum();
                        let call = Call { batch, checks, deadline: timer_deadline(self.timeout), as_eval: false };
                        self.send(call).await;
                    }
                }
            }
        }
    }

    /// Sends `call` on the connection, opening one first if there is none; a call that cannot
    /// be sent fails, with every call out when the connection broke.
    async fn send(&mut self, call: Call) {
        if self.link.is_none() {
            match Link::connect(&self.endpoint, self.timeout).await {
                Ok(link) => self.link = Some(link),
                Err(error) => return fail(call, &error),
            }
        }
        self.frame(&call);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let sent = tokio::time::timeout_at(call.deadline, link.send(&self.out)).await;
        match sent {
            Ok(Ok(())) => self.in_flight.push_back(call),
            Ok(Err(error)) => {
                fail(call, &error);
                self.fail_all(&error);
            }
            Err(_) => {
                fail(call, &StoreError::Timeout(self.timeout));
                self.fail_all(&StoreError::Timeout(self.timeout));
            }
        }
    }

    /// The script call for `call`'s requests, framed into `self.out`.
    fn frame(&mut self, call: &Call) {
        let cmd = &mut self.command;
        cmd.clear();
        if call.as_eval {
            cmd.arg(b"EVAL").arg(SCRIPT.as_bytes());
        } else {
            cmd.arg(b"EVALSHA").arg(self.hash.as_bytes());
        }
        cmd.arg_u64(call.checks as u64 * 2);
        for p in &call.batch {
            for key in &p.keys {
                cmd.arg(key.as_bytes()).arg(log_key(key).as_bytes());
            }
        }
        cmd.arg(b"batch").arg_u64(TTL_MARGIN_MS);
        for p in &call.batch {
            cmd.arg_u64(p.now).arg_u64(p.params.len() as u64);
            for c in &p.params {
                cmd.arg(c.code.as_bytes())
                    .arg_u64(c.limit)
                    .arg_u64(c.period)
                    .arg_u64(c.burst)
                    .arg_u64(c.cost);
            }
        }
        self.out.clear();
        cmd.write_to(&mut self.out);
    }

    /// The oldest call's reply: its requests' decisions, or its error for each of them.
    async fn answer(&mut self, reply: Result<Reply, StoreError>) {
        let Some(call) = self.in_flight.pop_front() else {
            return;
        };
        match reply {
            // The connection is broken or out of step: every call out goes with it.
            Err(error) => {
                fail(call, &error);
                self.fail_all(&error);
            }
            // Redis lost the script (restarted, flushed, a replica promoted): the same call
            // with the script's text, which loads it.
            Ok(Reply::Error(e)) if e.starts_with("NOSCRIPT") && !call.as_eval => {
                self.send(Call {
                    as_eval: true,
                    ..call
                })
                .await;
            }
            Ok(Reply::Error(e)) => fail(call, &refusal(e)),
            Ok(reply) => match reply.integers() {
                Some(values) => match decisions(&values, call.checks) {
                    Ok(all) => {
                        let mut all = all.into_iter();
                        for p in call.batch {
                            let mine: Vec<Decision> = all.by_ref().take(p.keys.len()).collect();
                            let _ = p.reply.send(Ok(mine));
                        }
                    }
                    Err(error) => fail(call, &error),
                },
                None => fail(
                    call,
                    &StoreError::Script("the script answered something other than integers".into()),
                ),
            },
        }
    }

    /// Fails every call out and drops the connection.
    fn fail_all(&mut self, error: &StoreError) {
        self.link = None;
        for call in self.in_flight.drain(..) {
            fail(call, error);
        }
    }
}

fn fail(call: Call, error: &StoreError) {
    for p in call.batch {
        let _ = p.reply.send(Err(error.clone()));
    }
}
