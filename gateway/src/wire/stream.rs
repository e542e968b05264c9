//! The client byte stream as a sequence of HTTP/1.1 messages: where each head starts and ends,
//! where each body ends, and when the stream stops being HTTP/1.1 (the HTTP/2 preface, an
//! upgrade). Pure: bytes in, a verdict out; [`super::guard`] applies it to a connection.

use super::chunked::{BodyError, ChunkedBody};
use super::request_head::{Framing, HeadError, HeadLimits, Refusal, parse_request_head};

/// RFC 9113 §3.4: what an HTTP/2 client with prior knowledge sends first.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest request-line excerpt a refusal keeps for its record.
const EXCERPT: usize = 512;

/// What may happen to the bytes just fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fed {
    /// All of them may go on.
    Pass,
    /// The first `pass` may go on; the rest is the start of a head that has not ended: feed it
    /// again, from its first byte, with what follows.
    Hold { pass: usize },
    /// The first `pass` may go on; the message after them is refused.
    Refuse { pass: usize, refusal: HeadRefusal },
    /// The first `pass` may go on; the body they are part of went wrong right after them.
    BadBody { pass: usize, error: BodyError },
}

/// A refused head: the refusal, and what its request line said where it could be read, for the
/// record (the method only when it is a token; the target with every byte outside visible
/// ASCII percent-encoded, so a log line can neither be split nor forged by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadRefusal {
    pub refusal: Refusal,
    pub method: Option<String>,
    pub target: Option<String>,
    /// The first `Host` field among the head's lines, escaped likewise.
    pub host: Option<String>,
}

impl HeadRefusal {
    fn of(refusal: Refusal, head: &[u8]) -> Self {
        let line_end = head
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(head.len());
        let line = &head[..line_end];
        let mut parts = line.splitn(3, |&b| b == b' ');
        let method = parts
            .next()
            .filter(|m| !m.is_empty() && m.len() <= 32 && m.iter().all(|b| b.is_ascii_graphic()))
            .and_then(|m| std::str::from_utf8(m).ok())
            .filter(|m| http::Method::from_bytes(m.as_bytes()).is_ok())
            .map(str::to_owned);
        let target = parts.next().map(|t| escape(&t[..t.len().min(EXCERPT)]));
        let host = head
            .split(|&b| b == b'\n')
            .skip(1)
            .take_while(|line| !line.is_empty() && line != b"\r")
            .find_map(|line| {
                let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
                name.eq_ignore_ascii_case(b"host").then(|| {
                    let value = value[1..].trim_ascii();
                    escape(&value[..value.len().min(EXCERPT)])
                })
            });
        Self {
            refusal,
            method,
            target,
            host,
        }
    }
}

/// Visible ASCII as is, every other byte (controls, space, DEL, past ASCII) and `%` as `%XX`:
/// reversible, and one line whatever the client sent.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Mode {
    /// The connection's first bytes: the HTTP/2 preface, or a first HTTP/1.1 head.
    Start,
    Head,
    Length(u64),
    Chunked(ChunkedBody),
    /// No longer HTTP/1.1 (HTTP/2, an upgraded connection): the bytes pass unread.
    Passthrough,
    /// Refused; nothing more is read.
    Stopped,
}

/// One connection's walk over its client bytes.
#[derive(Debug, Clone)]
pub struct MessageStream {
    mode: Mode,
    limits: HeadLimits,
    /// The message being read asked to upgrade: after its body the stream is no longer ours.
    upgrade: bool,
    /// The connection speaks HTTP/2 (ALPN or the preface), not an upgraded protocol.
    http2: bool,
}

impl MessageStream {
    /// A connection whose first bytes may be the HTTP/2 preface or an HTTP/1.1 head.
    pub fn new(limits: HeadLimits) -> Self {
        Self {
            mode: Mode::Start,
            limits,
            upgrade: false,
            http2: false,
        }
    }

    /// A connection that is HTTP/2 already (ALPN `h2`): the h2 crate reads it, strictly.
    pub fn http2() -> Self {
        Self {
            mode: Mode::Passthrough,
            limits: HeadLimits {
                max_uri_bytes: 0,
                max_header_bytes: 0,
                max_headers: 0,
            },
            upgrade: false,
            http2: true,
        }
    }

    pub fn limits(&self) -> &HeadLimits {
        &self.limits
    }

    /// Between two HTTP/1.1 messages: the last one ended, the next has not begun.
    pub fn between_messages(&self) -> bool {
        matches!(self.mode, Mode::Head)
    }

    pub fn is_passthrough(&self) -> bool {
        matches!(self.mode, Mode::Passthrough)
    }

