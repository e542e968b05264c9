//! A capture → its recording line, on the writer thread: every secret replaced by a
//! [`CredentialRef`] that says whose it was, never what it was.
//!
//! Redacted always: `Authorization` and `Proxy-Authorization`, the API-key header (the
//! configured one, and `x-api-key`), `Cookie`, the headers `recording.redact_headers` names, and
//! the query parameters that can carry a token (`access_token`, `jwt`, and the configured
//! `auth.token_query_param`), which are removed from the target. A redacted header keeps its
//! name with the value [`REDACTED`].
//!
//! Whose a credential was: for the one `authn` accepted, the record's identity, which the line
//! does not repeat in the credential ([`accepted_credential`]). For a bearer token it refused or
//! never read, what the token claims — its payload read WITHOUT verifying,
//! through the issuer's claim names when its `iss` is a configured issuer — and, when the request
//! stopped at `authn`, the refusal's reason as `invalid`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderName, HeaderValue, header};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::format::{
    CredentialKind, CredentialPlace, CredentialRef, FORMAT_VERSION, REDACTED, RecordedTls,
    accepted_credential,
};
use super::{Entry, RequestBodyPrefix};
use crate::config::Runtime;
use crate::identity::issuer::ClaimNames;
use crate::record::RequestRecord;
use crate::record::json::Json;
use crate::vocab::{Identity, Reason, StageId};

use crate::record::TOKEN_QUERY_PARAMS;

/// The API-key header redacted even when `auth.api_keys` names another (or none).
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// What the redaction of one line reads: the request's config, its arrival, and the writer's
/// memory of the tokens it has read.
struct Cx<'a> {
    runtime: &'a Runtime,
    arrival_secs: i64,
    claims: &'a mut ClaimsCache,
}

/// A capture's line, written into `json` (which it replaces): redacted here and serialized
/// straight from the capture, the record and the credentials, with no owned copy of the line.
pub(super) fn write(
    entry: Entry,
    claims: &mut ClaimsCache,
    json: &mut Json,
) -> Result<(), serde_json::Error> {
    let Entry {
        record,
        captured,
        body,
        bytes_out,
        completed,
    } = entry;
    let runtime = captured.view.runtime();
    let arrival_secs = i64::try_from(record.unix_millis / 1000).unwrap_or(i64::MAX);
    let mut cx = Cx {
        runtime,
        arrival_secs,
        claims,
    };
    let mut credentials = Credentials::default();

    let api_key_header = runtime.auth.api_keys.as_ref().map(|k| &k.header);
    let redacted = |name: &HeaderName| {
        runtime
            .recording
            .as_ref()
            .is_some_and(|r| r.redact_headers.contains(name))
    };
    let mut headers = Vec::with_capacity(captured.headers.len());
    for (name, value) in &captured.headers {
        let kept = if name == header::AUTHORIZATION {
            let (credential, own) = authorization(value, &mut cx);
            credentials.push(credential, own);
            Cow::Borrowed(REDACTED)
        } else if Some(name) == api_key_header || name.as_str() == DEFAULT_API_KEY_HEADER {
            let (credential, own) = api_key(value, name, runtime);
            credentials.push(credential, own);
            Cow::Borrowed(REDACTED)
        } else if name == header::COOKIE || name == header::PROXY_AUTHORIZATION || redacted(name) {
            let place = CredentialPlace::Header(name.as_str().into());
            credentials.push(opaque(place, None), Own::Nothing);
            Cow::Borrowed(REDACTED)
        } else {
            text(value)
        };
        headers.push((name.as_str(), kept));
    }

    let target = target(&captured.uri, &mut cx, &mut credentials);
    let credentials = attribute(credentials, &record, runtime);

    let tls = captured.tls.as_ref().map(|tls| RecordedTls {
        sni: tls.sni.clone(),
        alpn: captured.alpn.as_deref().map(String::from),
        client_cert: tls.client_cert,
    });
    let response = captured.response.as_ref().map(|tap| {
        let headers: Vec<_> = tap
            .headers
            .iter()
            .map(|(name, value)| {
                let kept = if name == header::SET_COOKIE {
                    Cow::Borrowed(REDACTED)
                } else {
                    text(value)
                };
                (name.as_str(), kept)
            })
            .collect();
        // A body cut short has no hash: it would match nothing the upstream sent.
        let body_sha256 = completed.then(|| hex(&tap.hash.clone().finalize()));
        (tap.status.as_u16(), headers, body_sha256)
    });
    json.write(&Line {
        v: FORMAT_VERSION,
        id: &record.request_id,
        unix_micros: record.unix_millis.saturating_mul(1000),
        record: &record,
        request: Request {
            method: captured.method.as_str(),
            target: &target,
            version: version_text(captured.version),
            headers: &headers,
            body_base64: body_base64(&body),
            body_len: body.len,
            body_truncated: body.len > kept_len(&body),
            connection: captured.connection,
            tls: tls.as_ref(),
        },
        credentials: &credentials,
        response: response
            .as_ref()
            .map(|(status, headers, body_sha256)| Response {
                status: *status,
                headers,
                body_sha256: body_sha256.as_deref(),
                body_len: bytes_out,
            }),
    })
}

