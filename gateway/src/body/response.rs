//! The body every gateway response has: a body the gateway wrote, or the upstream's stream —
//! counted, hashed when the recording keeps responses, cut at `limits.max_stream_duration`, the
//! upstream's `idle_timeout` or a gRPC deadline, and the request's record emitted when it ends
//! or when the client goes away.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::activity::Busy;
use super::request::RequestBodyMeter;
use super::upstream::UpstreamBody;
use crate::clock::{Nanos, SharedClock};
use crate::record::metrics::RouteMetrics;
use crate::record::recording::Capture;
use crate::record::{RecordSinks, RequestRecord};
use crate::vocab::{Reason, StageId};

/// The error a response body ends with when the gateway cuts it. For HTTP/2 it carries the
/// `RST_STREAM` code (hyper looks for an `h2::Error` among an error's sources), `CANCEL`: the
/// gateway no longer wants the stream, nothing failed. HTTP/1.1 closes the connection, the only
/// way to tell a client mid-body that the body will not end.
#[derive(Debug, thiserror::Error)]
#[error("the gateway cut the stream before its end (the record names why)")]
pub struct StreamCut {
    #[source]
    reset: h2::Error,
}

impl StreamCut {
    fn new() -> Self {
        Self {
            reset: h2::Error::from(h2::Reason::CANCEL),
        }
    }
}

/// An upstream response the pool's checks refused (its framing is ambiguous or malformed): before
/// its head is whole, `forward` answers 502 `upstream-bad-response`; after, the response is cut
/// and the record names the same reason. Travels inside an `io::Error` through hyper.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's response is malformed: {0}")]
pub struct UpstreamBadResponse(pub &'static str);

impl UpstreamBadResponse {
    /// Whether `error` or one of its sources is one. An `io::Error`'s `source` skips the error it
    /// wraps, so each `io::Error` of the chain is opened by hand.
    ///
    /// HTTP/2 is framed by the h2 library, which checks what this type's checks do for HTTP/1.1
    /// (`content-length` against the DATA frames, repeated `content-length`, connection-specific
    /// fields) and resets the stream with `PROTOCOL_ERROR` itself: that counts as one too.
    pub fn is_in(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if e.is::<UpstreamBadResponse>() {
                return true;
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                return h2.reason() == Some(h2::Reason::PROTOCOL_ERROR) && h2.is_library();
            }
            if let Some(inner) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                if inner.is::<UpstreamBadResponse>() {
                    return true;
                }
            }
            cause = e.source();
        }
        false
    }
}

/// What a response carries: a body the gateway wrote, or the upstream's stream.
pub enum ResponseContent {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

/// A record that waits for the response body to end before it is emitted.
pub struct PendingRecord {
    pub record: RequestRecord,
    pub arrived: u64,
    pub bytes_in: Option<Arc<RequestBodyMeter>>,
    pub clock: SharedClock,
    pub sinks: RecordSinks,
    /// Keeps the request counted in flight to its upstream instance until the body ends.
    pub in_flight: Option<crate::resilience::InFlight>,
    /// The matched route's metric handles.
    pub route_metrics: Option<Arc<RouteMetrics>>,
    /// The request as it arrived, when it is recorded: submitted with the record.
    pub recording: Option<Box<Capture>>,
    /// A gRPC call: the `grpc-status` of its trailers goes into the record.
    pub grpc: bool,
    /// The request's places under the gateway's concurrency limits, given back with the record.
    pub admitted: crate::resilience::concurrency::Admitted,
    /// False for a record made for the metrics alone (`RecordSinks::reads_records`): counted,
    /// never logged or sent.
    pub whole: bool,
}

impl PendingRecord {
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        if self.grpc {
            if let Some(code) = crate::vocab::grpc::status_of(trailers) {
                self.record.grpc_status = Some(code);
            }
        }
    }

