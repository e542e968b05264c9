//! One replay from start to result: plan, start the target, send, wait (bounded) for the
//! target's records, and give one [`ExchangeOutcome`] per send. Ctrl-C stops sending, waits
//! briefly for the answers under way, and still returns what was sent, marked interrupted.
//!
//! With `--virtual-time` ([`Pacing::virtual_time`]) the in-process gateway runs on a
//! `ManualClock` whose time zero is the first planned exchange's recorded time, and
//! [`send::send_virtual`] sends one request at a time at its due time on that clock: the same
//! config gives the same decisions on every run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway::clock::{Clock, SystemClock};

use super::identity::{IdentityArgs, Minter};
use super::model::{Decision, Exchange, ExchangeOutcome, LoadError, Recording};
use super::read::{self, ReadOptions};
use super::schedule::{self, Loops, Pacing, Planned};
use super::send::{self, Head, Prepare, Progress, SendOptions, SendResult, VirtualTime};
use super::target::{self, Target, TargetError, TargetSpec};
use crate::scenario::interrupt::Interrupt;
use crate::scenario::sink::RecordSink;

/// Reads a recording of any supported format (Gatehouse lines, HAR, GoReplay).
pub fn load(path: &Path, skip_bad: bool) -> Result<Recording, LoadError> {
    read::load(path, &ReadOptions { skip_bad })
}

/// Makes the hook every request passes through, once the target is up (the identity minter
/// needs its fake issuer): the one place identities plug in.
pub type PrepareFor = Arc<dyn Fn(&Target) -> Result<Prepare, String> + Send + Sync>;

/// The hook without identities: recorded heads, redacted values dropped.
pub fn pass_through_for() -> PrepareFor {
    Arc::new(|_target: &Target| Ok(send::pass_through()))
}

/// The hook with identities minted afresh: in-process and `--process` runs sign with the
/// target's fake issuer and send its test API keys; `--target` runs sign with `--keys DIR` and
/// map keys with `--api-keys FILE`. A `--rotate` timeline starts with the run.
pub fn minting_for(args: IdentityArgs) -> PrepareFor {
    Arc::new(move |target: &Target| {
        let minter = match &target.fakes {
            Some(fakes) => Minter::for_fakes(&args, fakes.clone(), target.api_keys.clone())?,
            None => Minter::for_target(&args)?,
        };
        let minter = match &target.runtime {
            Some(runtime) => minter.for_gateway(runtime),
            None => minter,
        };
        // The timeline ends by itself after its last step.
        drop(minter.spawn_rotation());
        let minter = Arc::new(minter);
        Ok(Arc::new(move |exchange: &Exchange, now_unix: u64| {
            minter.prepare(exchange, now_unix).map(|p| Head {
                target: p.target,
                headers: p.headers,
            })
        }) as Prepare)
    })
}

/// How to replay.
#[derive(Clone)]
pub struct RunOptions {
    pub pacing: Pacing,
    pub prepare: PrepareFor,
    pub keep_responses: bool,
    pub interrupt: Interrupt,
    pub progress: Arc<Progress>,
    /// How long, after the last answer, records still missing are waited for.
    pub record_wait: Duration,
    /// After an interrupt, how long the answers under way are waited for.
    pub grace: Duration,
    /// Where the target's records are offered as they arrive (`replay --tui` watches it).
    pub sink: RecordSink,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            pacing: Pacing::default(),
            prepare: pass_through_for(),
            keep_responses: false,
            interrupt: Interrupt::default(),
            progress: Arc::default(),
            record_wait: Duration::from_secs(5),
            grace: Duration::from_secs(2),
            sink: RecordSink::unwatched(),
        }
    }
}

/// What one run through one target made of the recording.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// The config path or URL replayed through.
    pub target: String,
    /// One per send that left, in plan order.
    pub outcomes: Vec<ExchangeOutcome>,
    /// The exchange (index into the exchanges replayed) of each outcome.
    pub indices: Vec<usize>,
    /// Sends the plan held (every pass; 0 for `--loop` until interrupted).
    pub planned: u64,
    /// Whether the target's records could be seen (decisions are absent otherwise).
    pub records_seen: bool,
    pub interrupted: bool,
    /// The plan's time zero, Unix nanoseconds (shards line up on it when merged).
    pub started_unix_nanos: u64,
}

impl RunResult {
    /// The recording's own decisions, outcome for outcome: the baseline a plain replay of a
    /// Gatehouse recording is compared with. `None` where the source holds no gateway record.
    pub fn recorded_baseline(&self, exchanges: &[Exchange]) -> Vec<Option<ExchangeOutcome>> {
        self.outcomes
            .iter()
            .zip(&self.indices)
            .map(|(outcome, &index)| {
                let mut baseline = ExchangeOutcome::recorded(&exchanges[index])?;
                baseline.id = outcome.id.clone();
                Some(baseline)
            })
            .collect()
    }
}

/// Starts the target, replays `exchanges` through it as `options` plan, and stops it.
pub async fn run(
    exchanges: Arc<Vec<Exchange>>,
    spec: &TargetSpec,
    options: &RunOptions,
) -> Result<RunResult, TargetError> {
    let virtual_time = options
        .pacing
        .virtual_time
        .then(|| VirtualTime::starting_at(virtual_origin(&exchanges)));
    let target = target::start_watched(spec, virtual_time, &options.sink).await?;
    let result = run_on(exchanges, &target, options).await;
    target.stop().await;
    result
}

