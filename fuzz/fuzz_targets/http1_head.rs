//! The strict HTTP/1.1 head parser on arbitrary bytes: never a panic or a hang; what it accepts
//! is a well-formed head that `httparse` (what hyper parses with afterwards) reads the same way,
//! and any shorter prefix of an accepted head is `Incomplete`, never a different answer.
#![no_main]

use gateway::wire::request_head::{HeadError, Version};
use gateway::wire::{HeadLimits, parse_request_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes scale the limits, so the limit checks are reached too.
    let Some((&[a, b], bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limits = HeadLimits {
        max_uri_bytes: 16 + usize::from(a) * 32,
        max_header_bytes: 64 + usize::from(b) * 64,
        max_headers: 1 + usize::from(b % 64),
    };
    let head = match parse_request_head(bytes, &limits) {
        Ok(head) => head,
        Err(_) => return,
    };
    let taken = &bytes[..head.len];
    assert!(
        taken.ends_with(b"\r\n\r\n"),
        "an accepted head ends with an empty line"
    );
    for (i, &byte) in taken.iter().enumerate() {
        match byte {
            b'\n' => assert!(i > 0 && taken[i - 1] == b'\r', "a bare LF at {i}"),
            b'\r' => assert_eq!(taken.get(i + 1), Some(&b'\n'), "a lone CR at {i}"),
            0 => panic!("NUL at {i}"),
            _ => {}
        }
    }
    assert!(head.target.len() <= limits.max_uri_bytes);
    assert!(
        head.target
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'#')
    );
    assert!(head.fields <= limits.max_headers);

    // The parser hyper runs afterwards must read the same request.
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(taken) {
        Ok(httparse::Status::Complete(len)) => {
            assert_eq!(len, head.len, "httparse ends the head elsewhere");
            assert_eq!(request.method.map(str::as_bytes), Some(head.method));
            assert_eq!(request.path.map(str::as_bytes), Some(head.target));
            let version = match head.version {
                Version::Http10 => 0,
                Version::Http11 => 1,
            };
            assert_eq!(request.version, Some(version));
            assert_eq!(request.headers.len(), head.fields);
        }
        other => panic!("accepted here, {other:?} in httparse"),
    }

    // Every shorter prefix of an accepted head is still incomplete.
    for cut in [head.len - 1, head.len / 2, 1] {
        if cut < head.len {
            assert_eq!(
                parse_request_head(&bytes[..cut], &limits),
                Err(HeadError::Incomplete),
                "a prefix of {cut} bytes"
            );
        }
    }
});
