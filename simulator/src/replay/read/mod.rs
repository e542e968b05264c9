//! Reading recordings: Gatehouse recording lines, HAR 1.2 and GoReplay `.gor` files into one
//! [`super::model::Recording`], with the place and reason of every problem.
//!
//! [`load`] detects the format from the content (the extension is only a hint), hands the bytes
//! to the format's reader, then makes ids unique and sorts by send time. The readers share the
//! client key of traffic that carries no identity reference ([`client_hint`]).

pub mod gatehouse;
pub mod gor;
pub mod har;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::model::{Exchange, Format, LoadError, Position, Recording, Warning};

pub use gatehouse::{to_line, write_lines};

/// How forgiving a read is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip a line, entry or record that cannot be read (listed in [`Recording::skipped`])
    /// instead of failing the whole file.
    pub skip_bad: bool,
}

/// What a format reader hands back before ids and order are settled.
pub(crate) struct Parsed {
    pub exchanges: Vec<Exchange>,
    pub warnings: Vec<Warning>,
    pub skipped: Vec<LoadError>,
}

const BYTE_ORDER_MARK: &[u8] = "\u{feff}".as_bytes();

/// The bytes [`detect`] looks at: enough for any format's opening.
const SNIFF_BYTES: usize = 64 * 1024;

/// Reads a recording in any format [`detect`] recognises: exchanges in send order (stable for
/// equal times), ids unique (a repeated id gets `-2`, `-3`, ... and a `duplicate-id` warning).
pub fn load(path: &Path, options: &ReadOptions) -> Result<Recording, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    parse(path, &bytes, options)
}

/// [`load`] on bytes already in memory; `path` names them in errors and hints the format.
pub fn parse(path: &Path, bytes: &[u8], options: &ReadOptions) -> Result<Recording, LoadError> {
    // Fiddler, among others, opens its HAR files with a UTF-8 byte order mark.
    let bytes = bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes);
    let read = match sniff(path, bytes)? {
        Format::Gatehouse => gatehouse::read(path, bytes, options)?,
        Format::Har => har::read(path, bytes, options)?,
        Format::Gor => gor::read(path, bytes, options)?,
    };
    Ok(settle(read))
}

/// The format of a recording, from its first bytes; the extension (`.jsonl`, `.har`, `.gor`)
/// decides only when the content does not.
pub fn detect(path: &Path) -> Result<Format, LoadError> {
    let file =
        std::fs::File::open(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let mut prefix = Vec::with_capacity(SNIFF_BYTES);
    file.take(SNIFF_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    sniff(path, &prefix)
}

/// The name a summary or an error gives a format.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Gatehouse => "Gatehouse",
        Format::Har => "HAR",
        Format::Gor => "GoReplay",
    }
}

/// What a position counts in a format: `line`, `entry` or `record`.
pub fn position_unit(format: Format) -> &'static str {
    match format {
        Format::Gatehouse => "line",
        Format::Har => "entry",
        Format::Gor => "record",
    }
}

fn sniff(path: &Path, bytes: &[u8]) -> Result<Format, LoadError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let by_extension = match extension.as_deref() {
        Some("jsonl" | "ndjson") => Some(Format::Gatehouse),
        Some("har") => Some(Format::Har),
        Some("gor") => Some(Format::Gor),
        _ => None,
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(file_error(
            path,
            "the file is gzip-compressed; decompress it first (gunzip)",
        ));
    }
    let text = bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    if text.is_empty() {
        // Nothing to read is an empty recording, whatever it was meant to be.
        return Ok(by_extension.unwrap_or(Format::Gatehouse));
    }
    if text[0] == b'{' {
        return Ok(match first_key(text).as_deref() {
            Some("log") => Format::Har,
            Some(_) => Format::Gatehouse,
            // A lone `{` on the first line is pretty-printed JSON: a HAR, not a line format.
            None if by_extension == Some(Format::Har) || opens_pretty_json(text) => Format::Har,
            None => Format::Gatehouse,
        });
    }
    if matches!(text, [b'1'..=b'3', b' ', ..]) || contains(text, gor::SEPARATOR.as_bytes()) {
        return Ok(Format::Gor);
    }
    by_extension.ok_or_else(|| {
        let opening: String = String::from_utf8_lossy(&text[..text.len().min(20)])
            .chars()
            .take_while(|c| *c != '\n' && *c != '\r')
            .collect();
        file_error(
            path,
            format!(
                "not a Gatehouse recording, a HAR file or a GoReplay file (it starts with `{opening}`)"
            ),
        )
    })
}

