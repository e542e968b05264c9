//! HTTP/2 frames as the guard sees them pass, both ways, to find the requests the h2 library
//! refused on its own: a header block it found malformed (RFC 9113 §8.1.1: an uppercase name, a
//! connection-specific field, a bad pseudo-header, `content-length` with `END_STREAM`), one past
//! its header-list ceiling, a stream over its concurrency limit, or a header block that broke the
//! connection. h2 answers those itself (a reset, a GOAWAY, or its bare 431) and never hands the
//! request to hyper, so no stage sees it; the guard's record is its only trace.
//!
//! Only the 9-byte frame headers are read (and the first 8 bytes of `RST_STREAM`, `GOAWAY` and
//! `HEADERS` payloads): no HPACK decoding, no copy. The rule that tells h2's refusals from the gateway's own answers:
//! a stream is *pending* while all the client has sent on it is the header block that opened it
//! and the server has sent nothing on it. A server `RST_STREAM` on a pending stream with
//! `PROTOCOL_ERROR` or `REFUSED_STREAM`, a GOAWAY with an error whose last stream is below a
//! pending one, or a header block of one lone `:status` ending a pending stream (h2's 431), is
//! h2's refusal: hyper resets a stream it serves only with `CANCEL`,
//! `INTERNAL_ERROR` or `NO_ERROR`, and once any other client frame (body, trailers, priority,
//! window update) reaches a stream, a reset may answer that frame instead, which the pipeline
//! then records itself.

use crate::vocab::Reason;

const HEADER_LEN: usize = 9;
/// The payload bytes a frame's kind may need: `RST_STREAM`'s error code, `GOAWAY`'s last stream
/// and error code, a short server header block.
const PREFIX_LEN: usize = 8;
/// Streams tracked at once; beyond it the oldest is forgotten (then never recorded): h2's own
/// `SETTINGS_MAX_CONCURRENT_STREAMS` keeps honest clients far below it.
const MAX_PENDING: usize = 1024;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const END_STREAM: u8 = 0x1;

const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

/// One frame's header and the start of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub len: u32,
    prefix: [u8; PREFIX_LEN],
}

impl Frame {
    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.prefix[at],
            self.prefix[at + 1],
            self.prefix[at + 2],
            self.prefix[at + 3],
        ])
    }
}

#[derive(Debug, Clone)]
enum Walk {
    /// The client's connection preface, this many bytes of it still to come.
    Preface(usize),
    Header {
        bytes: [u8; HEADER_LEN],
        have: usize,
    },
    /// A frame whose first `PREFIX_LEN` payload bytes (or fewer, when shorter) are being kept.
    Prefix {
        frame: Frame,
        have: usize,
    },
    Skip(u32),
}

/// An incremental walk over one direction's frames, fed the bytes as they pass.
#[derive(Debug, Clone)]
pub struct FrameWalk {
    walk: Walk,
}

impl FrameWalk {
    /// The client's side: the 24-byte preface, then frames.
    pub fn client() -> Self {
        Self {
            walk: Walk::Preface(super::stream::H2_PREFACE.len()),
        }
    }

    /// The server's side: frames from its first byte.
    pub fn server() -> Self {
        Self {
            walk: Walk::Header {
                bytes: [0; HEADER_LEN],
                have: 0,
            },
        }
    }

