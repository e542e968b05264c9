//! The open-model sender: exchanges leave at their scheduled time whatever the answers do,
//! per-client order kept, connections reused as recorded; latency counts from the scheduled time.
//!
//! One pacer thread walks the plan in due order, builds each request (the identity hook
//! included) before it is due, and hands it to its lane at its due time (an OS thread sleeping
//! to each deadline is far finer than tokio's millisecond timer wheel, and costs no task per
//! request). A lane keeps order:
//! - requests that shared a recorded connection go on one real HTTP/1.1 keep-alive connection
//!   of their own, one after another: when the previous answer is still outstanding at due
//!   time the request waits for it, as it did when recorded (that wait counts in its latency);
//! - every other request goes through its client's lane, which starts the sends of that client
//!   in order on idle connections from a shared pool and never waits for an answer.
//!
//! Latency is measured from the scheduled time to the response's end (coordinated omission
//! corrected); `sent − scheduled` is the schedule gap, the sender's own lateness.
//!
//! [`send_virtual`] is the other sender, for `--virtual-time`: no pacer and no wall clock. It
//! sends one request at a time in plan order, first setting the in-process gateway's
//! [`ManualClock`] to the request's due time, and waits for the answer and the gateway's record
//! before moving the clock again — so every window edge falls the same way on every run.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway::clock::{Clock, SystemClock};
use gateway::record::recording::format::REDACTED;
use http::Request;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fake::loadgen::classify_hyper;
use crate::replay::model::{Exchange, ExchangeOutcome};
use crate::replay::schedule::Planned;
use crate::scenario::interrupt::Interrupt;

mod exchange;
mod virtual_time;

pub use virtual_time::{VirtualTime, send_virtual};

/// What is sent for an exchange in place of its recorded head: the request-target and the header
/// fields (credentials minted afresh by the identity hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// The hook every request passes through before it leaves: the exchange and the scheduled send
/// time (Unix seconds) in, the head to send out, or why it cannot be sent (counted as an
/// `unsendable` error). `identity::Minter::prepare` plugs in here.
pub type Prepare = Arc<dyn Fn(&Exchange, u64) -> Result<Head, String> + Send + Sync>;

/// The hook without an identity minter: the recorded head, with redacted values dropped (a
/// `<redacted>` credential would only be refused for being malformed).
pub fn pass_through() -> Prepare {
    Arc::new(|exchange: &Exchange, _now_unix: u64| {
        Ok(Head {
            target: exchange.target.clone(),
            headers: exchange
                .headers
                .iter()
                .filter(|(_, value)| value != REDACTED)
                .cloned()
                .collect(),
        })
    })
}

/// The most connections the pool keeps open for requests without a recorded connection: past
/// it a send waits for a connection to come free (the wait counts in its schedule gap and its
/// latency) instead of opening connections without bound, whose setup would cost more than the
/// requests they carry.
pub const MAX_POOLED_CONNECTIONS: usize = 256;

/// A request that got nothing back within this long is a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters a progress bar reads while the replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub planned: AtomicU64,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
}

