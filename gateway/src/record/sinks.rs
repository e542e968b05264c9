//! Where every record goes: the access log (a writer thread that never blocks a request), the
//! Prometheus metrics and the in-process broadcast.
//!
//! The access log is batched: a request serializes its record into its thread's own buffer and
//! appends the line to a shared buffer (a short lock, no system call, no wake-up); the writer
//! thread takes the whole buffer every [`FLUSH_INTERVAL`] — or sooner, once [`WAKE_AT`] lines
//! wait — and writes it with one `write`. One `write` and one futex wake-up per line cost a
//! quarter of the gateway's CPU under load; batched, the log costs little more than the
//! serialization. A slow disk lets the buffer grow to [`ACCESS_LOG_QUEUE`] lines; past it lines
//! are dropped and counted (`gatehouse_access_log_dropped_total`), so the log degrades, never
//! the traffic.
//!
//! The line is made on the request's thread, as nginx's and Envoy's workers format theirs, so
//! that the record is freed where it was allocated: records handed to the writer thread were
//! freed there, which left glibc's per-thread caches on the request's side empty, and every
//! allocation of the requests after took malloc's slower shared path (docs/PERFORMANCE.md).

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::broadcast;

use super::RequestRecord;
use super::json::Json;
use super::metrics::{Metrics, RouteMetrics};
use crate::config::raw::{AccessLogTo, RawAccessLog};
use crate::vocab::record_fields::FieldSet;

/// Where records go. Cheap to clone; emitting never blocks the request path.
#[derive(Clone)]
pub struct RecordSinks {
    pub metrics: Arc<Metrics>,
    subscribers: broadcast::Sender<Arc<RequestRecord>>,
    access_log: Option<Arc<AccessLog>>,
}

/// Lines waiting for the access-log writer; beyond this they are dropped and counted.
const ACCESS_LOG_QUEUE: usize = 65_536;
const SUBSCRIBER_QUEUE: usize = 16_384;
/// The longest a record waits before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Lines waiting that wake the writer before the interval ends.
const WAKE_AT: usize = 4_096;
/// The writer's buffer is let go past this after a batch (a stuck disk's backlog), so that
/// memory a burst took is not held for good.
const KEPT_BUFFER: usize = 4 << 20;

/// The buffer the request path appends lines to and the writer thread drains.
struct AccessLog {
    /// The record's fields a line carries (`access_log.fields`); `None`: all.
    fields: Option<FieldSet>,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Signalled by the writer after each batch it wrote, for [`RecordSinks::flush`].
    written: Condvar,
}

#[derive(Default)]
struct Pending {
    /// The lines waiting, each ended by `\n`.
    lines: Vec<u8>,
    /// How many lines `lines` holds.
    count: usize,
    /// Batches taken by the writer so far (a flush waits for the one after its call).
    taken: u64,
    /// Batches written out.
    done: u64,
}

impl RecordSinks {
    pub fn new(metrics: Arc<Metrics>, access_log: &RawAccessLog) -> std::io::Result<Self> {
        let fields = access_log.fields;
        let access_log = match &access_log.to {
            AccessLogTo::Off => None,
            AccessLogTo::Stdout => Some(spawn_writer(Box::new(std::io::stdout()), fields)?),
            AccessLogTo::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Some(spawn_writer(Box::new(file), fields)?)
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

    /// Whether anything reads whole records now: the access log, or a subscriber. When nothing
    /// does, the pipeline makes a request's record for the metrics alone ([`Self::count`]),
    /// without the fields only a reader needs (the request and trace ids as text, the target as
    /// sent).
    pub fn reads_records(&self) -> bool {
        self.access_log.is_some() || self.subscribers.receiver_count() > 0
    }

    /// Counts a record made for the metrics alone. It is not logged or sent, even to a
    /// subscriber that came since it was made, for it lacks what a reader needs.
    pub fn count(&self, record: &RequestRecord, route: Option<&RouteMetrics>) {
        self.metrics.observe(record, route);
    }

    /// `route` is the matched route's metric handles, resolved when its config was bound.
    pub fn emit(&self, record: RequestRecord, route: Option<&RouteMetrics>) {
        self.metrics.observe(&record, route);
        if let Some(log) = &self.access_log {
            self.log_line(log, &record);
        }
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(Arc::new(record));
        }
    }

    /// [`Self::emit`] for a record already shared (with the recording's writer): not copied.
    pub fn emit_shared(&self, record: Arc<RequestRecord>, route: Option<&RouteMetrics>) {
        self.metrics.observe(&record, route);
        if let Some(log) = &self.access_log {
            self.log_line(log, &record);
        }
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(record);
        }
    }

    /// The record's line, made in this thread's buffer, appended for the writer.
    fn log_line(&self, log: &AccessLog, record: &RequestRecord) {
        thread_local! {
            static LINE: RefCell<Json> = RefCell::new(Json::default());
        }
        LINE.with_borrow_mut(|json| {
            if json.write_fields(record, log.fields).is_err() {
                return;
            }
            let mut pending = log.pending.lock();
            if pending.count >= ACCESS_LOG_QUEUE {
                drop(pending);
                self.metrics.access_log_dropped.inc();
                return;
            }
            pending.lines.extend_from_slice(&json.out);
            pending.lines.push(b'\n');
            pending.count += 1;
            if pending.count == WAKE_AT {
                log.wake.notify_one();
            }
        });
    }

    /// Waits (at most `bound`) until every record emitted before the call is written: a stopping
    /// gateway calls it so its last requests are in the log. False when the bound passed first.
    pub fn flush(&self, bound: Duration) -> bool {
        let Some(log) = &self.access_log else {
            return true;
        };
        let mut pending = log.pending.lock();
        // The batch that will hold everything pushed so far is the next one taken.
        let wanted = pending.taken + 1;
        log.wake.notify_one();
        while pending.done < wanted {
            if log.written.wait_for(&mut pending, bound).timed_out() {
                return false;
            }
        }
        true
    }
}

