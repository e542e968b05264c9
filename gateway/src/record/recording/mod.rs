//! Recording: the requests as sent, redacted, beside their records — the input of
//! `simulator replay`. [`format`] is the line format both sides share.
//!
//! The request task does as little as it can: it draws whether the request is sampled, and for a
//! sampled one clones the head as it arrived (method, target, version, header map — reference
//! counts, mostly), keeps the first `max_body_bytes` of the body as it streams, and, with
//! `responses`, hashes the response body as it goes out. When the record is emitted the capture
//! and the record (shared with the sinks, not copied) go to a bounded queue with one
//! `try_send`; a full queue drops them and counts it (`gatehouse_recording_dropped_total`).
//! Everything else — redaction ([`redact`]), reading JWT claims, JSON ([`json`]), the write and
//! the rotation ([`writer`]) — happens on the writer thread.

pub mod format;
mod redact;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use sha2::Digest as _;

use super::RequestRecord;
use super::metrics::Metrics;
use crate::config::Runtime;
use crate::config::compiled::RecordingConfig;
use crate::identity::tls::TlsInfo;

/// The config a request ran under, as the writer needs it to redact: which header carries API
/// keys, which query parameter carries tokens, each issuer's claim names, each route's rules.
/// Implemented by the state layer's bound config, so a capture holds the request's own snapshot
/// (one reference count) and a reload never changes how an earlier request is redacted.
pub trait RuntimeView: Send + Sync {
    fn runtime(&self) -> &Runtime;
}

/// The recording's handle: the sampler and the writer's queue. One per gateway, fixed at start.
pub struct Recorder {
    config: RecordingConfig,
    queue: SyncSender<Queued>,
    metrics: Arc<Metrics>,
    /// Requests seen, the input of the sampling draw.
    draws: AtomicU64,
}

impl Recorder {
    /// Opens (creating or appending to) the recording file and starts the writer thread.
    pub fn start(config: &RecordingConfig, metrics: Arc<Metrics>) -> std::io::Result<Arc<Self>> {
        let queue = writer::spawn(config, metrics.clone())?;
        Ok(Arc::new(Self {
            config: config.clone(),
            queue,
            metrics,
            draws: AtomicU64::new(0),
        }))
    }

    /// Whether this request is recorded. Each request is drawn independently with probability
    /// `sample`: a counter mixed by SplitMix64, never the request id (which a client chooses).
    pub fn sampled(&self) -> bool {
        if self.config.always {
            return true;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        splitmix64(n) < self.config.sample_below
    }

    /// Waits, up to `within`, until every line queued before the call is written and flushed;
    /// false when the time ran out. For shutdown: a gateway that stops must not lose the lines
    /// of the requests it answered last. Blocks the calling thread.
    pub fn flush(&self, within: std::time::Duration) -> bool {
        let (done, written) = std::sync::mpsc::channel();
        let mut barrier = Queued::Barrier(done);
        // A full queue is waited out in short steps, never by a send that could block for good
        // behind a stuck writer.
        let mut waited = std::time::Duration::ZERO;
        let step = std::time::Duration::from_millis(5);
        loop {
            match self.queue.try_send(barrier) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) if waited < within => {
                    barrier = back;
                    std::thread::sleep(step);
                    waited += step;
                }
                Err(_) => return false,
            }
        }
        written.recv_timeout(within.saturating_sub(waited)).is_ok()
    }

    /// How much of a sampled request's body to keep.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// What a sampled request's task keeps of the request as it arrived, before any stage
    /// changes it (authn removes the credential, mutate_request reshapes the head).
    pub fn capture(
        self: &Arc<Self>,
        head: &http::request::Parts,
        connection: u64,
        tls: Option<&Arc<TlsInfo>>,
        alpn: Option<&Arc<str>>,
        view: Arc<dyn RuntimeView>,
    ) -> Box<Capture> {
        Box::new(Capture {
            recorder: self.clone(),
            captured: Captured {
                method: head.method.clone(),
                uri: head.uri.clone(),
                version: head.version,
                headers: head.headers.clone(),
                connection,
                tls: tls.cloned(),
                alpn: alpn.cloned(),
                view,
                response: None,
            },
        })
    }
}

/// SplitMix64's output function: consecutive inputs give uniformly spread, independent-looking
/// outputs.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A sampled request's capture, carried with its record until the record is emitted.
pub struct Capture {
    recorder: Arc<Recorder>,
    captured: Captured,
}

/// What the writer receives of the request and, with `responses`, the response.
struct Captured {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    connection: u64,
    tls: Option<Arc<TlsInfo>>,
    alpn: Option<Arc<str>>,
    view: Arc<dyn RuntimeView>,
    response: Option<ResponseTap>,
}

/// The response head as the client got it and the running hash of its body.
struct ResponseTap {
    status: StatusCode,
    headers: HeaderMap,
    hash: sha2::Sha256,
}

impl Capture {
    /// Keeps the response head when the recording keeps responses; its body is hashed from
    /// here on.
    pub fn response_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        if self.recorder.config.responses {
            self.captured.response = Some(ResponseTap {
                status,
                headers: headers.clone(),
                hash: sha2::Sha256::new(),
            });
        }
    }

    /// A chunk of the response body on its way to the client.
    pub fn response_chunk(&mut self, data: &[u8]) {
        if let Some(tap) = &mut self.captured.response {
            tap.hash.update(data);
        }
    }

    /// Hands the capture and its record (shared with the sinks) to the writer, or drops it and
    /// counts it when the writer's queue is full. Never waits.
    pub fn submit(
        self,
        record: Arc<RequestRecord>,
        body: RequestBodyPrefix,
        bytes_out: u64,
        completed: bool,
    ) {
        let entry = Entry {
            record,
            captured: self.captured,
            body,
            bytes_out,
            completed,
        };
        match self.recorder.queue.try_send(Queued::Line(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.recorder.metrics.recording_dropped.inc();
            }
        }
    }
}

/// The start of the request body as it streamed upstream, and its whole length.
#[derive(Debug, Default)]
pub struct RequestBodyPrefix {
    /// The kept chunks, in order (slices of the received ones: no copy).
    pub chunks: Vec<Bytes>,
    /// Every byte received, kept or not.
    pub len: u64,
}

/// One line's worth of material for the writer.
/// What the writer's queue carries: a line to write, or a barrier answered once every line
/// before it is written and flushed. Lines are the traffic and barriers a shutdown's one-off, so
/// the line is not boxed: that would cost an allocation per recorded request.
#[allow(clippy::large_enum_variant)]
enum Queued {
    Line(Entry),
    Barrier(std::sync::mpsc::Sender<()>),
}

struct Entry {
    record: Arc<RequestRecord>,
    captured: Captured,
    body: RequestBodyPrefix,
    bytes_out: u64,
    completed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_is_spread_evenly() {
        let below = u64::MAX / 4;
        let hits = (0..100_000u64).filter(|n| splitmix64(*n) < below).count();
        assert!((24_000..26_000).contains(&hits), "{hits} of 100000 at 1/4");
    }
}
