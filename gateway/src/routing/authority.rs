//! The one authority a request names, and whether it is a valid `host[:port]`.
//!
//! Which source wins (decided once, at arrival, and read by routing, the 421 check and the
//! upstream request alike):
//! - an HTTP/1.1 request whose request-target has an authority (absolute form, or the authority
//!   form of `CONNECT`) is for that authority; its `Host` field is checked but otherwise ignored
//!   (RFC 9112 §3.2.2);
//! - on HTTP/2, `:authority` wins over a `host` field; when both are sent they must name the same
//!   host and port (RFC 9113 §8.3.1 lets a server treat a difference as malformed, and a gateway
//!   that routes on one and forwards the other is exactly the confusion to avoid), else the
//!   request is refused;
//! - otherwise the `Host` field.
//!
//! Refused: an HTTP/1.1 request without `Host` (even in absolute form: RFC 9112 §3.2 requires it),
//! two `Host` fields, and any `Host` or authority that is not `host[:port]` — userinfo, a second
//! colon outside an IPv6 literal, whitespace, an empty or non-numeric port or one above 65535,
//! and any byte a registered name may not hold. The registered name is restricted to RFC 3986's
//! unreserved characters (letters, digits, `-`, `.`, `_`, `~`): percent-escapes and sub-delims are
//! legal in a URI's reg-name but name no host anyone can resolve, and each is one more spelling
//! of the same name for a filter to miss.
//!
//! Hosts compare ignoring ASCII case and one final dot (`Example.COM.` is `example.com`: the DNS
//! root label changes nothing, and a host filter that told them apart could be walked around).

use std::net::Ipv6Addr;

use http::{HeaderMap, HeaderValue, Uri, Version, header};

/// The longest host accepted: a DNS name is at most 253 bytes; the rest is slack for a port.
pub const MAX_AUTHORITY_BYTES: usize = 260;

/// A valid `host[:port]`, borrowed from the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// As written: a registered name, an IPv4 address, or an IPv6 literal with its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
}

impl HostPort<'_> {
    /// The same host and port, ignoring case and a final dot; `default_port` stands in for a
    /// missing port (RFC 3986 §6.2.3).
    pub fn same_as(&self, other: &HostPort<'_>, default_port: Option<u16>) -> bool {
        let trim = |h: &str| h.strip_suffix('.').map_or(h.len(), str::len);
        let (a, b) = (self.host, other.host);
        a[..trim(a)].eq_ignore_ascii_case(&b[..trim(b)])
            && self.port.or(default_port) == other.port.or(default_port)
    }
}

/// Why a `Host` or an authority is not a valid `host[:port]`. Never echoes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHost {
    #[error("the host is empty")]
    Empty,
    #[error("the host is longer than {MAX_AUTHORITY_BYTES} bytes")]
    TooLong,
    #[error("the host carries userinfo (`@`)")]
    Userinfo,
    #[error("the host has more than one `:` outside an IPv6 literal")]
    TwoColons,
    #[error("the port is empty")]
    EmptyPort,
    #[error("the port is not a number from 0 to 65535")]
    BadPort,
    #[error("the IPv6 literal is not valid")]
    BadIpv6,
    #[error("the host contains the byte 0x{byte:02X} at byte {offset}")]
    BadByte { offset: usize, byte: u8 },
}

/// Why a request's authority cannot be trusted: `Missing` is `missing-host`, the rest are
/// `invalid-host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request must carry a Host field")]
    Missing,
    #[error("the request carries more than one Host field")]
    Duplicate,
    #[error("the Host field is not a valid host[:port]: {0}")]
    InvalidHost(InvalidHost),
    #[error("the request-target's authority is not a valid host[:port]: {0}")]
    InvalidAuthority(InvalidHost),
    #[error("the host field names another host than :authority")]
    Conflict,
}

