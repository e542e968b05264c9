//! Path normalization before matching: one spelling per resource, so `/api/%61dmin`,
//! `/api//admin` and `/api/v1/../admin` cannot slip past a route written as `/api/admin`.
//!
//! The rules, in the order they apply to each segment:
//! 1. the path must start with `/`;
//! 2. percent-escapes must be `%` and two hex digits; escapes of unreserved characters
//!    (`ALPHA DIGIT - . _ ~`, RFC 3986 §2.3) are decoded, every other escape keeps its encoding
//!    with upper-case hex (§6.2.2.1) — so `%2F` stays an encoded slash and never separates segments;
//! 3. control bytes (0x00–0x1F, 0x7F), raw or escaped, are refused;
//! 4. empty segments are dropped (`//` is `/`) except the last one, so a trailing slash stays;
//! 5. `.` and `..` segments are removed as RFC 3986 §5.2.4 does, after decoding (so `%2E%2E` is
//!    `..`), and `..` never climbs above the root.
//!
//! An already-normalized path — nearly every real request — is returned borrowed, without
//! allocating.
//!
//! [`normalize_request_path`] adds the listener's [`PathOptions`] for the spellings that mean
//! different things to different servers behind a gateway: an encoded slash or backslash (`%2F`,
//! `%5C`, either case) and a raw backslash (a separator to IIS and to browsers' URL parsers, data
//! to most others), and `;` path parameters (`/admin;x=1` is `/admin` to Tomcat and Jetty). By
//! default each is refused; `keep` passes it through as rule 2 above leaves it;
//! `unescape_and_redirect` (slashes only, as Envoy's `path_with_escaped_slashes_action`) answers
//! with a redirect to the path with each of them turned into `/`, so the client asks again for a
//! path with one meaning.

use std::borrow::Cow;

use serde::Deserialize;

/// What a listener does with `%2F`, `%5C` (either case) and a raw `\` in a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// 400 `ambiguous-path`.
    #[default]
    Reject,
    /// Passed on as sent (`%2F` stays encoded and never separates segments).
    Keep,
    /// A redirect to the path with each of them turned into `/`.
    UnescapeAndRedirect,
}

/// What a listener does with a `;` in a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    /// 400 `ambiguous-path`.
    #[default]
    Reject,
    /// Passed on as sent: `;` is an ordinary path character.
    Keep,
}

/// A listener's `paths:` settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathOptions {
    pub escaped_slashes: EscapedSlashes,
    pub path_parameters: PathParameters,
}

impl PathOptions {
    /// Today's behaviour before the options existed: every ambiguous spelling passes.
    pub const KEEP: PathOptions = PathOptions {
        escaped_slashes: EscapedSlashes::Keep,
        path_parameters: PathParameters::Keep,
    };
}

/// What a request path becomes under a listener's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizedPath<'a> {
    /// The normalized path to route.
    Route(Cow<'a, str>),
    /// Answer with a redirect to this path (normalized, ASCII, without the query).
    Redirect(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not an absolute path")]
    NotAbsolute,
    /// Offsets are byte positions in the path; the path itself is not echoed back to clients.
    #[error(
        "invalid percent-escape at byte {offset}: `%` must be followed by two hexadecimal digits"
    )]
    InvalidEscape { offset: usize },
    #[error("the path contains the control character 0x{byte:02X} at byte {offset}")]
    ControlCharacter { offset: usize, byte: u8 },
    #[error("the path contains an encoded control character (%{byte:02X}) at byte {offset}")]
    EncodedControlCharacter { offset: usize, byte: u8 },
    #[error("the path contains an encoded slash or backslash at byte {offset}")]
    EncodedSlash { offset: usize },
    #[error("the path contains a backslash at byte {offset}")]
    Backslash { offset: usize },
    #[error("the path contains a `;` path parameter at byte {offset}")]
    PathParameter { offset: usize },
}

