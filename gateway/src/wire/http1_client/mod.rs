//! Our own HTTP/1.1 client exchange, for requests without a body: the request head is written in
//! one write, the response head built from the spans the checks under the stream located
//! ([`UpstreamIo::scanned_head`]) or else parsed with httparse (less the fields that only manage
//! this connection), and the body decoded as the response body is polled — all on the request's own
//! task. hyper's client connection needs a task of its own per connection and a channel hop
//! each way per request; a profile charged a third of the gateway's instructions to it.
//! Requests with a body and upgrades stay on hyper, which reads the response while it still
//! writes the request.
//!
//! The connection rides in the response body and goes back to its [`ConnectionHome`] when the
//! body has been read whole and the exchange leaves it reusable; a body dropped part way closes
//! it, as hyper does. Every byte read here has passed the connection's [`UpstreamIo`] first —
//! the pool's strict response checks — so this module reads framing; it does not judge it.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

mod body;
mod names;

use body::Framing;
use names::{FieldKind, RecentNames};

use crate::vocab::fields;
pub use body::Http1Body;

/// Response header fields read at most, as hyper's client allows.
pub const MAX_HEADERS: usize = 100;
/// The longest response head read, as hyper's client allows (its default buffer limit).
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// The fields `mutate_request` sets on every request: X-Request-Id, traceparent,
/// X-Forwarded-For, Forwarded, X-Real-IP, X-Forwarded-Proto.
const FIELDS_ADDED_TO_A_REQUEST: usize = 6;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 8192;

/// A connection's byte stream as this client needs it.
pub trait UpstreamIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Told each request's method before the request is written: which responses have a body
    /// depends on it, and the checks under the stream follow the framing.
    fn sending(&mut self, method: &Method);

    /// The stream as its own type again, for a pool that hands an idle connection to another
    /// client (hyper's, for a request with a body).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;

    /// The response head that begins `buffered` bytes before the latest byte read, when the
    /// checks under the stream walked all of it and kept where its fields lie: the client
    /// builds the response from it instead of parsing the head again. `None`: it parses.
    fn scanned_head(&self, buffered: usize) -> Option<ScannedHead<'_>> {
        let _ = buffered;
        None
    }
}

/// A response head located by the checks under the stream.
#[derive(Debug, Clone, Copy)]
pub struct ScannedHead<'a> {
    /// Its length, blank line included.
    pub len: usize,
    pub status: u16,
    pub http10: bool,
    pub fields: &'a [FieldSpan],
}

/// Where one field lies in its head: byte offsets from the head's first byte, the value without
/// the whitespace around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// Where a connection goes when an exchange leaves it reusable (its pool's idle stack).
pub trait ConnectionHome: Send + Sync + 'static {
    fn take_back(&self, connection: Connection);
}

/// One HTTP/1.1 connection with its buffers, carrying one exchange at a time.
pub struct Connection {
    io: Box<dyn UpstreamIo>,
    read: BytesMut,
    /// The request head being written; kept so its allocation serves every request.
    write: Vec<u8>,
    /// The last response's field names, for the next response's.
    names: RecentNames,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// The request head could not be written: the upstream cannot have acted on it, and the
    /// request may go to another connection.
    Unsent(io::Error),
    /// The request went out and no usable response head came back.
    Failed(io::Error),
}

