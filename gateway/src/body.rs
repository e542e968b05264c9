//! Body types that stream: the request body on its way upstream (counted and capped by the
//! route's limit, its first bytes kept when the request is recorded) and the response body on
//! its way to the client (counted, hashed when the recording keeps responses, and the request's
//! record emitted when it ends — or when the client goes away).
//!
//! The request body is also paced ([`BodyPace`]): one that stops sending for
//! `limits.body_read_timeout`, or trickles below `limits.min_body_rate`, ends with
//! [`BodyStalled`], which `forward` answers with 408 while the upstream's request is aborted.
//!
//! A response body also keeps its client connection counted busy until it ends ([`Busy`]), so
//! the server's idle timeout never takes a stream that is still open for idleness, and ends the
//! stream when `limits.max_stream_duration` passes ([`ResponseBody::stream`]) or when the
//! upstream sends nothing for its `idle_timeout` ([`ResponseBody::idle_after`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::clock::{Nanos, SharedClock};
use crate::record::metrics::RouteMetrics;
use crate::record::recording::{Capture, RequestBodyPrefix};
use crate::record::{RecordSinks, RequestRecord};
use crate::vocab::{Reason, StageId};

/// A client connection's exchanges in progress — a request waiting for its answer, a response
/// body still streaming, a WebSocket relaying — and when the last of them ended: what the
/// server's idle timeout reads. A connection is idle only while nothing runs on it.
#[derive(Debug, Default)]
pub struct ConnectionActivity {
    running: AtomicUsize,
    last_nanos: AtomicU64,
    /// The stream guard waiting for the last exchange to end (a refused head is answered after
    /// the answers before it).
    idle: futures_util::task::AtomicWaker,
}

impl ConnectionActivity {
    /// A connection that last did something at `now` (its accept).
    pub fn new(now: Nanos) -> Self {
        Self {
            running: AtomicUsize::new(0),
            last_nanos: AtomicU64::new(now),
            idle: futures_util::task::AtomicWaker::new(),
        }
    }

    /// How long the connection has had nothing running, at `now`; 0 while something runs.
    pub fn idle_for(&self, now: Nanos) -> u64 {
        if self.running.load(Ordering::Acquire) > 0 {
            return 0;
        }
        now.saturating_sub(self.last_nanos.load(Ordering::Acquire))
    }
}

/// One exchange running on a connection, until dropped.
pub struct Busy {
    activity: Arc<ConnectionActivity>,
    clock: SharedClock,
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The end time first: a check between the two sees "running", never a stale "idle since".
        self.activity
            .last_nanos
            .fetch_max(self.clock.now(), Ordering::AcqRel);
        if self.activity.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity.idle.wake();
        }
    }
}

impl crate::wire::Exchanges for ConnectionActivity {
    fn running(&self) -> bool {
        self.running.load(Ordering::Acquire) > 0
    }

    fn wake_when_idle(&self, waker: &std::task::Waker) {
        self.idle.register(waker);
    }
}

/// What each request on a connection is handed (in its extensions) so that whatever outlives
/// its response head — the response body, a WebSocket relay — keeps the connection busy and
/// respects the stream duration limit.
#[derive(Clone)]
pub struct StreamTracker {
    activity: Arc<ConnectionActivity>,
    clock: SharedClock,
    max_duration: Option<Duration>,
}

impl StreamTracker {
    pub fn new(
        activity: Arc<ConnectionActivity>,
        clock: SharedClock,
        max_duration: Option<Duration>,
    ) -> Self {
        Self {
            activity,
            clock,
            max_duration,
        }
    }

    /// Counts one more exchange running on the connection until the guard is dropped.
    pub fn begin(&self) -> Busy {
        self.activity.running.fetch_add(1, Ordering::AcqRel);
        Busy {
            activity: self.activity.clone(),
            clock: self.clock.clone(),
        }
    }

    /// `limits.max_stream_duration` of the connection's config.
    pub fn max_duration(&self) -> Option<Duration> {
        self.max_duration
    }
}

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

/// Where a streaming request body reports what went through it.
pub trait BodyMeter: Send + Sync {
    /// `total` bytes have been seen so far; `data` is the chunk that just passed.
    fn saw(&self, total: u64, data: &Bytes);

    /// The gateway ended the body itself, for `why`. Said here as well as in the body's error
    /// because HTTP/2 does not hand a request body's error back: the upstream's stream is reset
    /// and the response future fails with the reset alone.
    fn refused(&self, _why: BodyRefusal) {}
}

