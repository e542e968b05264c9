//! The strict HTTP/1.1 request-head parser: one pass over the bytes, no allocation, and a
//! [`Refusal`] for everything RFC 9112 lets a lenient parser tolerate and an intermediary must
//! not — a bare LF or lone CR, control bytes in a field value, obsolete line folding, whitespace
//! before the colon, bytes outside RFC 3986 in the request-target, and any framing two parsers
//! could read differently (`Transfer-Encoding` other than one final `chunked`, two of them,
//! differing or malformed `Content-Length`, `Content-Length` next to `Transfer-Encoding`).
//!
//! It decides the message's [`Framing`] so the stream guard knows where the next message starts;
//! hyper parses the same bytes afterwards, and only ever bytes this parser accepted.

use super::octets::{Class, TCHAR, class_table, is_tchar, value_run};
use crate::vocab::Reason;

/// The limits a head is held to: those of `limits` the `tls` stage checks, so an oversized head
/// gets the same answer whichever layer sees it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The request-target's length (`limits.max_uri_bytes`): past it, 414.
    pub max_uri_bytes: usize,
    /// The fields' size counted as the `tls` stage counts it — name, value and 4 per field
    /// (`limits.max_header_bytes`) — and their number (`limits.max_headers`): past either, 431.
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// How the message's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: the next message starts right after the head.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A head the parser accepted; the slices borrow the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// Bytes the head takes, its final CRLF and any empty lines before the request line
    /// included: the body (or the next message) starts here.
    pub len: usize,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: Version,
    pub framing: Framing,
    /// An `Upgrade` field on HTTP/1.1 or a `CONNECT`: once answered 101 (or 2xx to CONNECT)
    /// the bytes after the message are no longer HTTP/1.1.
    pub upgrade: bool,
    /// How many fields the head carries.
    pub fields: usize,
}

/// Why a head is refused: the stop's reason (its status follows) and a fixed detail for the
/// problem body, with what could be read of the request line for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The bytes end before the head does, and nothing so far is wrong or over a limit.
    Incomplete,
    Refused(Refusal),
}

impl HeadError {
    const fn refused(reason: Reason, detail: &'static str) -> Self {
        HeadError::Refused(Refusal { reason, detail })
    }
}

fn malformed(detail: &'static str) -> HeadError {
    HeadError::refused(Reason::MalformedRequest, detail)
}

/// The bytes RFC 3986 allows in a URI: unreserved, sub-delims, `:` `@` `/` `?` `%`, and `[` `]`
/// for an IP-literal host. No `#` (a fragment is never sent), no space, no control byte, nothing
/// past ASCII. One exception: a raw `\`, outside RFC 3986, passes here so that the listener's
/// `paths.escaped_slashes` decides on it at `route` alike on HTTP/1.1 and HTTP/2 (refused as
/// `ambiguous-path` by default).
const fn is_uri_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~'
        | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        | b':' | b'@' | b'/' | b'?' | b'%' | b'[' | b']' | b'\\')
}

static URI: Class = class_table!(is_uri_byte);

/// Advances over bytes of `class`; returns where it stopped.
#[inline]
fn scan(bytes: &[u8], mut at: usize, class: &Class) -> usize {
    while let Some(&b) = bytes.get(at) {
        if !class[b as usize] {
            break;
        }
        at += 1;
    }
    at
}

const MAX_METHOD: usize = 32;

