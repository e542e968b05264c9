//! GoReplay `.gor` files read into exchanges. A file is records separated by a line holding
//! [`SEPARATOR`] (GoReplay writes `\n🐵🙈🙉\n` after each record); a record is a meta line
//! `<type> <id> <timestamp_ns> [<latency_ns>]` and the raw HTTP/1 message. Type 1 records are
//! requests, type 2 the original responses (attached to the request of the same id, for response
//! diffs), type 3 responses to an earlier replay (ignored, counted).

use std::collections::HashMap;
use std::path::Path;

use gateway::record::recording::format::RecordedResponse;

use super::{Parsed, ReadOptions, client_hint, redact_response_headers, sha256_hex};
use crate::replay::model::{Exchange, LoadError, Position, Warning};

/// The line between two records (GoReplay's `payloadSeparator` without its newlines).
pub const SEPARATOR: &str = "🐵🙈🙉";

/// One record's bytes, its meta line included, without the separator's newline.
struct RawRecord<'a> {
    number: u64,
    bytes: &'a [u8],
}

/// Reads a `.gor` file: a bad record is an error naming its number, or skipped with `skip_bad`.
pub(crate) fn read(path: &Path, bytes: &[u8], options: &ReadOptions) -> Result<Parsed, LoadError> {
    let mut parsed = Parsed {
        exchanges: Vec::new(),
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    let records = split_records(bytes, &mut parsed.warnings);
    // Responses by GoReplay id, attached once every request is known: a response may come first.
    let mut responses: HashMap<String, (u64, RecordedResponse)> = HashMap::new();
    for record in records {
        let number = record.number;
        let mut warn = |kind: &str, message: String| {
            parsed.warnings.push(Warning {
                position: number,
                kind: kind.into(),
                message,
            })
        };
        let result = match parse_record(&record, &mut warn) {
            Ok(Payload::Request(exchange)) => {
                parsed.exchanges.push(*exchange);
                Ok(())
            }
            Ok(Payload::Response(id, response)) => {
                match responses.entry(id) {
                    std::collections::hash_map::Entry::Occupied(first) => warn(
                        "duplicate-response",
                        format!(
                            "a second original response for `{}`; the first one is kept",
                            first.key()
                        ),
                    ),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((number, response));
                    }
                }
                Ok(())
            }
            Ok(Payload::Replayed) => {
                warn(
                    "replayed-response",
                    "a replayed response (type 3); ignored".into(),
                );
                Ok(())
            }
            Err(message) => Err(message),
        };
        if let Err(message) = result {
            let error = LoadError {
                file: path.to_path_buf(),
                at: Position::Record(number),
                message,
            };
            if !options.skip_bad {
                return Err(error);
            }
            parsed.skipped.push(error);
        }
    }
    for exchange in &mut parsed.exchanges {
        if let Some((_, response)) = responses.remove(&exchange.id) {
            exchange.response = Some(response);
        }
    }
    let mut orphans: Vec<_> = responses.into_iter().collect();
    orphans.sort_by_key(|(_, (number, _))| *number);
    for (id, (number, _)) in orphans {
        parsed.warnings.push(Warning {
            position: number,
            kind: "orphan-response".into(),
            message: format!("an original response for `{id}`, which has no request here"),
        });
    }
    Ok(parsed)
}

/// Cuts the file at separator lines (`\n` or `\r\n` endings), with or without a final one.
/// Blank lines before a record's meta line are skipped with a `blank-line` warning.
fn split_records<'a>(bytes: &'a [u8], warnings: &mut Vec<Warning>) -> Vec<RawRecord<'a>> {
    let mut records = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < bytes.len() {
        let line_end = bytes[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |at| pos + at);
        let line = &bytes[pos..line_end];
        let crlf = line.ends_with(b"\r");
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        let next_number = records.len() as u64 + 1;
        if content == SEPARATOR.as_bytes() {
            match start.take() {
                Some(from) => records.push(RawRecord {
                    number: next_number,
                    bytes: strip_line_end(&bytes[from..pos], crlf),
                }),
                None => warnings.push(Warning {
                    position: next_number,
                    kind: "empty-record".into(),
                    message: "a separator with no record before it".into(),
                }),
            }
        } else if start.is_none() {
            if content.trim_ascii().is_empty() {
                warnings.push(Warning {
                    position: next_number,
                    kind: "blank-line".into(),
                    message: "a blank line before the record's meta line".into(),
                });
            } else {
                start = Some(pos);
            }
        }
        pos = line_end + 1;
    }
    if let Some(from) = start {
        // No final separator: the file's last newline is dropped only when the message's head is
        // complete without it (GoReplay writes that newline as part of the separator).
        let rest = &bytes[from..];
        let crlf = rest
            .iter()
            .position(|b| *b == b'\n')
            .is_some_and(|at| at > 0 && rest[at - 1] == b'\r');
        let stripped = strip_line_end(rest, crlf);
        let message = stripped
            .iter()
            .position(|b| *b == b'\n')
            .map_or(&stripped[stripped.len()..], |at| &stripped[at + 1..]);
        let bytes = if split_head(message).1.is_some() {
            stripped
        } else {
            rest
        };
        records.push(RawRecord {
            number: records.len() as u64 + 1,
            bytes,
        });
    }
    records
}