/// A [`super::format::RecordingLine`] as the writer holds it, borrowed from the capture: the same fields, the
/// same names, the same JSON (`client` is an importer's and never written here). The tests in
/// `tests/integration/recording.rs` read these lines back as `RecordingLine`s.
#[derive(Serialize)]
struct Line<'a> {
    v: u32,
    id: &'a str,
    unix_micros: u64,
    record: &'a RequestRecord,
    request: Request<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    credentials: &'a [CredentialRef],
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Response<'a>>,
}

/// A borrowed [`super::format::RecordedRequest`].
#[derive(Serialize)]
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    version: &'static str,
    headers: &'a [(&'a str, Cow<'a, str>)],
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    body_len: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    body_truncated: bool,
    connection: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<&'a RecordedTls>,
}

/// A borrowed [`super::format::RecordedResponse`].
#[derive(Serialize)]
struct Response<'a> {
    status: u16,
    headers: &'a [(&'a str, Cow<'a, str>)],
    #[serde(skip_serializing_if = "Option::is_none")]
    body_sha256: Option<&'a str>,
    body_len: u64,
}

/// What each credential says of itself, kept by reference until it is known whether the line
/// needs it: the accepted credential's identity is the record's and is not written twice.
#[derive(Default)]
struct Credentials {
    refs: Vec<CredentialRef>,
    own: Vec<Own>,
}

impl Credentials {
    fn push(&mut self, credential: CredentialRef, own: Own) {
        self.refs.push(credential);
        self.own.push(own);
    }
}

/// A credential's own identity, not yet copied into its [`CredentialRef`].
enum Own {
    Nothing,
    /// What a bearer token claims.
    Claimed(Arc<TokenClaims>),
    /// The identity the API-key store holds for the key.
    Key(Arc<Identity>),
}

/// `HTTP/1.1` and the like, as `Version`'s `Debug` spells them.
fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        // The versions `http` knows are all above; a newer one is spelled as it spells it.
        _ => "HTTP/?",
    }
}

/// A header value as text; bytes that are not visible ASCII are escaped, as the record does for
/// `Host`, so a line can never be split through a header.
fn text(value: &HeaderValue) -> Cow<'_, str> {
    match value.to_str() {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(value.as_bytes().escape_ascii().to_string()),
    }
}

fn opaque(place: CredentialPlace, scheme: Option<String>) -> CredentialRef {
    CredentialRef {
        kind: CredentialKind::Opaque,
        place,
        scheme,
        identity: None,
        issuer: None,
        audience: None,
        expires_in_s: None,
        invalid: None,
    }
}

/// `Bearer <jwt>` → a bearer reference with what the token claims; any other scheme → opaque.
fn authorization(value: &HeaderValue, cx: &mut Cx<'_>) -> (CredentialRef, Own) {
    let place = CredentialPlace::Header(header::AUTHORIZATION.as_str().into());
    let Ok(text) = value.to_str() else {
        return (opaque(place, None), Own::Nothing);
    };
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        let scheme = (!scheme.is_empty()).then(|| scheme.to_string());
        return (opaque(place, scheme), Own::Nothing);
    }
    let (mut credential, own) = bearer(token.trim_start_matches(' '), place, cx);
    credential.scheme = Some(scheme.to_string());
    (credential, own)
}