    /// Walks `bytes`, calling `seen` once per frame, as soon as its header (and the prefix its
    /// kind needs) has passed.
    pub fn feed(&mut self, mut bytes: &[u8], mut seen: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            match &mut self.walk {
                Walk::Preface(left) => {
                    let take = (*left).min(bytes.len());
                    bytes = &bytes[take..];
                    *left -= take;
                    if *left == 0 {
                        self.walk = Walk::Header {
                            bytes: [0; HEADER_LEN],
                            have: 0,
                        };
                    }
                }
                Walk::Header { bytes: head, have } => {
                    let take = (HEADER_LEN - *have).min(bytes.len());
                    head[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == HEADER_LEN {
                        let frame = Frame {
                            len: u32::from_be_bytes([0, head[0], head[1], head[2]]),
                            kind: head[3],
                            flags: head[4],
                            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                                & 0x7fff_ffff,
                            prefix: [0; PREFIX_LEN],
                        };
                        self.walk = if matches!(frame.kind, RST_STREAM | GOAWAY | HEADERS)
                            && frame.len > 0
                        {
                            Walk::Prefix { frame, have: 0 }
                        } else {
                            seen(frame);
                            Walk::Skip(frame.len)
                        };
                    }
                }
                Walk::Prefix { frame, have } => {
                    let want = (frame.len as usize).min(PREFIX_LEN);
                    let take = (want - *have).min(bytes.len());
                    frame.prefix[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == want {
                        let frame = *frame;
                        seen(frame);
                        self.walk = Walk::Skip(frame.len - want as u32);
                    }
                }
                Walk::Skip(left) => {
                    let take = (*left as usize).min(bytes.len());
                    bytes = &bytes[take..];
                    *left -= take as u32;
                }
            }
            if let Walk::Skip(0) = self.walk {
                self.walk = Walk::Header {
                    bytes: [0; HEADER_LEN],
                    have: 0,
                };
            }
        }
    }
}

/// A request h2 refused before hyper was handed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRefusal {
    pub stream: u32,
    pub reason: Reason,
    /// The status the client was sent: h2's own 431 before its reset; otherwise none (a reset
    /// or a GOAWAY carries no status), and the record says what the reason's status is.
    pub answered_status: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    stream: u32,
}

/// Which streams are pending (see the module doc) and which of them h2 refused.
#[derive(Debug, Default, Clone)]
pub struct StreamLedger {
    pending: Vec<Pending>,
    /// A header block still arriving in CONTINUATION frames, and its stream.
    open_block: Option<u32>,
    last_opened: u32,
}

impl StreamLedger {
    pub fn client_frame(&mut self, frame: Frame) {
        match frame.kind {
            HEADERS if frame.stream > self.last_opened && frame.stream % 2 == 1 => {
                self.last_opened = frame.stream;
                if self.pending.len() == MAX_PENDING {
                    self.pending.remove(0);
                }
                self.pending.push(Pending {
                    stream: frame.stream,
                });
                self.open_block = (frame.flags & END_HEADERS == 0).then_some(frame.stream);
            }
            CONTINUATION if self.open_block == Some(frame.stream) => {
                self.open_block = (frame.flags & END_HEADERS == 0).then_some(frame.stream);
            }
            _ if frame.stream != 0 => self.settle(frame.stream),
            _ => {}
        }
    }

    /// A server frame; a refusal it reveals goes to `refused`.
    pub fn server_frame(&mut self, frame: Frame, mut refused: impl FnMut(StreamRefusal)) {
        match frame.kind {
            // h2's bare 431 for a header list past its ceiling: a HEADERS frame that ends the
            // stream and holds one field, `:status`. Every answer of the gateway holds at least
            // two (`mutate_response` always writes `x-request-id`).
            HEADERS if frame.flags & END_STREAM != 0 && is_lone_status(&frame) => {
                if let Some(at) = self.pending.iter().position(|p| p.stream == frame.stream) {
                    let p = self.pending.remove(at);
                    refused(StreamRefusal {
                        stream: p.stream,
                        reason: Reason::HeadersTooLarge,
                        answered_status: Some(431),
                    });
                }
            }
            HEADERS | DATA | PUSH_PROMISE => self.settle(frame.stream),
            RST_STREAM => {
                let Some(at) = self.pending.iter().position(|p| p.stream == frame.stream) else {
                    return;
                };
                let p = self.pending.remove(at);
                let reason = match frame.word(0) {
                    REFUSED_STREAM => Some(Reason::Overloaded),
                    PROTOCOL_ERROR => Some(Reason::MalformedRequest),
                    _ => None,
                };
                if let Some(reason) = reason {
                    refused(StreamRefusal {
                        stream: p.stream,
                        reason,
                        answered_status: None,
                    });
                }
            }
            GOAWAY if frame.len >= 8 && frame.word(4) != NO_ERROR => {
                let last = frame.word(0) & 0x7fff_ffff;
                self.pending.retain(|p| {
                    if p.stream > last {
                        refused(StreamRefusal {
                            stream: p.stream,
                            reason: Reason::MalformedRequest,
                            answered_status: None,
                        });
                        false
                    } else {
                        true
                    }
                });
            }
            _ => {}
        }
    }