/// Why the gateway ended a client's request body before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Past the route's `max_body_bytes` ([`BodyTooLarge`]).
    TooLarge,
    /// Stalled or too slow ([`BodyStalled`]).
    Stalled,
}

/// A plain byte count (requests the gateway makes itself, such as health checks).
impl BodyMeter for AtomicU64 {
    fn saw(&self, total: u64, _data: &Bytes) {
        self.store(total, Ordering::Relaxed);
    }
}

/// A request's body as the record and the recording see it: the bytes that went through, and —
/// for a recorded request — its first `max_body_bytes`, kept as slices of the received chunks.
#[derive(Debug, Default)]
pub struct RequestBodyMeter {
    seen: AtomicU64,
    prefix: Option<parking_lot::Mutex<Prefix>>,
    /// A [`BodyRefusal`] as a number (0: none), set once when the gateway ends the body.
    refusal: std::sync::atomic::AtomicU8,
}

#[derive(Debug, Default)]
struct Prefix {
    chunks: Vec<Bytes>,
    room: usize,
}

impl RequestBodyMeter {
    /// A meter that only counts.
    pub fn counting() -> Self {
        Self::default()
    }

    /// A meter that also keeps the first `keep` bytes (`0` keeps none).
    pub fn keeping(keep: usize) -> Self {
        Self {
            seen: AtomicU64::new(0),
            refusal: std::sync::atomic::AtomicU8::new(0),
            prefix: (keep > 0).then(|| {
                parking_lot::Mutex::new(Prefix {
                    chunks: Vec::new(),
                    room: keep,
                })
            }),
        }
    }

    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Whether, and why, the gateway ended the body before its end.
    pub fn refusal(&self) -> Option<BodyRefusal> {
        match self.refusal.load(Ordering::Acquire) {
            1 => Some(BodyRefusal::TooLarge),
            2 => Some(BodyRefusal::Stalled),
            _ => None,
        }
    }

    /// The kept prefix and the whole length, taken out for the recording.
    pub fn take_prefix(&self) -> RequestBodyPrefix {
        RequestBodyPrefix {
            chunks: self
                .prefix
                .as_ref()
                .map(|p| std::mem::take(&mut p.lock().chunks))
                .unwrap_or_default(),
            len: self.seen(),
        }
    }
}

impl BodyMeter for RequestBodyMeter {
    fn refused(&self, why: BodyRefusal) {
        let code = match why {
            BodyRefusal::TooLarge => 1,
            BodyRefusal::Stalled => 2,
        };
        self.refusal.store(code, Ordering::Release);
    }

    fn saw(&self, total: u64, data: &Bytes) {
        self.seen.store(total, Ordering::Relaxed);
        if let Some(prefix) = &self.prefix {
            let mut prefix = prefix.lock();
            if prefix.room > 0 && !data.is_empty() {
                let take = prefix.room.min(data.len());
                prefix.room -= take;
                prefix.chunks.push(data.slice(..take));
            }
        }
    }
}

/// The request body sent upstream: the client's stream, passed through frame by frame.
pub struct UpstreamRequestBody {
    inner: Option<Incoming>,
    limit: u64,
    seen: u64,
    /// Shared with the record so it can report bytes in once the exchange ends.
    counter: Arc<dyn BodyMeter>,
    /// The body's pace rule at work, when it has one ([`UpstreamRequestBody::paced`]).
    pacing: Option<Box<Pacing>>,
}

/// `limits.body_read_timeout` and `limits.min_body_rate`: the rule a streaming request body is
/// held to, over an explicit `now`. A body stalls when no bytes came for `read_timeout`, or —
/// once `grace` has passed since it started — when its average rate since it started is below
/// `min_rate` bytes per second (an average, so a pause is forgiven when bytes came fast before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    pub read_timeout: Duration,
    /// Bytes per second, and the grace before it applies.
    pub min_rate: Option<(u64, Duration)>,
}

/// Where a body stands under its pace rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceState {
    /// When the body was first asked for bytes (the gateway starts sending it upstream then;
    /// time spent in the stages before is not the client's).
    pub started: Nanos,
    /// When the last bytes came (`started` before any).
    pub last: Nanos,
    pub seen: u64,
}

