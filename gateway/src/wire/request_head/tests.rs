//! The head parser's cases — each refusal class with its reason — and a property against
//! httparse: whatever the strict parser accepts, hyper's parser reads the same way.

use proptest::prelude::*;

use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_uri_bytes: 256,
    max_header_bytes: 1024,
    max_headers: 20,
};

fn parse(bytes: &[u8]) -> Result<RequestHead<'_>, HeadError> {
    parse_request_head(bytes, &LIMITS)
}

fn reason(bytes: &[u8]) -> Option<Reason> {
    match parse(bytes) {
        Err(HeadError::Refused(r)) => Some(r.reason),
        _ => None,
    }
}

#[test]
fn good_heads_are_read_with_their_framing() {
    let cases: &[(&[u8], Framing, bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::None, false),
        (
            b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n",
            Framing::Length(12),
            false,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
            Framing::Length(3),
            false,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n",
            Framing::Chunked,
            false,
        ),
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            Framing::None,
            true,
        ),
        (
            b"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\n\r\n",
            Framing::None,
            true,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            Framing::None,
            false,
        ),
        (
            b"GET http://x.test/a HTTP/1.1\r\nHost: x.test\r\n\r\n",
            Framing::None,
            false,
        ),
        (
            b"\r\nGET / HTTP/1.0\r\nX-Empty:\r\nX-Tab: a\tb\r\nX-Utf8: \xc3\xa9\r\n\r\n",
            Framing::None,
            false,
        ),
        (
            b"GET /%zz/[::1]/a;b,c HTTP/1.1\r\n\r\n",
            Framing::None,
            false,
        ),
    ];
    for (bytes, framing, upgrade) in cases {
        let mut with_body = bytes.to_vec();
        with_body.extend_from_slice(b"abc\r\n\r\nGET / HTTP/1.1\r\n");
        let head = parse(&with_body)
            .unwrap_or_else(|e| panic!("{}: {e:?}", String::from_utf8_lossy(bytes).escape_debug()));
        assert_eq!(head.len, bytes.len());
        assert_eq!(head.framing, *framing);
        assert_eq!(head.upgrade, *upgrade);
    }
}

#[test]
fn every_refusal_class_has_its_reason() {
    use Reason::{HeadersTooLarge, MalformedRequest, UnsupportedTransferCoding, UriTooLong};
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
    let big_field = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(1100));
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(21));
    let cases: Vec<(&[u8], Reason)> =
        vec![
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", MalformedRequest),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            MalformedRequest,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", MalformedRequest),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferCoding),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            UnsupportedTransferCoding,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n", MalformedRequest),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", MalformedRequest),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            MalformedRequest,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n",
            MalformedRequest,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", MalformedRequest),
        (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", MalformedRequest),
        (b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", MalformedRequest),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX-A: a\x1bb\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nX(A): x\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", MalformedRequest),
        (b"GET /a#b HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET /a b HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET /a\xc3\xa9 HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET /a\x01 HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET /a\"b HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET /a<b> HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET a HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET * HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"CONNECT / HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET x.test:443 HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/2.0\r\n\r\n", MalformedRequest),
        (b"GET / http/1.1\r\n\r\n", MalformedRequest),
        (b"GET  / HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"G(T / HTTP/1.1\r\n\r\n", MalformedRequest),
        (b"GET / HTTP/1.1 \r\n\r\n", MalformedRequest),
        (long_target.as_bytes(), UriTooLong),
        (big_field.as_bytes(), HeadersTooLarge),
        (many.as_bytes(), HeadersTooLarge),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            reason(bytes),
            Some(want),
            "{}",
            String::from_utf8_lossy(bytes).escape_debug()
        );
    }
}

#[test]
fn a_head_that_has_not_ended_is_incomplete_until_a_limit_passes() {
    let head = b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n";
    for end in 0..head.len() {
        assert_eq!(parse(&head[..end]), Err(HeadError::Incomplete), "{end}");
    }
    // Endless, never ending: refused at the limit, not held forever.
    let endless_target = format!("GET /{}", "a".repeat(300));
    assert_eq!(reason(endless_target.as_bytes()), Some(Reason::UriTooLong));
    let endless_field = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(1100));
    assert_eq!(
        reason(endless_field.as_bytes()),
        Some(Reason::HeadersTooLarge)
    );
}