/// Parses `host[:port]` strictly (see the module docs). Takes bytes: a header value may hold
/// any byte, and this is what a fuzz target calls.
pub fn parse_host_port(text: &[u8]) -> Result<HostPort<'_>, InvalidHost> {
    if text.is_empty() {
        return Err(InvalidHost::Empty);
    }
    if text.len() > MAX_AUTHORITY_BYTES {
        return Err(InvalidHost::TooLong);
    }
    // Userinfo (`user:pw@host`) is named as such wherever the `@` sits.
    if text.contains(&b'@') {
        return Err(InvalidHost::Userinfo);
    }
    let (host_end, rest) = if text[0] == b'[' {
        let close = text
            .iter()
            .position(|&b| b == b']')
            .ok_or(InvalidHost::BadIpv6)?;
        let inner = std::str::from_utf8(&text[1..close]).map_err(|_| InvalidHost::BadIpv6)?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| InvalidHost::BadIpv6)?;
        (close + 1, &text[close + 1..])
    } else {
        let end = text.iter().position(|&b| b == b':').unwrap_or(text.len());
        for (offset, &byte) in text[..end].iter().enumerate() {
            if !is_reg_name_byte(byte) {
                return Err(InvalidHost::BadByte { offset, byte });
            }
        }
        if end == 0 {
            return Err(InvalidHost::Empty);
        }
        (end, &text[end..])
    };
    let port = match rest {
        [] => None,
        [b':'] => return Err(InvalidHost::EmptyPort),
        [b':', digits @ ..] => Some(parse_port(digits, host_end + 1)?),
        [byte, ..] => {
            return Err(InvalidHost::BadByte {
                offset: host_end,
                byte: *byte,
            });
        }
    };
    // Every byte was checked to be ASCII above (or parsed as an IPv6 literal, which is ASCII).
    let host = std::str::from_utf8(&text[..host_end]).map_err(|_| InvalidHost::BadIpv6)?;
    Ok(HostPort { host, port })
}

fn parse_port(digits: &[u8], at: usize) -> Result<u16, InvalidHost> {
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err(match digits[i] {
            b':' => InvalidHost::TwoColons,
            byte => InvalidHost::BadByte {
                offset: at + i,
                byte,
            },
        });
    }
    if digits.len() > 5 {
        return Err(InvalidHost::BadPort);
    }
    let value = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| InvalidHost::BadPort)
}

/// RFC 3986 §2.3 unreserved: what a host name may be spelled with here.
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The authority a request names, as sent, and why it is refused when it is. The value is kept
/// even when refused (the record shows what was sent).
#[derive(Debug, Clone, Default)]
pub struct RequestAuthority {
    /// The winning source's bytes: the request-target's authority (`:authority` on HTTP/2),
    /// else the first `Host` field.
    pub value: Option<HeaderValue>,
    pub problem: Option<HostError>,
}

/// Decides a request's authority (see the module docs for the precedence).
pub fn request_authority(version: Version, uri: &Uri, headers: &HeaderMap) -> RequestAuthority {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    let second = hosts.next();
    let target = uri.authority();
    let value = match target {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => host.cloned(),
    };
    let problem = authority_problem(version, uri, host, second.is_some());
    RequestAuthority { value, problem }
}

