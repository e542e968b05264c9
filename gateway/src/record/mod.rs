//! The request record — one per request, stopped or passed — and what it feeds: [`sinks`] (the
//! JSON access log, Prometheus [`metrics`] and an in-process broadcast that the simulator, the TUI
//! and the admin record stream subscribe to). The same record is the replay format.

mod duration_histogram;
mod json;
pub mod metrics;
pub mod recording;
pub mod sinks;

pub use sinks::RecordSinks;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::resilience::BreakerState;
use crate::vocab::{Identity, LimitDecision, StageId};

/// Serialized, one per line, it is the access log, the admin record stream and the replay format;
/// it deserializes from those lines too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: String,
    pub trace_id: String,
    /// Wall-clock arrival, milliseconds since the Unix epoch.
    pub unix_millis: u64,
    #[serde(serialize_with = "peer_text::serialize")]
    pub peer: SocketAddr,
    /// As the client sent it; shared, not copied into a string per request.
    #[serde(with = "method_text")]
    pub method: Method,
    /// The request's one authority: the request-target's (absolute form, `:authority` on
    /// HTTP/2), else `Host`; the client's bytes, shared.
    #[serde(default, with = "host_text", skip_serializing_if = "Option::is_none")]
    pub host: Option<HeaderValue>,
    /// The normalized path without the query. Never a metric label.
    pub path: String,
    /// The request-target as the client sent it (see [`raw_target`]): for replay and forensics,
    /// beside the normalized `path`. Empty in records written before the field existed.
    #[serde(default)]
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// The matched route's path pattern, the safe label for metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_template: Option<Arc<str>>,
    pub status: u16,
    /// A gRPC call's `grpc-status`: the upstream's (its trailers', or its headers' when it
    /// answered trailers only), or the code a stop or the call's deadline ended it with; absent
    /// for other requests and for a call that ended without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
    /// The stage that stopped the request; absent when the upstream answered.
    pub stopped_at: Option<StageId>,
    /// Stable reason token of the stop (`no-route`, `upstream-timeout`, ...).
    pub reason: Option<Cow<'static, str>>,
    pub stage_ns: StageTimings,
    /// From arrival to the last byte of the response (or to the moment the client went away).
    pub duration_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Identity>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Arc<str>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "peer_text::serialize_option"
    )]
    pub upstream_instance: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_path: Option<String>,
    /// Tries `forward` made after the first one (upstream `retries`); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The upstream's circuit breaker as `route` found it: `closed`, `half_open` (a probe), or
    /// `open` (the request was refused); absent when the upstream has no breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerState>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// False when the client or upstream went away before the response body finished.
    pub completed: bool,
}

/// `target` (already escaped, as the strict parser keeps a refused head's) with the value of
/// every token query parameter replaced by `<redacted>`.
pub fn redact_query_tokens(target: &str, is_token: impl Fn(&str) -> bool) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, _)) if is_token(name) => {
                out.push_str(name);
                out.push_str("=<redacted>");
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// What a record's `target` holds of a request-target, from the head as hyper parsed it: on
/// HTTP/1.x the target as sent (origin form `/p?q`, absolute form `http://host/p?q`, the authority
/// form of `CONNECT`, `*`); on HTTP/2 `:path` (HTTP/2 has no request line; `:authority` is the
/// record's `host`). Every byte outside visible ASCII is written `%XX` (a log field holds no
/// control byte, space or raw UTF-8 from a client; `%` itself is left alone, so a well-formed
/// target is written unchanged), and the value of a token query parameter (`is_token`: the
/// gateway's `access_token`, `jwt`, `token_query_param`, compared percent-decoded) is replaced by
/// `<redacted>`.
pub fn raw_target(
    uri: &http::Uri,
    version: http::Version,
    is_token: impl Fn(&str) -> bool,
) -> String {
    use crate::routing::normalize::push_escaped_invisible;
    let mut out = String::with_capacity(uri.path_and_query().map_or(1, |pq| pq.as_str().len()));
    let absolute = version < http::Version::HTTP_2;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) if absolute => {
            push_escaped_invisible(&mut out, scheme);
            out.push_str("://");
            push_escaped_invisible(&mut out, authority.as_str());
        }
        // The authority form: no path at all.
        (_, Some(authority)) if uri.path_and_query().is_none() => {
            push_escaped_invisible(&mut out, authority.as_str());
            return out;
        }
        _ => {}
    }
    push_escaped_invisible(&mut out, uri.path());
    let Some(query) = uri.query() else {
        return out;
    };
    if !query
        .split('&')
        .any(|pair| is_token(pair.split_once('=').map_or(pair, |(n, _)| n)))
    {
        out.push('?');
        push_escaped_invisible(&mut out, query);
        return out;
    }
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, _)) if is_token(name) => {
                push_escaped_invisible(&mut out, name);
                out.push_str("=<redacted>");
            }
            _ => push_escaped_invisible(&mut out, pair),
        }
    }
    out
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RequestRecord {
    pub fn status_class(&self) -> &'static str {
        match self.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }
}

