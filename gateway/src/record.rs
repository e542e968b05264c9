//! The request record — one per request, stopped or passed — and its sinks: the JSON access log,
//! Prometheus metrics and an in-process broadcast that the simulator, the TUI and the admin
//! record stream subscribe to. The same record is the replay format.

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::broadcast;

use crate::config::raw::RawAccessLog;
use crate::metrics::Metrics;
use crate::pipeline::{Identity, LimitDecision, StageId};

/// Serialized, one per line, it is the access log, the admin record stream and the replay format;
/// it deserializes from those lines too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: String,
    pub trace_id: String,
    /// Wall-clock arrival, milliseconds since the Unix epoch.
    pub unix_millis: u64,
    pub peer: SocketAddr,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The normalized path without the query. Never a metric label.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// The matched route's path pattern, the safe label for metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_template: Option<Arc<str>>,
    pub status: u16,
    /// The stage that stopped the request; absent when the upstream answered.
    pub stopped_at: Option<StageId>,
    /// Stable reason token of the stop (`no-route`, `upstream-timeout`, ...).
    pub reason: Option<Cow<'static, str>>,
    pub stage_ns: StageTimings,
    /// From arrival to the last byte of the response (or to the moment the client went away).
    pub duration_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Identity>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_instance: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_path: Option<String>,
    /// Tries `forward` made after the first one (upstream `retries`); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The upstream's circuit breaker as `route` found it: `closed`, `half_open` (a probe), or
    /// `open` (the request was refused); absent when the upstream has no breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<crate::resilience::BreakerState>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// False when the client or upstream went away before the response body finished.
    pub completed: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RequestRecord {
    pub fn status_class(&self) -> &'static str {
        match self.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }
}

/// Nanoseconds spent in each stage that ran; stages that did not run are absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimings {
    pub nanos: [u64; 8],
    /// Bit i set when stage i ran.
    pub ran: u8,
}

impl StageTimings {
    pub fn get(&self, stage: StageId) -> Option<u64> {
        (self.ran & (1 << stage.index()) != 0).then(|| self.nanos[stage.index()])
    }

    pub fn set(&mut self, stage: StageId, nanos: u64) {
        self.nanos[stage.index()] = nanos;
        self.ran |= 1 << stage.index();
    }
}

impl<'de> Deserialize<'de> for StageTimings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<StageId, u64>::deserialize(d)?;
        let mut timings = StageTimings::default();
        for (stage, nanos) in map {
            timings.set(stage, nanos);
        }
        Ok(timings)
    }
}

impl Serialize for StageTimings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.ran.count_ones() as usize))?;
        for stage in StageId::ALL {
            if let Some(ns) = self.get(stage) {
                map.serialize_entry(stage.as_str(), &ns)?;
            }
        }
        map.end()
    }
}

/// Where records go. Cheap to clone; emitting never blocks the request path.
#[derive(Clone)]
pub struct RecordSinks {
    pub metrics: Arc<Metrics>,
    subscribers: broadcast::Sender<Arc<RequestRecord>>,
    access_log: Option<SyncSender<Vec<u8>>>,
}

/// Lines waiting for the access-log writer; beyond this they are dropped and counted, so a slow
/// disk degrades the log, never the traffic.
const ACCESS_LOG_QUEUE: usize = 65_536;
const SUBSCRIBER_QUEUE: usize = 16_384;

impl RecordSinks {
    pub fn new(metrics: Arc<Metrics>, access_log: &RawAccessLog) -> std::io::Result<Self> {
        let access_log = match access_log {
            RawAccessLog::Off => None,
            RawAccessLog::Stdout => Some(spawn_writer(Box::new(std::io::stdout()))?),
            RawAccessLog::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Some(spawn_writer(Box::new(file))?)
            }
        };
        let (subscribers, _) = broadcast::channel(SUBSCRIBER_QUEUE);
        Ok(Self {
            metrics,
            subscribers,
            access_log,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.subscribers.subscribe()
    }

    pub fn emit(&self, record: RequestRecord) {
        self.metrics.observe(&record);
        if let Some(log) = &self.access_log {
            let mut line = Vec::with_capacity(512);
            if serde_json::to_writer(&mut line, &record).is_ok() {
                line.push(b'\n');
                if let Err(TrySendError::Full(_)) = log.try_send(line) {
                    self.metrics.access_log_dropped.inc();
                }
            }
        }
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(Arc::new(record));
        }
    }
}

fn spawn_writer(mut out: Box<dyn Write + Send>) -> std::io::Result<SyncSender<Vec<u8>>> {
    let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) =
        std::sync::mpsc::sync_channel(ACCESS_LOG_QUEUE);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            while let Ok(line) = rx.recv() {
                let _ = out.write_all(&line);
                // Batch whatever else is already queued before flushing.
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(&more);
                }
                let _ = out.flush();
            }
        })?;
    Ok(tx)
}
