//! Gatehouse recording lines (`RecordingLine`, one JSON object per line) read into exchanges, and
//! exchanges written back as lines: what `simulator import` writes and `replay` reads.

use std::io::{self, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gateway::record::recording::format::{FORMAT_VERSION, RecordedRequest, RecordingLine};
use serde::Deserialize;

use super::{Parsed, ReadOptions, connection_number};
use crate::replay::model::{Exchange, LoadError, Position, Warning};

/// Reads every line of `bytes`; a bad line is an error naming it, or skipped with `skip_bad`.
pub(crate) fn read(path: &Path, bytes: &[u8], options: &ReadOptions) -> Result<Parsed, LoadError> {
    let mut parsed = Parsed {
        exchanges: Vec::new(),
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    let ends_with_newline = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // `split` yields an empty piece after a final newline: not a line.
    let count = if ends_with_newline {
        lines.len() - 1
    } else {
        lines.len()
    };
    for (index, raw) in lines.iter().take(count).enumerate() {
        let number = index as u64 + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.trim_ascii().is_empty() {
            parsed.warnings.push(Warning {
                position: number,
                kind: "blank-line".into(),
                message: "a blank line".into(),
            });
            continue;
        }
        let is_last_unterminated = index + 1 == count && !ends_with_newline;
        match exchange_of_line(line, number, is_last_unterminated) {
            Ok(exchange) => parsed.exchanges.push(exchange),
            Err(message) => {
                let error = LoadError {
                    file: path.to_path_buf(),
                    at: Position::Line(number),
                    message,
                };
                if !options.skip_bad {
                    return Err(error);
                }
                parsed.skipped.push(error);
            }
        }
    }
    Ok(parsed)
}

/// Just the version, read first: a line of an unknown version is refused for that reason, not
/// for whatever field it happens to lack.
#[derive(Deserialize)]
struct VersionOnly {
    v: Option<serde_json::Value>,
}

fn exchange_of_line(line: &[u8], number: u64, unterminated: bool) -> Result<Exchange, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let parsed: Result<RecordingLine, _> = serde_path_to_error::deserialize(&mut deserializer);
    let parsed = parsed
        .map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner())
        })
        .and_then(|line| {
            deserializer
                .end()
                .map(|()| line)
                .map_err(|e| (String::new(), e))
        });
    let recording_line = match parsed {
        Ok(recording_line) => recording_line,
        Err((path, error)) => {
            if let Ok(VersionOnly { v: Some(v) }) = serde_json::from_slice(line) {
                if v.as_u64() != Some(u64::from(FORMAT_VERSION)) {
                    return Err(unknown_version(&v));
                }
            }
            return Err(describe(&path, &error, unterminated));
        }
    };
    if recording_line.v != FORMAT_VERSION {
        return Err(unknown_version(&recording_line.v.into()));
    }
    exchange_of(recording_line, number)
}

fn unknown_version(v: &serde_json::Value) -> String {
    format!("unknown recording version {v}; this simulator reads version {FORMAT_VERSION}")
}

/// A line's problem in words: where in the line for a syntax error, the field path for a
/// schema error.
fn describe(path: &str, inner: &serde_json::Error, unterminated: bool) -> String {
    let text = inner.to_string();
    let text = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    match inner.classify() {
        serde_json::error::Category::Eof if unterminated => format!(
            "truncated line (the file ends in the middle of a record): {text} at column {}",
            inner.column()
        ),
        serde_json::error::Category::Eof | serde_json::error::Category::Syntax => {
            format!("not valid JSON: {text} at column {}", inner.column())
        }
        _ => {
            if path == "." || path.is_empty() {
                text.to_owned()
            } else {
                format!("{path}: {text}")
            }
        }
    }
}

fn exchange_of(line: RecordingLine, number: u64) -> Result<Exchange, String> {
    let body = match &line.request.body_base64 {
        Some(text) => STANDARD
            .decode(text)
            .map_err(|e| format!("request.body_base64: not base64: {e}"))?,
        None => Vec::new(),
    };
    let client = client_of(&line);
    let RecordingLine {
        id,
        unix_micros,
        record,
        request,
        credentials,
        response,
        ..
    } = line;
    Ok(Exchange {
        position: number,
        id,
        unix_nanos: unix_micros.saturating_mul(1000),
        client,
        connection: request.connection.map(|c| c.to_string()),
        method: request.method,
        target: request.target,
        version: request.version,
        headers: request.headers,
        body,
        body_truncated: request.body_truncated,
        tls: request.tls,
        credentials,
        recorded: record,
        response,
    })
}

/// Whose traffic a line is: its own `client`, else the first credential's API key id or
/// subject, else the recording gateway's peer address, else `-`.
fn client_of(line: &RecordingLine) -> String {
    if let Some(client) = &line.client {
        return client.clone();
    }
    let identity = line.credentials.first().and_then(|c| c.identity.as_ref());
    if let Some(identity) = identity {
        if let Some(key_id) = &identity.api_key_id {
            return key_id.clone();
        }
        if !identity.subject.is_empty() {
            return identity.subject.clone();
        }
    }
    match &line.record {
        Some(record) => record.peer.ip().to_string(),
        None => "-".to_owned(),
    }
}

