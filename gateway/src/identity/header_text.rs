//! Identity values on their way into headers (X-User-Id, X-Tenant-Id, X-Auth-Scopes): which
//! values may travel at all, and how one that is not printable ASCII travels, per
//! `auth.identity_headers.non_ascii`.
//!
//! A control character (C0, DEL, C1) can split or end a header and is refused always. Other
//! non-ASCII text (a UTF-8 subject, tenant or scope) is either refused too or percent-encoded:
//! an upstream decodes with any RFC 3986 decoder and gets the claim back byte for byte.

use std::borrow::Cow;

use serde::Deserialize;

/// `auth.identity_headers.non_ascii`: what happens to a claim that is not printable ASCII.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonAscii {
    /// Identity headers carry every byte outside `!`..`~`, and `%` itself, as `%XX`.
    #[default]
    PercentEncode,
    /// Such a claim refuses the credential (`invalid-claim`); values go verbatim.
    Reject,
}

/// Whether `value` may become an identity value under `mode`: no control character, and under
/// `Reject` nothing beyond ASCII.
pub fn acceptable(value: &str, mode: NonAscii) -> bool {
    match mode {
        NonAscii::Reject => value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
        NonAscii::PercentEncode => !value.chars().any(|c| c.is_control() && c != '\t'),
    }
}

/// The header text for an identity value. Under `PercentEncode`, `%` is always encoded, so
/// a literal `%C3%A9` and an `é` never reach the upstream as the same bytes.
pub fn encode(value: &str, mode: NonAscii) -> Cow<'_, str> {
    let verbatim = |b: u8| (0x21..0x7f).contains(&b) && b != b'%';
    if mode == NonAscii::Reject || value.bytes().all(verbatim) {
        return Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if verbatim(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_verbatim_and_everything_else_is_encoded_unambiguously() {
        let cases = [
            ("user-7", "user-7"),
            ("José", "Jos%C3%A9"),
            ("100%", "100%25"),
            ("Jos%C3%A9", "Jos%25C3%25A9"),
            ("a b", "a%20b"),
            ("日本", "%E6%97%A5%E6%9C%AC"),
        ];
        for (value, want) in cases {
            assert_eq!(encode(value, NonAscii::PercentEncode), want, "{value}");
        }
        assert_eq!(encode("100%", NonAscii::Reject), "100%");
    }

    #[test]
    fn control_characters_are_refused_in_both_modes_and_utf8_only_under_reject() {
        for mode in [NonAscii::PercentEncode, NonAscii::Reject] {
            for bad in ["a\r\nb", "a\0", "a\u{7f}", "a\u{85}b"] {
                assert!(!acceptable(bad, mode), "{bad:?} {mode:?}");
            }
            assert!(acceptable("user 7", mode));
        }
        assert!(acceptable("José", NonAscii::PercentEncode));
        assert!(!acceptable("José", NonAscii::Reject));
    }
}
