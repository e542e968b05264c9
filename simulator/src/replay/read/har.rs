//! HAR 1.2 (browsers' devtools, mitmproxy, Charles, Fiddler) read into exchanges: one per
//! `log.entries[]` item, the request as the tool saw it and the response kept for response diffs.
//! What a tool adds beyond HAR 1.2 (`_resourceType`, `_initiator`, `timings`, ...) is ignored.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gateway::record::recording::format::{RecordedResponse, RecordedTls};
use serde::Deserialize;

use super::{Parsed, ReadOptions, client_hint, connection_number, redact_response_headers};
use crate::replay::model::{Exchange, LoadError, Position, Warning};

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "startedDateTime")]
    started: String,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
    /// The connection's id as the tool numbered it (a string in HAR 1.2; some tools write a
    /// number).
    #[serde(default)]
    connection: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    url: String,
    #[serde(rename = "httpVersion", default)]
    http_version: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(rename = "postData", default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct PostData {
    #[serde(default)]
    text: Option<String>,
    /// Not in HAR 1.2, but written by tools that keep binary request bodies.
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    status: i64,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// Reads a HAR file: a file that is not JSON or has no `log.entries` is an error; a bad entry is
/// one naming the entry, or skipped with `skip_bad`.
pub(crate) fn read(path: &Path, bytes: &[u8], options: &ReadOptions) -> Result<Parsed, LoadError> {
    let at_file = |at: Position, message: String| LoadError {
        file: path.to_path_buf(),
        at,
        message,
    };
    let mut document: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        let text = text
            .rfind(" at line ")
            .map_or(text.as_str(), |at| &text[..at]);
        let message = if e.is_eof() {
            format!(
                "truncated HAR file (the file ends before its JSON does): {text} at column {}",
                e.column()
            )
        } else {
            format!("not valid JSON: {text} at column {}", e.column())
        };
        at_file(Position::Line(e.line() as u64), message)
    })?;
    let entries = match document
        .pointer_mut("/log/entries")
        .map(serde_json::Value::take)
    {
        Some(serde_json::Value::Array(entries)) => entries,
        _ => {
            return Err(at_file(
                Position::File,
                "not a HAR file: no `log.entries` array".into(),
            ));
        }
    };
    let mut parsed = Parsed {
        exchanges: Vec::with_capacity(entries.len()),
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, entry) in entries.into_iter().enumerate() {
        let number = index as u64 + 1;
        let result = serde_path_to_error::deserialize::<_, Entry>(entry)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                if path == "." {
                    inner
                } else {
                    format!("{path}: {inner}")
                }
            })
            .and_then(|entry| exchange_of(entry, number, &mut parsed.warnings));
        match result {
            Ok(exchange) => parsed.exchanges.push(exchange),
            Err(message) => {
                let error = at_file(Position::Entry(number), message);
                if !options.skip_bad {
                    return Err(error);
                }
                parsed.skipped.push(error);
            }
        }
    }
    Ok(parsed)
}

