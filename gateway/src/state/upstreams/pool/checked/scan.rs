//! The response scanner itself: a state machine over a connection's bytes that follows each
//! response's head, then its body (by `Content-Length` or chunk by chunk), then the next head,
//! and names the first thing RFC 9112 would call ambiguous or malformed (the list is the parent
//! module's). Whole lines that are plainly valid are read at once; anything else byte by byte.
//!
//! A scanner asked to ([`Scan::locating_heads`]) also keeps where the latest response head's
//! fields lie in the stream, when every line of it was read whole: our own client then builds
//! the response from those spans instead of parsing the head a second time.

use crate::wire::http1_client::FieldSpan;
use crate::wire::octets::{TCHAR, VALUE, token_run, value_run};

/// The latest request's method as the framing of its response depends on it.
pub(super) const OTHER: u8 = 0;
pub(super) const HEAD: u8 = 1;
pub(super) const CONNECT: u8 = 2;

/// What the scanner knows of the requests when it reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    /// The latest request's method.
    pub(super) method: u8,
    /// How many requests were sent.
    pub(super) sent: u64,
}

pub(super) type Violation = &'static str;

/// Where the scanner is in the stream of responses.
#[derive(Debug, Default)]
pub(super) struct Scan {
    phase: Phase,
    pub(super) failed: Option<Violation>,
    /// Final (non-interim) response heads read whole.
    answered: u64,
    /// Bytes fed so far: the stream position of the next one.
    fed: u64,
    /// The latest head's field spans, for a scanner locating heads.
    located: Option<Box<LocatedHead>>,
}

/// The latest response head as the scanner walked it, when it kept where its fields lie.
#[derive(Debug, Default)]
pub(super) struct LocatedHead {
    /// The stream position of the head's first byte.
    pub(super) start: u64,
    /// The position just past its blank line; 0 while the head has not ended.
    pub(super) end: u64,
    /// Every line was read whole (none was walked byte by byte), so `fields` is all of them.
    pub(super) whole: bool,
    pub(super) status: u16,
    pub(super) http10: bool,
    pub(super) fields: Vec<FieldSpan>,
    /// Past this many fields a head is not located: the client's own parse refuses it.
    max_fields: usize,
}

#[derive(Debug)]
enum Phase {
    Head(Head),
    /// Bytes left of a `Content-Length` body.
    Fixed(u64),
    Chunked(Chunk),
    Trailers(Fields),
    /// A body to the connection's close, or another protocol: not HTTP/1.1 framing any more.
    Unchecked,
}

impl Phase {
    /// The field section being read, when it is inside a run [`Fields::run`] reads in bulk.
    fn fields_in_run(&mut self) -> Option<&mut Fields> {
        match self {
            Phase::Head(Head {
                at: StatusAt::Fields,
                fields,
                ..
            })
            | Phase::Trailers(fields) => Some(fields).filter(|f| f.in_run()),
            _ => None,
        }
    }
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Head(Head::default())
    }
}

/// A response head being read.
#[derive(Debug, Default)]
struct Head {
    at: StatusAt,
    status: u16,
    http10: bool,
    fields: Fields,
}

#[derive(Debug, Default, Clone, Copy)]
enum StatusAt {
    /// Matching `HTTP/1.` at this index.
    #[default]
    Version0,
    Version(u8),
    Minor,
    VersionSp,
    Code(u8),
    CodeEnd,
    Reason,
    Lf,
    Fields,
}

/// A field section: a head's fields or a chunked body's trailers.
#[derive(Debug, Default)]
struct Fields {
    at: FieldAt,
    trailers: bool,
    /// The field name so far, lowercased, while it could still be a framing field's.
    name: [u8; NAME_MAX],
    name_len: usize,
    field: Framing,
    /// The value of a framing field so far (nobody needs a long one).
    value: [u8; VALUE_MAX],
    value_len: usize,
    content_length: Option<u64>,
    chunked: bool,
}

