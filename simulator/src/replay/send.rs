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
use gateway::clock::{Clock, ManualClock, SharedClock, SystemClock};
use gateway::record::RequestRecord;
use gateway::record::recording::format::{REDACTED, RecordedResponse};
use http::Request;
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::model::{Exchange, ExchangeOutcome};
use super::schedule::Planned;
use crate::fake::loadgen::{ErrorKind, classify_hyper, classify_io};
use crate::scenario::interrupt::Interrupt;

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

impl Shared {
    fn elapsed_ns(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.start)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    fn idle(&self) -> Option<Connection> {
        let mut pool = self.pool.lock();
        while let Some(connection) = pool.pop() {
            if connection.is_ready() {
                return Some(connection);
            }
            self.pooled_open.fetch_sub(1, Ordering::AcqRel);
        }
        None
    }

    /// An idle pooled connection, a new one while fewer than [`MAX_POOLED_CONNECTIONS`] are
    /// open, or else the next one returned.
    async fn checkout(&self) -> Result<Connection, (ErrorKind, String)> {
        loop {
            if let Some(connection) = self.idle() {
                return Ok(connection);
            }
            let open = self.pooled_open.fetch_add(1, Ordering::AcqRel);
            if open < MAX_POOLED_CONNECTIONS {
                return self.connect().await.inspect_err(|_| {
                    self.pooled_open.fetch_sub(1, Ordering::AcqRel);
                });
            }
            self.pooled_open.fetch_sub(1, Ordering::AcqRel);
            let returned = self.returned.notified();
            if let Some(connection) = self.idle() {
                return Ok(connection);
            }
            returned.await;
        }
    }

    async fn connect(&self) -> Result<Connection, (ErrorKind, String)> {
        let connecting = async {
            let stream = tokio::net::TcpStream::connect(self.options.address.as_str())
                .await
                .map_err(|e| {
                    (
                        classify_io(&e),
                        format!("connect {}: {e}", self.options.address),
                    )
                })?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(classify_hyper)?;
            tokio::spawn(connection);
            Ok(sender)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
            Ok(result) => result,
            Err(_) => Err((
                ErrorKind::Timeout,
                format!(
                    "no connection to {} within {REQUEST_TIMEOUT:?}",
                    self.options.address
                ),
            )),
        }
    }

    /// The request to send for a job: the hook's head, the recorded method, version and body,
    /// the job's request id.
    fn request(&self, job: &Job) -> Result<Request<Full<Bytes>>, String> {
        let scheduled_unix = (self.start_unix_nanos + job.planned.due_ns) / 1_000_000_000;
        self.request_at(job, scheduled_unix)
    }

