//! gRPC's words on the wire (the gRPC over HTTP/2 protocol spec): what makes a request a gRPC
//! call, the status codes and their `grpc-status` / `grpc-message` fields, and `grpc-timeout`
//! read and written. Which code a gateway stop answers with is [`Reason::grpc_code`]
//! (`reason.rs`), next to its HTTP status, so the gateway and the simulator share one mapping.
//!
//! [`Reason::grpc_code`]: super::Reason::grpc_code

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The content type a gateway stop answers a gRPC call with.
pub const GRPC_CONTENT_TYPE: &str = "application/grpc";

/// The status codes of gRPC (`grpc/doc/statuscodes.md`), as `grpc-status` carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl GrpcCode {
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The number `grpc-status` carries.
    pub const fn as_u16(self) -> u16 {
        match self {
            GrpcCode::Ok => 0,
            GrpcCode::Cancelled => 1,
            GrpcCode::Unknown => 2,
            GrpcCode::InvalidArgument => 3,
            GrpcCode::DeadlineExceeded => 4,
            GrpcCode::NotFound => 5,
            GrpcCode::AlreadyExists => 6,
            GrpcCode::PermissionDenied => 7,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::FailedPrecondition => 9,
            GrpcCode::Aborted => 10,
            GrpcCode::OutOfRange => 11,
            GrpcCode::Unimplemented => 12,
            GrpcCode::Internal => 13,
            GrpcCode::Unavailable => 14,
            GrpcCode::DataLoss => 15,
            GrpcCode::Unauthenticated => 16,
        }
    }

    /// The spec's name (`UNAUTHENTICATED`).
    pub const fn name(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    pub fn from_u16(code: u16) -> Option<GrpcCode> {
        GrpcCode::ALL.into_iter().find(|c| c.as_u16() == code)
    }

    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from(self.as_u16())
    }
}

impl std::fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a `content-type` names gRPC: `application/grpc`, alone or followed by `+format`
/// (`+proto`, `+json`) or parameters. gRPC-Web (`application/grpc-web…`) is not gRPC on the
/// wire — its trailers travel inside the body — and is not one.
pub fn is_grpc_content_type(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let prefix = GRPC_CONTENT_TYPE.as_bytes();
    bytes.len() >= prefix.len()
        && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(bytes.get(prefix.len()), None | Some(b'+' | b';' | b' '))
}

/// Whether a request's `TE` fields list `trailers` (RFC 9110 §10.1.4).
pub fn te_lists_trailers(headers: &HeaderMap) -> bool {
    super::fields::all(headers, &http::header::TE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| {
            // A t-codings member may carry a weight: `trailers;q=1` is not valid, but be lenient.
            let name = token.split(';').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("trailers")
        })
}

/// The code a `grpc-status` field carries, when it is a number.
pub fn status_of(headers: &HeaderMap) -> Option<u16> {
    headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a gRPC status says the server failed, as HTTP's 5xx would (the statuses gRPC maps
/// from 500, 503 and 504, plus DATA_LOSS): what the breaker and outlier ejection count as a
/// failure. A caller's error (NOT_FOUND, INVALID_ARGUMENT, ...) is the server working.
pub fn is_server_failure(code: u16) -> bool {
    [
        GrpcCode::Unknown,
        GrpcCode::DeadlineExceeded,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
    ]
    .iter()
    .any(|c| c.as_u16() == code)
}

/// A `grpc-timeout` value that is not `TimeoutValue TimeoutUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("grpc-timeout needs 1 to 8 digits followed by a unit (H, M, S, m, u or n)")]
pub struct TimeoutError;

/// Reads `grpc-timeout`: `TimeoutValue TimeoutUnit`, an integer of at most 8 ASCII digits and
/// one of `H` `M` `S` `m` `u` `n` (hours down to nanoseconds). The spec says "positive"; a zero
/// is read as a deadline already passed (grpc-go does the same) rather than refused.
pub fn parse_timeout(value: &[u8]) -> Result<Duration, TimeoutError> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(TimeoutError);
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(TimeoutError);
    }
    // At most 8 digits: at most 99_999_999, which fits and multiplies by 3600 without overflow.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let timeout = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(TimeoutError),
    };
    Ok(timeout)
}