/// Nanoseconds spent in each stage that ran; stages that did not run are absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimings {
    pub nanos: [u64; 8],
    /// Bit i set when stage i ran.
    pub ran: u8,
}

impl StageTimings {
    pub fn get(&self, stage: StageId) -> Option<u64> {
        (self.ran & (1 << stage.index()) != 0).then(|| self.nanos[stage.index()])
    }

    pub fn set(&mut self, stage: StageId, nanos: u64) {
        self.nanos[stage.index()] = nanos;
        self.ran |= 1 << stage.index();
    }

    /// Adds to a stage's time: `route` is timed in two parts (the lookup before `authn`, the
    /// stage itself after `ratelimit`).
    pub fn add(&mut self, stage: StageId, nanos: u64) {
        self.nanos[stage.index()] += nanos;
        self.ran |= 1 << stage.index();
    }
}

impl<'de> Deserialize<'de> for StageTimings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<StageId, u64>::deserialize(d)?;
        let mut timings = StageTimings::default();
        for (stage, nanos) in map {
            timings.set(stage, nanos);
        }
        Ok(timings)
    }
}

impl Serialize for StageTimings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.ran.count_ones() as usize))?;
        for stage in StageId::ALL {
            if let Some(ns) = self.get(stage) {
                map.serialize_entry(stage.as_str(), &ns)?;
            }
        }
        map.end()
    }
}

/// A method in a record line is its token (`GET`, or an extension method as sent).
mod method_text {
    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(method.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Method::from_bytes(text.as_bytes())
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not an HTTP method")))
    }
}

/// A peer in a record line is `ip:port` as `SocketAddr` displays it. An IPv4 peer is written
/// digit by digit: through `Display` its formatting cost more than the rest of the record's
/// fields together.
mod peer_text {
    use std::net::SocketAddr;

    use serde::{Serialize, Serializer};

    /// `255.255.255.255:65535` at most.
    struct Text {
        bytes: [u8; 21],
        len: usize,
    }

    impl Text {
        fn push(&mut self, byte: u8) {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
        }

        fn decimal(&mut self, n: u16) {
            let mut digits = [0u8; 5];
            let mut count = 0;
            let mut rest = n;
            loop {
                digits[count] = b'0' + (rest % 10) as u8;
                count += 1;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            for &digit in digits[..count].iter().rev() {
                self.push(digit);
            }
        }
    }

    /// An optional address, as `Option<SocketAddr>` serializes (the field is skipped when
    /// `None`).
    pub fn serialize_option<S: Serializer>(
        peer: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match peer {
            Some(peer) => serialize(peer, s),
            None => s.serialize_none(),
        }
    }

    pub fn serialize<S: Serializer>(peer: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        let SocketAddr::V4(v4) = peer else {
            return peer.serialize(s);
        };
        let mut text = Text {
            bytes: [0; 21],
            len: 0,
        };
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            text.decimal(u16::from(octet));
        }
        text.push(b':');
        text.decimal(v4.port());
        match std::str::from_utf8(&text.bytes[..text.len]) {
            Ok(written) => s.serialize_str(written),
            Err(_) => peer.serialize(s),
        }
    }

