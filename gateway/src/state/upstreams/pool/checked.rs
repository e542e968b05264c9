//! The strict reader of an HTTP/1.1 upstream connection: every byte a client reads from it
//! (hyper's, or our own exchange's in `wire::http1_client`) passes through a scanner
//! (`checked/scan.rs`) that follows the responses' framing — each head, then its body by
//! `Content-Length` or chunks, then the next head — and refuses what RFC 9112 calls ambiguous or what a lenient
//! parser and a strict one would frame differently (a desync, or a smuggled response):
//!
//! - a head line that does not end in CRLF (a bare LF, a CR without LF), obsolete line folding,
//!   whitespace before a field's colon, a field name outside `tchar`, a control byte (NUL
//!   included) in a field value or the reason phrase, a status line that is not `HTTP/1.x NNN`;
//! - `Content-Length` together with `Transfer-Encoding`; a `Content-Length` that is not one
//!   decimal number, or appears twice — even `5, 5`, which RFC 9110 §8.6 lets a recipient read
//!   as one, because a second value is only ever there by a bug or an attack;
//! - a `Transfer-Encoding` that is not exactly one `chunked` (two lines, `chunked, chunked`,
//!   `gzip, chunked`, an unknown coding), or any on an HTTP/1.0 response (RFC 9112 §6.1);
//! - in a chunked body: a chunk size that is not hex or overflows, a control byte in a chunk
//!   extension, chunk data not followed by CRLF, a trailer line as malformed as a head's, or a
//!   framing field (`Content-Length`, `Transfer-Encoding`) in the trailers;
//! - bytes after a response that are not a valid next head, or any byte of a response while no
//!   request is waiting for one (a response queued ahead would answer the next request).
//!
//! A violation fails the read that carries it (the client never sees those bytes) and every read
//! after, with an [`UpstreamBadResponse`] inside the `io::Error`: the client ends the exchange, so
//! the connection is closed, never reused, and the pool reports the failure as
//! `upstream-bad-response`.
//!
//! Which responses have no body depends on the request (`HEAD`, a `CONNECT` tunnel), so the pool
//! tells the connection's [`Exchange`] each request's method before sending it — one request at
//! a time on an HTTP/1.1 connection — and counts the requests, so that a response nobody asked
//! for is refused rather than kept for the next request. After `101 Switching Protocols`, a
//! `CONNECT` tunnel or a body that runs to the connection's close, nothing further is HTTP and
//! nothing is checked.
//!
//! On our own client's connections ([`Checked::locating_heads`]) the scanner also keeps where
//! each response head's fields lie, so the client builds the response without parsing the head
//! a second time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::UpstreamBadResponse;
use crate::wire::http1_client::ScannedHead;

mod scan;

use scan::{CONNECT, HEAD, OTHER, Scan, Sent};

/// The request a connection carries now, as far as framing its response needs.
#[derive(Debug, Default)]
pub struct Exchange {
    method: AtomicU8,
    /// Requests handed to a client on this connection.
    sent: AtomicU64,
}

impl Exchange {
    /// Called before each request is handed to its client.
    pub fn sending(&self, method: &Method) {
        let kind = if method == Method::HEAD {
            HEAD
        } else if method == Method::CONNECT {
            CONNECT
        } else {
            OTHER
        };
        self.method.store(kind, Ordering::Relaxed);
        // After the method: whoever sees the count sees the method of the request it counts.
        self.sent.fetch_add(1, Ordering::Release);
    }

    fn now(&self) -> Sent {
        let sent = self.sent.load(Ordering::Acquire);
        Sent {
            method: self.method.load(Ordering::Relaxed),
            sent,
        }
    }
}

/// A connection's stream with its responses checked on the way in; writes pass through.
pub struct Checked<S> {
    inner: S,
    scan: Scan,
    exchange: Arc<Exchange>,
}

impl<S> Checked<S> {
    pub fn new(inner: S, exchange: Arc<Exchange>) -> Self {
        Self {
            inner,
            scan: Scan::default(),
            exchange,
        }
    }

    /// A stream for our own client, whose scanner also keeps where each response head's fields
    /// lie ([`crate::wire::http1_client::UpstreamIo::scanned_head`]), for heads of at most
    /// `max_fields` fields.
    pub fn locating_heads(inner: S, exchange: Arc<Exchange>, max_fields: usize) -> Self {
        Self {
            inner,
            scan: Scan::locating_heads(max_fields),
            exchange,
        }
    }

    pub fn exchange(&self) -> Arc<Exchange> {
        self.exchange.clone()
    }
}

/// Our own HTTP/1.1 exchange reads through the same checks, and tells them each method itself.
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> crate::wire::http1_client::UpstreamIo
    for Checked<S>
{
    fn sending(&mut self, method: &Method) {
        self.exchange.sending(method);
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn scanned_head(&self, buffered: usize) -> Option<ScannedHead<'_>> {
        let head = self.scan.located(buffered)?;
        Some(ScannedHead {
            len: usize::try_from(head.end - head.start).ok()?,
            status: head.status,
            http10: head.http10,
            fields: &head.fields,
        })
    }
}

fn refused(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, UpstreamBadResponse(what))
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(what) = this.scan.failed {
            return Poll::Ready(Err(refused(what)));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        match this.scan.feed(&buf.filled()[before..], this.exchange.now()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(what) => {
                this.scan.failed = Some(what);
                // The caller advances its buffer only on `Ok`: these bytes are never parsed.
                Poll::Ready(Err(refused(what)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
