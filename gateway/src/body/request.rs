//! The request body on its way upstream: the client's stream passed through frame by frame,
//! counted and capped by the route's limit, its first bytes kept when the request is recorded,
//! and held to its pace rule ([`super::BodyPace`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pace::{BodyPace, Pacing};
use crate::clock::SharedClock;
use crate::record::recording::RequestBodyPrefix;

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
            self.pacing = Some(Box::new(Pacing::new(rule, clock)));
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