/// The first key of the JSON object `text` opens, when it comes before the first line break.
fn first_key(text: &[u8]) -> Option<String> {
    let rest = &text[1..];
    let at = rest.iter().position(|b| *b != b' ' && *b != b'\t')?;
    let rest = rest[at..].strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\n')?;
    (rest[end] == b'"').then(|| String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn opens_pretty_json(text: &[u8]) -> bool {
    let first_line = text.split(|b| *b == b'\n').next().unwrap_or(text);
    first_line.trim_ascii() == b"{"
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Unique ids in file order, then a stable sort by send time.
fn settle(read: Parsed) -> Recording {
    let Parsed {
        mut exchanges,
        mut warnings,
        skipped,
    } = read;
    let mut seen: HashSet<String> = exchanges.iter().map(|e| e.id.clone()).collect();
    if seen.len() < exchanges.len() {
        let mut first_use: HashSet<String> = HashSet::new();
        for exchange in &mut exchanges {
            if first_use.insert(exchange.id.clone()) {
                continue;
            }
            let original = exchange.id.clone();
            let renamed = (2..)
                .map(|n| format!("{original}-{n}"))
                .find(|candidate| !seen.contains(candidate))
                .unwrap_or_default();
            seen.insert(renamed.clone());
            first_use.insert(renamed.clone());
            warnings.push(Warning {
                position: exchange.position,
                kind: "duplicate-id".into(),
                message: format!("id `{original}` is used more than once; this one is `{renamed}`"),
            });
            exchange.id = renamed;
        }
    }
    exchanges.sort_by_key(|e| e.unix_nanos);
    Recording {
        exchanges,
        warnings,
        skipped,
    }
}

pub(crate) fn file_error(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError {
        file: path.to_path_buf(),
        at: Position::File,
        message: message.into(),
    }
}

/// The client key of a request without identity references (HAR, GoReplay): the `sub` claim of a
/// bearer JWT, read without verifying it, else a stable hash of the first credential-bearing
/// header (`authorization`, `x-api-key`, `cookie`) as `NAME#16-HEX`, never the value; else `-`.
pub fn client_hint(headers: &[(String, String)]) -> String {
    for name in ["authorization", "x-api-key", "cookie"] {
        let Some((_, value)) = headers.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if name == "authorization" {
            if let Some(subject) = bearer_subject(value) {
                return subject;
            }
        }
        let digest = Sha256::digest(value.as_bytes());
        return format!("{name}#{}", &hex(&digest)[..16]);
    }
    "-".to_owned()
}

/// The `sub` of `Bearer <JWT>`, as claimed.
fn bearer_subject(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let subject = claims.get("sub")?.as_str()?;
    (!subject.is_empty()).then(|| subject.to_owned())
}

/// SHA-256 of `bytes`, lowercase hex: a response body's `body_sha256`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A response's headers as a recording keeps them: `set-cookie` values redacted.
pub(crate) fn redact_response_headers(headers: &mut [(String, String)]) {
    for (name, value) in headers {
        if name == "set-cookie" {
            *value = gateway::record::recording::format::REDACTED.to_owned();
        }
    }
}

/// A connection key as the line format holds it (a number): kept when it is one, else a stable
/// hash of the text, so requests that shared a connection still share a key.
pub(crate) fn connection_number(key: &str) -> u64 {
    key.parse().unwrap_or_else(|_| {
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        // Below 2^53, so a JSON reader that parses numbers as doubles keeps it exact.
        u64::from_be_bytes(first) >> 11
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(name: &str, content: &str) -> Result<Format, LoadError> {
        sniff(Path::new(name), content.as_bytes())
    }

    #[test]
    fn the_content_decides_the_format_and_the_extension_only_hints() {
        assert_eq!(
            sniffed("x.txt", "{\"v\":1,\"id\":\"a\"}\n").ok(),
            Some(Format::Gatehouse)
        );
        assert_eq!(
            sniffed("x.jsonl", "{\n  \"log\": {}}").ok(),
            Some(Format::Har)
        );
        assert_eq!(sniffed("x.har", "{\"log\":{}}").ok(), Some(Format::Har));
        assert_eq!(sniffed("x", "{\n\"log\": {}}").ok(), Some(Format::Har));
        assert_eq!(
            sniffed("x.har", "\n1 ab 1 2\nGET / HTTP/1.1\r\n").ok(),
            Some(Format::Gor)
        );
        assert_eq!(sniffed("x.jsonl", "").ok(), Some(Format::Gatehouse));
        assert_eq!(sniffed("x.gor", "").ok(), Some(Format::Gor));
        let unknown = sniffed("x.txt", "hello world\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some(
                "x.txt: not a Gatehouse recording, a HAR file or a GoReplay file (it starts with `hello world`)"
            )
        );
        let gzip = sniff(Path::new("x.gor"), &[0x1f, 0x8b, 8, 0]).err();
        assert_eq!(
            gzip.map(|e| e.message),
            Some("the file is gzip-compressed; decompress it first (gunzip)".into())
        );
    }

    #[test]
    fn a_fiddler_har_with_a_byte_order_mark_and_seven_fraction_digits_reads() {
        let har = "\u{feff}{\"log\":{\"version\":\"1.2\",\"entries\":[{\"startedDateTime\":\"2024-03-05T10:15:30.1234567+01:00\",\"request\":{\"method\":\"GET\",\"url\":\"http://h/\",\"httpVersion\":\"HTTP/1.1\",\"headers\":[]},\"response\":{\"status\":200,\"headers\":[],\"content\":{\"size\":0}}}]}}";
        let recording =
            parse(Path::new("f.har"), har.as_bytes(), &ReadOptions::default()).expect("reads");
        assert_eq!(recording.exchanges[0].unix_nanos, 1_709_630_130_123_456_700);
    }

    #[test]
    fn a_client_hint_never_holds_the_credential() {
        let header = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
        // {"sub":"alice"} as a JWT payload.
        let jwt = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.sig";
        assert_eq!(client_hint(&header("authorization", jwt)), "alice");
        let basic = client_hint(&header("authorization", "Basic dXNlcjpwYXNz"));
        assert!(
            basic.starts_with("authorization#") && basic.len() == 30,
            "{basic}"
        );
        assert!(!basic.contains("dXNlcjpwYXNz"));
        assert_eq!(
            basic,
            client_hint(&header("authorization", "Basic dXNlcjpwYXNz"))
        );
        assert!(client_hint(&header("cookie", "sid=1")).starts_with("cookie#"));
        assert_eq!(client_hint(&header("accept", "*/*")), "-");
    }

    #[test]
    fn a_repeated_id_gets_a_suffix_and_a_warning_and_order_is_by_time() {
        let exchange = |position: u64, id: &str, unix_nanos: u64| Exchange {
            position,
            id: id.into(),
            unix_nanos,
            client: "-".into(),
            connection: None,
            method: "GET".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![],
            body: vec![],
            body_truncated: false,
            tls: None,
            credentials: vec![],
            recorded: None,
            response: None,
        };
        let recording = settle(Parsed {
            exchanges: vec![
                exchange(1, "a", 30),
                exchange(2, "a-2", 10),
                exchange(3, "a", 10),
                exchange(4, "a", 20),
            ],
            warnings: vec![],
            skipped: vec![],
        });
        let ids: Vec<_> = recording.exchanges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a-2", "a-3", "a-4", "a"]);
        assert_eq!(recording.warnings.len(), 2);
        assert_eq!(recording.warnings[0].kind, "duplicate-id");
        assert_eq!(
            recording.warnings[0].message,
            "id `a` is used more than once; this one is `a-3`"
        );
    }

    #[test]
    fn a_connection_key_that_is_not_a_number_hashes_to_a_stable_one() {
        assert_eq!(connection_number("42"), 42);
        assert_eq!(connection_number("conn-a"), connection_number("conn-a"));
        assert_ne!(connection_number("conn-a"), connection_number("conn-b"));
        assert!(connection_number("conn-a") < 1 << 53);
    }
}
