//! The stream guard: wraps a client connection before hyper reads it and lets through only the
//! bytes [`MessageStream`] accepted, so hyper's lenient HTTP/1 parser never sees a head the
//! gateway refuses.
//!
//! - A refused head: the bytes before it go on, then — once every earlier exchange on the
//!   connection has ended ([`Exchanges`]) — hyper reads the end of the stream, finishes, and
//!   shuts the connection down; the guard writes the refusal's RFC 9457 answer
//!   (`Connection: close`) just before that shutdown. [`GuardReport`] keeps it for the record.
//! - A malformed chunked body: the good bytes go on, then hyper's read fails with
//!   [`MalformedBody`], which hyper hands to the request body's reader: `forward` aborts the
//!   upstream request and answers 400 itself.
//! - On HTTP/2 the bytes pass unread by the HTTP/1.1 walk, and an [`H2Watch`] follows the
//!   frames both ways: a request the h2 library refused by itself (a malformed header block, one
//!   past its ceiling, a stream over its limit) goes to the report's stream sink, for its record.
//! - An idle keep-alive connection can be parked: asked to ([`Exchanges::park_requested`]),
//!   the guard answers hyper's next read that finds nothing — between two messages, nothing
//!   held or owed — with the end of the stream, and ignores hyper's shutdown. hyper's
//!   connection ends cleanly and the server drops it, buffers and all, keeping only the socket;
//!   [`Guarded::poll_resume`] waits for the next bytes before a new one is built.
//! - The connection's first byte must arrive within `limits.header_read_timeout`, and each head
//!   must end within it of its first bytes, or hyper reads the end of the stream. (hyper's own
//!   header timer is off: it also runs while a keep-alive connection idles.)
//!
//! The common case costs one pass over the bytes where hyper's buffer already holds them: no
//! copy, no allocation. Only a head split across reads is copied, into a buffer the connection
//! keeps.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::chunked::BodyError;
use super::h2_frames::{H2Watch, StreamRefusal};
use super::stream::{Fed, HeadRefusal, MessageStream};
use crate::vocab::rejection::PROBLEM_JSON;
use crate::vocab::trace::new_request_id;
use crate::vocab::{Reason, Rejection, StageId};

/// The exchanges running on a connection, as the guard needs to know them: a refused head is
/// answered only after the answers before it.
pub trait Exchanges: Send + Sync {
    /// Something is running: a request waiting for its answer, a response body streaming.
    fn running(&self) -> bool;
    /// Wake `waker` when nothing runs any more.
    fn wake_when_idle(&self, waker: &Waker);
    /// The server wants the connection parked ([`Guarded::is_parked`]) at its next idle read.
    fn park_requested(&self) -> bool;
}

/// The error hyper's read fails with when the client's chunked body is malformed: it reaches
/// the request body's reader as the source of hyper's error (inside an `io::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct MalformedBody(pub BodyError);

impl MalformedBody {
    /// Finds a [`MalformedBody`] in an error's chain (an `io::Error` hides its payload from
    /// `source()`, so each one is opened).
    pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> Option<MalformedBody> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(found) = e.downcast_ref::<MalformedBody>() {
                return Some(*found);
            }
            if let Some(found) = e
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<MalformedBody>())
            {
                return Some(*found);
            }
            cause = e.source();
        }
        None
    }
}

/// Where the requests h2 refused by itself go, as the guard finds them.
pub type StreamSink = Box<dyn Fn(StreamRefusal) + Send + Sync>;

/// What a guard refused: a head, for the server to record once the connection ends; HTTP/2
/// streams h2 refused, handed to the stream sink at once.
#[derive(Default)]
pub struct GuardReport {
    refused: parking_lot::Mutex<Option<Refused>>,
    answered: AtomicBool,
    answer_bytes: AtomicU64,
    streams: Option<StreamSink>,
}

impl std::fmt::Debug for GuardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardReport")
            .field("refused", &self.refused)
            .field("answered", &self.answered)
            .field("answer_bytes", &self.answer_bytes)
            .finish_non_exhaustive()
    }
}

/// A refused head as the record needs it.
#[derive(Debug, Clone)]
pub struct Refused {
    pub head: HeadRefusal,
    pub rejection: Rejection,
    pub request_id: String,
}

impl GuardReport {
    /// A report whose HTTP/2 stream refusals go to `streams`.
    pub fn with_stream_sink(streams: StreamSink) -> Self {
        Self {
            streams: Some(streams),
            ..Self::default()
        }
    }

    /// The refusal, once: the record is emitted once.
    pub fn take(&self) -> Option<Refused> {
        self.refused.lock().take()
    }

    /// Whether the refusal's answer was written in full.
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// The answer's body size (what a record's `bytes_out` counts), once written.
    pub fn answer_bytes(&self) -> u64 {
        self.answer_bytes.load(Ordering::Acquire)
    }
}

enum Reading {
    Open,
    /// A head was refused: the stream ends for hyper once earlier exchanges are done.
    Refusing,
    BodyFailed(BodyError),
    Ended,
}