/// Parses one request head from the start of `bytes` (the head, perhaps followed by its body
/// and later messages). `Incomplete` only when nothing read so far is refused and no limit is
/// passed yet, so a caller holding an incomplete head never holds more than the limits allow.
pub fn parse_request_head<'a>(
    bytes: &'a [u8],
    limits: &HeadLimits,
) -> Result<RequestHead<'a>, HeadError> {
    let mut p = Cursor { bytes, at: 0 };
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line
    // (some clients send a CRLF after a body); a few, not an unbounded run.
    let mut empty = 0;
    loop {
        match p.peek() {
            None => return Err(HeadError::Incomplete),
            Some(b'\r') => {
                p.line_end()?;
                empty += 1;
                if empty > 4 {
                    return Err(malformed("empty lines where a request line belongs"));
                }
            }
            Some(b'\n') => return Err(malformed("a bare LF ends a line")),
            Some(_) => break,
        }
    }

    let method_start = p.at;
    loop {
        match p.peek() {
            None if p.at - method_start > MAX_METHOD => {
                return Err(malformed("the method is not a token"));
            }
            None => return Err(HeadError::Incomplete),
            Some(b' ') => break,
            Some(b) if is_tchar(b) => p.at += 1,
            Some(_) => return Err(malformed("the method is not a token")),
        }
    }
    let method = &bytes[method_start..p.at];
    if method.is_empty() || method.len() > MAX_METHOD {
        return Err(malformed("the method is not a token"));
    }
    p.at += 1;

    let target_start = p.at;
    loop {
        p.at = scan(bytes, p.at, &URI).min(target_start + limits.max_uri_bytes + 1);
        if p.at - target_start > limits.max_uri_bytes {
            return Err(HeadError::refused(
                Reason::UriTooLong,
                "the request target is longer than this gateway accepts",
            ));
        }
        match p.peek() {
            None => return Err(HeadError::Incomplete),
            Some(b' ') => break,
            Some(b) if is_uri_byte(b) => p.at += 1,
            Some(b'#') => return Err(malformed("the request target carries a fragment (#)")),
            Some(b'\r' | b'\n') => return Err(malformed("the request line has no HTTP version")),
            Some(_) => {
                return Err(malformed(
                    "the request target carries a byte RFC 3986 does not allow",
                ));
            }
        }
    }
    let target = &bytes[target_start..p.at];
    check_target_form(method, target)?;
    p.at += 1;

    let version = match p.take(8) {
        None => {
            return if b"HTTP/1.1".starts_with(&bytes[p.at..]) {
                Err(HeadError::Incomplete)
            } else {
                Err(malformed("the version is not HTTP/1.0 or HTTP/1.1"))
            };
        }
        Some(b"HTTP/1.1") => Version::Http11,
        Some(b"HTTP/1.0") => Version::Http10,
        Some(_) => return Err(malformed("the version is not HTTP/1.0 or HTTP/1.1")),
    };
    p.line_end()?;

    let mut fields = Fields::default();
    let mut field_bytes = 0usize;
    let mut count = 0usize;
    // The raw bytes a head may take, whitespace included: twice what its fields may count, with
    // the request line's room. Checked on partial and whole heads alike.
    let raw_cap = limits
        .max_header_bytes
        .saturating_mul(2)
        .saturating_add(limits.max_uri_bytes)
        .saturating_add(64);
    let too_large = || {
        HeadError::refused(
            Reason::HeadersTooLarge,
            "the request headers are larger than this gateway accepts",
        )
    };
    loop {
        match p.peek() {
            None => return Err(HeadError::Incomplete),
            Some(b'\r') => {
                p.line_end()?;
                break;
            }
            Some(b'\n') => return Err(malformed("a bare LF ends a line")),
            Some(b' ' | b'\t') => {
                return Err(malformed("a field line is folded (obs-fold)"));
            }
            Some(_) => {}
        }
        let line_start = p.at;
        // A partial line counts at most what the whole line will (its name so far, its value
        // without the whitespace that may yet prove to be OWS), so whether a head is refused
        // never depends on where the network split it; the raw cap stops endless whitespace.
        let over = |counted: usize, at: usize| {
            field_bytes + counted + 4 > limits.max_header_bytes || at > raw_cap
        };
        loop {
            p.at = scan(bytes, p.at, &TCHAR);
            match p.peek() {
                None if over(p.at - line_start, p.at) => return Err(too_large()),
                None => return Err(HeadError::Incomplete),
                Some(b':') => break,
                Some(b) if is_tchar(b) => p.at += 1,
                Some(b' ' | b'\t') => {
                    return Err(malformed("whitespace between a field name and its colon"));
                }
                Some(b'\r' | b'\n') => return Err(malformed("a field line has no colon")),
                Some(_) => return Err(malformed("a field name is not a token")),
            }
        }
        let name = &bytes[line_start..p.at];
        if name.is_empty() {
            return Err(malformed("a field line has no name"));
        }
        p.at += 1;
        while matches!(p.peek(), Some(b' ' | b'\t')) {
            p.at += 1;
        }
        let value_start = p.at;
        p.at += value_run(&bytes[p.at..]);
        let trimmed = |end: usize| {
            let mut end = end;
            while end > value_start && matches!(bytes[end - 1], b' ' | b'\t') {
                end -= 1;
            }
            end
        };
        match p.peek() {
            None if over(name.len() + (trimmed(p.at) - value_start), p.at) => {
                return Err(too_large());
            }
            None => return Err(HeadError::Incomplete),
            Some(b'\r') => {}
            Some(b'\n') => return Err(malformed("a bare LF ends a line")),
            Some(_) => return Err(malformed("a field value carries a control byte")),
        }
        let value_end = trimmed(p.at);
        p.line_end()?;
        let value = &bytes[value_start..value_end];
        field_bytes += name.len() + value.len() + 4;
        count += 1;
        if field_bytes > limits.max_header_bytes || count > limits.max_headers || p.at > raw_cap {
            return Err(too_large());
        }
        fields.see(name, value)?;
    }

    let framing = fields.framing(version)?;
    let upgrade = method == b"CONNECT" || (fields.upgrade && version == Version::Http11);
    Ok(RequestHead {
        len: p.at,
        method,
        target,
        version,
        framing,
        upgrade,
        fields: count,
    })
}