/// A bearer reference with what the token says of its issuer, audience and expiry; what it
/// says of whose it is comes back beside it.
fn bearer(token: &str, place: CredentialPlace, cx: &mut Cx<'_>) -> (CredentialRef, Own) {
    let mut credential = CredentialRef {
        kind: CredentialKind::Bearer,
        ..opaque(place, None)
    };
    let Some(claimed) = cx.claims.get(token, cx.runtime) else {
        return (credential, Own::Nothing);
    };
    credential.issuer = claimed.issuer.clone();
    credential.audience = claimed.audience.clone();
    credential.expires_in_s = claimed.exp.map(|exp| exp.saturating_sub(cx.arrival_secs));
    (credential, Own::Claimed(claimed))
}

/// What a token claims about itself, read without verifying.
#[derive(Debug)]
struct TokenClaims {
    identity: Option<Identity>,
    issuer: Option<String>,
    audience: Option<String>,
    exp: Option<i64>,
}

fn read_claims(token: &str, runtime: &Runtime) -> Option<TokenClaims> {
    let claimed = read_unverified(token)?;
    let issuer = claimed.claims.get("iss").and_then(Value::as_str);
    let names = issuer
        .and_then(|iss| runtime.auth.issuer_for(iss))
        .map(|i| i.claims.clone())
        .unwrap_or_default();
    Some(TokenClaims {
        identity: claimed_identity(&claimed.claims, &names, claimed.kid),
        issuer: issuer.map(String::from),
        audience: match claimed.claims.get("aud") {
            Some(Value::String(aud)) => Some(aud.clone()),
            Some(Value::Array(auds)) => auds.first().and_then(Value::as_str).map(String::from),
            _ => None,
        },
        exp: claimed
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp.floor() as i64),
    })
}

/// Tokens the writer has read, by token: a hot token (most traffic) is decoded once, not per
/// line. Bounded: emptied when full, and whenever the config that gives claims their names
/// changes.
#[derive(Default)]
pub(super) struct ClaimsCache {
    entries: HashMap<Box<str>, Option<Arc<TokenClaims>>, foldhash::fast::RandomState>,
    /// The hash of the config the entries were read under.
    config: String,
}

const CLAIMS_CACHE_ENTRIES: usize = 1024;

impl ClaimsCache {
    fn get(&mut self, token: &str, runtime: &Runtime) -> Option<Arc<TokenClaims>> {
        if self.config != runtime.hash {
            self.entries.clear();
            self.config.clone_from(&runtime.hash);
        }
        if let Some(hit) = self.entries.get(token) {
            return hit.clone();
        }
        let read = read_claims(token, runtime).map(Arc::new);
        if self.entries.len() >= CLAIMS_CACHE_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(token.into(), read.clone());
        read
    }
}

/// An API key, and beside it the identity the store holds for it when it knows the key (looked
/// up here, off the request task); the record's identity stands for it when `authn` accepted
/// the key.
fn api_key(value: &HeaderValue, name: &HeaderName, runtime: &Runtime) -> (CredentialRef, Own) {
    let known = runtime
        .auth
        .api_keys
        .as_ref()
        .filter(|store| store.header == *name)
        .and_then(|store| store.lookup(value.as_bytes()));
    let credential = CredentialRef {
        kind: CredentialKind::ApiKey,
        ..opaque(CredentialPlace::Header(name.as_str().into()), None)
    };
    (credential, known.map_or(Own::Nothing, Own::Key))
}

/// The request-target without its token parameters, each listed as a query credential.
fn target(uri: &http::Uri, cx: &mut Cx<'_>, credentials: &mut Credentials) -> String {
    let configured = cx.runtime.auth.token_query_param.as_deref();
    let is_token_param =
        |name: &str| TOKEN_QUERY_PARAMS.contains(&name) || Some(name) == configured;
    // The absolute form keeps its scheme and authority; the origin form is path and query.
    let mut out = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_string(),
    };
    let Some(query) = uri.query() else {
        return out;
    };
    let mut first = true;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if is_token_param(name) {
            let (credential, own) = bearer(value, CredentialPlace::Query(name.to_string()), cx);
            credentials.push(credential, own);
            continue;
        }
        out.push(if first { '?' } else { '&' });
        out.push_str(pair);
        first = false;
    }
    out
}