impl BodyPace {
    /// The body's pace rule under `limits`.
    pub fn of(limits: &crate::config::raw::RawLimits) -> Self {
        Self {
            read_timeout: limits.body_read_timeout,
            min_rate: limits
                .min_body_rate
                .map(|rate| (rate, limits.min_body_rate_grace)),
        }
    }

    /// When the body stalls if no more bytes come, and as what: the earlier of the read
    /// timeout's deadline and the moment the average rate drops below the minimum.
    pub fn stalls_at(&self, state: &PaceState) -> (Nanos, BodyStalled) {
        let idle = (
            state.last.saturating_add(duration_nanos(self.read_timeout)),
            BodyStalled::Idle(self.read_timeout),
        );
        let Some((rate, grace)) = self.min_rate.filter(|(rate, _)| *rate > 0) else {
            return idle;
        };
        // seen / elapsed < rate exactly when elapsed > seen / rate.
        let earned = u64::try_from(u128::from(state.seen) * 1_000_000_000 / u128::from(rate))
            .unwrap_or(u64::MAX);
        let slow = state
            .started
            .saturating_add(earned.max(duration_nanos(grace)));
        if slow < idle.0 {
            (slow, BodyStalled::Slow(rate))
        } else {
            idle
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A body's pace rule with its state and its alarm. The rule decides with the injected clock —
/// one reading per chunk, no timer touched per chunk — and a tokio timer only wakes the body to
/// ask it again: set for when the body would stall, it may ring early (bytes came since), never
/// late.
struct Pacing {
    rule: BodyPace,
    clock: SharedClock,
    state: Option<PaceState>,
    /// Made the first time the body waits: a body that never waits costs no timer.
    alarm: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the alarm is set for; `None` when it has rung.
    alarm_at: Option<Nanos>,
}

impl Pacing {
    fn start(&mut self) {
        if self.state.is_none() {
            let now = self.clock.now();
            self.state = Some(PaceState {
                started: now,
                last: now,
                seen: 0,
            });
        }
    }

    fn saw(&mut self, seen: u64) {
        if let Some(state) = &mut self.state {
            state.last = self.clock.now();
            state.seen = seen;
        }
    }

    /// With the client's body pending: the stall, if it has come; else the alarm is set.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Option<BodyStalled> {
        let state = self.state?;
        loop {
            let now = self.clock.now();
            let (at, stall) = self.rule.stalls_at(&state);
            if now >= at {
                return Some(stall);
            }
            let wait = Duration::from_nanos(at - now);
            let alarm = match &mut self.alarm {
                Some(alarm) => {
                    if self.alarm_at.is_none_or(|set| set > at) {
                        alarm.set(tokio::time::sleep(wait));
                        self.alarm_at = Some(at);
                    }
                    alarm
                }
                None => {
                    self.alarm_at = Some(at);
                    self.alarm.insert(Box::pin(tokio::time::sleep(wait)))
                }
            };
            match alarm.as_mut().poll(cx) {
                Poll::Ready(()) => self.alarm_at = None,
                Poll::Pending => return None,
            }
        }
    }
}

/// The client's body stopped, or came too slowly; `forward` turns it into a 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyStalled {
    #[error("no request-body bytes came for {0:?} (limits.body_read_timeout)")]
    Idle(Duration),
    #[error("the request body came slower than {0} bytes per second (limits.min_body_rate)")]
    Slow(u64),
}

/// The client sent more than the route allows; `forward` turns it into a 413.
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl UpstreamRequestBody {
    pub fn new<M: BodyMeter + 'static>(
        inner: Option<Incoming>,
        limit: u64,
        counter: Arc<M>,
    ) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            counter,
            pacing: None,
        }
    }

    /// Holds the body to `rule`, with time from `clock`. A body without bytes to come is never
    /// paced.
    pub fn paced(mut self, rule: BodyPace, clock: SharedClock) -> Self {
        if !self.is_end_stream() {
            self.pacing = Some(Box::new(Pacing {
                rule,
                clock,
                state: None,
                alarm: None,
                alarm_at: None,
            }));
        }
        self
    }
}

