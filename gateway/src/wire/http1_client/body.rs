//! The response body of our own HTTP/1.1 exchange: read from the connection by its framing —
//! a length, chunks (trailers included), or the connection's end — and the connection given back
//! to its home the moment the last byte is read. A body already whole in the buffer with its
//! head is taken at once, and the connection goes back before the response is even relayed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use super::{Connection, ConnectionHome};

/// The longest chunk-size line or trailer section read.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Trailer fields read at most.
const MAX_TRAILERS: usize = 64;

/// How the rest of a response body is framed.
#[derive(Debug)]
pub(super) enum Framing {
    Done,
    /// Bytes left of a `Content-Length` body.
    Fixed(u64),
    Chunked(Chunk),
    /// To the connection's end: the connection is never reused.
    ToEof,
}

impl Framing {
    pub(super) fn chunked() -> Self {
        Framing::Chunked(Chunk::Size)
    }
}

/// Where a chunked body's decoding is.
#[derive(Debug)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    NeedMore,
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the upstream closed the connection before the response body ended",
    )
}

fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Chunk {
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Decoded> {
        loop {
            match self {
                Chunk::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *self = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_LINE_BYTES => {
                        return Ok(Decoded::NeedMore);
                    }
                    _ => return Err(malformed("a chunk size line does not parse")),
                },
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(malformed("chunk data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunk::Size;
                }
                Chunk::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                    let (len, map) = match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for field in fields {
                                let name = HeaderName::from_bytes(field.name.as_bytes())
                                    .map_err(|_| malformed("a trailer name is not one"))?;
                                let value = HeaderValue::from_bytes(field.value)
                                    .map_err(|_| malformed("a trailer value is not one"))?;
                                map.append(name, value);
                            }
                            (len, map)
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_LINE_BYTES => {
                            return Ok(Decoded::NeedMore);
                        }
                        _ => return Err(malformed("the trailer section does not parse")),
                    };
                    buf.advance(len);
                    return Ok(if map.is_empty() {
                        Decoded::End
                    } else {
                        Decoded::Trailers(map)
                    });
                }
            }
        }
    }
}

/// An upstream response body read by our own HTTP/1.1 exchange.
pub struct Http1Body {
    /// The whole body, when it came with its head.
    whole: Option<Bytes>,
    /// The connection while the body is still read from it; `None` once the body has ended,
    /// its connection given back or closed. Boxed: a response body is moved several times on
    /// its way to the client, and most bodies come whole with their head and never need it.
    reading: Option<Box<Reading>>,
}

struct Reading {
    connection: Connection,
    home: Arc<dyn ConnectionHome>,
    framing: Framing,
    reusable: bool,
}

impl Reading {
    /// The exchange is over: the connection goes home if it may carry another, else closes.
    fn release(self) {
        if self.reusable && self.connection.is_drained() {
            self.home.take_back(self.connection);
        }
    }
}

impl Http1Body {
    /// A body with nothing to read (after `101`, whose connection is not HTTP any more).
    pub(super) fn ended() -> Self {
        Self {
            whole: None,
            reading: None,
        }
    }

    pub(super) fn new(
        mut connection: Connection,
        framing: Framing,
        reusable: bool,
        home: Arc<dyn ConnectionHome>,
    ) -> Self {
        let mut framing = framing;
        let mut whole = None;
        if let Framing::Fixed(length) = framing {
            let buffered = connection.buffered();
            if usize::try_from(length).is_ok_and(|n| n <= buffered.len()) {
                whole = (length > 0).then(|| buffered.split_to(length as usize).freeze());
                framing = Framing::Done;
            }
        }
        let reading = Reading {
            connection,
            home,
            framing,
            reusable,
        };
        if matches!(reading.framing, Framing::Done) {
            reading.release();
            return Self {
                whole,
                reading: None,
            };
        }
        Self {
            whole,
            reading: Some(Box::new(reading)),
        }
    }

    /// The body has ended: its connection goes home if it may carry another.
    fn release(&mut self) {
        if let Some(reading) = self.reading.take() {
            reading.release();
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.reading = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(whole) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(whole))));
        }
        loop {
            let Some(reading) = this.reading.as_deref_mut() else {
                return Poll::Ready(None);
            };
            let buf = reading.connection.buffered();
            let decoded = match &mut reading.framing {
                Framing::Done => Decoded::End,
                Framing::Fixed(left) => {
                    if buf.is_empty() {
                        Decoded::NeedMore
                    } else {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                        *left -= n as u64;
                        let data = buf.split_to(n).freeze();
                        if *left == 0 {
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(chunk) => match chunk.decode(buf) {
                    Ok(decoded) => decoded,
                    Err(e) => return this.fail(e),
                },
                Framing::ToEof => {
                    if buf.is_empty() {
                        Decoded::NeedMore
                    } else {
                        Decoded::Data(buf.split().freeze())
                    }
                }
            };
            match decoded {
                Decoded::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Decoded::Trailers(trailers) => {
                    this.release();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Decoded::End => {
                    this.release();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => match ready!(reading.connection.poll_fill(cx)) {
                    Ok(0) if matches!(reading.framing, Framing::ToEof) => {
                        // The end of a body framed by the close: complete, never reused.
                        this.reading = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => return this.fail(eof()),
                    Ok(_) => continue,
                    Err(e) => return this.fail(e),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.whole, self.reading.as_deref().map(|r| &r.framing)) {
            (Some(whole), _) => SizeHint::with_exact(whole.len() as u64),
            (None, None | Some(Framing::Done)) => SizeHint::with_exact(0),
            (None, Some(Framing::Fixed(left))) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