    /// Emits the record; the clock reading its duration ends at.
    fn finish(mut self, bytes_out: u64, completed: bool) -> Nanos {
        self.record.bytes_out = bytes_out;
        self.record.completed = completed;
        if let Some(counter) = &self.bytes_in {
            self.record.bytes_in = counter.seen();
        }
        let now = self.clock.now();
        self.record.duration_ns = now.saturating_sub(self.arrived);
        if !self.whole {
            self.sinks
                .count(&self.record, self.route_metrics.as_deref());
            return now;
        }
        if let Some(capture) = self.recording.take() {
            let body = self
                .bytes_in
                .as_ref()
                .map(|m| m.take_prefix())
                .unwrap_or_default();
            // One record for the sinks and the writer, shared rather than copied.
            let record = Arc::new(self.record);
            capture.submit(record.clone(), body, bytes_out, completed);
            self.sinks
                .emit_shared(record, self.route_metrics.as_deref());
            return now;
        }
        self.sinks.emit(self.record, self.route_metrics.as_deref());
        now
    }
}

/// The body every gateway response has.
pub struct ResponseBody {
    content: ResponseContent,
    bytes_out: u64,
    pending: Option<Box<PendingRecord>>,
    /// Keeps the client connection busy while the body streams.
    busy: Option<Busy>,
    /// When the stream must have ended (`limits.max_stream_duration`).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A gRPC call's deadline: when to stop relaying the upstream's stream, and the trailers
    /// that end it instead. Boxed: every response body is moved several times on its way to
    /// the client, and only a call with a deadline needs the 104 bytes.
    end_with: Option<Box<CallDeadline>>,
    /// The upstream's `idle_timeout`: the longest the body waits for the upstream's next bytes.
    idle: Option<IdleTimer>,
}

/// When a gRPC call must end, and the trailers it ends with then.
struct CallDeadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    trailers: http::HeaderMap,
}

