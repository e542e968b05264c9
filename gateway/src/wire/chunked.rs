//! A strict, incremental validator of a chunked request body (RFC 9112 §7.1): it walks the
//! bytes as they arrive, keeps a few bytes of state and never copies or buffers a body. It finds
//! where the body ends (so the stream guard knows where the next message starts) and refuses
//! what a lenient decoder would read its own way: a chunk-size that is not hex or overflows, a
//! chunk extension outside `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`,
//! chunk data not followed by CRLF, a bare LF or lone CR, and a trailer section carrying a field
//! that frames, routes, authenticates or modifies the request (RFC 9110 §6.5.1).

use super::octets::is_tchar;

/// Why a body was refused; the detail goes into the problem body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {detail}")]
pub struct BodyError {
    pub detail: &'static str,
}

const fn bad(detail: &'static str) -> BodyError {
    BodyError { detail }
}

/// Fields a trailer must not carry: once the head was acted on, a framing, routing,
/// authentication or request-modifying field arriving after the body could only mean
/// something to a recipient that merges trailers into the head — the one an attacker targets.
const FORBIDDEN_TRAILERS: &[&[u8]] = &[
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"content-type",
    b"content-encoding",
    b"content-range",
    b"trailer",
    b"te",
    b"expect",
    b"connection",
    b"upgrade",
    b"keep-alive",
    b"x-api-key",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"forwarded",
];

/// The longest forbidden name: a longer trailer name is not compared.
const NAME_KEPT: usize = 20;
/// Bytes one chunk line's extensions may take (hyper's own bound on all of them is larger; a
/// line this long is an attack, not a client).
const MAX_EXTENSION: usize = 4096;
/// The trailer section's size.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: one hex digit at least.
    SizeStart,
    Size,
    /// Whitespace after the size: only before a `;`.
    SizeBws,
    /// After `;`: BWS, then the extension's name.
    ExtName {
        started: bool,
    },
    /// After the name: BWS, then `=`, `;` or the line's end.
    ExtAfterName,
    /// After `=`: BWS, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After a value: BWS, then `;` or the line's end.
    ExtAfterValue,
    /// A CR ended the chunk-size line: LF next.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// One chunked body's walk. `feed` the bytes in order as they arrive.
#[derive(Debug, Clone)]
pub struct ChunkedBody {
    state: State,
    /// The current chunk's size while its line is read; the data bytes left while in `Data`.
    size: u64,
    /// Bytes of the current line's extensions, or of the trailer section.
    line: usize,
    name: [u8; NAME_KEPT],
    name_len: usize,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedBody {
    pub const fn new() -> Self {
        Self {
            state: State::SizeStart,
            size: 0,
            line: 0,
            name: [0; NAME_KEPT],
            name_len: 0,
        }
    }

    /// True once the last chunk and the trailer section have passed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Walks `bytes`; `Ok(n)` says the body ended after `n` of them (`n == bytes.len()` and
    /// not [`Self::is_done`]: it goes on in the next bytes). `Err((at, error))`: the byte at
    /// `at` is where the body went wrong; the bytes before it were fine.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, (usize, BodyError)> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                return Ok(i);
            }
            if self.state == State::Data {
                // The hot path: skip the data, whatever it holds.
                let left = (bytes.len() - i) as u64;
                let take = self.size.min(left);
                i += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(bytes[i]).map_err(|e| (i, e))?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), BodyError> {
        use State::*;
        self.state = match (self.state, b) {
            (SizeStart | Size, b) if b.is_ascii_hexdigit() => {
                let digit = (b as char).to_digit(16).unwrap_or(0);
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(bad("the chunk size overflows"))?;
                Size
            }
            (SizeStart, _) => return Err(bad("a chunk size is not hexadecimal")),
            (Size | SizeBws, b' ' | b'\t') => SizeBws,
            (Size | SizeBws, b';') => self.extension(ExtName { started: false })?,
            (Size, b'\r') => SizeLf,
            (Size | SizeBws, _) => return Err(bad("a chunk size is not hexadecimal")),
            (ExtName { started: false }, b' ' | b'\t') => self.extension(self.state)?,
            (ExtName { .. }, b) if is_tchar(b) => self.extension(ExtName { started: true })?,
            (ExtName { started: true }, b' ' | b'\t') => self.extension(ExtAfterName)?,
            (ExtName { started: true } | ExtAfterName, b'=') => self.extension(ExtValueStart)?,
            (ExtName { started: true } | ExtAfterName, b';') => {
                self.extension(ExtName { started: false })?
            }
            (ExtName { started: true } | ExtAfterName, b'\r') => SizeLf,
            (ExtAfterName, b' ' | b'\t') => self.extension(ExtAfterName)?,
            (ExtValueStart, b' ' | b'\t') => self.extension(ExtValueStart)?,
            (ExtValueStart, b'"') => self.extension(ExtQuoted)?,
            (ExtValueStart | ExtToken, b) if is_tchar(b) => self.extension(ExtToken)?,
            (ExtToken | ExtAfterValue, b' ' | b'\t') => self.extension(ExtAfterValue)?,
            (ExtToken | ExtAfterValue, b';') => self.extension(ExtName { started: false })?,
            (ExtToken | ExtAfterValue, b'\r') => SizeLf,
            (ExtQuoted, b'"') => self.extension(ExtAfterValue)?,
            (ExtQuoted, b'\\') => self.extension(ExtQuotedEscape)?,
            (ExtQuoted, b) if is_qdtext(b) => self.extension(ExtQuoted)?,
            (ExtQuotedEscape, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                self.extension(ExtQuoted)?
            }
            (ExtName { .. } | ExtAfterName | ExtValueStart | ExtToken | ExtAfterValue, _)
            | (ExtQuoted | ExtQuotedEscape, _) => {
                return Err(bad("a chunk extension is malformed"));
            }
            (SizeLf, b'\n') => {
                self.line = 0;
                if self.size == 0 { TrailerStart } else { Data }
            }
            (SizeLf, _) => return Err(bad("a CR is not followed by LF")),
            (Data, _) => Data,
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(bad("chunk data is not followed by CRLF")),
            (DataLf, b'\n') => SizeStart,
            (DataLf, _) => return Err(bad("chunk data is not followed by CRLF")),
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart, b) if is_tchar(b) => {
                self.name_len = 0;
                self.keep_name(b);
                self.trailer(TrailerName)?
            }
            (TrailerStart, b' ' | b'\t') => return Err(bad("a trailer line is folded")),
            (TrailerStart, _) => return Err(bad("a trailer line is malformed")),
            (TrailerName, b) if is_tchar(b) => {
                self.keep_name(b);
                self.trailer(TrailerName)?
            }
            (TrailerName, b':') => {
                if self.name_len <= NAME_KEPT
                    && FORBIDDEN_TRAILERS.contains(&&self.name[..self.name_len])
                {
                    return Err(bad(
                        "a trailer carries a framing, routing or authentication field",
                    ));
                }
                self.trailer(TrailerValue)?
            }
            (TrailerName, _) => return Err(bad("a trailer field name is malformed")),
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                self.trailer(TrailerValue)?
            }
            (TrailerValue, _) => return Err(bad("a trailer value carries a control byte")),
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (TrailerLf | EndLf, _) => return Err(bad("a CR is not followed by LF")),
            (Done, _) => Done,
        };
        Ok(())
    }

    /// One more byte of the chunk line's extensions, within their bound.
    fn extension(&mut self, next: State) -> Result<State, BodyError> {
        self.line += 1;
        if self.line > MAX_EXTENSION {
            return Err(bad("a chunk extension is too long"));
        }
        Ok(next)
    }

    fn trailer(&mut self, next: State) -> Result<State, BodyError> {
        self.line += 1;
        if self.line > MAX_TRAILERS {
            return Err(bad("the trailer section is too large"));
        }
        Ok(next)
    }

    fn keep_name(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }
}