    /// [`Shared::request`] with its credentials minted for `now_unix` (Unix seconds).
    fn request_at(&self, job: &Job, now_unix: u64) -> Result<Request<Full<Bytes>>, String> {
        let exchange = &self.exchanges[job.planned.index];
        let head = (self.options.prepare)(exchange, now_unix)?;
        let version = match exchange.version.as_str() {
            "HTTP/1.0" => http::Version::HTTP_10,
            // HTTP/2 recordings are replayed over HTTP/1.1: the same request, one protocol.
            _ => http::Version::HTTP_11,
        };
        let mut builder = Request::builder()
            .method(exchange.method.as_str())
            .uri(head.target.as_str())
            .version(version);
        let mut has_host = false;
        for (name, value) in &head.headers {
            match name.to_ascii_lowercase().as_str() {
                // Framing and the connection are this sender's own; the id is the job's.
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
                | "upgrade" | "proxy-connection" | "te" | "trailer" | "x-request-id" => continue,
                "host" => has_host = true,
                _ => {}
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !has_host {
            builder = builder.header(http::header::HOST, self.options.authority.as_str());
        }
        builder
            .header("x-request-id", job.wire.as_str())
            .body(Full::new(self.bodies[job.planned.index].clone()))
            .map_err(|e| {
                format!(
                    "{} {}: not a request hyper can send: {e}",
                    exchange.method, head.target
                )
            })
    }

    /// Virtual time's send: one request on `connection` (opened, or opened again when the
    /// gateway closed it), its answer awaited; the connection kept for the next when it can take
    /// one.
    async fn exchange_alone(
        &self,
        job: &Job,
        now_unix: u64,
        connection: &mut Option<Connection>,
    ) -> ExchangeOutcome {
        let request = match self.request_at(job, now_unix) {
            Ok(r) => r,
            Err(e) => return self.failed(job, None, "unsendable", e),
        };
        let kept = connection.take().filter(|c| !c.is_closed());
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(kept) => kept,
            None => match self.connect().await {
                Ok(fresh) => fresh,
                Err((kind, message)) => return self.failed(job, None, kind.name(), message),
            },
        };
        if let Err(e) = sender.ready().await {
            // A kept connection the gateway closed meanwhile: once more on a fresh one.
            let fresh = if reused {
                match self.connect().await {
                    Ok(mut fresh) => fresh.ready().await.map(|()| fresh),
                    Err((kind, message)) => return self.failed(job, None, kind.name(), message),
                }
            } else {
                Err(e)
            };
            match fresh {
                Ok(fresh) => sender = fresh,
                Err(e) => {
                    let (kind, message) = classify_hyper(e);
                    return self.failed(job, None, kind.name(), message);
                }
            }
        }
        self.options.progress.sent.fetch_add(1, Ordering::Relaxed);
        let answer = sender.send_request(request);
        let outcome = self.finish(job, job.planned.due_ns, answer).await;
        if outcome.status.is_some() {
            *connection = Some(sender);
        }
        outcome
    }

    /// Waits for the answer and its body; the outcome with its latency from the scheduled time.
    async fn finish(
        &self,
        job: &Job,
        sent_ns: u64,
        answer: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
    ) -> ExchangeOutcome {
        let keep = self.options.keep_responses;
        let exchange = async {
            let response = answer.await.map_err(classify_hyper)?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(classify_hyper)?.to_bytes();
            let kept = keep.then(|| RecordedResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body_sha256: Some(
                    Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                ),
                body_len: bytes.len() as u64,
            });
            Ok::<_, (ErrorKind, String)>((parts.status.as_u16(), kept))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, response))) => {
                self.options
                    .progress
                    .answered
                    .fetch_add(1, Ordering::Relaxed);
                let mut outcome = self.outcome(job, sent_ns);
                outcome.status = Some(status);
                outcome.response = response;
                outcome
            }
            Ok(Err((kind, message))) => self.failed(job, Some(sent_ns), kind.name(), message),
            Err(_) => self.failed(
                job,
                Some(sent_ns),
                "timeout",
                format!("no answer within {REQUEST_TIMEOUT:?}"),
            ),
        }
    }

    /// An outcome without an answer; `kind` leads the error text (`refused: connect …`), which
    /// is what the report counts errors by.
    fn failed(
        &self,
        job: &Job,
        sent_ns: Option<u64>,
        kind_name: &str,
        message: String,
    ) -> ExchangeOutcome {
        self.options.progress.failed.fetch_add(1, Ordering::Relaxed);
        let mut outcome = self.outcome(job, sent_ns.unwrap_or_else(|| self.elapsed_ns()));
        outcome.error = Some(format!("{kind_name}: {message}"));
        outcome
    }

    fn outcome(&self, job: &Job, sent_ns: u64) -> ExchangeOutcome {
        let exchange = &self.exchanges[job.planned.index];
        let now = self.elapsed_ns();
        ExchangeOutcome {
            id: job.planned.id.clone(),
            position: exchange.position,
            method: exchange.method.clone(),
            path: exchange
                .target
                .split_once('?')
                .map_or(exchange.target.as_str(), |(path, _)| path)
                .to_string(),
            status: None,
            error: None,
            decision: None,
            response: None,
            scheduled_ns: job.planned.due_ns,
            sent_ns,
            latency_ns: now.saturating_sub(job.planned.due_ns),
        }
    }

    /// A send handed to its lane that had no answer when the replay stopped.
    fn unanswered(&self, planned: &Planned) -> ExchangeOutcome {
        let job = Job {
            slot: 0,
            planned: planned.clone(),
            wire: String::new(),
            request: None,
        };
        let mut outcome = self.outcome(&job, planned.due_ns);
        outcome.error = Some("interrupted: no answer before the replay stopped".into());
        outcome
    }
}