    fn settle(&mut self, stream: u32) {
        if let Some(at) = self.pending.iter().position(|p| p.stream == stream) {
            self.pending.remove(at);
        }
        if self.open_block == Some(stream) {
            self.open_block = None;
        }
    }
}

/// Whether a header block is one `:status` field as h2's HPACK encoder writes it: indexed (one
/// byte, its high bit set), or a literal with the static name `:status` (index 8, with or without
/// incremental indexing) and a three-digit Huffman value of three bytes — a status with two or
/// more of the digits 3–9, as 431 is. A block of one field is never the gateway's.
fn is_lone_status(frame: &Frame) -> bool {
    match frame.len {
        1 => frame.prefix[0] & 0x80 != 0,
        5 => matches!(frame.prefix[0], 0x48 | 0x08) && frame.prefix[1] == 0x83,
        _ => false,
    }
}

/// Both directions of one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct H2Watch {
    client: FrameWalk,
    server: FrameWalk,
    ledger: StreamLedger,
}

impl Default for H2Watch {
    fn default() -> Self {
        Self {
            client: FrameWalk::client(),
            server: FrameWalk::server(),
            ledger: StreamLedger::default(),
        }
    }
}

impl H2Watch {
    /// Bytes the client sent, from its preface on.
    pub fn client_bytes(&mut self, bytes: &[u8]) {
        let ledger = &mut self.ledger;
        self.client.feed(bytes, |frame| ledger.client_frame(frame));
    }

    /// Bytes the server wrote; the refusals they reveal go to `refused`.
    pub fn server_bytes(&mut self, bytes: &[u8], mut refused: impl FnMut(StreamRefusal)) {
        let ledger = &mut self.ledger;
        self.server
            .feed(bytes, |frame| ledger.server_frame(frame, &mut refused));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stream::H2_PREFACE;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    fn rst(stream: u32, code: u32) -> Vec<u8> {
        frame(RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    fn goaway(last: u32, code: u32) -> Vec<u8> {
        let mut payload = last.to_be_bytes().to_vec();
        payload.extend(code.to_be_bytes());
        payload.extend(b"debug data");
        frame(GOAWAY, 0, 0, &payload)
    }

    /// Feeds both sides one byte at a time and all at once; both must find the same refusals.
    fn refusals(client: &[u8], server: &[u8]) -> Vec<StreamRefusal> {
        let mut whole = H2Watch::default();
        let mut found = Vec::new();
        whole.client_bytes(client);
        whole.server_bytes(server, |r| found.push(r));
        let mut split = H2Watch::default();
        let mut found_split = Vec::new();
        for b in client {
            split.client_bytes(std::slice::from_ref(b));
        }
        for b in server {
            split.server_bytes(std::slice::from_ref(b), |r| found_split.push(r));
        }
        assert_eq!(found, found_split, "byte-at-a-time feeding differs");
        found
    }

    fn client(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = H2_PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for f in frames {
            out.extend(f);
        }
        out
    }

    fn server(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        for f in frames {
            out.extend(f);
        }
        out
    }

    #[test]
    fn a_protocol_error_reset_of_a_header_block_alone_is_h2s_refusal() {
        let found = refusals(
            &client(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, b"hpack")]),
            &server(&[rst(1, PROTOCOL_ERROR)]),
        );
        assert_eq!(
            found,
            [StreamRefusal {
                stream: 1,
                reason: Reason::MalformedRequest,
                answered_status: None
            }]
        );
    }

    #[test]
    fn a_header_block_in_continuations_is_still_the_opening_block() {
        let found = refusals(
            &client(&[
                frame(HEADERS, 0, 3, b"part"),
                frame(CONTINUATION, 0, 3, b"more"),
                frame(CONTINUATION, END_HEADERS, 3, b"end"),
            ]),
            &server(&[rst(3, PROTOCOL_ERROR)]),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].stream, 3);
    }