fn exchange_of(entry: Entry, number: u64, warnings: &mut Vec<Warning>) -> Result<Exchange, String> {
    let mut warn = |kind: &str, message: String| {
        warnings.push(Warning {
            position: number,
            kind: kind.into(),
            message,
        })
    };
    let started = chrono::DateTime::parse_from_rfc3339(&entry.started).map_err(|e| {
        format!(
            "startedDateTime `{}` is not an RFC 3339 time: {e}",
            entry.started
        )
    })?;
    let unix_nanos = started
        .timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("startedDateTime `{}` is out of range", entry.started))?;

    let request = entry.request;
    let url = split_url(&request.url).ok_or_else(|| {
        format!(
            "request.url `{}` is neither an absolute URL nor a path",
            request.url
        )
    })?;
    let version = match request.http_version.to_ascii_lowercase().as_str() {
        "http/1.1" => "HTTP/1.1",
        "http/2" | "http/2.0" | "h2" | "h2c" => "HTTP/2.0",
        "http/1.0" => {
            warn("http-1.0", "an HTTP/1.0 request".into());
            "HTTP/1.0"
        }
        "http/3" | "http/3.0" | "h3" => {
            warn("http-3", "an HTTP/3 request; replayed as HTTP/2".into());
            "HTTP/2.0"
        }
        "" => {
            warn(
                "unknown-http-version",
                "no httpVersion; replayed as HTTP/1.1".into(),
            );
            "HTTP/1.1"
        }
        other => {
            warn(
                "unknown-http-version",
                format!("httpVersion `{other}` is not one this reads; replayed as HTTP/1.1"),
            );
            "HTTP/1.1"
        }
    };

    let body = match request.post_data {
        Some(PostData {
            text: Some(text),
            encoding,
        }) => {
            if encoding.as_deref() == Some("base64") {
                STANDARD
                    .decode(text.trim())
                    .map_err(|e| format!("request.postData.text: not base64: {e}"))?
            } else {
                text.into_bytes()
            }
        }
        _ => Vec::new(),
    };

    let mut headers = Vec::with_capacity(request.headers.len() + 1);
    for Header { name, value } in request.headers {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            ":authority" => headers.push(("host".to_owned(), value)),
            pseudo if pseudo.starts_with(':') => {}
            _ => headers.push((name, value)),
        }
    }
    let host_count = headers.iter().filter(|(n, _)| n == "host").count();
    if host_count > 1 {
        // An h2 entry may carry both `:authority` and `host`: one is enough.
        let mut first = true;
        headers.retain(|(n, _)| n != "host" || std::mem::take(&mut first));
    }
    if host_count == 0 {
        if let Some(authority) = url.authority {
            headers.insert(0, ("host".to_owned(), authority.to_owned()));
        }
    }
    if let Some(declared) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.clone())
    {
        if declared.trim().parse::<u64>().ok() != Some(body.len() as u64) {
            warn(
                "content-length-mismatch",
                format!(
                    "content-length {declared} but the entry holds {} body bytes; the header is dropped",
                    body.len()
                ),
            );
            headers.retain(|(n, _)| n != "content-length");
        }
    }

    let tls = url.https.then(|| RecordedTls {
        sni: url
            .authority
            .map(host_of)
            .filter(|host| !host.is_empty() && host.parse::<std::net::IpAddr>().is_err())
            .map(str::to_owned),
        alpn: Some(
            if version == "HTTP/2.0" {
                "h2"
            } else {
                "http/1.1"
            }
            .to_owned(),
        ),
        client_cert: false,
    });

    let response = match entry.response {
        Some(response) if response.status > 0 => Some(response_of(response)?),
        _ => {
            warn(
                "no-response",
                "no response (status 0: blocked, cancelled or failed); nothing to diff".into(),
            );
            None
        }
    };

    let connection = match entry.connection {
        Some(serde_json::Value::String(key)) if !key.is_empty() => {
            Some(connection_number(&key).to_string())
        }
        Some(serde_json::Value::Number(n)) => Some(connection_number(&n.to_string()).to_string()),
        _ => None,
    };

    Ok(Exchange {
        position: number,
        id: format!("har-{number}"),
        unix_nanos,
        client: client_hint(&headers),
        connection,
        method: request.method,
        target: url.target,
        version: version.to_owned(),
        headers,
        body,
        body_truncated: false,
        tls,
        credentials: Vec::new(),
        recorded: None,
        response,
    })
}

fn response_of(response: Response) -> Result<RecordedResponse, String> {
    let status = u16::try_from(response.status)
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("response.status {} is not an HTTP status", response.status))?;
    let mut headers: Vec<(String, String)> = response
        .headers
        .into_iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .filter(|(n, _)| !n.starts_with(':'))
        .collect();
    redact_response_headers(&mut headers);
    let (body_sha256, body_len) = match response.content {
        Some(Content {
            text: Some(text),
            encoding,
            ..
        }) => {
            let bytes = if encoding.as_deref() == Some("base64") {
                STANDARD
                    .decode(text.trim())
                    .map_err(|e| format!("response.content.text: not base64: {e}"))?
            } else {
                text.into_bytes()
            };
            (Some(super::sha256_hex(&bytes)), bytes.len() as u64)
        }
        Some(content) => (None, content.size.max(0) as u64),
        None => (None, 0),
    };
    Ok(RecordedResponse {
        status,
        headers,
        body_sha256,
        body_len,
    })
}

/// A HAR `request.url` taken apart.
struct Url<'a> {
    https: bool,
    authority: Option<&'a str>,
    /// Path and query, without the fragment; `/` for an empty path.
    target: String,
}

fn split_url(url: &str) -> Option<Url<'_>> {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    if url.starts_with('/') {
        return Some(Url {
            https: false,
            authority: None,
            target: url.to_owned(),
        });
    }
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        _ => return None,
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    // Credentials in the URL (`user:pass@host`) are not part of the authority a request sends.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return None;
    }
    let target = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("/{target}")
    };
    Some(Url {
        https,
        authority: Some(authority),
        target,
    })
}