    #[cfg(test)]
    mod tests {
        use std::net::SocketAddr;

        #[derive(serde::Serialize)]
        struct Peer(#[serde(serialize_with = "super::serialize")] SocketAddr);

        #[test]
        fn a_peer_reads_as_socket_addr_displays_it() {
            let octets = [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255];
            let ports = [0u16, 7, 10, 99, 100, 8080, 40000, 65535];
            for a in octets {
                for b in octets {
                    for port in ports {
                        let peer = SocketAddr::from(([a, b, 255 - a, b / 2], port));
                        let written = serde_json::to_string(&Peer(peer)).expect("serializes");
                        assert_eq!(written, format!("\"{peer}\""));
                    }
                }
            }
            let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("v6");
            let written = serde_json::to_string(&Peer(v6)).expect("serializes");
            assert_eq!(written, "\"[2001:db8::1]:443\"");
        }

        #[derive(serde::Serialize)]
        struct Instance(#[serde(serialize_with = "super::serialize_option")] Option<SocketAddr>);

        #[test]
        fn an_optional_address_reads_as_the_option_of_it_serializes() {
            for instance in [None, Some("10.0.0.7:8080"), Some("[::1]:9")] {
                let instance = instance.map(|a| a.parse::<SocketAddr>().expect("address"));
                assert_eq!(
                    serde_json::to_string(&Instance(instance)).expect("serializes"),
                    serde_json::to_string(&instance).expect("serializes")
                );
            }
        }
    }
}

/// A host in a record line is text; bytes that are not visible ASCII (which a hostile client
/// can send) are escaped, so a line can never be split or forged through the `Host` header.
mod host_text {
    use http::HeaderValue;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(host: &Option<HeaderValue>, s: S) -> Result<S::Ok, S::Error> {
        match host.as_ref().map(HeaderValue::to_str) {
            Some(Ok(text)) => s.serialize_str(text),
            Some(Err(_)) => {
                let bytes = host.as_ref().map_or(&[][..], HeaderValue::as_bytes);
                s.collect_str(&bytes.escape_ascii())
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HeaderValue>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| {
            HeaderValue::from_str(&t)
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a header value")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use http::{HeaderValue, Uri, Version};

    use super::json::Json;
    use super::recording::format::{FORMAT_VERSION, RecordedRequest, RecordingLine};
    use super::*;
    use crate::vocab::{Identity, LimitDecision};

    #[test]
    fn the_target_is_the_request_target_with_invisible_bytes_escaped_and_tokens_redacted() {
        let h1 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        let cases: &[(&str, Version, Option<&str>, &str)] = &[
            ("/", h1, None, "/"),
            ("/a/%2e%2E/b;c?x=1&y", h1, None, "/a/%2e%2E/b;c?x=1&y"),
            (
                "http://Example.com:8080/p?q",
                h1,
                None,
                "http://Example.com:8080/p?q",
            ),
            ("example.com:443", h1, None, "example.com:443"),
            ("*", h1, None, "*"),
            ("https://example.com/p?q=1", h2, None, "/p?q=1"),
            ("/caf\u{e9}?n=\u{e9}", h1, None, "/caf%C3%A9?n=%C3%A9"),
            (
                "/p?access_token=sekrit&x=1&jwt=e.y.z&tok=t",
                h1,
                Some("tok"),
                "/p?access_token=<redacted>&x=1&jwt=<redacted>&tok=<redacted>",
            ),
            ("/p?jwt", h1, None, "/p?jwt"),
        ];
        for (target, version, param, expected) in cases {
            let uri: Uri = target.parse().expect("uri");
            let is_token =
                |name: &str| ["access_token", "jwt"].contains(&name) || Some(name) == *param;
            assert_eq!(raw_target(&uri, *version, is_token), *expected, "{target}");
        }
    }

    #[test]
    fn a_refused_heads_target_keeps_everything_but_token_values() {
        let is_token = |name: &str| name == "access_token";
        assert_eq!(
            redact_query_tokens("/a%20b?x=1&access_token=s3cret&y", is_token),
            "/a%20b?x=1&access_token=<redacted>&y"
        );
        assert_eq!(redact_query_tokens("/p", is_token), "/p");
    }

    /// Every string a client can put into a record, at once.
    const HOSTILE: &str =
        "a\r\nb\n{\"forged\":true}\u{0}\u{1b}[31m\u{7f}\"\\\\\u{2028}\u{2029}\t\u{e9}";

    fn hostile_record() -> RequestRecord {
        let s = || HOSTILE.to_string();
        RequestRecord {
            request_id: s(),
            trace_id: s(),
            unix_millis: 1,
            peer: "[::1]:9".parse().expect("peer"),
            method: http::Method::from_bytes(b"X-EVIL").expect("method"),
            // A header value holds no CR, LF or NUL, but tabs, quotes, backslashes and obs-text.
            host: Some(HeaderValue::from_bytes(b"h\t\"\\\xff").expect("value")),
            path: s(),
            target: s(),
            route: Some(Arc::from(HOSTILE)),
            route_template: Some(Arc::from(HOSTILE)),
            status: 400,
            grpc_status: None,
            stopped_at: Some(crate::vocab::StageId::Authn),
            reason: Some(Cow::Owned(s())),
            stage_ns: StageTimings::default(),
            duration_ns: 0,
            identity: Some(Arc::new(Identity {
                subject: s(),
                tenant: Some(s()),
                scopes: vec![s(), s()],
                roles: vec![s()],
                tier: Some(s()),
                api_key_id: Some(s()),
                signing_key_id: Some(s()),
            })),
            limit: Some(LimitDecision {
                policy: s().into(),
                subject: s(),
                remaining: 0,
                retry_after_secs: None,
                store_fallback: false,
            }),
            upstream: Some(Arc::from(HOSTILE)),
            upstream_instance: None,
            upstream_path: Some(s()),
            retries: 0,
            breaker: None,
            bytes_in: 0,
            bytes_out: 0,
            completed: false,
        }
    }

    /// A record where every field is written: none absent, none zero where zero is left out.
    fn full_record() -> RequestRecord {
        RequestRecord {
            grpc_status: Some(14),
            upstream_instance: Some("127.0.0.1:9".parse().expect("address")),
            retries: 2,
            breaker: Some(BreakerState::HalfOpen),
            ..hostile_record()
        }
    }

    #[test]
    fn the_record_field_list_names_every_field_in_the_order_a_record_writes_them() {
        use crate::vocab::record_fields::{FieldSet, RECORD_FIELDS};
        let record = full_record();
        let whole: serde_json::Value = serde_json::to_value(&record).expect("value");
        assert_eq!(
            whole.as_object().expect("an object").len(),
            RECORD_FIELDS.len(),
            "every field is listed"
        );
        let mut json = Json::default();
        for name in RECORD_FIELDS {
            let one = FieldSet::of(&[name]).expect("a record field");
            json.write_fields(&record, Some(one)).expect("writes");
            let line: serde_json::Value = serde_json::from_slice(&json.out).expect("json");
            let expected = serde_json::json!({ name: whole[name].clone() });
            assert_eq!(line, expected, "the field at {name}'s position is {name}");
        }
    }

    #[test]
    fn a_field_set_keeps_its_fields_whole_and_absent_fields_keep_their_places() {
        use crate::vocab::record_fields::FieldSet;
        // `upstream_instance`, `retries` and `breaker` are left out of this record; the fields
        // after them are still found at their positions.
        let record = hostile_record();
        let fields = [
            "request_id",
            "stage_ns",
            "upstream_instance",
            "breaker",
            "bytes_out",
        ];
        let set = FieldSet::of(&fields).expect("record fields");
        let mut json = Json::default();
        json.write_fields(&record, Some(set)).expect("writes");
        assert_one_line(&json.out);
        let line: serde_json::Value = serde_json::from_slice(&json.out).expect("json");
        let whole = serde_json::to_value(&record).expect("value");
        let expected: serde_json::Map<String, serde_json::Value> = whole
            .as_object()
            .expect("an object")
            .iter()
            .filter(|(key, _)| fields.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        assert_eq!(
            expected.len(),
            3,
            "two of the five are absent from this record"
        );
        assert_eq!(line, serde_json::Value::Object(expected));
        // The writer is left as it was: the next line is whole.
        json.write(&record).expect("writes");
        assert_eq!(json.out, serde_json::to_vec(&record).expect("serde_json"));
    }

    /// One line: no byte below 0x20 (so no CR, LF or NUL) anywhere in it.
    fn assert_one_line(out: &[u8]) {
        assert!(
            out.iter().all(|&b| b >= 0x20),
            "a raw control byte in {}",
            String::from_utf8_lossy(out)
        );
    }

    #[test]
    fn a_record_with_hostile_bytes_in_every_string_stays_one_line_and_reads_back_the_same() {
        let record = hostile_record();
        let mut json = Json::default();
        json.write(&record).expect("writes");
        assert_one_line(&json.out);
        assert_eq!(json.out, serde_json::to_vec(&record).expect("serde_json"));
        // One JSON object, whose strings are what was put in: nothing forged beside them.
        let value: serde_json::Value = serde_json::from_slice(&json.out).expect("one object");
        assert_eq!(value.get("forged"), None);
        let back: RequestRecord = serde_json::from_slice(&json.out).expect("reads back");
        for (field, got) in [
            ("request_id", back.request_id.as_str()),
            ("trace_id", &back.trace_id),
            ("path", &back.path),
            ("target", &back.target),
            ("route", back.route.as_deref().unwrap_or_default()),
            ("reason", back.reason.as_deref().unwrap_or_default()),
            (
                "upstream_path",
                back.upstream_path.as_deref().unwrap_or_default(),
            ),
        ] {
            assert_eq!(got, HOSTILE, "{field}");
        }
        let identity = back.identity.expect("identity");
        assert_eq!(identity.subject, HOSTILE);
        assert_eq!(identity.signing_key_id.as_deref(), Some(HOSTILE));
        assert_eq!(identity.scopes, [HOSTILE, HOSTILE]);
        assert_eq!(back.limit.expect("limit").subject, HOSTILE);
        // The host's bytes that are not visible ASCII are escaped, never raw, and never a quote
        // that could end the string early.
        assert_eq!(value["host"], "h\\t\\\"\\\\\\xff");
    }

    #[test]
    fn a_recording_line_with_a_hostile_user_agent_stays_one_line() {
        let line = RecordingLine {
            v: FORMAT_VERSION,
            id: HOSTILE.into(),
            unix_micros: 0,
            client: Some(HOSTILE.into()),
            record: Some(hostile_record()),
            request: RecordedRequest {
                method: "GET".into(),
                target: HOSTILE.into(),
                version: "HTTP/1.1".into(),
                headers: vec![("user-agent".into(), HOSTILE.into())],
                ..RecordedRequest::default()
            },
            credentials: Vec::new(),
            response: None,
        };
        let mut json = Json::default();
        json.write(&line).expect("writes");
        assert_one_line(&json.out);
        let back: RecordingLine = serde_json::from_slice(&json.out).expect("reads back");
        assert_eq!(back.request.headers[0].1, HOSTILE);
        assert_eq!(back.request.target, HOSTILE);
    }

    #[test]
    fn a_record_written_before_the_target_existed_still_reads() {
        let mut value = serde_json::to_value(hostile_record()).expect("value");
        value.as_object_mut().expect("object").remove("target");
        let back: RequestRecord = serde_json::from_value(value).expect("reads");
        assert_eq!(back.target, "");
    }
}
