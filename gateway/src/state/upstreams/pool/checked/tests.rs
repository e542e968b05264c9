//! The response scanner as a table: bytes an upstream sends, and what the scanner says of them —
//! whole, and split at every byte (a read boundary never changes the verdict).

use super::scan::{CONNECT, HEAD, OTHER, Scan, Sent, Violation};

/// As if every response had its request (the last of them with `method`).
fn verdict(bytes: &[u8], method: u8) -> Result<(), Violation> {
    let method = Sent {
        method,
        sent: u64::MAX,
    };
    let mut whole = Scan::default();
    let at_once = whole.feed(bytes, method);
    for split in 1..bytes.len() {
        let mut scan = Scan::default();
        let parted = scan
            .feed(&bytes[..split], method)
            .and_then(|()| scan.feed(&bytes[split..], method));
        assert_eq!(
            parted,
            at_once,
            "split at {split}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    at_once
}

#[track_caller]
fn ok(bytes: &str) {
    assert_eq!(verdict(bytes.as_bytes(), OTHER), Ok(()), "{bytes:?}");
}

#[track_caller]
fn refused(bytes: &str, what: &str) {
    match verdict(bytes.as_bytes(), OTHER) {
        Err(said) => assert!(
            said.contains(what),
            "{bytes:?}: said {said:?}, wanted {what:?}"
        ),
        Ok(()) => panic!("{bytes:?} passed, wanted {what:?}"),
    }
}

#[test]
fn well_framed_responses_pass_one_after_another() {
    ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
        HTTP/1.0 200 OK\r\ncontent-length:0\r\n\r\n\
        HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200\r\nContent-Length:  2 \r\nX-Empty:\r\n\r\nok\
        HTTP/1.1 200 \r\nTransfer-Encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n");
}

#[test]
fn a_body_without_length_or_a_new_protocol_is_not_http_any_more() {
    ok("HTTP/1.1 200 OK\r\n\r\nanything\n\0 at all");
    ok("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\n\0binary");
}

#[test]
fn the_request_decides_whether_a_response_has_a_body() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(verdict(head, HEAD), Ok(()));
    // Without HEAD, the second head is the first's body and the rest a bad next head.
    assert!(verdict(head, OTHER).is_err());
    assert_eq!(verdict(b"HTTP/1.1 200 OK\r\n\r\n\0tunnel", CONNECT), Ok(()));
}

#[test]
fn ambiguous_framing_is_refused() {
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    );
    refused(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "both",
    );
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "repeated Content-Length",
    );
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "repeated Content-Length",
    );
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "repeated Content-Length",
    );
    for bad in [
        "abc",
        "",
        "-1",
        "+5",
        "0x5",
        "5 5",
        "99999999999999999999999",
        "1_0",
    ] {
        refused(
            &format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n"),
            "invalid Content-Length",
        );
    }
    refused(
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            "1".repeat(40)
        ),
        "invalid Content-Length",
    );
    for bad in [
        "chunked, chunked",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "chunked;q=1",
        "",
    ] {
        refused(
            &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {bad}\r\n\r\n"),
            "Transfer-Encoding other than one `chunked`",
        );
    }
    refused(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "repeated Transfer-Encoding",
    );
    refused(
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.0",
    );
}

#[test]
fn head_lines_must_be_strict() {
    refused("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare LF");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", "bare LF");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", "bare LF");
    refused(
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "CR not followed by LF",
    );
    refused(
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "obsolete line folding",
    );
    refused("HTTP/1.1 200 OK\r\n X: a\r\n\r\n", "obsolete line folding");
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
        "whitespace between",
    );
    refused("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", "control byte");
    refused("HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n", "control byte");
    refused("HTTP/1.1 200 OK\r\nX(y): a\r\n\r\n", "tchar");
    refused("HTTP/1.1 200 OK\r\n: a\r\n\r\n", "tchar");
    refused("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "whitespace between");
    refused("HTTP/1.1 200 O\0K\r\n\r\n", "status line");
    refused("HTTP/2.0 200 OK\r\n\r\n", "status line");
    refused("HTTP/1.1 20 OK\r\n\r\n", "status line");
    refused("HTTP/1.1  200 OK\r\n\r\n", "status line");
    refused("\r\nHTTP/1.1 200 OK\r\n\r\n", "empty line");
    ok("HTTP/1.1 200 OK\r\nX: caf\u{e9} \t tab\r\n\r\n");
}

#[test]
fn bytes_after_a_response_must_be_a_next_head() {
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokextra",
        "status line",
    );
    refused(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n",
        "empty line",
    );
}

#[test]
fn a_response_with_no_request_waiting_is_refused() {
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
                HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let sent = |sent| Sent {
        method: OTHER,
        sent,
    };
    assert_eq!(Scan::default().feed(two, sent(2)), Ok(()));
    assert_eq!(
        Scan::default().feed(two, sent(1)),
        Err("a response while no request is waiting for one")
    );
    assert!(Scan::default().feed(b"H", sent(0)).is_err());
    // Interim responses do not answer the request.
    let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(Scan::default().feed(interim, sent(1)), Ok(()));
}