const NAME_MAX: usize = b"transfer-encoding".len();
const VALUE_MAX: usize = 32;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum FieldAt {
    #[default]
    LineStart,
    Name,
    Value,
    ValueLf,
    EndLf,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Framing {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size {
        value: u64,
        digits: bool,
    },
    /// Whitespace after the size: only a chunk extension may follow.
    SizeWs {
        value: u64,
    },
    Ext {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
}

const CHUNK_START: Chunk = Chunk::Size {
    value: 0,
    digits: false,
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// A byte a field value, reason phrase or chunk extension may hold.
fn is_text(b: u8) -> bool {
    VALUE[usize::from(b)]
}

/// What a line byte that is not allowed where it is says about the line.
fn misplaced(b: u8, otherwise: Violation) -> Violation {
    match b {
        b'\n' => "a line ends in a bare LF",
        b'\r' => "a CR not followed by LF",
        _ => otherwise,
    }
}

impl Scan {
    /// A scanner that also keeps where each head's fields lie ([`Scan::located`]), for heads of
    /// at most `max_fields` fields.
    pub(super) fn locating_heads(max_fields: usize) -> Self {
        Self {
            located: Some(Box::new(LocatedHead {
                max_fields,
                ..LocatedHead::default()
            })),
            ..Self::default()
        }
    }

    /// The latest head, if it has ended, started `buffered` bytes before the stream's latest
    /// byte, and was located whole.
    pub(super) fn located(&self, buffered: usize) -> Option<&LocatedHead> {
        let head = self.located.as_deref()?;
        (head.whole && head.end != 0 && self.fed.checked_sub(buffered as u64) == Some(head.start))
            .then_some(head)
    }

    /// Checks the next bytes of the stream.
    pub(super) fn feed(&mut self, mut bytes: &[u8], sent: Sent) -> Result<(), Violation> {
        let origin = self.fed;
        let total = bytes.len();
        self.fed += total as u64;
        // The stream position of `bytes[0]`.
        let position = |bytes: &[u8]| origin + (total - bytes.len()) as u64;
        while let Some((&b, rest)) = bytes.split_first() {
            // Whole lines first: a status line or field line that is all here and plainly valid
            // is read at once. Anything else — a line cut by the read, or one with something
            // wrong in it — is walked byte by byte below, which names what is wrong.
            let whole = match &mut self.phase {
                Phase::Head(head)
                    if matches!(head.at, StatusAt::Version0) && self.answered < sent.sent =>
                {
                    let n = head.whole_status_line(bytes);
                    if let Some(located) = self.located.as_deref_mut() {
                        located.begin(position(bytes), n.is_some(), head);
                    }
                    n
                }
                Phase::Head(Head {
                    at: StatusAt::Fields,
                    fields,
                    ..
                }) if fields.at == FieldAt::LineStart => {
                    let line = fields.whole_line(bytes).transpose()?;
                    if let (Some((n, name_len)), Some(located)) =
                        (line, self.located.as_deref_mut())
                    {
                        located.field(position(bytes), &bytes[..n], name_len);
                    }
                    line.map(|(n, _)| n)
                }
                Phase::Trailers(fields) if fields.at == FieldAt::LineStart => {
                    fields.whole_line(bytes).transpose()?.map(|(n, _)| n)
                }
                _ => None,
            };
            if let Some(n) = whole {
                bytes = &bytes[n..];
                continue;
            }
            if let Some(fields) = self.phase.fields_in_run() {
                let n = fields.run(bytes);
                if n > 0 {
                    bytes = &bytes[n..];
                    continue;
                }
            }
            match &mut self.phase {
                Phase::Unchecked => return Ok(()),
                Phase::Fixed(left) => {
                    let n = bytes
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.phase = Phase::default();
                    }
                    continue;
                }
                Phase::Chunked(Chunk::Data(left)) => {
                    let n = bytes
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.phase = Phase::Chunked(Chunk::DataCr);
                    }
                    continue;
                }
                Phase::Head(head) => {
                    if matches!(head.at, StatusAt::Version0) && self.answered >= sent.sent {
                        return Err("a response while no request is waiting for one");
                    }
                    if let Some(located) = self.located.as_deref_mut() {
                        // Only the blank line that ends the head is walked in a head read
                        // whole; any other byte here is a line the spans do not cover.
                        let blank_line = match head.at {
                            StatusAt::Fields => matches!(
                                (head.fields.at, b),
                                (FieldAt::LineStart, b'\r') | (FieldAt::EndLf, b'\n')
                            ),
                            _ => false,
                        };
                        if !blank_line {
                            located.whole = false;
                        }
                    }
                    if let Some(next) = head.step(b, sent.method)? {
                        if !(100..=199).contains(&head.status) || head.status == 101 {
                            self.answered += 1;
                        }
                        if let Some(located) = self.located.as_deref_mut() {
                            located.end = position(bytes) + 1;
                        }
                        self.phase = next;
                    }
                }
                Phase::Chunked(chunk) => {
                    if chunk.step(b)? {
                        self.phase = Phase::Trailers(Fields::trailers());
                    }
                }
                Phase::Trailers(fields) => {
                    if fields.step(b)? {
                        self.phase = Phase::default();
                    }
                }
            }
            bytes = rest;
        }
        Ok(())
    }
}

impl Head {
    /// `HTTP/1.x NNN reason` and its CRLF, when all of it is at the start of `bytes` and valid:
    /// how many bytes it took. `None` leaves the line to [`Head::step`].
    fn whole_status_line(&mut self, bytes: &[u8]) -> Option<usize> {
        let (version, rest) = bytes.split_at_checked(b"HTTP/1.1 200".len())?;
        let minor = version[7];
        let code = &version[9..12];
        if !version.starts_with(b"HTTP/1.")
            || !(minor == b'0' || minor == b'1')
            || version[8] != b' '
            || !code.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let reason = match rest.first() {
            Some(b' ') => 1 + value_run(&rest[1..]),
            _ => 0,
        };
        if rest.get(reason..reason + 2) != Some(b"\r\n") {
            return None;
        }
        self.http10 = minor == b'0';
        self.status = code
            .iter()
            .fold(0, |status, &digit| status * 10 + u16::from(digit - b'0'));
        self.at = StatusAt::Fields;
        Some(version.len() + reason + 2)
    }

    /// One byte of the head; at its end, what comes after it.
    fn step(&mut self, b: u8, method: u8) -> Result<Option<Phase>, Violation> {
        const BAD: Violation = "a status line that is not `HTTP/1.x NNN reason`";
        const VERSION: &[u8] = b"HTTP/1.";
        self.at = match self.at {
            StatusAt::Version0 if b == VERSION[0] => StatusAt::Version(1),
            StatusAt::Version(i) if b == VERSION[usize::from(i)] => {
                if usize::from(i) + 1 == VERSION.len() {
                    StatusAt::Minor
                } else {
                    StatusAt::Version(i + 1)
                }
            }
            StatusAt::Minor if b == b'0' || b == b'1' => {
                self.http10 = b == b'0';
                StatusAt::VersionSp
            }
            StatusAt::VersionSp if b == b' ' => StatusAt::Code(0),
            StatusAt::Code(n) if b.is_ascii_digit() => {
                self.status = self.status * 10 + u16::from(b - b'0');
                if n == 2 {
                    StatusAt::CodeEnd
                } else {
                    StatusAt::Code(n + 1)
                }
            }
            StatusAt::CodeEnd if b == b' ' => StatusAt::Reason,
            StatusAt::CodeEnd | StatusAt::Reason if b == b'\r' => StatusAt::Lf,
            StatusAt::Reason if is_text(b) => StatusAt::Reason,
            StatusAt::Lf if b == b'\n' => StatusAt::Fields,
            StatusAt::Lf => return Err("a CR not followed by LF"),
            StatusAt::Version0 if b == b'\r' || b == b'\n' => {
                return Err("an empty line where a status line belongs");
            }
            StatusAt::Fields => {
                if !self.fields.step(b)? {
                    return Ok(None);
                }
                return self.end(method).map(Some);
            }
            _ => return Err(misplaced(b, BAD)),
        };
        Ok(None)
    }

    /// The head is whole: its framing, and where the next bytes belong.
    fn end(&self, method: u8) -> Result<Phase, Violation> {
        let fields = &self.fields;
        if fields.chunked && fields.content_length.is_some() {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if fields.chunked && self.http10 {
            return Err("Transfer-Encoding on an HTTP/1.0 response");
        }
        let status = self.status;
        Ok(match status {
            // The connection speaks another protocol from here on.
            101 => Phase::Unchecked,
            // An interim response: the final one follows.
            100..=199 => Phase::default(),
            _ if method == HEAD || status == 204 || status == 304 => Phase::default(),
            200..=299 if method == CONNECT => Phase::Unchecked,
            _ if fields.chunked => Phase::Chunked(CHUNK_START),
            _ => match fields.content_length {
                Some(0) => Phase::default(),
                Some(n) => Phase::Fixed(n),
                None => Phase::Unchecked,
            },
        })
    }
}

impl LocatedHead {
    /// A status line begins at stream position `at`; `whole` when it was read at once.
    fn begin(&mut self, at: u64, whole: bool, head: &Head) {
        self.start = at;
        self.end = 0;
        self.whole = whole;
        self.status = head.status;
        self.http10 = head.http10;
        self.fields.clear();
    }

    /// A field line read whole at stream position `at`: `line` with its CRLF, its name the
    /// first `name_len` bytes.
    fn field(&mut self, at: u64, line: &[u8], name_len: usize) {
        if !self.whole {
            return;
        }
        if self.fields.len() == self.max_fields {
            self.whole = false;
            return;
        }
        let value = &line[name_len + 1..line.len() - 2];
        let trimmed = value.trim_ascii();
        let lead = trimmed.as_ptr() as usize - value.as_ptr() as usize;
        // Offsets within a head, which the client caps far below 4 GiB.
        let offset = (at - self.start) as u32;
        let value_start = offset + (name_len + 1 + lead) as u32;
        self.fields.push(FieldSpan {
            name: (offset, offset + name_len as u32),
            value: (value_start, value_start + trimmed.len() as u32),
        });
    }
}

impl Fields {
    fn trailers() -> Self {
        Self {
            trailers: true,
            ..Self::default()
        }
    }

    /// One byte of a field section; `true` when the section has ended.
    fn step(&mut self, b: u8) -> Result<bool, Violation> {
        self.at = match self.at {
            FieldAt::LineStart => match b {
                b'\r' => FieldAt::EndLf,
                b' ' | b'\t' => {
                    return Err("obsolete line folding (a line starting with whitespace)");
                }
                _ if is_tchar(b) => {
                    self.name_len = 0;
                    self.push_name(b);
                    FieldAt::Name
                }
                _ => return Err(misplaced(b, "a field name with a byte outside tchar")),
            },
            FieldAt::Name => match b {
                b':' => {
                    self.begin_value()?;
                    FieldAt::Value
                }
                b' ' | b'\t' => return Err("whitespace between a field name and its colon"),
                _ if is_tchar(b) => {
                    self.push_name(b);
                    FieldAt::Name
                }
                _ => return Err(misplaced(b, "a field name with a byte outside tchar")),
            },
            FieldAt::Value => match b {
                b'\r' => FieldAt::ValueLf,
                _ if is_text(b) => {
                    if self.field != Framing::Other {
                        if self.value_len == VALUE_MAX {
                            return Err(self.bad_value());
                        }
                        self.value[self.value_len] = b;
                        self.value_len += 1;
                    }
                    FieldAt::Value
                }
                _ => return Err(misplaced(b, "a control byte in a field value")),
            },
            FieldAt::ValueLf if b == b'\n' => {
                self.end_value()?;
                FieldAt::LineStart
            }
            FieldAt::EndLf if b == b'\n' => return Ok(true),
            FieldAt::ValueLf | FieldAt::EndLf => return Err("a CR not followed by LF"),
        };
        Ok(false)
    }

    /// A field line (`name: value` and its CRLF) when all of it is at the start of `bytes` and
    /// plainly valid — a `tchar` name, a colon, text, CRLF — read as [`Fields::step`] would read
    /// it: how many bytes it took, and how many of them are the name. `None` leaves the line to
    /// the walk; an error is the framing field's own (a repeated or invalid length, a coding
    /// other than `chunked`).
    // Inlined: it is the scan's hot loop, and a call per line cost more than the line.
    #[inline(always)]
    fn whole_line(&mut self, bytes: &[u8]) -> Option<Result<(usize, usize), Violation>> {
        let name_len = token_run(bytes);
        if name_len == 0 || bytes.get(name_len) != Some(&b':') {
            return None;
        }
        let value_at = name_len + 1;
        let value_len = value_run(&bytes[value_at..]);
        let cr = value_at + value_len;
        if bytes.get(cr..cr + 2) != Some(b"\r\n") {
            return None;
        }
        // Only a name as long as a framing field's is kept (lowercased) for `begin_value` to
        // compare: a name of any other length cannot match, whatever the buffer still holds,
        // and copying every name was a fifth of the scan.
        if name_len == b"content-length".len() || name_len == b"transfer-encoding".len() {
            for (kept, &b) in self.name.iter_mut().zip(&bytes[..name_len]) {
                *kept = b.to_ascii_lowercase();
            }
        }
        self.name_len = name_len;
        Some(
            self.whole_value(&bytes[value_at..cr])
                .map(|()| (cr + 2, name_len)),
        )
    }

    fn whole_value(&mut self, value: &[u8]) -> Result<(), Violation> {
        self.begin_value()?;
        if self.field != Framing::Other {
            if value.len() > VALUE_MAX {
                return Err(self.bad_value());
            }
            self.value[..value.len()].copy_from_slice(value);
            self.value_len = value.len();
        }
        self.end_value()?;
        self.at = FieldAt::LineStart;
        Ok(())
    }

    /// Whether the section is inside a field name or an ordinary field's value, where runs of
    /// bytes are read in bulk by [`Fields::run`].
    fn in_run(&self) -> bool {
        self.at == FieldAt::Name || (self.at == FieldAt::Value && self.field == Framing::Other)
    }

    /// Reads the run of name bytes, or of an ordinary value's bytes, at the start of `bytes`
    /// (all but the byte that ends it, which [`Fields::step`] judges); how many it read.
    fn run(&mut self, bytes: &[u8]) -> usize {
        if self.at == FieldAt::Name {
            let n = token_run(bytes);
            let kept = n.min(NAME_MAX.saturating_sub(self.name_len));
            for &b in &bytes[..kept] {
                self.push_name(b);
            }
            // Past NAME_MAX only the length matters: no framing field is that long.
            self.name_len += n - kept;
            n
        } else {
            value_run(bytes)
        }
    }

    fn push_name(&mut self, b: u8) {
        if self.name_len < NAME_MAX {
            self.name[self.name_len] = b.to_ascii_lowercase();
        }
        self.name_len += 1;
    }

    fn begin_value(&mut self) -> Result<(), Violation> {
        let name = &self.name[..self.name_len.min(NAME_MAX)];
        self.field = match name {
            _ if self.name_len > NAME_MAX => Framing::Other,
            b"content-length" => Framing::ContentLength,
            b"transfer-encoding" => Framing::TransferEncoding,
            _ => Framing::Other,
        };
        if self.trailers && self.field != Framing::Other {
            return Err("a framing field (Content-Length, Transfer-Encoding) in the trailers");
        }
        self.value_len = 0;
        Ok(())
    }

    fn bad_value(&self) -> Violation {
        match self.field {
            Framing::TransferEncoding => "a Transfer-Encoding other than one `chunked`",
            _ => "an invalid Content-Length",
        }
    }

    fn end_value(&mut self) -> Result<(), Violation> {
        // Only SP and HTAB can be trimmed: other whitespace is a control byte, refused already.
        let value = self.value[..self.value_len].trim_ascii();
        match self.field {
            Framing::Other => {}
            Framing::ContentLength => {
                if self.content_length.is_some() || value.contains(&b',') {
                    return Err("a repeated Content-Length");
                }
                if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                    return Err("an invalid Content-Length");
                }
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or("an invalid Content-Length")?;
                self.content_length = Some(n);
            }
            Framing::TransferEncoding => {
                if self.chunked {
                    return Err("a repeated Transfer-Encoding");
                }
                if !value.eq_ignore_ascii_case(b"chunked") {
                    return Err("a Transfer-Encoding other than one `chunked`");
                }
                self.chunked = true;
            }
        }
        self.field = Framing::Other;
        Ok(())
    }
}

impl Chunk {
    /// One byte of a chunk's framing (data is skipped in bulk); `true` after the last chunk's
    /// line, when the trailers begin.
    fn step(&mut self, b: u8) -> Result<bool, Violation> {
        const SIZE: Violation = "a chunk size that is not hexadecimal";
        const EXT: Violation = "a malformed chunk extension";
        *self = match *self {
            Chunk::Size { value, digits } => match b {
                _ if b.is_ascii_hexdigit() => {
                    if value > u64::MAX >> 4 {
                        return Err("a chunk size that overflows");
                    }
                    let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    Chunk::Size {
                        value: value << 4 | digit,
                        digits: true,
                    }
                }
                b';' if digits => Chunk::Ext { value },
                b' ' | b'\t' if digits => Chunk::SizeWs { value },
                b'\r' if digits => Chunk::SizeLf { value },
                b'\n' => return Err(misplaced(b, SIZE)),
                _ => return Err(SIZE),
            },
            Chunk::SizeWs { value } => match b {
                b' ' | b'\t' => Chunk::SizeWs { value },
                b';' => Chunk::Ext { value },
                b'\n' => return Err(misplaced(b, EXT)),
                _ => return Err(EXT),
            },
            Chunk::Ext { value } => match b {
                b'\r' => Chunk::SizeLf { value },
                _ if is_text(b) => Chunk::Ext { value },
                _ => return Err(misplaced(b, EXT)),
            },
            Chunk::SizeLf { value } => match b {
                b'\n' if value == 0 => return Ok(true),
                b'\n' => Chunk::Data(value),
                _ => return Err("a CR not followed by LF"),
            },
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => CHUNK_START,
            Chunk::DataCr | Chunk::DataLf => return Err("chunk data not followed by CRLF"),
            // Skipped in bulk by the caller.
            Chunk::Data(_) => *self,
        };
        Ok(false)
    }
}