/// Heads built from parts a client could send, good and bad.
fn head_strategy() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "OPTIONS", "CONNECT", "X-Y"]);
    let target = prop::collection::vec(
        prop::sample::select(vec![
            "/", "a", "%2F", "?", "=", "#", " ", "\u{e9}", "*", ":", "[", "\\", "x.test:1",
        ]),
        0..5,
    );
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"]);
    let name = prop::sample::select(vec![
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Upgrade",
        "X-A",
        "X A",
        "",
    ]);
    let value = prop::sample::select(vec![
        "x",
        "3",
        "chunked",
        "gzip",
        "chunked, chunked",
        " 3 ",
        "a\tb",
        "a\0b",
        "\u{e9}",
        "",
    ]);
    let sep = prop::sample::select(vec![": ", ":", " : ", ":\t"]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r", "\r\n "]);
    let field = (name, sep, value, eol.clone());
    (
        method,
        target,
        version,
        eol,
        prop::collection::vec(field, 0..5),
    )
        .prop_map(|(m, t, v, e, fields)| {
            let mut s = format!("{m} {} {v}{e}", t.concat());
            for (n, sep, val, eol) in fields {
                s.push_str(&format!("{n}{sep}{val}{eol}"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        })
}

/// Found by fuzzing: a head whose field fits the limit only once its trailing whitespace is
/// trimmed was refused when it arrived cut inside that whitespace, and accepted whole — a verdict
/// that depended on how the network split the bytes. Every prefix of an accepted head is now
/// incomplete, and endless whitespace still stops at the raw cap.
#[test]
fn a_head_split_anywhere_gets_the_verdict_it_gets_whole() {
    let limits = HeadLimits {
        max_uri_bytes: 336,
        max_header_bytes: 64,
        max_headers: 1,
    };
    let mut head = b"POST / HTTP/1.1\r\nfet-Legt:\tf:\t\t\t~".to_vec();
    head.extend_from_slice(b"\tTransfer-cnEoding: \t\t?");
    head.extend(std::iter::repeat_n(b'\t', 60));
    head.extend_from_slice(b"\r\n\r\n");
    let whole = parse_request_head(&head, &limits).expect("fits once trimmed");
    assert_eq!(whole.len, head.len());
    for cut in 1..head.len() {
        assert_eq!(
            parse_request_head(&head[..cut], &limits),
            Err(HeadError::Incomplete),
            "cut at {cut}"
        );
    }
    let mut endless = b"GET / HTTP/1.1\r\nx: a".to_vec();
    endless.extend(std::iter::repeat_n(b' ', 1000));
    assert!(matches!(
        parse_request_head(&endless, &limits),
        Err(HeadError::Refused(r)) if r.reason == Reason::HeadersTooLarge
    ));
}

proptest! {
    /// httparse is the parser hyper runs; whatever the strict parser lets through must mean
    /// the same to it: the same method, target, version, and fields, ending at the same byte.
    #[test]
    fn whatever_is_accepted_httparse_reads_the_same(bytes in head_strategy()) {
        if let Ok(head) = parse(&bytes) {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut oracle = httparse::Request::new(&mut fields);
            let status = oracle.parse(&bytes);
            prop_assert!(matches!(status, Ok(httparse::Status::Complete(n)) if n == head.len), "{status:?}");
            prop_assert_eq!(oracle.method.map(str::as_bytes), Some(head.method));
            prop_assert_eq!(oracle.path.map(str::as_bytes), Some(head.target));
            prop_assert_eq!(oracle.version, Some(match head.version { Version::Http10 => 0, Version::Http11 => 1 }));
            prop_assert_eq!(oracle.headers.len(), head.fields);
        }
    }

    /// Any bytes at all: never a panic, and a verdict on every prefix.
    #[test]
    fn any_bytes_get_a_verdict(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }
}
