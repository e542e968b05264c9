//! Where the scenario runner offers each record it collects, for whoever watches the run (today
//! the TUI of `simulator run --tui`). It is handed to the runner in its options rather than found
//! in a global, so the scenario layer never depends on the TUI, and a run nobody watches pays
//! nothing for it.

use std::sync::Arc;

use gateway::record::RequestRecord;
use tokio::sync::broadcast;

/// Records a watcher may fall behind by before it loses some (and is told how many).
const WATCHER_BACKLOG: usize = 16_384;

/// Offers records to the watchers of a run, if it has any. Cloning shares the watchers.
#[derive(Debug, Clone, Default)]
pub struct RecordSink {
    watchers: Option<broadcast::Sender<Arc<RequestRecord>>>,
}

impl RecordSink {
    /// A sink nobody watches: offering to it does nothing.
    pub fn unwatched() -> Self {
        Self::default()
    }

    /// A sink and the receiver that watches it.
    pub fn watched() -> (Self, broadcast::Receiver<Arc<RequestRecord>>) {
        let (sender, receiver) = broadcast::channel(WATCHER_BACKLOG);
        (
            Self {
                watchers: Some(sender),
            },
            receiver,
        )
    }

    /// Offers a record to the watchers still listening (cheap when none are).
    pub fn offer(&self, record: &Arc<RequestRecord>) {
        if let Some(sender) = &self.watchers {
            if sender.receiver_count() > 0 {
                let _ = sender.send(record.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Arc<RequestRecord> {
        let value = serde_json::json!({
            "request_id": "r-1",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "unix_millis": 1_700_000_000_000u64,
            "peer": "127.0.0.1:50000",
            "method": "GET",
            "path": "/",
            "status": 200,
            "stage_ns": {},
            "duration_ns": 1_000,
            "bytes_in": 0,
            "bytes_out": 0,
            "completed": true,
        });
        Arc::new(serde_json::from_value(value).expect("a record"))
    }

    #[test]
    fn a_watched_sink_passes_records_on_until_its_watcher_leaves() {
        let (sink, mut watcher) = RecordSink::watched();
        sink.clone().offer(&record());
        assert_eq!(watcher.try_recv().expect("offered").request_id, "r-1");
        drop(watcher);
        sink.offer(&record());
        RecordSink::unwatched().offer(&record());
    }
}