fn strip_line_end(bytes: &[u8], crlf: bool) -> &[u8] {
    if crlf {
        if let Some(stripped) = bytes.strip_suffix(b"\r\n") {
            return stripped;
        }
    }
    bytes.strip_suffix(b"\n").unwrap_or(bytes)
}

enum Payload {
    Request(Box<Exchange>),
    Response(String, RecordedResponse),
    Replayed,
}

fn parse_record(
    record: &RawRecord<'_>,
    warn: &mut impl FnMut(&str, String),
) -> Result<Payload, String> {
    let (meta, message) = match record.bytes.iter().position(|b| *b == b'\n') {
        Some(at) => (&record.bytes[..at], &record.bytes[at + 1..]),
        None => (record.bytes, &record.bytes[record.bytes.len()..]),
    };
    let meta = String::from_utf8_lossy(meta.strip_suffix(b"\r").unwrap_or(meta)).into_owned();
    let fields: Vec<&str> = meta.split_ascii_whitespace().collect();
    if !(3..=4).contains(&fields.len()) {
        return Err(format!(
            "meta line `{meta}` has {} fields; expected `<type> <id> <timestamp_ns> [<latency_ns>]`",
            fields.len()
        ));
    }
    let id = fields[1].to_owned();
    let timestamp: u64 = fields[2]
        .parse()
        .map_err(|_| format!("timestamp `{}` is not a number of nanoseconds", fields[2]))?;
    if let Some(latency) = fields.get(3) {
        latency
            .parse::<i64>()
            .map_err(|_| format!("latency `{latency}` is not a number of nanoseconds"))?;
    }
    match fields[0] {
        "1" => {}
        "2" => return parse_response(message, warn).map(|r| Payload::Response(id, r)),
        "3" => return Ok(Payload::Replayed),
        other => {
            return Err(format!(
                "payload type `{other}` is not 1 (request), 2 (original response) or 3 (replayed response)"
            ));
        }
    }
    if message.trim_ascii().is_empty() {
        return Err("the record has a meta line but no HTTP request".into());
    }
    let (head, body) = split_head(message);
    let body = body.unwrap_or_else(|| {
        warn(
            "unterminated-head",
            "the request's head has no blank line after it; read as a request without a body"
                .into(),
        );
        &[]
    });
    let mut lines = head_lines(head);
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.splitn(3, ' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(format!(
            "request line `{request_line}` is not `METHOD TARGET HTTP/x.y`"
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) || target.is_empty() {
        return Err(format!(
            "request line `{request_line}` is not `METHOD TARGET HTTP/x.y`"
        ));
    }
    let version = match version.trim() {
        "HTTP/1.1" => "HTTP/1.1",
        "HTTP/1.0" => {
            warn("http-1.0", "an HTTP/1.0 request".into());
            "HTTP/1.0"
        }
        "HTTP/2" | "HTTP/2.0" => "HTTP/2.0",
        other => {
            return Err(format!(
                "request line `{request_line}`: unknown HTTP version `{other}`"
            ));
        }
    };
    let mut headers = parse_headers(lines, warn)?;
    let body = message_body(&headers, body, warn)?;
    if !is_chunked(&headers) {
        if let Some(declared) = header(&headers, "content-length").map(str::to_owned) {
            if declared.trim().parse::<u64>().ok() != Some(body.len() as u64) {
                warn(
                    "content-length-mismatch",
                    format!(
                        "content-length {declared} but the record holds {} body bytes; the bytes are kept and the header dropped",
                        body.len()
                    ),
                );
                headers.retain(|(n, _)| n != "content-length");
            }
        }
    }
    Ok(Payload::Request(Box::new(Exchange {
        position: record.number,
        id,
        unix_nanos: timestamp,
        client: client_hint(&headers),
        connection: None,
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body,
        body_truncated: false,
        tls: None,
        credentials: Vec::new(),
        recorded: None,
        response: None,
    })))
}