/// An exchange as a recording line: what `simulator import` writes. The line keeps
/// microseconds; nanoseconds below that are dropped.
pub fn to_line(exchange: &Exchange) -> RecordingLine {
    let body_len = if exchange.body_truncated {
        // The exchange keeps only the prefix; the recording gateway counted the whole body.
        exchange
            .recorded
            .as_ref()
            .map_or(exchange.body.len() as u64, |r| r.bytes_in)
    } else {
        exchange.body.len() as u64
    };
    RecordingLine {
        v: FORMAT_VERSION,
        id: exchange.id.clone(),
        unix_micros: exchange.unix_nanos / 1000,
        client: Some(exchange.client.clone()),
        record: exchange.recorded.clone(),
        request: RecordedRequest {
            method: exchange.method.clone(),
            target: exchange.target.clone(),
            version: exchange.version.clone(),
            headers: exchange.headers.clone(),
            body_base64: (!exchange.body.is_empty()).then(|| STANDARD.encode(&exchange.body)),
            body_len,
            body_truncated: exchange.body_truncated,
            connection: exchange.connection.as_deref().map(connection_number),
            tls: exchange.tls.clone(),
        },
        credentials: exchange.credentials.clone(),
        response: exchange.response.clone(),
    }
}

/// Writes one line per exchange, in the order given.
pub fn write_lines(exchanges: &[Exchange], out: &mut impl Write) -> io::Result<()> {
    for exchange in exchanges {
        serde_json::to_writer(&mut *out, &to_line(exchange))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str, skip_bad: bool) -> Result<Parsed, LoadError> {
        read(
            Path::new("rec.jsonl"),
            text.as_bytes(),
            &ReadOptions { skip_bad },
        )
    }

    const GOOD: &str = r#"{"v":1,"id":"r1","unix_micros":1700000000000001,"request":{"method":"GET","target":"/a?b=1","version":"HTTP/1.1","headers":[["host","x"]],"body_base64":"aGk=","body_len":2,"connection":7},"credentials":[{"kind":"api_key","at":{"in":"header","name":"x-api-key"},"identity":{"subject":"svc","api_key_id":"key-1"}}]}"#;

    #[test]
    fn a_line_becomes_an_exchange() {
        let parsed = read_text(&format!("{GOOD}\n"), false).expect("reads");
        let exchange = &parsed.exchanges[0];
        assert_eq!(exchange.id, "r1");
        assert_eq!(exchange.unix_nanos, 1_700_000_000_000_001_000);
        assert_eq!(exchange.client, "key-1");
        assert_eq!(exchange.connection.as_deref(), Some("7"));
        assert_eq!(exchange.target, "/a?b=1");
        assert_eq!(exchange.body, b"hi");
        assert_eq!(exchange.position, 1);
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let line = GOOD.replace(r#""v":1"#, r#""v":7"#);
        let error = read_text(&format!("{GOOD}\n{line}\n"), false).err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("rec.jsonl:2: unknown recording version 7; this simulator reads version 1")
        );
        // Even when the newer version's line no longer has the fields version 1 needs.
        let error = read_text("{\"v\":2,\"something\":\"else\"}\n", false).err();
        assert_eq!(
            error.map(|e| e.message).as_deref(),
            Some("unknown recording version 2; this simulator reads version 1")
        );
    }

    #[test]
    fn a_bad_line_names_its_line_and_what_was_wrong() {
        let missing = GOOD.replace(r#""target":"/a?b=1","#, "");
        let cases = [
            (
                format!("{GOOD}\n{missing}\n"),
                "rec.jsonl:2: request: missing field `target`",
            ),
            (
                format!("{GOOD}\n{{\"v\":1,,}}\n"),
                "rec.jsonl:2: not valid JSON: key must be a string at column 8",
            ),
            (
                format!("{GOOD}\n{}", &GOOD[..40]),
                "rec.jsonl:2: truncated line (the file ends in the middle of a record): EOF while parsing an object at column 40",
            ),
            (
                format!("{GOOD} trailing\n"),
                "rec.jsonl:1: not valid JSON: trailing characters at column 315",
            ),
        ];
        for (text, expected) in cases {
            let error = read_text(&text, false).err().map(|e| e.to_string());
            assert_eq!(error.as_deref(), Some(expected));
        }
    }

    #[test]
    fn skip_bad_keeps_the_good_lines_and_lists_the_bad_ones() {
        let text = format!(
            "{GOOD}\n\nnot json\n{}\n{GOOD}",
            GOOD.replace("\"v\":1", "\"v\":3")
        );
        let parsed = read_text(&text, true).expect("skips");
        assert_eq!(parsed.exchanges.len(), 2);
        let skipped: Vec<_> = parsed.skipped.iter().map(|e| e.at).collect();
        assert_eq!(skipped, [Position::Line(3), Position::Line(4)]);
        assert_eq!(parsed.warnings[0].kind, "blank-line");
        assert_eq!(parsed.warnings[0].position, 2);
    }

    #[test]
    fn writing_lines_and_reading_them_back_gives_the_same_exchanges() {
        let parsed = read_text(&format!("{GOOD}\r\n{GOOD}"), false).expect("reads");
        let mut out = Vec::new();
        write_lines(&parsed.exchanges, &mut out).expect("writes");
        let again = read(Path::new("out.jsonl"), &out, &ReadOptions::default()).expect("reads");
        let json = |e: &[Exchange]| serde_json::to_value(e).expect("serializes");
        assert_eq!(json(&parsed.exchanges), json(&again.exchanges));
    }
}