impl PathError {
    /// A spelling the listener refuses because servers disagree on it (`ambiguous-path`), as
    /// opposed to a path that is broken (`bad-path`).
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            PathError::EncodedSlash { .. }
                | PathError::Backslash { .. }
                | PathError::PathParameter { .. }
        )
    }
}

/// One ambiguous spelling in a raw path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ambiguity {
    EncodedSlash,
    Backslash,
    Parameter,
}

/// The first ambiguous spelling at or after `from`, with its offset. A byte scan for the three
/// bytes that can start one: most paths have none of them.
fn next_ambiguity(bytes: &[u8], from: usize) -> Option<(usize, Ambiguity)> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Some((i, Ambiguity::Backslash)),
            b';' => return Some((i, Ambiguity::Parameter)),
            b'%' if is_encoded_slash(bytes, i) => return Some((i, Ambiguity::EncodedSlash)),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `%2F`, `%2f`, `%5C` or `%5c` at `i`.
fn is_encoded_slash(bytes: &[u8], i: usize) -> bool {
    matches!(
        bytes.get(i + 1..i + 3),
        Some([b'2', b'F' | b'f'] | [b'5', b'C' | b'c'])
    )
}

/// Normalizes a request's path under a listener's options: the path rules of [`normalize_path`]
/// first (a broken path is `bad-path` whatever the options), then the ambiguous spellings as the
/// options say. This is the function the pipeline and `gateway routes --test` call.
pub fn normalize_request_path<'a>(
    raw: &'a str,
    options: &PathOptions,
) -> Result<NormalizedPath<'a>, PathError> {
    let normalized = normalize_path(raw)?;
    if *options == PathOptions::KEEP {
        return Ok(NormalizedPath::Route(normalized));
    }
    let bytes = raw.as_bytes();
    let mut redirect = false;
    let mut from = 0;
    while let Some((offset, found)) = next_ambiguity(bytes, from) {
        from = offset + 1;
        match (found, options) {
            (
                Ambiguity::Parameter,
                PathOptions {
                    path_parameters: PathParameters::Keep,
                    ..
                },
            ) => {}
            (Ambiguity::Parameter, _) => return Err(PathError::PathParameter { offset }),
            (
                _,
                PathOptions {
                    escaped_slashes: EscapedSlashes::Keep,
                    ..
                },
            ) => {}
            (
                _,
                PathOptions {
                    escaped_slashes: EscapedSlashes::UnescapeAndRedirect,
                    ..
                },
            ) => redirect = true,
            (Ambiguity::EncodedSlash, _) => return Err(PathError::EncodedSlash { offset }),
            (Ambiguity::Backslash, _) => return Err(PathError::Backslash { offset }),
        }
    }
    if !redirect {
        return Ok(NormalizedPath::Route(normalized));
    }
    Ok(NormalizedPath::Redirect(unescaped_slashes(raw)?))
}

/// `raw` with each encoded slash or backslash and each raw backslash turned into `/`, normalized
/// again (the new separators may make `//` or dot segments), with every byte outside visible
/// ASCII percent-encoded so that it can be a `Location`.
fn unescaped_slashes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            out.push('/');
        } else if bytes[i] == b'%' && is_encoded_slash(bytes, i) {
            out.push('/');
            i += 2;
        } else {
            push_visible(&mut out, bytes[i]);
        }
        i += 1;
    }
    Ok(normalize_path(&out)?.into_owned())
}

/// Appends `text` with every byte outside visible ASCII percent-encoded (`%` itself is left as
/// it is): what a `Location` or a log field may hold of a client's target.
pub fn push_escaped_invisible(out: &mut String, text: &str) {
    if text.bytes().all(|b| b.is_ascii_graphic()) {
        out.push_str(text);
    } else {
        for byte in text.bytes() {
            push_visible(out, byte);
        }
    }
}