/// Times only the waits on the upstream — from a read that found nothing to the next bytes — so a
/// slow client, which stops the body being read at all, never counts against the upstream.
struct IdleTimer {
    after: Duration,
    /// Made at the first wait (a body read whole at once never needs one), reset at each later.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl IdleTimer {
    /// The body read nothing: whether the upstream has now been silent for `after`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waiting {
            self.waiting = true;
            match &mut self.sleep {
                // In place: a wait costs no allocation after the first.
                Some(sleep) => sleep.set(tokio::time::sleep(self.after)),
                None => self.sleep = Some(Box::pin(tokio::time::sleep(self.after))),
            }
        }
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::new(ResponseContent::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub fn empty() -> Self {
        Self::new(ResponseContent::Full(None))
    }

    pub fn upstream(body: UpstreamBody) -> Self {
        Self::new(ResponseContent::Upstream(body))
    }

    fn new(content: ResponseContent) -> Self {
        Self {
            content,
            bytes_out: 0,
            pending: None,
            busy: None,
            deadline: None,
            end_with: None,
            idle: None,
        }
    }

    /// Cuts an upstream's body when the upstream sends nothing for `after` (its `idle_timeout`),
    /// recorded as `forward` / `upstream-idle-timeout`.
    pub fn idle_after(&mut self, after: Duration) {
        if matches!(self.content, ResponseContent::Upstream(_)) && !self.is_end_stream() {
            self.idle = Some(IdleTimer {
                after,
                sleep: None,
                waiting: false,
            });
        }
    }

    /// Ends an upstream's stream after `after` with `trailers` (a gRPC call's deadline), recorded
    /// as `forward` / `upstream-timeout`: the upstream's body is dropped then, which resets its
    /// stream, while the client's stream ends whole, with the status the trailers carry.
    pub fn end_after(&mut self, after: Duration, trailers: http::HeaderMap) {
        if matches!(self.content, ResponseContent::Upstream(_)) && !self.is_end_stream() {
            self.end_with = Some(Box::new(CallDeadline {
                sleep: Box::pin(tokio::time::sleep(after)),
                trailers,
            }));
        }
    }

    /// Streams under its connection's rules: `busy` is held until the body ends, and an
    /// upstream's body is cut when `deadline` passes first (it was started when the request
    /// arrived). A body the gateway wrote is never cut: it is whole at once. A body that has
    /// already ended keeps neither.
    pub fn stream(&mut self, busy: Busy, deadline: Option<tokio::time::Sleep>) {
        if self.is_end_stream() {
            return;
        }
        self.busy = Some(busy);
        if matches!(self.content, ResponseContent::Upstream(_)) {
            self.deadline = deadline.map(Box::pin);
        }
    }

    /// Emits `record` when this body has been sent whole, or dropped part way.
    pub fn attach_record(&mut self, pending: Box<PendingRecord>) {
        self.pending = Some(pending);
        if self.is_end_stream() {
            self.finish(true);
        }
    }

    fn finish(&mut self, completed: bool) {
        let ended = self
            .pending
            .take()
            .map(|pending| pending.finish(self.bytes_out, completed));
        // After the record: whoever sees the connection idle next also sees the record out.
        match (self.busy.take(), ended) {
            (Some(busy), Some(now)) => busy.end_at(now),
            (busy, _) => drop(busy),
        }
        self.deadline = None;
        self.end_with = None;
        self.idle = None;
    }

    /// Ends the stream before its end: the upstream's body is dropped (which cancels it there;
    /// an HTTP/1.1 upstream connection mid-body is closed, never reused), the record says why.
    fn cut(&mut self, reason: Reason) -> StreamCut {
        self.content = ResponseContent::Full(None);
        self.name_stop(reason);
        self.finish(false);
        StreamCut::new()
    }

    fn name_stop(&mut self, reason: Reason) {
        if let Some(pending) = self.pending.as_mut() {
            pending.record.stopped_at = Some(StageId::Forward);
            pending.record.reason = Some(Cow::Borrowed(reason.as_str()));
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.end_with {
            if deadline.sleep.as_mut().poll(cx).is_ready() {
                let trailers = this.end_with.take().map(|d| d.trailers).unwrap_or_default();
                this.content = ResponseContent::Full(None);
                if let Some(pending) = this.pending.as_mut() {
                    pending.trailers(&trailers);
                    pending.record.stopped_at = Some(StageId::Forward);
                    pending.record.reason = Some(Cow::Borrowed(Reason::UpstreamTimeout.as_str()));
                }
                this.finish(true);
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(
                    this.cut(Reason::StreamDurationExceeded),
                ))));
            }
        }
        let polled = match &mut this.content {
            ResponseContent::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            ResponseContent::Upstream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(polled) => {
                    if let Some(idle) = &mut this.idle {
                        idle.waiting = false;
                    }
                    polled
                }
                Poll::Pending => {
                    if this.idle.as_mut().is_some_and(|idle| idle.expired(cx)) {
                        let cut = this.cut(Reason::UpstreamIdleTimeout);
                        return Poll::Ready(Some(Err(Box::new(cut))));
                    }
                    return Poll::Pending;
                }
            },
        };
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_out += data.len() as u64;
                    if let Some(capture) = this.pending.as_mut().and_then(|p| p.recording.as_mut())
                    {
                        capture.response_chunk(data);
                    }
                }
                // Trailers are the last frame: the body has ended even if nothing says so yet.
                let trailers = frame.trailers_ref();
                if let (Some(trailers), Some(pending)) = (trailers, this.pending.as_mut()) {
                    pending.trailers(trailers);
                }
                if frame.is_trailers() || this.is_end_stream() {
                    this.finish(true);
                }
            }
            Some(Err(e)) => {
                if UpstreamBadResponse::is_in(e.as_ref()) {
                    this.name_stop(Reason::UpstreamBadResponse);
                }
                this.finish(false)
            }
            None => this.finish(true),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            ResponseContent::Full(bytes) => bytes.is_none(),
            ResponseContent::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            ResponseContent::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseContent::Upstream(body) => body.size_hint(),
        }
    }
}