fn authority_problem(
    version: Version,
    uri: &Uri,
    host: Option<&HeaderValue>,
    two_hosts: bool,
) -> Option<HostError> {
    if two_hosts {
        return Some(HostError::Duplicate);
    }
    let target = uri.authority();
    if version == Version::HTTP_11 && host.is_none() {
        return Some(HostError::Missing);
    }
    let host = match host.map(|h| parse_host_port(h.as_bytes())).transpose() {
        Ok(host) => host,
        Err(invalid) => return Some(HostError::InvalidHost(invalid)),
    };
    let target = match target
        .map(|a| parse_host_port(a.as_str().as_bytes()))
        .transpose()
    {
        Ok(target) => target,
        Err(invalid) => return Some(HostError::InvalidAuthority(invalid)),
    };
    if version == Version::HTTP_2 {
        if let (Some(host), Some(target)) = (host, target) {
            let default_port = match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            };
            if !host.same_as(&target, default_port) {
                return Some(HostError::Conflict);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn valid_hosts_parse_into_host_and_port() {
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("example.com", "example.com", None),
            ("Example.COM.", "Example.COM.", None),
            ("example.com:8080", "example.com", Some(8080)),
            ("a-b_c~d.example:0", "a-b_c~d.example", Some(0)),
            ("127.0.0.1:65535", "127.0.0.1", Some(65535)),
            ("[::1]", "[::1]", None),
            ("[2001:db8::1]:443", "[2001:db8::1]", Some(443)),
            ("localhost:00080", "localhost", Some(80)),
        ];
        for (input, host, port) in cases {
            let got = parse_host_port(input.as_bytes());
            assert_eq!(got, Ok(HostPort { host, port: *port }), "{input}");
        }
    }

    #[test]
    fn invalid_hosts_are_refused_with_their_reason() {
        let long = "a".repeat(MAX_AUTHORITY_BYTES + 1);
        let cases: &[(&[u8], InvalidHost)] = &[
            (b"", InvalidHost::Empty),
            (b":80", InvalidHost::Empty),
            (long.as_bytes(), InvalidHost::TooLong),
            (b"user@example.com", InvalidHost::Userinfo),
            (b"user:pw@example.com", InvalidHost::Userinfo),
            (b"example.com:80:81", InvalidHost::TwoColons),
            (b"::1", InvalidHost::Empty),
            (b"fe80::1", InvalidHost::TwoColons),
            (b"example.com:", InvalidHost::EmptyPort),
            (b"example.com:65536", InvalidHost::BadPort),
            (b"example.com:123456", InvalidHost::BadPort),
            (
                b"example.com:8o",
                InvalidHost::BadByte {
                    offset: 13,
                    byte: b'o',
                },
            ),
            (
                b"exa mple.com",
                InvalidHost::BadByte {
                    offset: 3,
                    byte: b' ',
                },
            ),
            (
                b"example.com ",
                InvalidHost::BadByte {
                    offset: 11,
                    byte: b' ',
                },
            ),
            (
                b" example.com",
                InvalidHost::BadByte {
                    offset: 0,
                    byte: b' ',
                },
            ),
            (
                b"ex\tample",
                InvalidHost::BadByte {
                    offset: 2,
                    byte: b'\t',
                },
            ),
            (
                b"exa%6dple.com",
                InvalidHost::BadByte {
                    offset: 3,
                    byte: b'%',
                },
            ),
            (
                b"a/b",
                InvalidHost::BadByte {
                    offset: 1,
                    byte: b'/',
                },
            ),
            (
                b"a\\b",
                InvalidHost::BadByte {
                    offset: 1,
                    byte: b'\\',
                },
            ),
            (
                b"a,b",
                InvalidHost::BadByte {
                    offset: 1,
                    byte: b',',
                },
            ),
            (
                b"caf\xc3\xa9",
                InvalidHost::BadByte {
                    offset: 3,
                    byte: 0xc3,
                },
            ),
            (b"[::1", InvalidHost::BadIpv6),
            (b"[::g]", InvalidHost::BadIpv6),
            (b"[fe80::1%25eth0]", InvalidHost::BadIpv6),
            (
                b"[::1]x",
                InvalidHost::BadByte {
                    offset: 5,
                    byte: b'x',
                },
            ),
            (b"[::1]:", InvalidHost::EmptyPort),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_host_port(input),
                Err(*expected),
                "{:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn hosts_compare_ignoring_case_a_final_dot_and_the_default_port() {
        let p = |s: &'static str| parse_host_port(s.as_bytes()).expect("valid");
        assert!(p("Example.COM.").same_as(&p("example.com"), None));
        assert!(p("example.com").same_as(&p("example.com:443"), Some(443)));
        assert!(!p("example.com").same_as(&p("example.com:443"), None));
        assert!(!p("example.com:80").same_as(&p("example.com:81"), Some(80)));
        assert!(!p("a.example.com").same_as(&p("b.example.com"), None));
    }

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for host in hosts {
            map.append(header::HOST, HeaderValue::from_static(host));
        }
        map
    }

    /// Version, target, Host fields, the authority chosen, the problem.
    type Case = (
        Version,
        &'static str,
        &'static [&'static str],
        Option<&'static str>,
        Option<HostError>,
    );

    #[test]
    fn the_request_authority_follows_the_precedence_of_each_protocol() {
        let h1 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        let cases: &[Case] = &[
            (h1, "/x", &["a.example"], Some("a.example"), None),
            (h1, "/x", &[], None, Some(HostError::Missing)),
            (Version::HTTP_10, "/x", &[], None, None),
            (
                h1,
                "/x",
                &["a.example", "b.example"],
                Some("a.example"),
                Some(HostError::Duplicate),
            ),
            (
                h1,
                "/x",
                &["a.example", "a.example"],
                Some("a.example"),
                Some(HostError::Duplicate),
            ),
            (
                h1,
                "/x",
                &["a@b"],
                Some("a@b"),
                Some(HostError::InvalidHost(InvalidHost::Userinfo)),
            ),
            // Absolute form: the target's authority wins over a differing Host.
            (
                h1,
                "http://b.example/x",
                &["a.example"],
                Some("b.example"),
                None,
            ),
            (
                h1,
                "http://b.example/x",
                &[],
                Some("b.example"),
                Some(HostError::Missing),
            ),
            (
                h1,
                "http://u@b.example/x",
                &["a.example"],
                Some("u@b.example"),
                Some(HostError::InvalidAuthority(InvalidHost::Userinfo)),
            ),
            (
                h1,
                "http://b.example/x",
                &["a b"],
                Some("b.example"),
                Some(HostError::InvalidHost(InvalidHost::BadByte {
                    offset: 1,
                    byte: b' ',
                })),
            ),
            // HTTP/2: `:authority` wins; a differing `host` is refused, an equal one is fine.
            (h2, "https://b.example/x", &[], Some("b.example"), None),
            (
                h2,
                "https://b.example/x",
                &["B.example.:443"],
                Some("b.example"),
                None,
            ),
            (
                h2,
                "https://b.example/x",
                &["a.example"],
                Some("b.example"),
                Some(HostError::Conflict),
            ),
            (h2, "/x", &["a.example"], Some("a.example"), None),
            (h2, "/x", &[], None, None),
        ];
        for (version, target, hosts, value, problem) in cases {
            let got = request_authority(*version, &uri(target), &headers(hosts));
            let case = format!("{version:?} {target} {hosts:?}");
            assert_eq!(
                got.value.as_ref().and_then(|v| v.to_str().ok()),
                *value,
                "{case}"
            );
            assert_eq!(got.problem, *problem, "{case}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_what_it_accepts_is_clean(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(hp) = parse_host_port(&bytes) {
                prop_assert!(!hp.host.is_empty());
                prop_assert!(hp.host.bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(!hp.host.contains('@'));
                if !hp.host.starts_with('[') {
                    prop_assert!(!hp.host.contains(':'));
                }
            }
        }

        #[test]
        fn a_valid_name_with_any_port_round_trips(
            name in "[a-zA-Z0-9][a-zA-Z0-9._~-]{0,30}",
            port in proptest::option::of(any::<u16>()),
        ) {
            let text = match port {
                Some(p) => format!("{name}:{p}"),
                None => name.clone(),
            };
            prop_assert_eq!(parse_host_port(text.as_bytes()), Ok(HostPort { host: &name, port }));
        }

        #[test]
        fn a_space_or_at_anywhere_in_a_name_is_refused(
            a in "[a-z]{1,8}", b in "[a-z]{0,8}", bad in prop_oneof![Just(' '), Just('@'), Just('\t'), Just('/')],
        ) {
            let text = format!("{a}{bad}{b}");
            prop_assert!(parse_host_port(text.as_bytes()).is_err());
        }
    }
}