/// RFC 9110 §5.6.4 `qdtext`.
const fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(body: &[u8]) -> Result<usize, (usize, BodyError)> {
        ChunkedBody::new().feed(body)
    }

    /// Byte by byte gives the same answer as all at once.
    fn walk_split(body: &[u8]) -> Result<usize, (usize, BodyError)> {
        let mut c = ChunkedBody::new();
        for (i, b) in body.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)) {
                Ok(0) => return Ok(i),
                Ok(_) => {}
                Err((_, e)) => return Err((i, e)),
            }
        }
        if c.is_done() {
            Ok(body.len())
        } else {
            Ok(usize::MAX)
        }
    }

    #[test]
    fn good_bodies_end_where_they_end() {
        for body in [
            &b"0\r\n\r\n"[..],
            b"3\r\nabc\r\n0\r\n\r\n",
            b"3;a=b\r\nabc\r\n0\r\n\r\n",
            b"3 ; a = \"q\\\"x\" ; b\r\nabc\r\n0\r\n\r\n",
            b"A\r\n0123456789\r\n0\r\nX-Checksum: 1\r\n\r\n",
            b"000003\r\nabc\r\n0\r\n\r\n",
        ] {
            let mut rest = body.to_vec();
            rest.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(
                walk(&rest),
                Ok(body.len()),
                "{}",
                String::from_utf8_lossy(body)
            );
            let mut c = ChunkedBody::new();
            assert_eq!(c.feed(body), Ok(body.len()));
            assert!(c.is_done());
            assert_eq!(walk_split(body), Ok(body.len()));
        }
    }

    #[test]
    fn bad_bodies_are_refused_at_the_offending_byte() {
        for (body, at) in [
            (&b"10000000000000000\r\n"[..], 16),
            (b"x\r\n", 0),
            (b"3 \r\nabc\r\n", 2),
            (b"3;\r\nabc\r\n", 2),
            (b"3;=x\r\nabc\r\n", 2),
            (b"3;a=\r\n", 4),
            (b"3;a=\"x\r\n", 6),
            (b"3;a\x01\r\n", 3),
            (b"3\nabc", 1),
            (b"3\r\nabcX\r\n", 6),
            (b"3\r\nabc\n0\r\n\r\n", 6),
            (b"0\r\nContent-Length: 5\r\n\r\n", 17),
            (b"0\r\nHost: evil\r\n\r\n", 7),
            (b"0\r\nhOsT: evil\r\n\r\n", 7),
            (b"0\r\nX-A: b\x00\r\n\r\n", 9),
            (b"0\r\n x: y\r\n\r\n", 3),
            (b"0\r\n\r\r", 4),
        ] {
            let got = walk(body);
            assert!(
                matches!(got, Err((i, _)) if i == at),
                "{}: {got:?}",
                String::from_utf8_lossy(body).escape_debug()
            );
            assert!(walk_split(body).is_err());
        }
    }

    #[test]
    fn an_endless_extension_stops_at_its_bound() {
        let mut body = b"1;a=".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_EXTENSION + 10));
        assert!(walk(&body).is_err());
    }
}