fn parse_response(
    message: &[u8],
    warn: &mut impl FnMut(&str, String),
) -> Result<RecordedResponse, String> {
    let (head, body) = split_head(message);
    let body = body.unwrap_or(&[]);
    let mut lines = head_lines(head);
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .filter(|_| version.starts_with("HTTP/"))
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("status line `{status_line}` is not `HTTP/x.y STATUS REASON`"))?;
    let mut headers = parse_headers(lines, warn)?;
    let body = message_body(&headers, body, warn)?;
    redact_response_headers(&mut headers);
    Ok(RecordedResponse {
        status,
        headers,
        body_sha256: Some(sha256_hex(&body)),
        body_len: body.len() as u64,
    })
}

/// The head (start line and header lines) and the body after the blank line; no body when the
/// head never ends.
fn split_head(message: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut pos = 0;
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(message.len(), |at| pos + at);
        let line = &message[pos..line_end];
        if line.is_empty() || line == b"\r" {
            if line_end == message.len() {
                // A final `\r` without its `\n`: still no complete blank line.
                break;
            }
            return (&message[..pos], Some(&message[line_end + 1..]));
        }
        pos = line_end + 1;
    }
    (message, None)
}

fn head_lines(head: &[u8]) -> impl Iterator<Item = String> + '_ {
    head.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| String::from_utf8_lossy(line).into_owned())
}