/// A client connection as hyper reads it.
pub struct Guarded<S> {
    inner: S,
    stream: MessageStream,
    /// Bytes read but not handed on: `ready` of them validated, then the start of a head that
    /// has not ended.
    held: Vec<u8>,
    ready: usize,
    reading: Reading,
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `limits.header_read_timeout`: for the first byte, and for a head that has begun.
    head_timeout: Duration,
    /// Set when a head has begun and not ended; its end must come before it rings.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    exchanges: Arc<dyn Exchanges>,
    report: Arc<GuardReport>,
    /// The refusal's answer and how much of it is written.
    answer: Option<(Bytes, usize)>,
    answer_body: u64,
    /// The HTTP/2 frame watch, once the connection turned out to speak HTTP/2 (boxed: most
    /// connections never need it).
    h2: Option<Box<H2Watch>>,
    /// hyper was told the stream ended so that the server can drop hyper's connection state
    /// while the client is idle; the socket itself stays open ([`Guarded::poll_resume`]).
    parked: bool,
}

impl<S> Guarded<S> {
    /// `head_timeout`: how long the connection may stay silent from now before its first byte,
    /// and how long any head may take from its first bytes to its end.
    pub fn new(
        inner: S,
        stream: MessageStream,
        head_timeout: Duration,
        exchanges: Arc<dyn Exchanges>,
        report: Arc<GuardReport>,
    ) -> Self {
        Self {
            inner,
            held: Vec::new(),
            ready: 0,
            reading: Reading::Open,
            first_byte: Some(Box::pin(tokio::time::sleep(head_timeout))),
            head_timeout,
            head_deadline: None,
            exchanges,
            report,
            answer: None,
            answer_body: 0,
            // On ALPN `h2` the server's SETTINGS may go out before the client's first byte.
            h2: stream.is_http2().then(Box::default),
            parked: false,
            stream,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the client's bytes turned out to be HTTP/2 (ALPN `h2`, or the h2c preface once
    /// [`Guarded::poll_resume`] has read it).
    pub fn speaks_http2(&self) -> bool {
        self.stream.is_http2()
    }

    /// Whether the last read told hyper "end of stream" to park the connection, not because
    /// the client closed it. hyper's shutdown of a parked stream leaves the socket open.
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Whether a head has begun to arrive and has not ended: what the header read timeout
    /// times while no hyper connection reads.
    pub fn holds_partial_head(&self) -> bool {
        self.held.len() > self.ready
    }

    /// Bytes hyper had read and not used when its connection was taken apart: handed on again
    /// first (they were walked already).
    pub fn unread(&mut self, bytes: &[u8]) {
        self.held.splice(0..0, bytes.iter().copied());
        self.ready += bytes.len();
    }

    /// Waits, with no hyper connection on the stream, for the client's next bytes: reads and
    /// walks them as a read from hyper would, and keeps those that go on for the connection
    /// built next. Ready once some go on, or once the stream has ended for hyper (the client
    /// closed, a head was refused, the first byte never came): the next connection then reads
    /// that end. Until then nothing but this small read buffer is held for the connection.
    pub fn poll_resume(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncRead + Unpin,
    {
        self.parked = false;
        let mut room = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut buf = ReadBuf::uninit(&mut room);
        ready!(Pin::new(&mut *self).poll_read(cx, &mut buf))?;
        self.unread(buf.filled());
        Poll::Ready(Ok(()))
    }

    /// A read found nothing more of a head that has begun: pending until
    /// `limits.header_read_timeout` has passed since its first bytes, then the end of the
    /// stream for hyper, which closes the connection (a slowloris client's). Timed here rather
    /// than by hyper, whose timer also runs while a keep-alive connection merely idles.
    fn pending_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.holds_partial_head() {
            return Poll::Pending;
        }
        let timeout = self.head_timeout;
        let deadline = self
            .head_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.head_deadline = None;
        self.held = Vec::new();
        self.ready = 0;
        self.reading = Reading::Ended;
        Poll::Ready(Ok(()))
    }

    /// A read found nothing: whether to answer it with the end of the stream and park. Only
    /// between messages, with nothing held, running or owed: hyper then ends the connection
    /// cleanly and loses nothing.
    fn parks_now(&mut self) -> bool {
        let idle = self.exchanges.park_requested()
            && matches!(self.reading, Reading::Open)
            && self.held.is_empty()
            && self.answer.is_none()
            && self.h2.is_none()
            && self.stream.between_messages()
            && !self.exchanges.running();
        if idle {
            self.parked = true;
        }
        idle
    }

    /// Client bytes handed on to hyper: on HTTP/2, watched.
    fn handed_on(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || !self.stream.is_http2() {
            return;
        }
        self.h2.get_or_insert_default().client_bytes(bytes);
    }

    /// Server bytes written: on HTTP/2, watched for h2's own refusals.
    fn written(&mut self, bytes: &[u8]) {
        let Some(watch) = self.h2.as_mut() else {
            return;
        };
        let report = &self.report;
        watch.server_bytes(bytes, |refusal| {
            if let Some(sink) = &report.streams {
                sink(refusal);
            }
        });
    }

    /// Applies a verdict on bytes just read. Returns how many of them go on.
    fn verdict(&mut self, fed: Fed, len: usize) -> usize {
        match fed {
            Fed::Pass => len,
            Fed::Hold { pass } => pass,
            Fed::Refuse { pass, refusal } => {
                self.refuse(refusal);
                pass
            }
            Fed::BadBody { pass, error } => {
                self.reading = Reading::BodyFailed(error);
                pass
            }
        }
    }

    fn refuse(&mut self, head: HeadRefusal) {
        // The limits' own words, as the `tls` stage says them over HTTP/2.
        let limits = self.stream.limits();
        let detail: std::borrow::Cow<'static, str> = match head.refusal.reason {
            Reason::HeadersTooLarge => format!(
                "the request headers exceed {} bytes or {} fields",
                limits.max_header_bytes, limits.max_headers
            )
            .into(),
            Reason::UriTooLong => {
                format!("the request target exceeds {} bytes", limits.max_uri_bytes).into()
            }
            _ => head.refusal.detail.into(),
        };
        let rejection =
            Rejection::new(StageId::Tls, head.refusal.reason, detail).closing_connection();
        let request_id = new_request_id();
        self.answer_body = rejection.problem_body(&request_id).len() as u64;
        self.answer = Some((answer(&rejection, &request_id), 0));
        *self.report.refused.lock() = Some(Refused {
            head,
            rejection,
            request_id,
        });
        self.reading = Reading::Refusing;
    }
}

/// The refusal as bytes on the wire: what the pipeline answers a stop with, and `Connection:
/// close`.
fn answer(rejection: &Rejection, request_id: &str) -> Bytes {
    let body = rejection.problem_body(request_id);
    let status = rejection.status;
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncache-control: no-store\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.ready -= n;
                if this.held.is_empty() {
                    // Its room goes too: an idle connection keeps no buffer of its own.
                    this.held = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            match this.reading {
                Reading::Open => {}
                Reading::Refusing => {
                    if this.exchanges.running() {
                        this.exchanges.wake_when_idle(cx.waker());
                        // Checked again: the last exchange may have ended in between.
                        if this.exchanges.running() {
                            return Poll::Pending;
                        }
                    }
                    this.reading = Reading::Ended;
                    return Poll::Ready(Ok(()));
                }
                Reading::BodyFailed(error) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        MalformedBody(error),
                    )));
                }
                Reading::Ended => return Poll::Ready(Ok(())),
            }
            if let Some(deadline) = this.first_byte.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    // Silent since the accept: the stream ends here for hyper.
                    this.first_byte = None;
                    this.reading = Reading::Ended;
                    return Poll::Ready(Ok(()));
                }
            }
            if !this.held.is_empty() {
                // A head split across reads: more of it, after what is held. (Rare, so the
                // room is zeroed rather than read into uninitialized.)
                let held = this.held.len();
                this.held.resize(held + 8192, 0);
                let mut more = ReadBuf::new(&mut this.held[held..]);
                let read = Pin::new(&mut this.inner).poll_read(cx, &mut more);
                let n = more.filled().len();
                this.held.truncate(held + n);
                if read?.is_pending() {
                    return this.pending_head(cx);
                }
                if n == 0 {
                    // The client closed inside a head hyper never saw: nothing to answer.
                    this.held.clear();
                    this.reading = Reading::Ended;
                    return Poll::Ready(Ok(()));
                }
                let len = this.held.len();
                let fed = this.stream.feed(&this.held);
                let pass = this.verdict(fed, len);
                this.held.truncate(match this.reading {
                    Reading::Open => len,
                    _ => pass,
                });
                this.ready = pass;
                if !this.holds_partial_head() {
                    this.head_deadline = None;
                }
                if this.stream.is_http2() {
                    let held = std::mem::take(&mut this.held);
                    this.handed_on(&held[..pass]);
                    this.held = held;
                }
                continue;
            }
            if this.stream.is_passthrough() {
                let start = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                if buf.filled().len() > start {
                    this.first_byte = None;
                    this.handed_on(&buf.filled()[start..]);
                }
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            if Pin::new(&mut this.inner).poll_read(cx, buf)?.is_pending() {
                if this.parks_now() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            let len = buf.filled().len() - start;
            if len == 0 {
                return Poll::Ready(Ok(()));
            }
            this.first_byte = None;
            let fed = this.stream.feed(&buf.filled()[start..]);
            let pass = this.verdict(fed, len);
            if pass < len && matches!(this.reading, Reading::Open) {
                this.held
                    .extend_from_slice(&buf.filled()[start + pass..start + len]);
            }
            buf.set_filled(start + pass);
            if pass > 0 {
                this.handed_on(&buf.filled()[start..]);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.written(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if this.h2.is_some() {
            let mut left = n;
            for slice in bufs {
                let take = left.min(slice.len());
                this.written(&slice[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// hyper shuts down after its last answer: the refusal's answer goes first.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        if let Some((bytes, written)) = &mut this.answer {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            this.report
                .answer_bytes
                .store(this.answer_body, Ordering::Release);
            this.answer = None;
            this.report.answered.store(true, Ordering::Release);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