/// Where and how to send.
#[derive(Clone)]
pub struct SendOptions {
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` sent when the exchange has none.
    pub authority: String,
    pub prepare: Prepare,
    /// Keep each response's status, headers and body hash (for response diffs).
    pub keep_responses: bool,
    pub interrupt: Interrupt,
    /// After an interrupt, how long the answers already under way are waited for.
    pub grace: Duration,
    pub progress: Arc<Progress>,
}

impl SendOptions {
    pub fn new(address: String, authority: String) -> SendOptions {
        SendOptions {
            address,
            authority,
            prepare: pass_through(),
            keep_responses: false,
            interrupt: Interrupt::default(),
            grace: Duration::from_secs(2),
            progress: Arc::default(),
        }
    }
}

/// What one pass of the sender did.
#[derive(Debug, Clone, Default)]
pub struct SendResult {
    /// One per planned send that left (all of them unless interrupted), in plan order; no
    /// decision yet (the target's records supply it).
    pub outcomes: Vec<ExchangeOutcome>,
    /// The `X-Request-Id` each outcome was sent with, index for index.
    pub wire_ids: Vec<String>,
    pub interrupted: bool,
    /// When the plan's time zero was, Unix nanoseconds.
    pub started_unix_nanos: u64,
}

/// The `X-Request-Id` for an outcome id: the gateway keeps a client's id only when it is 1–128
/// characters of `[A-Za-z0-9._:-]`, so anything else (`~` of a loop pass) becomes `.`, and an
/// over-long id is shortened with a hash of the whole.
pub fn wire_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '.'
            }
        })
        .collect();
    if (1..=128).contains(&clean.len()) {
        return clean;
    }
    let digest = Sha256::digest(id.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let keep: String = clean.chars().take(100).collect();
    format!("{keep}.{hash}")
}

/// Sends `plan` over `exchanges`, the plan's time zero at `start_at_unix_nanos` (`--start-at`)
/// or, without it, as soon as the sends are set up (so setting up 100,000 of them never makes
/// the first ones late). Returns once every send that left has its
/// answer or error, or the grace after an interrupt has passed.
pub async fn send(
    exchanges: Arc<Vec<Exchange>>,
    plan: Vec<Planned>,
    start_at_unix_nanos: Option<u64>,
    options: SendOptions,
) -> SendResult {
    let total = plan.len();
    options
        .progress
        .planned
        .fetch_add(total as u64, Ordering::Relaxed);
    let mut wire_ids = wire_ids_of(&plan);
    let bodies = bodies_of(&exchanges);
    // One call of the hook before time zero: the first signature sets up the crypto library
    // (tens of milliseconds), which would otherwise make the first sends late.
    if let Some(first) = plan.first() {
        let now_unix = SystemClock::new().unix_millis() / 1_000;
        let _ = (options.prepare)(&exchanges[first.index], now_unix);
    }
    // Time zero is read only now, once every send is set up.
    let now_unix_nanos = SystemClock::new().unix_millis() * 1_000_000;
    let start_unix_nanos = start_at_unix_nanos.unwrap_or(now_unix_nanos);
    let start =
        Instant::now() + Duration::from_nanos(start_unix_nanos.saturating_sub(now_unix_nanos));
    let shared = Arc::new(Shared {
        exchanges,
        bodies,
        options: options.clone(),
        start,
        start_unix_nanos,
        pool: parking_lot::Mutex::new(Vec::new()),
        pooled_open: std::sync::atomic::AtomicUsize::new(0),
        returned: tokio::sync::Notify::new(),
    });
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<(usize, ExchangeOutcome)>();
    let meta = plan.clone();
    let jobs: Vec<Job> = plan
        .into_iter()
        .zip(wire_ids.iter().cloned())
        .enumerate()
        .map(|(slot, (planned, wire))| Job {
            slot,
            planned,
            wire,
            request: None,
        })
        .collect();
    let dispatched = Arc::new(AtomicU64::new(0));
    let pacer = {
        let shared = shared.clone();
        let dispatched = dispatched.clone();
        let runtime = tokio::runtime::Handle::current();
        let results = results_tx.clone();
        std::thread::Builder::new()
            .name("replay-pacer".into())
            .spawn(move || pace(jobs, &shared, &runtime, &results, &dispatched))
    };
    drop(results_tx);
    let mut interrupted = false;
    let mut slots: Vec<Option<ExchangeOutcome>> = vec![None; total];
    match pacer {
        Err(e) => {
            tracing::error!(error = %e, "cannot start the replay's pacer thread");
        }
        Ok(pacer) => {
            let mut grace_deadline: Option<Instant> = None;
            loop {
                let deadline = grace_deadline;
                tokio::select! {
                    received = results_rx.recv() => match received {
                        Some((slot, outcome)) => slots[slot] = Some(outcome),
                        None => break,
                    },
                    () = options.interrupt.raised(), if grace_deadline.is_none() => {
                        interrupted = true;
                        grace_deadline = Some(Instant::now() + options.grace);
                    }
                    () = sleep_until_opt(deadline) => break,
                }
            }
            // The pacer has stopped dispatching by now (it checks the interrupt between sends).
            let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
        }
    }
    let left = dispatched.load(Ordering::Acquire) as usize;
    let mut outcomes = Vec::with_capacity(left);
    for (slot, outcome) in slots.into_iter().enumerate().take(left) {
        outcomes.push(outcome.unwrap_or_else(|| {
            interrupted = true;
            shared.unanswered(&meta[slot])
        }));
    }
    wire_ids.truncate(outcomes.len());
    SendResult {
        outcomes,
        wire_ids,
        interrupted: interrupted || left < total,
        started_unix_nanos: start_unix_nanos,
    }
}

/// The `X-Request-Id` of every planned send, made unique (a repeated id gets `:N`).
fn wire_ids_of(plan: &[Planned]) -> Vec<String> {
    let mut wire_ids = Vec::with_capacity(plan.len());
    let mut taken: HashMap<String, usize> = HashMap::with_capacity(plan.len());
    for planned in plan {
        let mut id = wire_id(&planned.id);
        if let Some(n) = taken.get_mut(&id) {
            *n += 1;
            id = format!("{id}:{n}");
        }
        taken.entry(id.clone()).or_insert(0);
        wire_ids.push(id);
    }
    wire_ids
}

fn bodies_of(exchanges: &[Exchange]) -> Arc<Vec<Bytes>> {
    Arc::new(
        exchanges
            .iter()
            .map(|e| Bytes::from(e.body.clone()))
            .collect(),
    )
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Shared {
    exchanges: Arc<Vec<Exchange>>,
    bodies: Arc<Vec<Bytes>>,
    options: SendOptions,
    start: Instant,
    start_unix_nanos: u64,
    /// Idle keep-alive connections for requests without a recorded connection.
    pool: parking_lot::Mutex<Vec<Connection>>,
    /// Pooled connections open, idle or busy.
    pooled_open: std::sync::atomic::AtomicUsize,
    /// Signalled when a pooled connection is returned or closed.
    returned: tokio::sync::Notify,
}

struct Job {
    slot: usize,
    planned: Planned,
    wire: String,
    /// Built by the pacer before the job is due, so the identity hook's minting and the
    /// request's assembly never make it late; `Err` when it cannot be built.
    request: Option<Result<Request<Full<Bytes>>, String>>,
}

impl Job {
    fn scheduled(&self, shared: &Shared) -> Instant {
        shared.start + Duration::from_nanos(self.planned.due_ns)
    }
}

#[derive(Hash, PartialEq, Eq)]
enum LaneKey {
    /// A recorded connection, per pass (a pass opens its own connections).
    Connection(u32, String),
    Client(String),
}

type Results = mpsc::UnboundedSender<(usize, ExchangeOutcome)>;

/// How far ahead of their due time the pacer builds requests.
const BUILD_AHEAD: Duration = Duration::from_millis(100);

/// The pacer builds ahead only while the next send is at least this far off.
const BUILD_MARGIN: Duration = Duration::from_micros(200);

/// The pacer: hands each job to its lane at its due time, in plan order, until the plan is done
/// or the interrupt is raised. Runs on its own thread.
fn pace(
    jobs: Vec<Job>,
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    results: &Results,
    dispatched: &AtomicU64,
) {
    let mut remaining: HashMap<LaneKey, usize> = HashMap::new();
    for job in &jobs {
        *remaining.entry(lane_key(shared, &job.planned)).or_default() += 1;
    }
    let mut lanes: HashMap<LaneKey, mpsc::UnboundedSender<Job>> = HashMap::new();
    let mut upcoming = jobs.into_iter().peekable();
    let mut built: VecDeque<Job> = VecDeque::new();
    loop {
        // Idle time before the next send builds the requests due soon, so a burst of minting
        // (a new identity's first token) is done before its sends are due, not while they are.
        let Some(front_due) = built.front().map(|j| j.scheduled(shared)) else {
            match upcoming.next() {
                Some(mut job) => {
                    job.request = Some(shared.request(&job));
                    built.push_back(job);
                    continue;
                }
                None => return,
            }
        };
        let now = Instant::now();
        if front_due > now + BUILD_MARGIN
            && upcoming
                .peek()
                .is_some_and(|next| next.scheduled(shared) <= now + BUILD_AHEAD)
            && let Some(mut job) = upcoming.next()
        {
            job.request = Some(shared.request(&job));
            built.push_back(job);
            continue;
        }
        let Some(job) = built.pop_front() else {
            return;
        };
        if !wait_until(job.scheduled(shared), &shared.options.interrupt) {
            return;
        }
        let key = lane_key(shared, &job.planned);
        let last = remaining.get_mut(&key).is_none_or(|n| {
            *n -= 1;
            *n == 0
        });
        let lane = match lanes.remove(&key) {
            Some(lane) => lane,
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let shared = shared.clone();
                let results = results.clone();
                match &key {
                    LaneKey::Connection(..) => {
                        runtime.spawn(connection_lane(rx, shared, results));
                    }
                    LaneKey::Client(_) => {
                        runtime.spawn(client_lane(rx, shared, results));
                    }
                }
                tx
            }
        };
        if lane.send(job).is_ok() {
            dispatched.fetch_add(1, Ordering::Release);
        }
        // A lane whose last job is handed over is dropped, so it ends (and closes its
        // connection) after that job instead of at the end of the run.
        if !last {
            lanes.insert(key, lane);
        }
    }
}

fn lane_key(shared: &Shared, planned: &Planned) -> LaneKey {
    let exchange = &shared.exchanges[planned.index];
    match &exchange.connection {
        Some(connection) => LaneKey::Connection(planned.pass, connection.clone()),
        None => LaneKey::Client(exchange.client.clone()),
    }
}

/// Sleeps the pacer thread until `due`, waking at least every 50 ms to look at the interrupt;
/// false when it was raised.
fn wait_until(due: Instant, interrupt: &Interrupt) -> bool {
    const LOOK_AT_INTERRUPT: Duration = Duration::from_millis(50);
    loop {
        if interrupt.is_raised() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(LOOK_AT_INTERRUPT));
    }
}

/// A recorded connection: one keep-alive connection, requests one after the other.
async fn connection_lane(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    results: Results,
) {
    let mut connection: Option<Connection> = None;
    while let Some(mut job) = jobs.recv().await {
        let built = job.request.take();
        let request = match built.unwrap_or_else(|| shared.request(&job)) {
            Ok(r) => r,
            Err(e) => {
                let _ = results.send((job.slot, shared.failed(&job, None, "unsendable", e)));
                continue;
            }
        };
        if connection.as_ref().is_none_or(Connection::is_closed) {
            connection = None;
        }
        let mut sender = match connection.take() {
            Some(s) => s,
            None => match shared.connect().await {
                Ok(s) => s,
                Err((kind, message)) => {
                    let _ =
                        results.send((job.slot, shared.failed(&job, None, kind.name(), message)));
                    continue;
                }
            },
        };
        // Waits for the previous answer on this connection: recorded reuse, as it happened.
        if let Err(e) = sender.ready().await {
            let (kind, message) = classify_hyper(e);
            let _ = results.send((job.slot, shared.failed(&job, None, kind.name(), message)));
            continue;
        }
        let sent = shared.elapsed_ns();
        shared.options.progress.sent.fetch_add(1, Ordering::Relaxed);
        let answer = sender.send_request(request);
        let outcome = shared.finish(&job, sent, answer).await;
        if outcome.status.is_some() {
            connection = Some(sender);
        }
        let _ = results.send((job.slot, outcome));
    }
}

/// A client without recorded connections: each send starts in order on an idle pooled
/// connection (or a new one); answers are awaited apart, so a slow answer never holds back the
/// client's next send.
async fn client_lane(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    results: Results,
) {
    while let Some(mut job) = jobs.recv().await {
        let built = job.request.take();
        let request = match built.unwrap_or_else(|| shared.request(&job)) {
            Ok(r) => r,
            Err(e) => {
                let _ = results.send((job.slot, shared.failed(&job, None, "unsendable", e)));
                continue;
            }
        };
        let mut sender = match shared.checkout().await {
            Ok(s) => s,
            Err((kind, message)) => {
                let _ = results.send((job.slot, shared.failed(&job, None, kind.name(), message)));
                continue;
            }
        };
        let sent = shared.elapsed_ns();
        shared.options.progress.sent.fetch_add(1, Ordering::Relaxed);
        let answer = sender.send_request(request);
        let shared = shared.clone();
        let results = results.clone();
        tokio::spawn(async move {
            let outcome = shared.finish(&job, sent, answer).await;
            let answered = outcome.status.is_some();
            let _ = results.send((job.slot, outcome));
            // Back to the pool once the connection can take the next request.
            if answered && sender.ready().await.is_ok() {
                shared.pool.lock().push(sender);
            } else {
                shared.pooled_open.fetch_sub(1, Ordering::AcqRel);
            }
            shared.returned.notify_one();
        });
    }
}