/// Pushes `byte`, percent-encoded unless it is visible ASCII.
fn push_visible(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if byte.is_ascii_graphic() {
        out.push(char::from(byte));
    } else {
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// Normalizes the path part of a request target (no query). See the module docs for the rules.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normalized(raw)? {
        Ok(Cow::Borrowed(raw))
    } else {
        normalize_owned(raw).map(Cow::Owned)
    }
}

/// `%XX` at `offset`: the decoded byte, or an error when the escape is malformed or a control.
fn decode_escape(bytes: &[u8], offset: usize) -> Result<u8, PathError> {
    let hex = |i: usize| bytes.get(offset + i).and_then(|b| hex_value(*b));
    match (hex(1), hex(2)) {
        (Some(hi), Some(lo)) => {
            let byte = (hi << 4) | lo;
            if is_control(byte) {
                Err(PathError::EncodedControlCharacter { offset, byte })
            } else {
                Ok(byte)
            }
        }
        _ => Err(PathError::InvalidEscape { offset }),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The fast path: `Ok(true)` when `raw` (which starts with `/`) is already in normal form.
/// `Ok(false)` as soon as something needs rewriting — [`normalize_owned`] then validates the rest.
fn is_normalized(raw: &str) -> Result<bool, PathError> {
    let bytes = raw.as_bytes();
    // Start of the current segment (just after its `/`).
    let mut segment_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                let segment = &bytes[segment_start..i];
                // Not the last segment: an empty one is `//`, and dot segments never survive.
                if matches!(segment, b"" | b"." | b"..") {
                    return Ok(false);
                }
                segment_start = i + 1;
            }
            b'%' => {
                let byte = decode_escape(bytes, i)?;
                if is_unreserved(byte) || bytes[i + 1..i + 3].iter().any(u8::is_ascii_lowercase) {
                    return Ok(false);
                }
                i += 2;
            }
            b if is_control(b) => {
                return Err(PathError::ControlCharacter { offset: i, byte: b });
            }
            _ => {}
        }
        i += 1;
    }
    // The last segment may be empty (a trailing slash) but not a dot segment.
    Ok(!matches!(&bytes[segment_start..], b"." | b".."))
}

/// The slow path: decodes, re-encodes and removes dot segments into a new string.
fn normalize_owned(raw: &str) -> Result<String, PathError> {
    // `out` holds `/seg` pieces without a trailing slash; empty stands for the root.
    let mut out = String::with_capacity(raw.len());
    let mut segment = String::new();
    let mut offset = 1;
    let mut pieces = raw[1..].split('/').peekable();
    let mut trailing_slash = false;
    while let Some(piece) = pieces.next() {
        decode_segment(piece, offset, &mut segment)?;
        offset += piece.len() + 1;
        let last = pieces.peek().is_none();
        match segment.as_str() {
            "" | "." => trailing_slash = last,
            ".." => {
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                trailing_slash = last;
            }
            _ => {
                out.push('/');
                out.push_str(&segment);
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Writes `piece` (one raw segment starting at byte `offset` of the path) into `out` with
/// unreserved escapes decoded and the others upper-cased.
fn decode_segment(piece: &str, offset: usize, out: &mut String) -> Result<(), PathError> {
    out.clear();
    let bytes = piece.as_bytes();
    // Start of the run of bytes copied verbatim; `%` is ASCII, so every cut is a char boundary.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = decode_escape(bytes, i).map_err(|e| shift(e, offset))?;
                out.push_str(&piece[run..i]);
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(char::from(HEX[usize::from(byte >> 4)]));
                    out.push(char::from(HEX[usize::from(byte & 0xf)]));
                }
                i += 3;
                run = i;
            }
            b if is_control(b) => {
                return Err(PathError::ControlCharacter {
                    offset: offset + i,
                    byte: b,
                });
            }
            _ => i += 1,
        }
    }
    out.push_str(&piece[run..]);
    Ok(())
}