    #[test]
    fn a_reset_after_the_client_sent_more_is_the_pipelines_to_record() {
        // Body bytes past content-length, or trailers: h2 may reset a stream hyper already
        // serves, and the pipeline's record covers it.
        for more in [
            frame(DATA, END_STREAM, 1, b"too much"),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, b"trailers"),
            frame(0x2, 0, 1, &[0, 0, 0, 1, 16]),
            frame(0x8, 0, 1, &[0, 0, 1, 0]),
        ] {
            let found = refusals(
                &client(&[frame(HEADERS, END_HEADERS, 1, b"hpack"), more]),
                &server(&[rst(1, PROTOCOL_ERROR)]),
            );
            assert!(found.is_empty(), "{found:?}");
        }
    }

    #[test]
    fn the_gateways_own_answers_and_resets_are_not_refusals() {
        let answered = refusals(
            &client(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, b"hpack")]),
            &server(&[
                frame(HEADERS, END_HEADERS, 1, b"status"),
                frame(DATA, END_STREAM, 1, b"body"),
                rst(1, PROTOCOL_ERROR),
            ]),
        );
        assert!(answered.is_empty());
        // A bodiless answer (a 204) to a request still sending, then hyper's NO_ERROR reset;
        // and one to a request without a body, which closes the stream with no reset at all.
        let early = refusals(
            &client(&[frame(HEADERS, END_HEADERS, 1, b"hpack")]),
            &server(&[
                frame(HEADERS, END_HEADERS | END_STREAM, 1, b"204"),
                rst(1, NO_ERROR),
            ]),
        );
        assert!(early.is_empty());
        let mut closed = H2Watch::default();
        closed.client_bytes(&client(&[frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            b"h",
        )]));
        closed.server_bytes(
            &server(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, b"204")]),
            |r| panic!("{r:?}"),
        );
        assert!(
            closed.ledger.pending.is_empty(),
            "a closed stream is forgotten"
        );
        for code in [NO_ERROR, 0x2, 0x8] {
            let reset = refusals(
                &client(&[frame(HEADERS, END_HEADERS, 1, b"hpack")]),
                &server(&[rst(1, code)]),
            );
            assert!(reset.is_empty(), "code {code}: {reset:?}");
        }
    }

    #[test]
    fn refused_stream_is_overload_and_a_lone_status_is_h2s_bare_431() {
        let overloaded = refusals(
            &client(&[frame(HEADERS, END_HEADERS, 5, b"hpack")]),
            &server(&[rst(5, REFUSED_STREAM)]),
        );
        assert_eq!(overloaded[0].reason, Reason::Overloaded);
        // `:status 431` the first time (a literal, Huffman "431") and once indexed.
        for block in [&[0x48, 0x83, 0x69, 0x90, 0xff][..], &[0xbe]] {
            let too_large = refusals(
                &client(&[frame(HEADERS, END_HEADERS | END_STREAM, 5, b"hpack")]),
                &server(&[frame(HEADERS, END_HEADERS | END_STREAM, 5, block)]),
            );
            assert_eq!(
                too_large,
                [StreamRefusal {
                    stream: 5,
                    reason: Reason::HeadersTooLarge,
                    answered_status: Some(431)
                }],
                "{block:x?}"
            );
        }
        // Two indexed fields (a status, a repeated x-request-id): the gateway's own answer.
        let own = refusals(
            &client(&[frame(HEADERS, END_HEADERS | END_STREAM, 5, b"hpack")]),
            &server(&[frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x89, 0xbe])]),
        );
        assert!(own.is_empty());
    }

    #[test]
    fn a_goaway_refuses_the_pending_streams_above_its_last_one() {
        let found = refusals(
            &client(&[
                frame(HEADERS, END_HEADERS, 1, b"served"),
                frame(HEADERS, END_HEADERS, 3, b"bad hpack"),
            ]),
            &server(&[goaway(1, PROTOCOL_ERROR)]),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].stream, 3);
        let graceful = refusals(
            &client(&[frame(HEADERS, END_HEADERS, 3, b"hpack")]),
            &server(&[goaway(1, NO_ERROR)]),
        );
        assert!(graceful.is_empty());
    }

    #[test]
    fn frame_payloads_are_skipped_whatever_their_bytes() {
        // A DATA payload that looks like a frame must not be read as one.
        let fake = rst(1, PROTOCOL_ERROR);
        let found = refusals(
            &client(&[frame(HEADERS, END_HEADERS, 1, b"hpack")]),
            &server(&[frame(DATA, 0, 7, &fake)]),
        );
        assert!(found.is_empty());
        let found = refusals(
            &client(&[frame(HEADERS, END_HEADERS, 1, b"hpack")]),
            &server(&[frame(DATA, 0, 7, b"ok"), fake]),
        );
        assert_eq!(found.len(), 1);
    }
}
