//! What is minted for a recorded credential: the recipe for the reason the gateway gave (a
//! valid credential, or the same kind of invalid one), whose identity a token speaks for, and
//! the claims of a foreign JWT read — never trusted — for `--resign`.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use gateway::identity::issuer::ClaimNames;
use gateway::record::recording::format::CredentialRef;
use gateway::vocab::Reason;
use serde_json::Value;

use crate::fake::issuer::{Hostile, IdentitySpec};

/// How a recorded credential is minted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// A valid credential for the recorded identity.
    Valid,
    /// A token of this hostile kind.
    Hostile(Hostile),
    /// `Authorization` with the recorded non-Bearer scheme (`Basic` when none was recorded).
    OtherScheme,
    /// An API key no config holds.
    UnknownApiKey,
    /// Nothing: the request is sent without this credential.
    Drop,
}

/// The recipe for a credential the gateway refused with `reason` (absent: accepted). A reason
/// that is not the credential's fault (`insufficient-scope`, `quota-exceeded`, a duplicate, a
/// missing client certificate) gets a valid credential: the request's own shape or identity
/// makes the gateway refuse it again. `keys-unavailable` depends on the issuer, not the token,
/// and an unknown reason cannot be reproduced either: both are sent as a malformed token.
pub fn recipe(reason: Option<&str>) -> Recipe {
    let Some(reason) = reason else {
        return Recipe::Valid;
    };
    let Some(reason) = Reason::ALL.into_iter().find(|r| r.as_str() == reason) else {
        return Recipe::Hostile(Hostile::Malformed);
    };
    match reason {
        Reason::TokenExpired => Recipe::Hostile(Hostile::Expired),
        Reason::TokenNotYetValid => Recipe::Hostile(Hostile::NotYetValid),
        Reason::BadSignature => Recipe::Hostile(Hostile::BadSignature),
        Reason::UnknownKid => Recipe::Hostile(Hostile::UnknownKid),
        Reason::WrongAudience => Recipe::Hostile(Hostile::WrongAudience),
        Reason::WrongIssuer => Recipe::Hostile(Hostile::WrongIssuer),
        Reason::AlgorithmNotAllowed => Recipe::Hostile(Hostile::AlgNone),
        Reason::MalformedToken | Reason::KeysUnavailable => Recipe::Hostile(Hostile::Malformed),
        Reason::MissingClaim => Recipe::Hostile(Hostile::MissingClaim),
        Reason::InvalidClaim => Recipe::Hostile(Hostile::InvalidClaim),
        Reason::TokenLifetimeTooLong => Recipe::Hostile(Hostile::LifetimeTooLong),
        Reason::EmbeddedKey => Recipe::Hostile(Hostile::EmbeddedKey),
        Reason::UnsupportedCrit => Recipe::Hostile(Hostile::UnsupportedCrit),
        Reason::TokenTooLarge => Recipe::Hostile(Hostile::TooLarge),
        Reason::UnsupportedAuthScheme => Recipe::OtherScheme,
        Reason::InvalidApiKey => Recipe::UnknownApiKey,
        Reason::MissingCredentials => Recipe::Drop,
        Reason::DuplicateCredentials
        | Reason::ClientCertRequired
        | Reason::UriTooLong
        | Reason::HeadersTooLarge
        | Reason::MisdirectedRequest
        | Reason::InsufficientScope
        | Reason::MissingRole
        | Reason::TenantMismatch
        | Reason::QuotaExceeded
        | Reason::LimitStoreUnavailable
        | Reason::BadPath
        | Reason::NoRoute
        | Reason::CatchAll
        | Reason::BodyTooLarge
        | Reason::InvalidGrpcTimeout
        | Reason::CircuitOpen
        | Reason::NoHealthyInstance
        | Reason::IdentityNotRepresentable
        | Reason::CorsRejected
        | Reason::UpstreamUnreachable
        | Reason::UpstreamReset
        | Reason::UpstreamTimeout
        | Reason::UpstreamBadUpgrade
        | Reason::MalformedRequest
        | Reason::UnsupportedTransferCoding
        | Reason::MissingHost
        | Reason::InvalidHost
        | Reason::AmbiguousPath
        | Reason::Overloaded
        | Reason::MalformedBody
        | Reason::RequestBodyTimeout
        | Reason::UpstreamBadResponse
        | Reason::UpstreamIdleTimeout
        | Reason::StreamDurationExceeded => Recipe::Valid,
    }
}

/// Who a reference speaks for, as the fake issuer's identity (a refused token may have named no
/// subject: it gets a placeholder, since it is refused before its subject matters).
pub(super) fn who(credential: &CredentialRef) -> IdentitySpec {
    match &credential.identity {
        Some(identity) => IdentitySpec {
            subject: identity.subject.clone(),
            tenant: identity.tenant.clone(),
            scopes: identity.scopes.clone(),
            roles: identity.roles.clone(),
            tier: identity.tier.clone(),
        },
        None => IdentitySpec {
            subject: "replay-anonymous".into(),
            ..IdentitySpec::default()
        },
    }
}

/// Reads a JWT's claims WITHOUT verifying it (`--resign`): subject, tenant, scopes (`scope` as
/// OAuth's space-separated string, or `scopes`, string or array), roles and tier, by `names`.
pub fn decode_claims(token: &str, names: &ClaimNames) -> Result<IdentitySpec, String> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err("not a JWT: expected parts joined by `.`".into());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .map_err(|e| format!("the payload is not base64url: {e}"))?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the payload is not a JSON object: {e}"))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let list = |name: &str| -> Vec<String> {
        match claims.get(name) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let subject = text(&names.subject)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the token names no subject (`{}`)", names.subject))?;
    let mut scopes = list(&names.scopes);
    if scopes.is_empty() {
        scopes = list("scopes");
    }
    Ok(IdentitySpec {
        subject,
        tenant: text(&names.tenant),
        scopes,
        roles: list(&names.roles),
        tier: text(&names.tier),
    })
}