/// The host of an authority, without the port (an IPv6 literal without its brackets).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str, skip_bad: bool) -> Result<Parsed, LoadError> {
        read(
            Path::new("x.har"),
            text.as_bytes(),
            &ReadOptions { skip_bad },
        )
    }

    fn har(entries: &[&str]) -> String {
        format!(
            r#"{{"log":{{"version":"1.2","creator":{{"name":"t","version":"1"}},"entries":[{}]}}}}"#,
            entries.join(",")
        )
    }

    const H2: &str = r#"{"startedDateTime":"2024-03-05T10:15:30.123+01:00","request":{"method":"GET","url":"https://api.example.com:8443/v1/users?page=2#top","httpVersion":"h2","headers":[{"name":":method","value":"GET"},{"name":":authority","value":"api.example.com:8443"},{"name":":path","value":"/v1/users?page=2"},{"name":"Accept","value":"*/*"}]},"response":{"status":200,"headers":[{"name":"set-cookie","value":"sid=secret"}],"content":{"size":2,"text":"aGk=","encoding":"base64"}},"connection":"4711"}"#;

    #[test]
    fn an_h2_entry_loses_its_pseudo_headers_and_keeps_its_authority_as_host() {
        let parsed = read_text(&har(&[H2]), false).expect("reads");
        let exchange = &parsed.exchanges[0];
        assert_eq!(exchange.id, "har-1");
        assert_eq!(exchange.unix_nanos, 1_709_630_130_123_000_000);
        assert_eq!(exchange.version, "HTTP/2.0");
        assert_eq!(exchange.target, "/v1/users?page=2");
        assert_eq!(
            exchange.headers,
            [
                ("host".to_owned(), "api.example.com:8443".to_owned()),
                ("accept".to_owned(), "*/*".to_owned())
            ]
        );
        assert_eq!(exchange.connection.as_deref(), Some("4711"));
        let tls = exchange.tls.as_ref().expect("https");
        assert_eq!(tls.sni.as_deref(), Some("api.example.com"));
        assert_eq!(tls.alpn.as_deref(), Some("h2"));
        let response = exchange.response.as_ref().expect("response");
        assert_eq!(response.body_len, 2);
        // sha256("hi")
        assert_eq!(
            response.body_sha256.as_deref(),
            Some("8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4")
        );
        assert_eq!(response.headers[0].1, "<redacted>");
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn a_content_length_that_disagrees_with_the_body_is_dropped_with_a_warning() {
        let entry = r#"{"startedDateTime":"2024-03-05T09:00:00Z","request":{"method":"POST","url":"http://h/p","httpVersion":"HTTP/1.0","headers":[{"name":"Content-Length","value":"9"}],"postData":{"mimeType":"text/plain","text":"abc"}}}"#;
        let parsed = read_text(&har(&[entry]), false).expect("reads");
        let exchange = &parsed.exchanges[0];
        assert_eq!(exchange.body, b"abc");
        assert_eq!(exchange.headers, [("host".to_owned(), "h".to_owned())]);
        let kinds: Vec<_> = parsed.warnings.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["http-1.0", "content-length-mismatch", "no-response"]
        );
    }

    #[test]
    fn a_bad_entry_names_its_number() {
        let bad = r#"{"startedDateTime":"yesterday","request":{"method":"GET","url":"/"}}"#;
        let missing = r#"{"startedDateTime":"2024-03-05T09:00:00Z","request":{"method":"GET"}}"#;
        let error = read_text(&har(&[H2, bad]), false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "x.har: entry 2: startedDateTime `yesterday` is not an RFC 3339 time: premature end of input"
            )
        );
        let error = read_text(&har(&[missing]), false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("x.har: entry 1: request: missing field `url`")
        );
        let parsed = read_text(&har(&[bad, H2, missing]), true).expect("skips");
        assert_eq!(parsed.exchanges.len(), 1);
        assert_eq!(parsed.skipped.len(), 2);
        assert_eq!(parsed.exchanges[0].id, "har-2");
    }

    #[test]
    fn a_file_that_is_not_a_har_is_refused_as_a_whole() {
        let truncated = &har(&[H2])[..100];
        let error = read_text(truncated, true).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "x.har:1: truncated HAR file (the file ends before its JSON does): EOF while parsing a string at column 100"
            )
        );
        let error = read_text(r#"{"log":{}}"#, true)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("x.har: not a HAR file: no `log.entries` array")
        );
    }

    #[test]
    fn urls_split_into_authority_and_target() {
        let url = split_url("http://u:p@h:80?q=1").expect("splits");
        assert_eq!(
            (url.authority, url.target.as_str()),
            (Some("h:80"), "/?q=1")
        );
        assert_eq!(host_of("[::1]:443"), "::1");
        assert!(split_url("ftp://h/x").is_none());
        assert!(split_url("h/x").is_none());
    }
}