impl Body for UpstreamRequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(pacing) = &mut this.pacing {
            pacing.start();
        }
        let Poll::Ready(polled) = Pin::new(inner).poll_frame(cx) else {
            if let Some(stall) = this.pacing.as_mut().and_then(|p| p.poll_stall(cx)) {
                // Dropping the client's body here; the upstream's request fails with the error,
                // so it never sees the message end.
                this.inner = None;
                this.pacing = None;
                this.counter.refused(BodyRefusal::Stalled);
                return Poll::Ready(Some(Err(Box::new(stall))));
            }
            return Poll::Pending;
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.counter.saw(this.seen, data);
                    // Empty DATA frames are no progress: they cannot keep a body alive.
                    if let Some(pacing) = this.pacing.as_mut().filter(|_| !data.is_empty()) {
                        pacing.saw(this.seen);
                    }
                    if this.seen > this.limit {
                        this.inner = None;
                        this.counter.refused(BodyRefusal::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

/// What a response carries: a body the gateway wrote, or the upstream's stream.
pub enum ResponseContent {
    Full(Option<Bytes>),
    Upstream(Incoming),
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
}

impl PendingRecord {
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        if self.grpc {
            if let Some(code) = crate::vocab::grpc::status_of(trailers) {
                self.record.grpc_status = Some(code);
            }
        }
    }

    fn finish(mut self, bytes_out: u64, completed: bool) {
        self.record.bytes_out = bytes_out;
        self.record.completed = completed;
        if let Some(counter) = &self.bytes_in {
            self.record.bytes_in = counter.seen();
        }
        self.record.duration_ns = self.clock.now().saturating_sub(self.arrived);
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
            return;
        }
        self.sinks.emit(self.record, self.route_metrics.as_deref());
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
    /// that end it instead.
    end_with: Option<(Pin<Box<tokio::time::Sleep>>, http::HeaderMap)>,
    /// The upstream's `idle_timeout`: the longest the body waits for the upstream's next bytes.
    idle: Option<IdleTimer>,
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

    pub fn upstream(body: Incoming) -> Self {
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
            self.end_with = Some((Box::pin(tokio::time::sleep(after)), trailers));
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
        if let Some(pending) = self.pending.take() {
            pending.finish(self.bytes_out, completed);
        }
        // After the record: whoever sees the connection idle next also sees the record out.
        self.busy = None;
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
        if let Some((sleep, _)) = &mut this.end_with {
            if sleep.as_mut().poll(cx).is_ready() {
                let trailers = this.end_with.take().map(|(_, t)| t).unwrap_or_default();
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
        let polled = polled.map(|frame| frame.map_err(Self::Error::from));
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn state(started: u64, last: u64, seen: u64) -> PaceState {
        PaceState {
            started: started * MS,
            last: last * MS,
            seen,
        }
    }

    #[test]
    fn a_body_stalls_a_read_timeout_after_its_last_bytes() {
        let pace = BodyPace {
            read_timeout: Duration::from_millis(300),
            min_rate: None,
        };
        let idle = BodyStalled::Idle(Duration::from_millis(300));
        assert_eq!(pace.stalls_at(&state(0, 0, 0)), (300 * MS, idle));
        // Each chunk moves the deadline: it counts from the last bytes, not from the start.
        assert_eq!(pace.stalls_at(&state(0, 1000, 5)), (1300 * MS, idle));
    }

    #[test]
    fn a_body_below_the_minimum_rate_stalls_once_the_grace_has_passed() {
        let pace = BodyPace {
            read_timeout: Duration::from_secs(60),
            min_rate: Some((1000, Duration::from_millis(500))),
        };
        let slow = BodyStalled::Slow(1000);
        // 100 bytes at 1000 B/s are earned in 100 ms: the grace decides.
        assert_eq!(pace.stalls_at(&state(0, 50, 100)), (500 * MS, slow));
        // 2000 bytes earn 2 s from the start, however late they came.
        assert_eq!(pace.stalls_at(&state(0, 1900, 2000)), (2000 * MS, slow));
        // The read timeout stays the bound when it comes first.
        let tight = BodyPace {
            read_timeout: Duration::from_millis(50),
            ..pace
        };
        assert_eq!(
            tight.stalls_at(&state(0, 1900, 2000)),
            (1950 * MS, BodyStalled::Idle(Duration::from_millis(50)))
        );
    }

    #[test]
    fn the_rate_rule_never_overflows() {
        let pace = BodyPace {
            read_timeout: Duration::MAX,
            min_rate: Some((1, Duration::MAX)),
        };
        let (at, _) = pace.stalls_at(&PaceState {
            started: u64::MAX - 1,
            last: u64::MAX,
            seen: u64::MAX,
        });
        assert_eq!(at, u64::MAX);
    }
}
