//! The recording line format, version 1: what the gateway writes when `recording:` is on and what
//! `simulator replay` reads (docs/replay.md documents every field). One JSON object per line:
//! the request's [`RequestRecord`] (the outcome), the request as the client sent it with every
//! secret replaced by a [`CredentialRef`], and optionally the response the client got.
//!
//! Lines carry `"v": 1`; a reader refuses a version it does not know instead of guessing.

use serde::{Deserialize, Serialize};

use crate::record::RequestRecord;
use crate::vocab::{Identity, StageId};

/// The version this gateway writes and the newest one a reader understands.
pub const FORMAT_VERSION: u32 = 1;

/// One recorded exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingLine {
    /// The line format's version, [`FORMAT_VERSION`].
    pub v: u32,
    /// The request id (the record's, when there is one); unique within a recording.
    pub id: String,
    /// When the request arrived, microseconds since the Unix epoch.
    pub unix_micros: u64,
    /// Whose traffic this is, when the writer knew better than the replayer can guess (an
    /// importer's client key); a replay otherwise derives it from the credentials or the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// What the gateway decided and did: the same record the access log carries. Absent in a
    /// line `simulator import` converted from HAR or GoReplay, which knows no gateway outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RequestRecord>,
    /// The request as sent, redacted.
    pub request: RecordedRequest,
    /// Who the redacted credentials spoke for, in the order they appeared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialRef>,
    /// The answer the client got, when the recording keeps responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RecordedResponse>,
}

/// The request as the client sent it, before any stage changed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw request-target, query included (`/api/v1/users/7?expand=1`), or the absolute form.
    pub target: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Header fields in arrival order, names lowercased. A redacted field keeps its name and has
    /// the value [`REDACTED`]; its meaning is in the line's `credentials`.
    pub headers: Vec<(String, String)>,
    /// The body's first bytes (up to the recording's `max_body_bytes`), base64; absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The whole body's length as received, even when only a prefix was kept.
    #[serde(default)]
    pub body_len: u64,
    /// True when `body_base64` holds only a prefix of the body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// The connection this request arrived on: the same value for requests that shared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
    /// What the TLS handshake established; absent on plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RecordedTls>,
}

/// The value a redacted header carries in a recording.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// True when the client presented a certificate the listener verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_cert: bool,
}

/// Which kind of credential a redacted field carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JWT bearer token (`Authorization: Bearer`, or a query token).
    Bearer,
    /// An API key in the configured header.
    ApiKey,
    /// A `Cookie` header or a configured redacted header: dropped on replay unless mapped.
    Opaque,
}

/// Where a redacted credential was, so a replay can put a fresh one in the same place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "in", content = "name")]
pub enum CredentialPlace {
    /// A header, by lowercased name.
    Header(String),
    /// A query parameter, by name.
    Query(String),
}

/// Who a redacted credential spoke for — never the secret itself.
///
/// For the credential `authn` accepted (see [`accepted_credential`]) the identity is the record's
/// and is not repeated here: `identity` is absent and a reader takes `record.identity`
/// ([`RecordingLine::restore_accepted_identity`]). Lines from before this rule carry it in both
/// places; they read the same. For any other credential, valid or not, `identity` is its own. For
/// one the gateway refused,
/// it is what the token claimed (read without trusting it) and `invalid` is the refusal's reason
/// token (`token-expired`, `bad-signature`, `unknown-kid`, `wrong-audience`, ...), so a replay can
/// mint the same kind of invalid credential and expect the same refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRef {
    pub kind: CredentialKind,
    #[serde(rename = "at")]
    pub place: CredentialPlace,
    /// The scheme word of an `Authorization` value (`Bearer`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Subject, tenant, scopes, roles, tier, API key id and signing key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The token's `iss`, as claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token's `aud`, as claimed (the first one when it held several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Seconds from the request's arrival to the token's `exp` (negative: already expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<i64>,
    /// The reason the gateway refused this credential; absent when it was accepted or never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

impl RecordingLine {
    /// Puts the record's identity back on the credential `authn` accepted, where the writer
    /// leaves it out (it would repeat the record's); a credential that has its own is kept.
    pub fn restore_accepted_identity(&mut self) {
        let Some(record) = &self.record else { return };
        let Some(index) = accepted_credential(record, &self.credentials) else {
            return;
        };
        if let (Some(identity), credential) = (&record.identity, &mut self.credentials[index])
            && credential.identity.is_none()
        {
            credential.identity = Some((**identity).clone());
        }
    }
}

/// Which of a line's credentials `authn` accepted, the one the record's identity came from:
/// when the request has an identity and did not stop at `authn`, the first credential of the
/// identity's kind — `api_key` when the identity has an API key id, else `bearer`. The writer
/// and every reader use this one rule.
pub fn accepted_credential(record: &RequestRecord, credentials: &[CredentialRef]) -> Option<usize> {
    let identity = record.identity.as_ref()?;
    if record.stopped_at == Some(StageId::Authn) {
        return None;
    }
    let kind = if identity.api_key_id.is_some() {
        CredentialKind::ApiKey
    } else {
        CredentialKind::Bearer
    };
    credentials.iter().position(|c| c.kind == kind)
}

/// The response as the client got it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    /// Header fields, names lowercased; `set-cookie` values are redacted.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// SHA-256 of the whole body, lowercase hex; absent when the body was not hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    #[serde(default)]
    pub body_len: u64,
}