/// Writes `grpc-timeout` for `timeout` in the finest unit whose value fits in 8 digits, rounded
/// up as grpc-go does (by at most one part in a hundred thousand: a coarser unit is taken only
/// when the finer one's value passes 8 digits). `None` for a zero timeout,
/// which the field cannot say.
pub fn format_timeout(timeout: Duration) -> Option<HeaderValue> {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    if nanos == 0 {
        return None;
    }
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (value, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(value, _)| value <= MAX)
        .unwrap_or((MAX, 'H'));
    let mut text = String::with_capacity(9);
    let _ = write!(text, "{value}{unit}");
    HeaderValue::from_str(&text).ok()
}

/// `grpc-message` as the spec writes it: UTF-8, with `%` and every byte outside space to `~`
/// percent-encoded, so any text is a valid field value.
pub fn encode_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    // Only visible ASCII and spaces remain, which a header value always accepts.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Reads `grpc-message` back: percent-decoded, and (as the spec asks of receivers) a bad escape
/// kept as it is rather than refused.
pub fn decode_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            value[i],
            value.get(i + 1).copied(),
            value.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or_default() * 16 + hex(l).unwrap_or_default();
                out.push(u8::try_from(byte).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_reads_every_unit_and_refuses_the_rest() {
        let ok = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("30S", Duration::from_secs(30)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
            ("00000010m", Duration::from_millis(10)),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_timeout(text.as_bytes()), Ok(expected), "{text}");
        }
        let malformed = [
            "",
            "S",
            "10",
            "10s",
            "10 S",
            " 10S",
            "-1S",
            "1.5S",
            "123456789n",
            "10SS",
            "1x",
            "1µ",
        ];
        for text in malformed {
            assert_eq!(
                parse_timeout(text.as_bytes()),
                Err(TimeoutError),
                "{text:?}"
            );
        }
        assert_eq!(parse_timeout(b"0m"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout(&[0xff, b'S']), Err(TimeoutError));
    }

    #[test]
    fn grpc_timeout_is_written_in_the_finest_unit_that_fits_and_reads_back() {
        let cases = [
            (Duration::from_nanos(1), "1n"),
            (Duration::from_millis(250), "250000u"),
            (Duration::from_millis(100), "100000u"),
            (Duration::from_secs(30), "30000000u"),
            (Duration::from_secs(3600), "3600000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_nanos(1_500), "1500n"),
        ];
        for (timeout, expected) in cases {
            let written = format_timeout(timeout).expect("a positive timeout");
            assert_eq!(written, expected, "{timeout:?}");
        }
        assert_eq!(format_timeout(Duration::ZERO), None);
        // Rounded up, never down: the upstream never gets less time than the gateway gives.
        for nanos in [1u64, 999, 100_000_001, 123_456_789_012, u64::MAX] {
            let timeout = Duration::from_nanos(nanos);
            let written = format_timeout(timeout).expect("positive");
            let read = parse_timeout(written.as_bytes()).expect("reads back");
            assert!(read >= timeout, "{timeout:?} -> {written:?}");
            assert!(
                read.as_nanos() - timeout.as_nanos() <= timeout.as_nanos() / 100_000 + 1,
                "{timeout:?} -> {written:?}"
            );
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded_and_decodes_back() {
        let text = "100% sure: Grüße\r\n\"quoted\" ~";
        let encoded = encode_message(text);
        assert_eq!(
            encoded, "100%25 sure: Gr%C3%BC%C3%9Fe%0D%0A\"quoted\" ~",
            "only % and bytes outside space..~ are escaped"
        );
        assert_eq!(decode_message(encoded.as_bytes()), text);
        assert_eq!(decode_message(b"50%"), "50%");
        assert_eq!(decode_message(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn grpc_content_types_are_told_from_grpc_web_and_others() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(
                is_grpc_content_type(&HeaderValue::from_static(yes)),
                "{yes}"
            );
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "application/gr",
        ] {
            assert!(!is_grpc_content_type(&HeaderValue::from_static(no)), "{no}");
        }
    }

    #[test]
    fn te_trailers_is_found_among_other_codings() {
        let mut headers = HeaderMap::new();
        assert!(!te_lists_trailers(&headers));
        headers.append(http::header::TE, HeaderValue::from_static("gzip"));
        assert!(!te_lists_trailers(&headers));
        headers.append(
            http::header::TE,
            HeaderValue::from_static("deflate, Trailers"),
        );
        assert!(te_lists_trailers(&headers));
    }

    #[test]
    fn codes_round_trip_through_their_numbers() {
        for (i, code) in GrpcCode::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(code.as_u16()), i);
            assert_eq!(GrpcCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(GrpcCode::from_u16(17), None);
    }
}
