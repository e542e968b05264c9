//! A capture → its recording line, on the writer thread: every secret replaced by a
//! [`CredentialRef`] that says whose it was, never what it was.
//!
//! Redacted always: `Authorization` and `Proxy-Authorization`, the API-key header (the
//! configured one, and `x-api-key`), `Cookie`, the headers `recording.redact_headers` names, and
//! the query parameters that can carry a token (`access_token`, `jwt`, and the configured
//! `auth.token_query_param`), which are removed from the target. A redacted header keeps its
//! name with the value [`REDACTED`].
//!
//! Whose a credential was: for the one `authn` accepted, the record's identity. For a bearer
//! token it refused or never read, what the token claims — its payload read WITHOUT verifying,
//! through the issuer's claim names when its `iss` is a configured issuer — and, when the request
//! stopped at `authn`, the refusal's reason as `invalid`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderName, HeaderValue, header};
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::format::{
    CredentialKind, CredentialPlace, CredentialRef, FORMAT_VERSION, REDACTED, RecordedRequest,
    RecordedResponse, RecordedTls, RecordingLine,
};
use super::{Entry, RequestBodyPrefix};
use crate::config::Runtime;
use crate::identity::issuer::ClaimNames;
use crate::record::RequestRecord;
use crate::vocab::{Identity, Reason, StageId};

/// Query parameters that carry a bearer token by convention, beyond the configured one.
const TOKEN_QUERY_PARAMS: [&str; 2] = ["access_token", "jwt"];

/// The API-key header redacted even when `auth.api_keys` names another (or none).
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// What the redaction of one line reads: the request's config, its arrival, and the writer's
/// memory of the tokens it has read.
struct Cx<'a> {
    runtime: &'a Runtime,
    arrival_secs: i64,
    claims: &'a mut ClaimsCache,
}

pub(super) fn line(entry: Entry, claims: &mut ClaimsCache) -> RecordingLine {
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
    let mut credentials = Vec::new();

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
            credentials.push(authorization(value, &mut cx));
            REDACTED.to_string()
        } else if Some(name) == api_key_header || name.as_str() == DEFAULT_API_KEY_HEADER {
            credentials.push(api_key(value, name, runtime));
            REDACTED.to_string()
        } else if name == header::COOKIE || name == header::PROXY_AUTHORIZATION || redacted(name) {
            credentials.push(opaque(CredentialPlace::Header(name.as_str().into()), None));
            REDACTED.to_string()
        } else {
            text(value)
        };
        headers.push((name.as_str().to_string(), kept));
    }

    let target = target(&captured.uri, &mut cx, &mut credentials);
    attribute(&mut credentials, &record, runtime);

    let request = RecordedRequest {
        method: captured.method.as_str().to_string(),
        target,
        version: format!("{:?}", captured.version),
        headers,
        body_base64: body_base64(&body),
        body_len: body.len,
        body_truncated: body.len > kept_len(&body),
        connection: Some(captured.connection),
        tls: captured.tls.as_ref().map(|tls| RecordedTls {
            sni: tls.sni.clone(),
            alpn: captured.alpn.as_deref().map(String::from),
            client_cert: tls.client_cert,
        }),
    };
    let response = captured.response.map(|tap| RecordedResponse {
        status: tap.status.as_u16(),
        headers: tap
            .headers
            .iter()
            .map(|(name, value)| {
                let kept = if name == header::SET_COOKIE {
                    REDACTED.to_string()
                } else {
                    text(value)
                };
                (name.as_str().to_string(), kept)
            })
            .collect(),
        // A body cut short has no hash: it would match nothing the upstream sent.
        body_sha256: completed.then(|| hex(&tap.hash.finalize())),
        body_len: bytes_out,
    });
    RecordingLine {
        v: FORMAT_VERSION,
        id: record.request_id.clone(),
        unix_micros: record.unix_millis.saturating_mul(1000),
        client: None,
        record: Some(record),
        request,
        credentials,
        response,
    }
}

