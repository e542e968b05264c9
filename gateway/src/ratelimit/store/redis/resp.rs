//! RESP2, the Redis wire, as far as the batch driver's own connection needs it: a command
//! written as an array of bulk strings, and replies read from a buffer that may hold part of
//! one, several, or one and part of the next.
//!
//! Why our own and not redis-rs's: a batch's answer is one array of integers, and redis-rs reads
//! it through a general `combine` parser (about 490 instructions an integer under callgrind) on
//! a connection task of its own, one more hop per call. The profile is in docs/PERFORMANCE.md,
//! "Where the Redis row's time goes". Everything else the store sends still goes through
//! redis-rs.
//!
//! The reader trusts nothing it reads: lengths and nesting are bounded, and a malformed reply is
//! an error, never a panic.

use std::fmt;

/// Deepest nesting of arrays accepted. The script answers a flat array; the handshake, simple
/// strings. Anything deeper is a reply this connection never asked for.
const MAX_DEPTH: usize = 4;

/// Longest bulk string accepted (an error text, a script's hash): far above any answer here.
const MAX_BULK: usize = 1 << 20;

/// Most elements in one array: four integers a check, at most `MAX_BATCH_LIMIT` requests of a
/// few checks each, with room to spare.
const MAX_ARRAY: usize = 1 << 20;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integers of a flat array of integers (the script's answer), or `None`.
    pub fn integers(self) -> Option<Vec<i64>> {
        let Reply::Array(Some(items)) = self else {
            return None;
        };
        items
            .into_iter()
            .map(|item| match item {
                Reply::Integer(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

/// A reply that breaks RESP2 or this reader's bounds: the connection cannot be trusted after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Redis reply: {}", self.0)
    }
}

/// Reads one reply from the front of `buf`: `Ok(None)` when `buf` holds only part of it (read
/// more and call again), else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    let mut at = 0;
    Ok(reply(buf, &mut at, 0)?.map(|r| (r, at)))
}

fn reply(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, Malformed> {
    let Some(line) = line(buf, *at)? else {
        return Ok(None);
    };
    let (kind, rest) = line.split_first().ok_or(Malformed("an empty line"))?;
    let after_line = *at + line.len() + 2;
    let parsed = match kind {
        b'+' => Reply::Simple(text(rest)),
        b'-' => Reply::Error(text(rest)),
        b':' => Reply::Integer(integer(rest)?),
        b'$' => {
            let Some(len) = length(rest, MAX_BULK)? else {
                *at = after_line;
                return Ok(Some(Reply::Bulk(None)));
            };
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Malformed("a bulk string longer than its length"));
            }
            *at = end + 2;
            return Ok(Some(Reply::Bulk(Some(buf[after_line..end].to_vec()))));
        }
        b'*' => {
            if depth == MAX_DEPTH {
                return Err(Malformed("arrays nested too deep"));
            }
            let Some(len) = length(rest, MAX_ARRAY)? else {
                *at = after_line;
                return Ok(Some(Reply::Array(None)));
            };
            let mut next = after_line;
            // Grown as elements arrive, not reserved from the declared length: a partial reply
            // is read again from the start, and a length is only a claim until its elements come.
            let mut items = Vec::new();
            for _ in 0..len {
                match reply(buf, &mut next, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            *at = next;
            return Ok(Some(Reply::Array(Some(items))));
        }
        _ => return Err(Malformed("an unknown reply type")),
    };
    *at = after_line;
    Ok(Some(parsed))
}

/// The line starting at `from`, without its CRLF; `None` until the CRLF has arrived.
fn line(buf: &[u8], from: usize) -> Result<Option<&[u8]>, Malformed> {
    let rest = &buf[from.min(buf.len())..];
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        // No reply line here is longer than a bulk string's bound.
        return if rest.len() > MAX_BULK {
            Err(Malformed("a line without an end"))
        } else {
            Ok(None)
        };
    };
    match lf.checked_sub(1).map(|cr| rest[cr]) {
        Some(b'\r') => Ok(Some(&rest[..lf - 1])),
        _ => Err(Malformed("a line ending in LF alone")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn integer(bytes: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed("an integer that is not one"));
    }
    // Nineteen digits fit an i128 with room: the range check is i64's, below.
    let magnitude = digits
        .iter()
        .fold(0i128, |n, &d| n * 10 + i128::from(d - b'0'));
    i64::try_from(if negative { -magnitude } else { magnitude })
        .map_err(|_| Malformed("an integer out of range"))
}

/// A bulk string's or array's length: `None` for -1 (null), an error past `max`.
fn length(bytes: &[u8], max: usize) -> Result<Option<usize>, Malformed> {
    match integer(bytes)? {
        -1 => Ok(None),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(Malformed("a length out of range")),
        },
    }
}

/// A command being written: its arguments as bulk strings, counted as they come, then framed.
#[derive(Debug, Default)]
pub struct Command {
    args: usize,
    body: Vec<u8>,
}

impl Command {
    /// Clears the command for reuse, keeping its buffer.
    pub fn clear(&mut self) {
        self.args = 0;
        self.body.clear();
    }

    pub fn arg(&mut self, bytes: &[u8]) -> &mut Self {
        self.args += 1;
        self.body.push(b'$');
        self.body
            .extend_from_slice(itoa::Buffer::new().format(bytes.len()).as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn arg_u64(&mut self, n: u64) -> &mut Self {
        self.arg(itoa::Buffer::new().format(n).as_bytes())
    }

    /// Appends the framed command to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(self.args).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests;