/// Virtual time's zero: the recorded time of the first planned exchange (every plan starts
/// with the first exchange), Unix nanoseconds; 0 for an empty recording.
pub fn virtual_origin(exchanges: &[Exchange]) -> u64 {
    exchanges.first().map_or(0, |e| e.unix_nanos)
}

/// Replays through a target already started (for `--virtual-time`, started by
/// [`target::start_on`] with a [`VirtualTime`]).
pub async fn run_on(
    exchanges: Arc<Vec<Exchange>>,
    target: &Target,
    options: &RunOptions,
) -> Result<RunResult, TargetError> {
    let virtual_time = match (options.pacing.virtual_time, &target.virtual_time) {
        (false, _) => None,
        (true, Some(time)) => Some(time),
        (true, None) => {
            return Err(TargetError::Runtime(
                target::VIRTUAL_TIME_IN_PROCESS_ONLY.into(),
            ));
        }
    };
    let prepare = (options.prepare)(target).map_err(TargetError::Runtime)?;
    let send_options = SendOptions {
        prepare,
        keep_responses: options.keep_responses,
        interrupt: options.interrupt.clone(),
        grace: options.grace,
        progress: options.progress.clone(),
        ..SendOptions::new(target.address.clone(), target.authority.clone())
    };
    let start_at = match options.pacing.start_at {
        Some(at) => {
            let now_unix_nanos = SystemClock::new().unix_millis() * 1_000_000;
            let delay = schedule::start_delay(at, now_unix_nanos).map_err(TargetError::Runtime)?;
            Some(now_unix_nanos + delay.as_nanos() as u64)
        }
        None => None,
    };
    let mut result = RunResult {
        target: target.label.clone(),
        records_seen: target.records.is_some(),
        ..RunResult::default()
    };
    let spacing = options.pacing.spacing;
    let dispatch = |plan: Vec<Planned>, start_at: Option<u64>, send_options: SendOptions| {
        let exchanges = exchanges.clone();
        async move {
            match virtual_time {
                Some(time) => {
                    send::send_virtual(
                        exchanges,
                        plan,
                        time,
                        target.subscribe(),
                        options.record_wait,
                        send_options,
                    )
                    .await
                }
                None => send::send(exchanges, plan, start_at, send_options).await,
            }
        }
    };
    match options.pacing.loops {
        Loops::Times(passes) => {
            let plan = schedule::plan(&exchanges, spacing, passes.max(1));
            result.planned = plan.len() as u64;
            let indices: Vec<usize> = plan.iter().map(|p| p.index).collect();
            let sent: SendResult = dispatch(plan, start_at, send_options).await;
            result.started_unix_nanos = sent.started_unix_nanos;
            result.indices = indices[..sent.outcomes.len()].to_vec();
            result.interrupted = sent.interrupted;
            attach_decisions(
                target,
                &sent.wire_ids,
                &mut result.outcomes,
                sent.outcomes,
                options,
            )
            .await;
        }
        Loops::UntilInterrupted => {
            // Pass after pass, each on the recording's own schedule, until Ctrl-C.
            let one = schedule::plan(&exchanges, spacing, 1);
            // Virtual time never goes back: a pass starts where the one before it ended.
            let period = schedule::pass_period(&exchanges, spacing);
            let mut pass = 1u32;
            let mut pass_start = start_at;
            while !options.interrupt.is_raised() && !one.is_empty() {
                let base = if virtual_time.is_some() {
                    period.saturating_mul(u64::from(pass - 1))
                } else {
                    0
                };
                let plan: Vec<Planned> = one
                    .iter()
                    .map(|p| Planned {
                        id: schedule::pass_id(&p.id, pass),
                        pass,
                        due_ns: base.saturating_add(p.due_ns),
                        ..p.clone()
                    })
                    .collect();
                let sent = dispatch(plan.clone(), pass_start, send_options.clone()).await;
                if pass == 1 {
                    result.started_unix_nanos = sent.started_unix_nanos;
                }
                // Every pass on the first one's clock.
                let offset = sent
                    .started_unix_nanos
                    .saturating_sub(result.started_unix_nanos);
                result
                    .indices
                    .extend(plan.iter().take(sent.outcomes.len()).map(|p| p.index));
                let mut outcomes = sent.outcomes;
                for outcome in &mut outcomes {
                    outcome.scheduled_ns += offset;
                    outcome.sent_ns += offset;
                }
                attach_decisions(
                    target,
                    &sent.wire_ids,
                    &mut result.outcomes,
                    outcomes,
                    options,
                )
                .await;
                if sent.interrupted {
                    break;
                }
                pass += 1;
                pass_start = None;
            }
            result.interrupted = true;
        }
    }
    Ok(result)
}

/// Gives each answered outcome the decision of the record with its request id.
async fn attach_decisions(
    target: &Target,
    wire_ids: &[String],
    into: &mut Vec<ExchangeOutcome>,
    mut outcomes: Vec<ExchangeOutcome>,
    options: &RunOptions,
) {
    if target.records.is_some() {
        // Only answered requests are waited for: a refused connection leaves no record.
        let wait = if options.interrupt.is_raised() {
            options.grace
        } else {
            options.record_wait
        };
        let answered: Vec<String> = outcomes
            .iter()
            .zip(wire_ids)
            .filter(|(o, _)| o.status.is_some())
            .map(|(_, id)| id.clone())
            .collect();
        target.records_for(&answered, wait).await;
        let records = target.records_for(wire_ids, Duration::ZERO).await;
        for (outcome, record) in outcomes.iter_mut().zip(records) {
            outcome.decision = record.as_ref().map(Decision::of);
        }
    }
    into.extend(outcomes);
}