fn parse_headers(
    lines: impl Iterator<Item = String>,
    warn: &mut impl FnMut(&str, String),
) -> Result<Vec<(String, String)>, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.contains('\u{fffd}') {
            warn(
                "non-utf8-header",
                format!("header line `{line}` is not UTF-8; its bad bytes are replaced"),
            );
        }
        if line.starts_with([' ', '\t']) {
            // An obsolete folded continuation of the previous field.
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                None => return Err(format!("header line `{line}` continues no header")),
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line `{line}` has no `:`"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("header line `{line}` has no valid field name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(headers)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// The body's bytes: de-chunked when the message says it is chunked, else as recorded.
fn message_body(
    headers: &[(String, String)],
    body: &[u8],
    warn: &mut impl FnMut(&str, String),
) -> Result<Vec<u8>, String> {
    if !is_chunked(headers) {
        return Ok(body.to_vec());
    }
    let (decoded, rest) = decode_chunked(body).map_err(|e| format!("chunked body: {e}"))?;
    if !rest.trim_ascii().is_empty() {
        warn(
            "trailing-bytes",
            format!("{} bytes after the last chunk; ignored", rest.len()),
        );
    }
    Ok(decoded)
}

/// Decodes a chunked body; returns the data and what follows the trailer section.
fn decode_chunked(mut data: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.iter().position(|b| *b == b'\n') else {
            return Err("the body ends before its last (zero-size) chunk".into());
        };
        let line = String::from_utf8_lossy(&data[..line_end]);
        let size_text = line.trim_end_matches('\r');
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size `{size_text}` is not hexadecimal"))?;
        data = &data[line_end + 1..];
        if size == 0 {
            // Trailer fields, up to a blank line.
            loop {
                let Some(end) = data.iter().position(|b| *b == b'\n') else {
                    return Ok((out, &[]));
                };
                let field = &data[..end];
                data = &data[end + 1..];
                if field.is_empty() || field == b"\r" {
                    return Ok((out, data));
                }
            }
        }
        if data.len() < size {
            return Err(format!(
                "a chunk of {size} bytes but only {} bytes left",
                data.len()
            ));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        data = data
            .strip_prefix(b"\r\n")
            .or_else(|| data.strip_prefix(b"\n"))
            .ok_or("a chunk is not followed by a line break")?;
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str, skip_bad: bool) -> Result<Parsed, LoadError> {
        read(
            Path::new("x.gor"),
            text.as_bytes(),
            &ReadOptions { skip_bad },
        )
    }

    fn kinds(parsed: &Parsed) -> Vec<&str> {
        parsed.warnings.iter().map(|w| w.kind.as_str()).collect()
    }

    const SEP: &str = "\n🐵🙈🙉\n";

    #[test]
    fn records_with_three_and_four_field_meta_lines_and_any_id_length() {
        let text = format!(
            "1 a 1700000000000000001\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n{SEP}\
             1 0123456789abcdef0123456789abcdef01234567 1700000000000000002 0\nPOST /b?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc{SEP}"
        );
        let parsed = read_text(&text, false).expect("reads");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let [get, post] = &parsed.exchanges[..] else {
            panic!("two exchanges: {:?}", parsed.exchanges);
        };
        assert_eq!(
            (get.id.as_str(), get.unix_nanos),
            ("a", 1_700_000_000_000_000_001)
        );
        assert_eq!(get.headers, [("host".to_owned(), "h".to_owned())]);
        assert!(get.body.is_empty());
        assert_eq!(post.id.len(), 40);
        assert_eq!(
            (post.target.as_str(), post.body.as_slice()),
            ("/b?x=1", &b"abc"[..])
        );
        assert_eq!(post.position, 2);
    }

    #[test]
    fn crlf_files_and_a_missing_final_separator_read_the_same() {
        let lf = format!(
            "1 a 5\nGET / HTTP/1.1\r\nHost: h\r\n\r\n{SEP}1 b 6\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
        );
        let crlf = lf.replace("\r\n", "\n").replace('\n', "\r\n");
        for text in [
            lf.clone(),
            format!("{lf}\n"),
            crlf.clone(),
            format!("{crlf}\r\n"),
        ] {
            let parsed = read_text(&text, false).expect("reads");
            assert!(
                parsed.warnings.is_empty(),
                "{text:?}: {:?}",
                parsed.warnings
            );
            assert_eq!(parsed.exchanges.len(), 2);
            assert!(parsed.exchanges[0].body.is_empty());
            assert_eq!(parsed.exchanges[1].body, b"hi");
        }
    }

    #[test]
    fn a_get_at_the_end_of_a_file_without_its_final_newline_keeps_its_head() {
        let parsed = read_text("1 a 5\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", false).expect("reads");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert!(parsed.exchanges[0].body.is_empty());
    }

    #[test]
    fn messy_records_import_with_counted_warnings() {
        let text = format!(
            "\n1 a 9\nPOST / HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc{SEP}\
             2 a 10 1\nHTTP/1.1 201 Created\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\nok{SEP}\
             3 a 11 1\nHTTP/1.1 500 Oops\r\n\r\n{SEP}\
             2 zz 12 1\nHTTP/1.1 200 OK\r\n\r\n{SEP}"
        );
        let parsed = read_text(&text, false).expect("reads");
        assert_eq!(
            kinds(&parsed),
            [
                "blank-line",
                "http-1.0",
                "content-length-mismatch",
                "replayed-response",
                "orphan-response"
            ]
        );
        let exchange = &parsed.exchanges[0];
        assert_eq!(exchange.body, b"abc");
        assert!(exchange.headers.is_empty());
        let response = exchange.response.as_ref().expect("the type 2 response");
        assert_eq!(response.status, 201);
        assert_eq!(response.body_len, 2);
        assert_eq!(
            response.headers[0],
            ("set-cookie".to_owned(), "<redacted>".to_owned())
        );
        assert_eq!(parsed.warnings[4].position, 4);
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let text = "1 a 1\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let parsed = read_text(text, false).expect("reads");
        assert_eq!(parsed.exchanges[0].body, b"abcde");
        let bad = "1 a 1\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n";
        let error = read_text(bad, false).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("x.gor: record 1: chunked body: chunk size `zz` is not hexadecimal")
        );
    }

    #[test]
    fn a_bad_record_names_its_number_and_skip_bad_counts_it() {
        let good = "1 a 1\nGET / HTTP/1.1\r\n\r\n";
        let cases = [
            (
                "1 b\nGET / HTTP/1.1\r\n\r\n",
                "meta line `1 b` has 2 fields; expected `<type> <id> <timestamp_ns> [<latency_ns>]`",
            ),
            (
                "1 b soon\nGET / HTTP/1.1\r\n\r\n",
                "timestamp `soon` is not a number of nanoseconds",
            ),
            (
                "7 b 1\nGET / HTTP/1.1\r\n\r\n",
                "payload type `7` is not 1 (request), 2 (original response) or 3 (replayed response)",
            ),
            (
                "1 b 1\nGET /\r\n\r\n",
                "request line `GET /` is not `METHOD TARGET HTTP/x.y`",
            ),
            (
                "1 b 1\nGET / HTTP/9\r\n\r\n",
                "request line `GET / HTTP/9`: unknown HTTP version `HTTP/9`",
            ),
            (
                "1 b 1\nGET / HTTP/1.1\r\nno colon\r\n\r\n",
                "header line `no colon` has no `:`",
            ),
            (
                "2 b 1\nHTTP/1.1 abc\r\n\r\n",
                "status line `HTTP/1.1 abc` is not `HTTP/x.y STATUS REASON`",
            ),
            ("1 b 1\n", "the record has a meta line but no HTTP request"),
        ];
        for (bad, expected) in cases {
            let text = format!("{good}{SEP}{bad}{SEP}");
            let error = read_text(&text, false).err().map(|e| e.to_string());
            assert_eq!(error, Some(format!("x.gor: record 2: {expected}")));
            let parsed = read_text(&text, true).expect("skips");
            assert_eq!(parsed.exchanges.len(), 1);
            assert_eq!(parsed.skipped[0].at, Position::Record(2));
        }
    }
}