/// A header value as text; bytes that are not visible ASCII are escaped, as the record does for
/// `Host`, so a line can never be split through a header.
fn text(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(text) => text.to_string(),
        Err(_) => value.as_bytes().escape_ascii().to_string(),
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
fn authorization(value: &HeaderValue, cx: &mut Cx<'_>) -> CredentialRef {
    let place = CredentialPlace::Header(header::AUTHORIZATION.as_str().into());
    let Ok(text) = value.to_str() else {
        return opaque(place, None);
    };
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return opaque(place, (!scheme.is_empty()).then(|| scheme.to_string()));
    }
    let mut credential = bearer(token.trim_start_matches(' '), place, cx);
    credential.scheme = Some(scheme.to_string());
    credential
}

fn bearer(token: &str, place: CredentialPlace, cx: &mut Cx<'_>) -> CredentialRef {
    let mut credential = CredentialRef {
        kind: CredentialKind::Bearer,
        ..opaque(place, None)
    };
    if let Some(claimed) = cx.claims.get(token, cx.runtime) {
        credential.identity = claimed.identity.clone();
        credential.issuer = claimed.issuer.clone();
        credential.audience = claimed.audience.clone();
        credential.expires_in_s = claimed.exp.map(|exp| exp.saturating_sub(cx.arrival_secs));
    }
    credential
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

/// An API key: the key's id when the store knows it (looked up here, off the request task);
/// the record's identity replaces it when `authn` accepted the key.
fn api_key(value: &HeaderValue, name: &HeaderName, runtime: &Runtime) -> CredentialRef {
    let known = runtime
        .auth
        .api_keys
        .as_ref()
        .filter(|store| store.header == *name)
        .and_then(|store| store.lookup(value.as_bytes()));
    CredentialRef {
        kind: CredentialKind::ApiKey,
        identity: known.map(|identity| (*identity).clone()),
        ..opaque(CredentialPlace::Header(name.as_str().into()), None)
    }
}

/// The request-target without its token parameters, each listed as a query credential.
fn target(uri: &http::Uri, cx: &mut Cx<'_>, credentials: &mut Vec<CredentialRef>) -> String {
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
            credentials.push(bearer(value, CredentialPlace::Query(name.to_string()), cx));
            continue;
        }
        out.push(if first { '?' } else { '&' });
        out.push_str(pair);
        first = false;
    }
    out
}

/// Who each credential spoke for, from what the gateway decided: the accepted credential gets
/// the record's identity, and the ones `authn` reads get the refusal's reason when it stopped
/// the request.
fn attribute(credentials: &mut [CredentialRef], record: &RequestRecord, runtime: &Runtime) {
    let stopped_at_authn = record.stopped_at == Some(StageId::Authn);
    if let (Some(identity), false) = (&record.identity, stopped_at_authn) {
        let kind = if identity.api_key_id.is_some() {
            CredentialKind::ApiKey
        } else {
            CredentialKind::Bearer
        };
        if let Some(used) = credentials.iter_mut().find(|c| c.kind == kind) {
            used.identity = Some((**identity).clone());
        }
        return;
    }
    let reason = match record.reason.as_deref() {
        Some(r) if stopped_at_authn => r,
        _ => return,
    };
    // A request with no credential, or without the client certificate, was not refused
    // because of a credential it carried.
    if reason == Reason::MissingCredentials.as_str()
        || reason == Reason::ClientCertRequired.as_str()
    {
        return;
    }
    let rules = record
        .route
        .as_deref()
        .and_then(|name| runtime.routes.routes().iter().find(|r| &*r.name == name))
        .and_then(|route| runtime.auth.route(route.declaration_index));
    let (reads_jwt, reads_api_key) =
        rules.map_or((true, true), |r| (r.accept_jwt, r.accept_api_key));
    let api_key_header = runtime.auth.api_keys.as_ref().map(|k| k.header.as_str());
    for credential in credentials.iter_mut() {
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