/// RFC 9112 §3.2: origin-form for every method, absolute-form for every method (a proxy's
/// form, which a server must accept), authority-form only for CONNECT, `*` only for OPTIONS.
fn check_target_form(method: &[u8], target: &[u8]) -> Result<(), HeadError> {
    let ok = match target.first() {
        None => false,
        Some(b'/') => method != b"CONNECT",
        Some(b'*') => target.len() == 1 && method == b"OPTIONS",
        Some(_) if method == b"CONNECT" => !target.contains(&b'/') && target.contains(&b':'),
        Some(first) => is_absolute_uri(*first, target),
    };
    if ok {
        Ok(())
    } else {
        Err(malformed(
            "the request target is not in a form this method allows",
        ))
    }
}

/// `scheme "://"`, the scheme's letters per RFC 3986 §3.1: absolute-form as a request sends it.
fn is_absolute_uri(first: u8, target: &[u8]) -> bool {
    if !first.is_ascii_alphabetic() {
        return false;
    }
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    target[..colon]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && target[colon..].starts_with(b"://")
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(out)
    }

    /// Exactly CRLF; a CR followed by anything else is a lone CR.
    fn line_end(&mut self) -> Result<(), HeadError> {
        match self.bytes.get(self.at..self.at + 2) {
            Some(b"\r\n") => {
                self.at += 2;
                Ok(())
            }
            Some([b'\r', _]) => Err(malformed("a CR is not followed by LF")),
            Some([b'\n', _]) => Err(malformed("a bare LF ends a line")),
            None if matches!(self.bytes.get(self.at), None | Some(b'\r')) => {
                Err(HeadError::Incomplete)
            }
            _ => Err(malformed("the request line does not end after its version")),
        }
    }
}

/// What the framing fields said, gathered as the fields pass.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` was seen (any other value is refused on sight).
    chunked: bool,
    upgrade: bool,
}

impl Fields {
    fn see(&mut self, name: &[u8], value: &[u8]) -> Result<(), HeadError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_length(value)?;
            // RFC 9110 §8.6 lets identical repeated lines count as one; differing ones are
            // the classic smuggling vector.
            if self.content_length.is_some_and(|l| l != length) {
                return Err(malformed("Content-Length fields differ"));
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if self.chunked {
                return Err(malformed("two Transfer-Encoding fields"));
            }
            check_transfer_coding(value)?;
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
        Ok(())
    }

    fn framing(&self, version: Version) -> Result<Framing, HeadError> {
        match (self.chunked, self.content_length) {
            // RFC 9112 §6.1: a server MAY reject a request with both; a gateway must, since
            // whoever reads it by the other one is smuggled into.
            (true, Some(_)) => Err(malformed(
                "Content-Length and Transfer-Encoding in one request",
            )),
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            (true, None) if version == Version::Http10 => {
                Err(malformed("Transfer-Encoding in an HTTP/1.0 request"))
            }
            (true, None) => Ok(Framing::Chunked),
            (false, Some(0)) | (false, None) => Ok(Framing::None),
            (false, Some(n)) => Ok(Framing::Length(n)),
        }
    }
}

/// `1*DIGIT` and nothing else: no sign, no list, no inner space; 0 to u64::MAX.
fn parse_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() {
        return Err(malformed("Content-Length is not a number"));
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(malformed("Content-Length is not a number"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(malformed("Content-Length is not a number"))?;
    }
    Ok(n)
}

/// Exactly one coding, `chunked`. `chunked` not last makes the length unknowable (400, RFC 9112
/// §6.3); `chunked` twice is a framing two parsers read differently (400); any other coding is
/// one the gateway does not decode (501).
fn check_transfer_coding(value: &[u8]) -> Result<(), HeadError> {
    let mut codings = 0;
    let mut chunked_at = None;
    let mut other = false;
    for (i, coding) in value.split(|&b| b == b',').enumerate() {
        let coding = trim_ows(coding);
        codings += 1;
        if coding.eq_ignore_ascii_case(b"chunked") {
            if chunked_at.is_some() {
                return Err(malformed("Transfer-Encoding repeats chunked"));
            }
            chunked_at = Some(i);
        } else if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
            return Err(malformed("Transfer-Encoding is not a list of codings"));
        } else {
            other = true;
        }
    }
    match chunked_at {
        Some(i) if i + 1 != codings => Err(malformed("chunked is not the final transfer coding")),
        _ if other => Err(HeadError::refused(
            Reason::UnsupportedTransferCoding,
            "the only transfer coding this gateway accepts is chunked",
        )),
        _ => Ok(()),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests;