fn spawn_writer(
    mut out: Box<dyn Write + Send>,
    fields: Option<FieldSet>,
) -> std::io::Result<Arc<AccessLog>> {
    let log = Arc::new(AccessLog {
        fields,
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        written: Condvar::new(),
    });
    let shared = log.clone();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let mut text = Vec::with_capacity(1 << 16);
            loop {
                {
                    let mut pending = shared.pending.lock();
                    if pending.count < WAKE_AT {
                        shared.wake.wait_for(&mut pending, FLUSH_INTERVAL);
                    }
                    // The emptied buffer goes back for the requests to fill, its room kept.
                    std::mem::swap(&mut text, &mut pending.lines);
                    pending.count = 0;
                    pending.taken += 1;
                }
                if !text.is_empty() {
                    let _ = out.write_all(&text);
                    let _ = out.flush();
                }
                text.clear();
                if text.capacity() > KEPT_BUFFER {
                    text = Vec::with_capacity(1 << 16);
                }
                let mut pending = shared.pending.lock();
                pending.done += 1;
                shared.written.notify_all();
                // Only the writer holds the other end once every sink clone is gone.
                if Arc::strong_count(&shared) == 1 && pending.count == 0 {
                    return;
                }
            }
        })?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageTimings;

    fn record(i: usize) -> RequestRecord {
        RequestRecord {
            request_id: format!("req-{i}"),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            unix_millis: 1_700_000_000_000,
            peer: "127.0.0.1:40000".parse().expect("address"),
            method: http::Method::GET,
            host: Some(http::HeaderValue::from_static("api.example.com")),
            path: format!("/users/{i}\n\"forged\": true"),
            target: format!("/users/{i}%0A?q=\u{2028}"),
            route: Some(Arc::from("users")),
            route_template: Some(Arc::from("/users/*")),
            status: 200,
            // Some records carry a gRPC status, so both shapes are compared with serde_json's.
            grpc_status: (i % 3 == 0).then_some(14),
            stopped_at: None,
            reason: None,
            stage_ns: StageTimings::default(),
            duration_ns: 1000,
            identity: None,
            limit: None,
            upstream: Some(Arc::from("users-svc")),
            upstream_instance: None,
            upstream_path: None,
            retries: 0,
            breaker: None,
            bytes_in: 0,
            bytes_out: 2,
            completed: true,
        }
    }

    fn sinks(out: Box<dyn Write + Send>) -> RecordSinks {
        sinks_with(out, None)
    }

    fn sinks_with(out: Box<dyn Write + Send>, fields: Option<FieldSet>) -> RecordSinks {
        RecordSinks {
            metrics: Arc::new(Metrics::new()),
            subscribers: broadcast::channel(4).0,
            access_log: Some(spawn_writer(out, fields).expect("writer thread")),
        }
    }

    /// A writer whose bytes the test reads, optionally held at its first write until released.
    #[derive(Clone, Default)]
    struct Captured {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
        gate: Option<Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>>,
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                let (open, opened) = &**gate;
                let mut open = open.lock().expect("gate");
                while !*open {
                    open = opened.wait(open).expect("gate");
                }
            }
            self.bytes.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_written_in_batches_as_serde_json_lines_and_flush_waits_for_them() {
        let out = Captured::default();
        let sinks = sinks(Box::new(out.clone()));
        for i in 0..500 {
            sinks.emit(record(i), None);
        }
        assert!(sinks.flush(Duration::from_secs(5)));
        let text = String::from_utf8(out.bytes.lock().clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 500);
        for (i, line) in lines.iter().enumerate() {
            // Byte for byte what serde_json writes; the newline in the path stays escaped.
            assert_eq!(*line, serde_json::to_string(&record(i)).expect("json"));
        }
        // Far fewer writes than lines: the batch is one `write_all` (a few `write`s at most).
        let writes = out.writes.load(std::sync::atomic::Ordering::SeqCst);
        assert!(writes < 50, "{writes} writes for 500 lines");
    }

    #[test]
    fn a_log_with_a_field_set_writes_only_those_fields_and_subscribers_get_whole_records() {
        let out = Captured::default();
        let set = FieldSet::of(&["status", "peer", "duration_ns"]).expect("record fields");
        let sinks = sinks_with(Box::new(out.clone()), Some(set));
        let mut records = sinks.subscribe();
        for i in 0..3 {
            sinks.emit(record(i), None);
        }
        assert!(sinks.flush(Duration::from_secs(5)));
        let text = String::from_utf8(out.bytes.lock().clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [r#"{"peer":"127.0.0.1:40000","status":200,"duration_ns":1000}"#; 3]
        );
        let whole = records.try_recv().expect("a record");
        assert_eq!(whole.request_id, "req-0");
    }

    #[test]
    fn a_stuck_disk_drops_and_counts_records_past_the_queue_and_never_blocks_emit() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let out = Captured {
            gate: Some(gate.clone()),
            ..Captured::default()
        };
        let sinks = sinks(Box::new(out.clone()));
        sinks.emit(record(0), None);
        // Wait until the writer is stuck in its first write, holding that one record.
        while out.writes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..ACCESS_LOG_QUEUE + 7 {
            sinks.emit(record(i), None);
        }
        assert_eq!(sinks.metrics.access_log_dropped.get(), 7);
        let (open, opened) = &*gate;
        *open.lock().expect("gate") = true;
        opened.notify_all();
        assert!(sinks.flush(Duration::from_secs(10)));
        let lines = out.bytes.lock().iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 1 + ACCESS_LOG_QUEUE);
    }
}