#[test]
fn malformed_chunks_are_refused() {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, what) in [
        ("zz\r\n", "not hexadecimal"),
        ("\r\n", "not hexadecimal"),
        ("5\nhello\r\n", "bare LF"),
        ("5\rhello\r\n", "CR not followed by LF"),
        ("5\r\nhelloX\r\n", "not followed by CRLF"),
        ("5\r\nhello\n0\r\n\r\n", "not followed by CRLF"),
        ("5;a\0b\r\nhello\r\n", "chunk extension"),
        ("5 \r\nhello\r\n", "chunk extension"),
        ("1ffffffffffffffff\r\n", "overflows"),
        ("0\r\nContent-Length: 5\r\n\r\n", "framing field"),
        ("0\r\nTransfer-Encoding: chunked\r\n\r\n", "framing field"),
        ("0\r\nx: a\n\r\n", "bare LF"),
        ("0\r\n\n", "bare LF"),
    ] {
        refused(&format!("{head}{body}"), what);
    }
    ok(&format!("{head}5 ; ext\r\nhello\r\nffffffff\r\n"));
}

#[test]
fn a_name_that_only_resembles_a_framing_field_is_an_ordinary_field() {
    // After a real Content-Length, names one byte longer or of the same length but different
    // are not framing fields: the scan keeps no stale name from the line before.
    ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Lengths: 9\r\nContent-Lengtx: 7\r\n\r\nok");
    ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encodinx: gzip\r\n\r\n0\r\n\r\n");
    // The same length as the real names, in any case, still is one.
    refused(
        "HTTP/1.1 200 OK\r\nX-Padding-Field: a\r\nCONTENT-LENGTH: 2\r\ncontent-length: 3\r\n\r\n",
        "repeated Content-Length",
    );
}

/// As if every response had its request, none of them `HEAD` or `CONNECT`.
fn every_request_sent() -> Sent {
    Sent {
        method: OTHER,
        sent: u64::MAX,
    }
}

/// A head as the tests compare it: its length, status, HTTP/1.0 or not, and each field's name
/// and value.
type HeadSeen = (usize, u16, bool, Vec<(String, String)>);

/// The head at the front of `bytes` as httparse reads it.
fn httparse_head(bytes: &[u8]) -> HeadSeen {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = parsed.parse(bytes).unwrap() else {
        panic!("incomplete: {:?}", String::from_utf8_lossy(bytes));
    };
    let fields = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    (len, parsed.code.unwrap(), parsed.version == Some(0), fields)
}

/// What a locating scanner says of the head at the front of the last `buffered` bytes, in the
/// same terms.
fn located_head(scan: &Scan, stream: &[u8], buffered: usize) -> Option<HeadSeen> {
    let head = scan.located(buffered)?;
    let base = &stream[stream.len() - buffered..];
    let text = |(start, end): (u32, u32)| {
        String::from_utf8_lossy(&base[start as usize..end as usize]).into_owned()
    };
    let fields = head
        .fields
        .iter()
        .map(|f| (text(f.name), text(f.value)))
        .collect();
    Some((
        (head.end - head.start) as usize,
        head.status,
        head.http10,
        fields,
    ))
}

#[test]
fn a_locating_scanner_finds_the_fields_httparse_finds() {
    let sent = every_request_sent();
    let heads: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: nginx\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\ncontent-length:0\r\nX-Empty:\r\nX-Pad: \t spaced out \t\r\n\r\n",
        b"HTTP/1.1 204 \r\n\r\n",
        b"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    ];
    for head in heads {
        let mut scan = Scan::locating_heads(100);
        scan.feed(head, sent).unwrap();
        assert_eq!(
            located_head(&scan, head, head.len()),
            Some(httparse_head(head)),
            "{:?}",
            String::from_utf8_lossy(head)
        );
        // Split anywhere, a head is either located as whole or not at all (the client parses it).
        for split in 1..head.len() {
            let mut scan = Scan::locating_heads(100);
            scan.feed(&head[..split], sent).unwrap();
            scan.feed(&head[split..], sent).unwrap();
            if let Some(found) = located_head(&scan, head, head.len()) {
                assert_eq!(found, httparse_head(head), "split at {split}");
            }
        }
    }
}

#[test]
fn a_located_head_is_only_offered_where_it_starts() {
    let sent = every_request_sent();
    let first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let second = b"HTTP/1.1 201 Created\r\nLocation: /x\r\n\r\n";
    let mut scan = Scan::locating_heads(100);
    scan.feed(first, sent).unwrap();
    // The head is not at the front of the last 2 bytes (the body) nor of more than was read.
    assert!(scan.located(2).is_none());
    assert!(scan.located(first.len() + 1).is_none());
    assert!(scan.located(first.len()).is_some());
    scan.feed(second, sent).unwrap();
    let stream = [&first[..], &second[..]].concat();
    assert_eq!(
        located_head(&scan, &stream, second.len()),
        Some(httparse_head(second))
    );
    assert!(
        scan.located(second.len() + first.len()).is_none(),
        "the first head is gone"
    );
}

#[test]
fn a_head_past_the_field_cap_or_walked_byte_by_byte_is_not_located() {
    let sent = every_request_sent();
    let many = b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
    let mut scan = Scan::locating_heads(2);
    scan.feed(many, sent).unwrap();
    assert!(scan.located(many.len()).is_none());
    let mut scan = Scan::locating_heads(3);
    scan.feed(many, sent).unwrap();
    assert!(scan.located(many.len()).is_some());
    // One byte at a time: every line is walked, none read whole.
    let mut scan = Scan::locating_heads(100);
    for b in many.iter() {
        scan.feed(std::slice::from_ref(b), sent).unwrap();
    }
    assert!(scan.located(many.len()).is_none());
    // A scanner that was not asked to locate heads never does.
    let mut scan = Scan::default();
    scan.feed(many, sent).unwrap();
    assert!(scan.located(many.len()).is_none());
}