/// Moves an error's offset from segment-relative to path-relative.
fn shift(error: PathError, by: usize) -> PathError {
    match error {
        PathError::InvalidEscape { offset } => PathError::InvalidEscape {
            offset: offset + by,
        },
        PathError::ControlCharacter { offset, byte } => PathError::ControlCharacter {
            offset: offset + by,
            byte,
        },
        PathError::EncodedControlCharacter { offset, byte } => PathError::EncodedControlCharacter {
            offset: offset + by,
            byte,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalizes_the_table() {
        // (input, expected output, borrowed?)
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("/api/admin", "/api/admin", true),
            ("/api/admin/", "/api/admin/", true),
            ("/api/a%2Fb", "/api/a%2Fb", true),
            ("/caf%C3%A9", "/caf%C3%A9", true),
            ("/a..b/.c/..d", "/a..b/.c/..d", true),
            ("/api/./admin", "/api/admin", false),
            ("/api//admin", "/api/admin", false),
            ("/api/%61dmin", "/api/admin", false),
            ("/api/v1/../admin", "/api/admin", false),
            ("/api/a%2fb", "/api/a%2Fb", false),
            ("/api/%2e/admin", "/api/admin", false),
            ("/api/v1/%2E%2E/admin", "/api/admin", false),
            ("/api/v1/.%2e/admin", "/api/admin", false),
            ("/%7Euser/%5Fx%2D", "/~user/_x-", false),
            ("/caf%c3%a9", "/caf%C3%A9", false),
            ("//", "/", false),
            ("///a///b///", "/a/b/", false),
            ("/.", "/", false),
            ("/..", "/", false),
            ("/../a", "/a", false),
            ("/../../a/../../b", "/b", false),
            ("/a/.", "/a/", false),
            ("/a/..", "/", false),
            ("/a/b/..", "/a/", false),
            ("/a/./", "/a/", false),
            ("/a/b/../", "/a/", false),
            ("/a/%2F/../b", "/a/b", false),
        ];
        for (input, expected, borrowed) in cases {
            let got = normalize_path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, *expected, "normalize({input:?})");
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                *borrowed,
                "normalize({input:?}) borrowed"
            );
        }
    }

    #[test]
    fn rejects_the_table() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolute),
            ("api/admin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/a%zz", PathError::InvalidEscape { offset: 2 }),
            ("/a%4", PathError::InvalidEscape { offset: 2 }),
            ("/a%", PathError::InvalidEscape { offset: 2 }),
            ("/a%%41", PathError::InvalidEscape { offset: 2 }),
            // Found by the slow path too, after something else already needed rewriting.
            ("/x//a%4", PathError::InvalidEscape { offset: 5 }),
            ("/x//a/%g1", PathError::InvalidEscape { offset: 6 }),
            ("/a\0b", PathError::ControlCharacter { offset: 2, byte: 0 }),
            (
                "/a/\x7f",
                PathError::ControlCharacter {
                    offset: 3,
                    byte: 0x7f,
                },
            ),
            (
                "/x/../a\nb",
                PathError::ControlCharacter {
                    offset: 7,
                    byte: b'\n',
                },
            ),
            (
                "/a%00",
                PathError::EncodedControlCharacter { offset: 2, byte: 0 },
            ),
            (
                "/a/%0d%0A",
                PathError::EncodedControlCharacter {
                    offset: 3,
                    byte: b'\r',
                },
            ),
            (
                "/./%7f",
                PathError::EncodedControlCharacter {
                    offset: 3,
                    byte: 0x7f,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_path(input).as_ref(),
                Err(expected),
                "normalize({input:?})"
            );
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_path() {
        let e = normalize_path("/secret%zz").expect_err("invalid escape");
        assert_eq!(
            e.to_string(),
            "invalid percent-escape at byte 7: `%` must be followed by two hexadecimal digits"
        );
        let e = normalize_path("/a%00").expect_err("encoded NUL");
        assert_eq!(
            e.to_string(),
            "the path contains an encoded control character (%00) at byte 2"
        );
    }

    fn options(escaped_slashes: EscapedSlashes, path_parameters: PathParameters) -> PathOptions {
        PathOptions {
            escaped_slashes,
            path_parameters,
        }
    }

    #[test]
    fn ambiguous_spellings_follow_the_listener_options() {
        use EscapedSlashes as S;
        use PathParameters as P;
        let reject = PathOptions::default();
        let keep = PathOptions::KEEP;
        let redirect = options(S::UnescapeAndRedirect, P::Reject);
        let route = |p: &str| Ok(NormalizedPath::Route(Cow::Owned(p.to_string())));
        let to = |p: &str| Ok(NormalizedPath::Redirect(p.to_string()));
        let cases: &[(&str, PathOptions, Result<NormalizedPath<'_>, PathError>)] = &[
            ("/a/b", reject, route("/a/b")),
            ("/a%2Fb", reject, Err(PathError::EncodedSlash { offset: 2 })),
            ("/a%2fb", reject, Err(PathError::EncodedSlash { offset: 2 })),
            ("/a%5Cb", reject, Err(PathError::EncodedSlash { offset: 2 })),
            ("/a%5cb", reject, Err(PathError::EncodedSlash { offset: 2 })),
            ("/a\\b", reject, Err(PathError::Backslash { offset: 2 })),
            ("/a;b", reject, Err(PathError::PathParameter { offset: 2 })),
            (
                "/admin;jsessionid=1/x",
                reject,
                Err(PathError::PathParameter { offset: 6 }),
            ),
            // An encoded semicolon is data, not a parameter delimiter: it stays encoded.
            ("/a%3Bb", reject, route("/a%3Bb")),
            // Broken paths are broken first, whatever else they hold.
            (
                "/a;%zz",
                reject,
                Err(PathError::InvalidEscape { offset: 3 }),
            ),
            ("/a%2Fb", keep, route("/a%2Fb")),
            ("/a%2fb", keep, route("/a%2Fb")),
            ("/a\\b;c", keep, route("/a\\b;c")),
            ("/a%2Fb", options(S::Keep, P::Reject), route("/a%2Fb")),
            (
                "/a;b",
                options(S::Keep, P::Reject),
                Err(PathError::PathParameter { offset: 2 }),
            ),
            (
                "/a\\b",
                options(S::Reject, P::Keep),
                Err(PathError::Backslash { offset: 2 }),
            ),
            ("/a;b", options(S::Reject, P::Keep), route("/a;b")),
            ("/a%2Fb", redirect, to("/a/b")),
            ("/a%2f%5C%5cb\\c", redirect, to("/a/b/c")),
            ("/a%2F..%2Fb", redirect, to("/b")),
            ("/caf%C3%A9%2F\u{e9}", redirect, to("/caf%C3%A9/%C3%A9")),
            // Never a protocol-relative `//host` Location: slashes merge after unescaping.
            ("/%2F%2Fevil.example/x", redirect, to("/evil.example/x")),
            ("/\\evil.example", redirect, to("/evil.example")),
            // A parameter is refused before any redirect is offered.
            (
                "/a%2Fb;c",
                redirect,
                Err(PathError::PathParameter { offset: 6 }),
            ),
            (
                "/a%2Fb;c",
                options(S::UnescapeAndRedirect, P::Keep),
                to("/a/b;c"),
            ),
        ];
        for (input, options, expected) in cases {
            let got = normalize_request_path(input, options);
            let got = got.map(|n| match n {
                NormalizedPath::Route(p) => NormalizedPath::Route(Cow::Owned(p.into_owned())),
                other => other,
            });
            assert_eq!(&got, expected, "{input:?} under {options:?}");
        }
    }

    #[test]
    fn ambiguous_and_broken_paths_are_told_apart() {
        assert!(PathError::EncodedSlash { offset: 1 }.is_ambiguous());
        assert!(PathError::Backslash { offset: 1 }.is_ambiguous());
        assert!(PathError::PathParameter { offset: 1 }.is_ambiguous());
        assert!(!PathError::InvalidEscape { offset: 1 }.is_ambiguous());
        assert!(!PathError::NotAbsolute.is_ambiguous());
    }

    /// Paths built from the characters that matter to normalization.
    fn path_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("%".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%2f".to_string()),
            Just("%2F".to_string()),
            Just("%61".to_string()),
            Just("%7e".to_string()),
            Just("%c3%a9".to_string()),
            Just("%00".to_string()),
            Just("%4".to_string()),
            Just("é".to_string()),
            Just("%5c".to_string()),
            Just("\\".to_string()),
            Just(";".to_string()),
            "[ -~]{1,3}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = normalize_path(&s);
            let _ = normalize_path(&format!("/{s}"));
        }

        #[test]
        fn is_idempotent_and_borrows_the_second_time(p in path_like()) {
            if let Ok(once) = normalize_path(&p) {
                let twice = normalize_path(&once);
                prop_assert_eq!(twice.as_ref().map(|c| c.as_ref()), Ok(once.as_ref()));
                prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))), "{:?} -> {:?} not borrowed", p, once);
            }
        }

        #[test]
        fn output_has_no_dot_or_empty_inner_segments(p in path_like()) {
            if let Ok(n) = normalize_path(&p) {
                prop_assert!(n.starts_with('/'));
                let segments: Vec<&str> = n[1..].split('/').collect();
                let (last, inner) = segments.split_last().expect("split yields one piece");
                prop_assert!(inner.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "{}", n);
                prop_assert!(*last != "." && *last != "..", "{}", n);
            }
        }

        #[test]
        fn under_any_options_never_panics_and_routes_nothing_ambiguous_it_should_refuse(
            p in path_like(),
            slashes in prop_oneof![Just(EscapedSlashes::Reject), Just(EscapedSlashes::Keep), Just(EscapedSlashes::UnescapeAndRedirect)],
            params in prop_oneof![Just(PathParameters::Reject), Just(PathParameters::Keep)],
        ) {
            let options = options(slashes, params);
            match normalize_request_path(&p, &options) {
                Ok(NormalizedPath::Route(path)) => {
                    // What routes is what `normalize_path` gives, and holds nothing refused.
                    let plain = normalize_path(&p);
                    prop_assert_eq!(Ok(path.as_ref()), plain.as_deref());
                    if slashes != EscapedSlashes::Keep {
                        let upper = path.to_ascii_uppercase();
                        prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !path.contains('\\'), "{}", path);
                    }
                    if params == PathParameters::Reject {
                        prop_assert!(!path.contains(';'), "{}", path);
                    }
                }
                Ok(NormalizedPath::Redirect(location)) => {
                    prop_assert_eq!(slashes, EscapedSlashes::UnescapeAndRedirect);
                    // The redirect's target is final: asked again, it routes as it is.
                    let again = normalize_request_path(&location, &options);
                    prop_assert_eq!(again, Ok(NormalizedPath::Route(Cow::Borrowed(location.as_str()))));
                    prop_assert!(!location.starts_with("//"));
                    prop_assert!(location.bytes().all(|b| b.is_ascii_graphic()));
                }
                Err(e) => prop_assert!(!e.is_ambiguous() || options != PathOptions::KEEP, "{:?}", e),
            }
        }

        #[test]
        fn an_encoded_slash_stays_and_does_not_separate(a in "[a-z]{1,4}", b in "[a-z]{1,4}") {
            let dotted = format!("/x/{a}%2f{b}/../y");
            let got = normalize_path(&dotted);
            prop_assert_eq!(got.as_deref(), Ok("/x/y"));
            let deep = format!("/x/{a}%2f{b}/y");
            let expected = format!("/x/{a}%2F{b}/y");
            let got = normalize_path(&deep);
            prop_assert_eq!(got.as_deref(), Ok(expected.as_str()));
        }
    }
}
