//! Path normalization on arbitrary input: never a panic, and every path it accepts comes out in
//! the one normal form the route table matches against; under each listener `paths:` option, a
//! refused spelling never reaches the route table and a redirect never leads to another
//! redirect, another host, or a refusal.
#![no_main]

use std::borrow::Cow;

use gateway::routing::normalize::{
    EscapedSlashes, NormalizedPath, PathOptions, PathParameters, normalize_path,
    normalize_request_path,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The request-target reaches the router as text; bytes that are not UTF-8 are tried in
    // their lossy spelling so the fuzzer's byte mutations still count.
    let text = String::from_utf8_lossy(data);
    check(&text);
    // Most mutations lose the leading `/`; try each input as an absolute path too.
    check(&format!("/{text}"));
});

fn check(raw: &str) {
    check_options(raw);
    let Ok(once) = normalize_path(raw) else {
        return;
    };
    assert!(once.starts_with('/'), "{raw:?} -> {once:?}: not absolute");
    assert!(
        !once.contains("//"),
        "{raw:?} -> {once:?}: an empty segment"
    );
    let segments: Vec<&str> = once[1..].split('/').collect();
    assert!(
        segments.iter().all(|s| *s != "." && *s != ".."),
        "{raw:?} -> {once:?}: a dot segment"
    );
    assert!(
        !once.bytes().any(|b| b < 0x20 || b == 0x7f),
        "{raw:?} -> {once:?}: a control byte"
    );
    // Escapes left in the output are of reserved bytes, in upper-case hex (`%2F`, never `%2f`
    // or `%61`), so one resource has one spelling.
    let bytes = once.as_bytes();
    for (i, _) in once.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).expect("an escape has two digits");
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{raw:?} -> {once:?}: escape at {i}"
        );
        let decoded = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        let decoded = decoded.expect("hex digits");
        assert!(
            !(decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded)),
            "{raw:?} -> {once:?}: an escaped unreserved byte at {i}"
        );
    }
    // Idempotent, and the normal form takes the fast path (borrowed, no allocation).
    match normalize_path(&once) {
        Ok(Cow::Borrowed(twice)) => assert_eq!(twice, once.as_ref(), "{raw:?}: not idempotent"),
        Ok(Cow::Owned(twice)) => {
            panic!("{raw:?} -> {once:?} -> {twice:?}: the normal form was rewritten")
        }
        Err(e) => panic!("{raw:?} -> {once:?}: the normal form is refused: {e}"),
    }
    // A path that needed no rewriting is returned as it was.
    if let Cow::Borrowed(same) = once {
        assert_eq!(same, raw);
    }
}

fn check_options(raw: &str) {
    for escaped_slashes in [
        EscapedSlashes::Reject,
        EscapedSlashes::Keep,
        EscapedSlashes::UnescapeAndRedirect,
    ] {
        for path_parameters in [PathParameters::Reject, PathParameters::Keep] {
            let options = PathOptions {
                escaped_slashes,
                path_parameters,
            };
            match normalize_request_path(raw, &options) {
                Err(_) => {}
                Ok(NormalizedPath::Route(path)) => {
                    let upper = path.to_ascii_uppercase();
                    if escaped_slashes != EscapedSlashes::Keep {
                        assert!(
                            !upper.contains("%2F") && !upper.contains("%5C") && !path.contains('\\'),
                            "{raw:?} under {options:?} routes as {path:?}"
                        );
                    }
                    if path_parameters == PathParameters::Reject {
                        assert!(!path.contains(';'), "{raw:?} under {options:?} routes as {path:?}");
                    }
                }
                Ok(NormalizedPath::Redirect(to)) => {
                    assert_eq!(escaped_slashes, EscapedSlashes::UnescapeAndRedirect);
                    assert!(
                        to.starts_with('/') && !to.starts_with("//"),
                        "{raw:?} redirects off the path: {to:?}"
                    );
                    assert!(to.bytes().all(|b| b.is_ascii_graphic()), "{to:?}");
                    match normalize_request_path(&to, &options) {
                        Ok(NormalizedPath::Route(_)) => {}
                        other => panic!("{raw:?} redirects to {to:?}, which gives {other:?}"),
                    }
                }
            }
        }
    }
}