impl Connection {
    pub fn new(io: Box<dyn UpstreamIo>) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            names: RecentNames::default(),
        }
    }

    /// Whether an idle connection is still open and quiet. Polled once, never waiting: the
    /// runtime knows without a read whether the socket has become readable since the last one,
    /// and an idle connection that has — its close, or bytes nobody asked for — is not reusable.
    pub fn is_reusable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// The stream of an idle connection, for another client to carry on with; `None` when bytes
    /// are buffered (an idle connection has none).
    pub fn into_io(self) -> Option<Box<dyn UpstreamIo>> {
        self.read.is_empty().then_some(self.io)
    }

    /// Sends a bodiless request — `head` in origin form — and reads its response head. The
    /// response body holds the connection and gives it back to `home` when it allows.
    ///
    /// Once the head is written its header map is taken, emptied and filled with the response's
    /// fields: the map then goes round — hyper's server keeps each response's map for the next
    /// request it reads — and no exchange allocates one. An unsent request keeps its head whole
    /// for another connection.
    pub async fn send(
        mut self,
        head: &mut http::request::Parts,
        home: Arc<dyn ConnectionHome>,
    ) -> Result<Response<Http1Body>, SendError> {
        self.io.sending(&head.method);
        encode_head(&mut self.write, head);
        let written = self.io.write_all(&self.write).await;
        let written = match written {
            Ok(()) => self.io.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(SendError::Unsent)?;
        let request_closes = has_token(&head.headers, "close");
        let is_head = head.method == Method::HEAD;
        let mut spare = Some(std::mem::take(&mut head.headers));
        let (response, framing, keep_alive) = loop {
            let parsed = self
                .read_head(&mut spare)
                .await
                .map_err(SendError::Failed)?;
            let informational = parsed.0.status().is_informational();
            if !informational || parsed.0.status() == StatusCode::SWITCHING_PROTOCOLS {
                break parsed;
            }
            // An interim answer (100, 103): the final one follows on the same connection.
        };
        let framing = if is_head
            || response.status() == StatusCode::NO_CONTENT
            || response.status() == StatusCode::NOT_MODIFIED
        {
            Framing::Done
        } else if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Nobody asked for it; `forward` refuses the answer, and the connection is not HTTP.
            return Ok(response.map(|()| Http1Body::ended()));
        } else {
            framing
        };
        let reusable = keep_alive && !request_closes && !matches!(framing, Framing::ToEof);
        Ok(response.map(|()| Http1Body::new(self, framing, reusable, home)))
    }

    /// Reads one response head (interim or final) and what frames the body after it.
    /// `spare` is a map to fill; without one a new map is made.
    async fn read_head(
        &mut self,
        spare: &mut Option<HeaderMap>,
    ) -> io::Result<(Response<()>, Framing, bool)> {
        loop {
            if !self.read.is_empty() {
                if let Some(parsed) = self.parse_head(spare)? {
                    return Ok(parsed);
                }
            }
            if self.read.len() >= MAX_HEAD_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the upstream's response head is too large",
                ));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before a response head",
                ));
            }
        }
    }

    /// Reads what the stream has into the buffer; 0 at its end.
    async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// A whole head at the front of the buffer, taken off it; `None` while it is incomplete.
    fn parse_head(
        &mut self,
        spare: &mut Option<HeaderMap>,
    ) -> io::Result<Option<(Response<()>, Framing, bool)>> {
        // Where each field sits in the head, so values can share the head's bytes once the
        // borrow of the buffer ends: the spans the checks kept, or else httparse's.
        let mut parsed_spans = Vec::new();
        let (at, fields): (HeadAt, &[FieldSpan]) = match self.io.scanned_head(self.read.len()) {
            Some(scanned)
                if scanned.fields.len() <= MAX_HEADERS && scanned.len <= self.read.len() =>
            {
                let at = HeadAt {
                    len: scanned.len,
                    code: Some(scanned.status),
                    http10: scanned.http10,
                };
                (at, scanned.fields)
            }
            _ => match locate_fields(&self.read, &mut parsed_spans)? {
                Some(at) => (at, &parsed_spans),
                None => return Ok(None),
            },
        };
        let status = at
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| invalid("the upstream's status code is not one"))?;
        let version = if at.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let head = self.read.split_to(at.len).freeze();
        // Room for more than the head: hyper keeps a response's emptied map for the next
        // request it reads on the client's connection, and the fields `mutate_request` adds
        // (request id, trace, forwarding) then fit without the map growing and rehashing.
        let mut headers = match spare.take() {
            Some(mut map) => {
                map.clear();
                map.reserve(fields.len() + FIELDS_ADDED_TO_A_REQUEST);
                map
            }
            None => HeaderMap::with_capacity(fields.len() + FIELDS_ADDED_TO_A_REQUEST),
        };
        let mut content_length = None;
        let mut chunked = false;
        let mut close = version == Version::HTTP_10;
        for (position, field) in fields.iter().enumerate() {
            let raw_name = &head[field.name.0 as usize..field.name.1 as usize];
            let raw_value = field.value.0 as usize..field.value.1 as usize;
            let name = match self.names.kind(position, raw_name) {
                Ok(FieldKind::Other(name)) => name,
                // `Connection: keep-alive` or `close`, and `Keep-Alive`, speak of this
                // connection, which the client manages: they are read here and not handed on,
                // since a proxy removes them anyway. A `Connection` naming other fields stays,
                // so that the fields it names are removed too.
                Ok(FieldKind::Connection) => {
                    let says = connection_says(&head[raw_value.clone()]);
                    if says.close {
                        close = true;
                    } else if version == Version::HTTP_10 && says.keep_alive {
                        close = false;
                    }
                    if !says.names_fields {
                        continue;
                    }
                    CONNECTION
                }
                Ok(FieldKind::KeepAlive) => continue,
                Err(_) => return Err(invalid("a response field name is not one")),
            };
            let value = HeaderValue::from_maybe_shared(head.slice(raw_value))
                .map_err(|_| invalid("a response field value is not one"))?;
            if name == CONTENT_LENGTH {
                content_length = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if name == TRANSFER_ENCODING {
                chunked = true;
            }
            headers.append(name, value);
        }
        // The checks under the stream refused anything but one `chunked`, and a length that is
        // not one number, so these are the framing the head says.
        let framing = if chunked {
            Framing::chunked()
        } else if let Some(length) = content_length {
            Framing::Fixed(length)
        } else {
            Framing::ToEof
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        Ok(Some((response, framing, !close)))
    }

    /// The buffered bytes, for the body to read from.
    fn buffered(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// Whether nothing is buffered past the exchange that just ended.
    fn is_drained(&self) -> bool {
        !self.read.has_remaining()
    }
}

/// Parses the head at the front of `bytes` with httparse, for a head the checks under the
/// stream did not locate: its length, status code and whether it is HTTP/1.0, its fields'
/// spans pushed to `spans`. `None` while the head is incomplete.
fn locate_fields(bytes: &[u8], spans: &mut Vec<FieldSpan>) -> io::Result<Option<HeadAt>> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        bytes,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the upstream's response head does not parse: {e}"),
            ));
        }
    };
    let base = bytes.as_ptr() as usize;
    spans.extend(parsed.headers.iter().map(|field| {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        FieldSpan {
            name: (name as u32, (name + field.name.len()) as u32),
            value: (value as u32, (value + field.value.len()) as u32),
        }
    }));
    Ok(Some(HeadAt {
        len,
        code: parsed.code,
        http10: parsed.version == Some(0),
    }))
}

/// A head found at the front of the buffer; its fields' spans lie beside it.
struct HeadAt {
    len: usize,
    code: Option<u16>,
    http10: bool,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Writes `METHOD path HTTP/1.1`, the fields as they are (a bodiless request has no framing
/// field to keep: `Transfer-Encoding` is dropped, as hyper drops it), and the blank line.
fn encode_head(out: &mut Vec<u8>, head: &http::request::Parts) {
    out.clear();
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        if name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    fields::all(headers, &CONNECTION).any(|value| token_in(value, token))
}

/// What one `Connection` field value says.
#[derive(Default)]
struct ConnectionSays {
    close: bool,
    keep_alive: bool,
    /// It nominates other fields, which the proxy must remove with it.
    names_fields: bool,
}

fn connection_says(value: &[u8]) -> ConnectionSays {
    let mut says = ConnectionSays::default();
    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if token.eq_ignore_ascii_case(b"close") {
            says.close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            says.keep_alive = true;
        } else if !token.is_empty() {
            says.names_fields = true;
        }
    }
    says
}

/// Whether a comma-separated field value lists `token` (case-insensitively).
fn token_in(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests;