/// Who each credential spoke for, from what the gateway decided: the accepted credential is
/// the record's identity (left out of the credential), every other one its own, and the ones
/// `authn` reads get the refusal's reason when it stopped the request.
fn attribute(
    credentials: Credentials,
    record: &RequestRecord,
    runtime: &Runtime,
) -> Vec<CredentialRef> {
    let Credentials { mut refs, own } = credentials;
    let accepted = accepted_credential(record, &refs);
    for (index, (credential, own)) in refs.iter_mut().zip(own).enumerate() {
        if Some(index) == accepted {
            continue;
        }
        credential.identity = match own {
            Own::Nothing => None,
            Own::Claimed(claimed) => claimed.identity.clone(),
            Own::Key(identity) => Some((*identity).clone()),
        };
    }
    let stopped_at_authn = record.stopped_at == Some(StageId::Authn);
    let reason = match record.reason.as_deref() {
        Some(r) if stopped_at_authn => r,
        _ => return refs,
    };
    // A request with no credential, or without the client certificate, was not refused
    // because of a credential it carried.
    if reason == Reason::MissingCredentials.as_str()
        || reason == Reason::ClientCertRequired.as_str()
    {
        return refs;
    }
    let rules = record
        .route
        .as_deref()
        .and_then(|name| runtime.routes.routes().iter().find(|r| &*r.name == name))
        .and_then(|route| runtime.auth.route(route.declaration_index));
    let (reads_jwt, reads_api_key) =
        rules.map_or((true, true), |r| (r.accept_jwt, r.accept_api_key));
    let api_key_header = runtime.auth.api_keys.as_ref().map(|k| k.header.as_str());
    for credential in &mut refs {
        let read = match (&credential.kind, &credential.place) {
            (CredentialKind::Bearer, _) => reads_jwt,
            (CredentialKind::ApiKey, CredentialPlace::Header(name)) => {
                reads_api_key && Some(name.as_str()) == api_key_header
            }
            // An Authorization header of another scheme is what `unsupported-auth-scheme` refused.
            (CredentialKind::Opaque, CredentialPlace::Header(name)) => {
                reads_jwt && name == header::AUTHORIZATION.as_str()
            }
            _ => false,
        };
        if read {
            credential.invalid = Some(reason.to_string());
            if credential.kind == CredentialKind::ApiKey {
                credential.identity = None;
            }
        }
    }
    refs
}

/// A JWT's header `kid` and its payload, decoded and not verified.
struct Claimed {
    kid: Option<String>,
    claims: Map<String, Value>,
}

fn read_unverified(token: &str) -> Option<Claimed> {
    let mut parts = token.split('.');
    let header = decode_json(parts.next()?)?;
    let claims = decode_json(parts.next()?)?;
    Some(Claimed {
        kid: header.get("kid").and_then(Value::as_str).map(String::from),
        claims,
    })
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// What a token claims, through the issuer's claim names. Unlike `identity::jwt::identity`,
/// which refuses a token whose claims could not travel in a header, this never refuses: it
/// reports what was claimed so a replay can mint the same token, valid or not.
fn claimed_identity(
    claims: &Map<String, Value>,
    names: &ClaimNames,
    kid: Option<String>,
) -> Option<Identity> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(String::from);
    let list = |name: &str| -> Vec<String> {
        match claims.get(name) {
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    };
    Some(Identity {
        subject: text(&names.subject)?,
        tenant: text(&names.tenant),
        scopes: list(&names.scopes),
        roles: list(&names.roles),
        tier: text(&names.tier),
        api_key_id: None,
        signing_key_id: kid,
    })
}

fn kept_len(body: &RequestBodyPrefix) -> u64 {
    body.chunks.iter().map(|c| c.len() as u64).sum()
}

fn body_base64(body: &RequestBodyPrefix) -> Option<String> {
    if body.chunks.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(kept_len(body)).unwrap_or(0));
    for chunk in &body.chunks {
        bytes.extend_from_slice(chunk);
    }
    (!bytes.is_empty()).then(|| STANDARD.encode(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