    /// Whether the bytes are HTTP/2 frames (from the preface on), which the guard watches for
    /// the requests h2 refuses by itself ([`super::h2_frames`]).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// Walks the bytes that follow those fed before (a held head again from its first byte).
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut at = 0;
        loop {
            if at == bytes.len() {
                return Fed::Pass;
            }
            let rest = &bytes[at..];
            match &mut self.mode {
                Mode::Start => {
                    if rest.starts_with(H2_PREFACE) {
                        self.mode = Mode::Passthrough;
                        self.http2 = true;
                    } else if H2_PREFACE.starts_with(rest) {
                        return Fed::Hold { pass: at };
                    } else {
                        self.mode = Mode::Head;
                    }
                }
                Mode::Head => match parse_request_head(rest, &self.limits) {
                    Ok(head) => {
                        at += head.len;
                        self.upgrade = head.upgrade;
                        self.mode = match head.framing {
                            Framing::None => self.after_message(),
                            Framing::Length(n) => Mode::Length(n),
                            Framing::Chunked => Mode::Chunked(ChunkedBody::new()),
                        };
                    }
                    Err(HeadError::Incomplete) => return Fed::Hold { pass: at },
                    Err(HeadError::Refused(refusal)) => {
                        self.mode = Mode::Stopped;
                        return Fed::Refuse {
                            pass: at,
                            refusal: HeadRefusal::of(refusal, rest),
                        };
                    }
                },
                Mode::Length(left) => {
                    let take = (*left).min(rest.len() as u64);
                    at += take as usize;
                    *left -= take;
                    if *left == 0 {
                        self.mode = self.after_message();
                    }
                }
                Mode::Chunked(body) => match body.feed(rest) {
                    Ok(n) => {
                        at += n;
                        if body.is_done() {
                            self.mode = self.after_message();
                        }
                    }
                    Err((n, error)) => {
                        self.mode = Mode::Stopped;
                        return Fed::BadBody {
                            pass: at + n,
                            error,
                        };
                    }
                },
                Mode::Passthrough | Mode::Stopped => return Fed::Pass,
            }
        }
    }

    fn after_message(&self) -> Mode {
        if self.upgrade {
            Mode::Passthrough
        } else {
            Mode::Head
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Reason;

    const LIMITS: HeadLimits = HeadLimits {
        max_uri_bytes: 256,
        max_header_bytes: 1024,
        max_headers: 20,
    };

    /// Feeds `bytes` in pieces of `step`, holding back as the guard does; returns the bytes let
    /// through and the final verdict.
    fn run(bytes: &[u8], step: usize) -> (Vec<u8>, Option<Fed>) {
        let mut stream = MessageStream::new(LIMITS);
        let mut out = Vec::new();
        let mut held = Vec::new();
        for piece in bytes.chunks(step) {
            held.extend_from_slice(piece);
            match stream.feed(&held) {
                Fed::Pass => {
                    out.append(&mut held);
                }
                Fed::Hold { pass } => {
                    out.extend(held.drain(..pass));
                }
                other @ (Fed::Refuse { pass, .. } | Fed::BadBody { pass, .. }) => {
                    out.extend_from_slice(&held[..pass]);
                    return (out, Some(other));
                }
            }
        }
        (out, None)
    }

    #[test]
    fn pipelined_messages_pass_and_a_bad_one_stops_at_its_first_byte() {
        let good = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n";
        let mut bytes = good.to_vec();
        bytes.extend_from_slice(b"GET /c HTTP/1.1\nHost: x\r\n\r\n");
        for step in [1, 2, 7, bytes.len()] {
            let (out, verdict) = run(&bytes, step);
            assert_eq!(out, good, "step {step}");
            let Some(Fed::Refuse { refusal, .. }) = verdict else {
                panic!("{verdict:?}")
            };
            assert_eq!(refusal.refusal.reason, Reason::MalformedRequest);
            assert_eq!(refusal.method.as_deref(), Some("GET"));
            assert_eq!(refusal.target.as_deref(), Some("/c"));
        }
    }

    #[test]
    fn the_http2_preface_switches_the_walk_off() {
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage\n");
        for step in [1, 5, bytes.len()] {
            let (out, verdict) = run(&bytes, step);
            assert_eq!(out, bytes);
            assert_eq!(verdict, None);
        }
    }

    #[test]
    fn an_upgrade_passes_what_follows_its_message() {
        let bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello\n\r\x00";
        let (out, verdict) = run(bytes, 3);
        assert_eq!(out, bytes);
        assert_eq!(verdict, None);
    }

    #[test]
    fn a_bad_chunk_passes_the_good_ones_before_it() {
        let good = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        let mut bytes = good.to_vec();
        bytes.extend_from_slice(b"fffffffffffffffff\r\n");
        let (out, verdict) = run(&bytes, 4);
        assert_eq!(&out[..good.len()], good);
        assert!(matches!(verdict, Some(Fed::BadBody { .. })), "{verdict:?}");
        assert!(out.len() < bytes.len());
    }

    #[test]
    fn a_refused_target_is_escaped_for_the_record() {
        let (_, verdict) = run(b"GET /a\x01b%20\xff HTTP/1.1\r\n\r\n", 100);
        let Some(Fed::Refuse { refusal, .. }) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(refusal.target.as_deref(), Some("/a%01b%2520%FF"));
    }
}
