//! Where every record goes: the access log (a background thread that never blocks a request),
//! the Prometheus metrics and the in-process broadcast.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tokio::sync::broadcast;

use super::RequestRecord;
use super::metrics::{Metrics, RouteMetrics};
use crate::config::raw::RawAccessLog;

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

    /// `route` is the matched route's metric handles, resolved when its config was bound.
    pub fn emit(&self, record: RequestRecord, route: Option<&RouteMetrics>) {
        self.observe_and_log(&record, route);
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(Arc::new(record));
        }
    }

    /// [`Self::emit`] for a record already shared (with the recording's writer): not copied.
    pub fn emit_shared(&self, record: Arc<RequestRecord>, route: Option<&RouteMetrics>) {
        self.observe_and_log(&record, route);
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(record);
        }
    }

    fn observe_and_log(&self, record: &RequestRecord, route: Option<&RouteMetrics>) {
        self.metrics.observe(record, route);
        if let Some(log) = &self.access_log {
            let mut line = Vec::with_capacity(512);
            if serde_json::to_writer(&mut line, record).is_ok() {
                line.push(b'\n');
                if let Err(TrySendError::Full(_)) = log.try_send(line) {
                    self.metrics.access_log_dropped.inc();
                }
            }
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
