//! JWT (JWS compact form) checks: the header before anything is trusted, the signature with a
//! key from the issuer's JWKS, then the claims against the injected clock, then the identity the
//! claims map to.
//!
//! jsonwebtoken is used for the signature only. Its `decode` reads the system clock for `exp`
//! and `nbf`, and takes the algorithm from the header; here time comes from
//! [`Clock`](crate::clock::Clock) and the algorithm must be allowed by both the issuer's config
//! and the key (the JWK's `alg`, or the algorithms its key type can serve), so a token cannot
//! choose HMAC with a public key as the secret, nor `none`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::failure::Failure;
use super::header_text::{NonAscii, acceptable};
use super::issuer::{IssuerConfig, header_safe};
use crate::identity::jwks::VerifyKey;
use crate::vocab::{Identity, Reason};

/// A token split and decoded, nothing verified yet.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`: what the signature covers.
    pub message: &'t str,
    pub signature: &'t str,
}

/// Header fields that would have the verifier fetch or trust a key the token itself names.
const EMBEDDED_KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

fn malformed(detail: &'static str) -> Failure {
    Failure::new(Reason::MalformedToken, detail)
}

/// Splits and decodes a compact JWS, checking the header: a known asymmetric `alg` (never
/// `none`), no `crit` (no extension is understood), no embedded or remote keys.
pub fn parse(token: &str) -> Result<Parsed<'_>, Failure> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "the token is not a signed JWT (three base64url parts joined by `.`)",
        ));
    };
    let message = &token[..header.len() + 1 + payload.len()];
    let header: Map<String, Value> = decode_json(header)
        .ok_or_else(|| malformed("the token's header is not base64url-encoded JSON"))?;
    let payload: Map<String, Value> = decode_json(payload)
        .ok_or_else(|| malformed("the token's payload is not base64url-encoded JSON"))?;
    if signature.is_empty() {
        return Err(Failure::new(
            Reason::AlgorithmNotAllowed,
            "unsigned tokens are never accepted",
        ));
    }

    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(malformed("the token's header names no algorithm")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(Failure::new(
            Reason::AlgorithmNotAllowed,
            "unsigned tokens (`alg: none`) are never accepted",
        ));
    }
    let alg: Algorithm = alg.parse().map_err(|_| {
        Failure::new(
            Reason::AlgorithmNotAllowed,
            "the token's algorithm is not one the gateway accepts",
        )
    })?;
    if header.contains_key("crit") {
        return Err(Failure::new(
            Reason::UnsupportedCrit,
            "the token marks header extensions as critical (`crit`); none are supported",
        ));
    }
    if let Some(field) = EMBEDDED_KEY_HEADERS
        .iter()
        .find(|f| header.contains_key(**f))
    {
        return Err(Failure::new(
            Reason::EmbeddedKey,
            format!(
                "the token carries its own key or key location (`{field}`); keys come only from the issuer's JWKS"
            ),
        ));
    }
    if header.contains_key("enc") || header.get("b64") == Some(&Value::Bool(false)) {
        return Err(malformed(
            "encrypted or unencoded-payload tokens are not supported",
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("the token's `kid` is not a string")),
    };
    Ok(Parsed {
        alg,
        kid,
        claims: payload,
        message,
        signature,
    })
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Verifies the signature with `key`, which must serve the token's algorithm.
pub fn verify_signature(parsed: &Parsed<'_>, key: &VerifyKey) -> Result<(), Failure> {
    if !key.algorithms.contains(&parsed.alg) {
        return Err(Failure::new(
            Reason::AlgorithmNotAllowed,
            "the token's algorithm does not match its signing key",
        ));
    }
    match jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.message.as_bytes(),
        &key.key,
        parsed.alg,
    ) {
        Ok(true) => Ok(()),
        _ => Err(Failure::new(
            Reason::BadSignature,
            "the token's signature does not verify",
        )),
    }
}

fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        // NumericDate may carry a fraction; whole seconds are what the rules compare.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| Failure::new(Reason::InvalidClaim, format!("`{name}` is not a number"))),
        Some(_) => Err(Failure::new(
            Reason::InvalidClaim,
            format!("`{name}` is not a number"),
        )),
    }
}

/// The registered claims, checked at `now` (Unix seconds): `iss`, `aud`, `exp` (required),
/// `nbf` and `iat` (when present), the lifetime, the required claims. Returns `exp`.
pub fn validate_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: i64,
) -> Result<i64, Failure> {
    let leeway = issuer.leeway_secs;
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == issuer.issuer => {}
        _ => {
            return Err(Failure::new(
                Reason::WrongIssuer,
                "the token was not issued by a trusted issuer",
            ));
        }
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => issuer.audiences.iter().any(|a| a == aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| issuer.audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    if !audience_ok {
        return Err(Failure::new(
            Reason::WrongAudience,
            "the token is not meant for this API (`aud`)",
        ));
    }
    let exp = numeric(claims, "exp")?
        .ok_or_else(|| Failure::new(Reason::MissingClaim, "the token has no expiry (`exp`)"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(Failure::new(Reason::TokenExpired, "the token has expired"));
    }
    if let Some(nbf) = numeric(claims, "nbf")? {
        if now.saturating_add(leeway) < nbf {
            return Err(Failure::new(
                Reason::TokenNotYetValid,
                "the token is not valid yet (`nbf`)",
            ));
        }
    }
    let iat = numeric(claims, "iat")?;
    if let Some(iat) = iat {
        if now.saturating_add(leeway) < iat {
            return Err(Failure::new(
                Reason::TokenNotYetValid,
                "the token claims to be issued in the future (`iat`)",
            ));
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > issuer.max_lifetime_secs {
        return Err(Failure::new(
            Reason::TokenLifetimeTooLong,
            format!(
                "the token is valid for longer than this issuer allows ({} s)",
                issuer.max_lifetime_secs
            ),
        ));
    }
    for name in &issuer.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(Failure::new(
                Reason::MissingClaim,
                format!("the token lacks the required claim `{name}`"),
            ));
        }
    }
    Ok(exp)
}

/// Maps the claims to an identity through the issuer's claim names. Any value that could not
/// travel in a header toward the upstream (CR, LF, NUL or other control characters) refuses the
/// token, and under [`NonAscii::Reject`] so does any value beyond ASCII.
pub fn identity(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    kid: Option<&str>,
    non_ascii: NonAscii,
) -> Result<Identity, Failure> {
    let names = &issuer.claims;
    let invalid = |name: &str| {
        Failure::new(
            Reason::InvalidClaim,
            format!("the claim `{name}` holds a value that cannot be passed on"),
        )
    };
    let text = |name: &str| -> Result<Option<String>, Failure> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && acceptable(s, non_ascii) => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(invalid(name)),
        }
    };
    let list = |name: &str| -> Result<Vec<String>, Failure> {
        let items: Vec<String> = match claims.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(String::from).ok_or_else(|| invalid(name)))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(name)),
        };
        if items
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace) || !acceptable(s, non_ascii))
        {
            return Err(invalid(name));
        }
        Ok(items)
    };
    let subject = text(&names.subject)?.ok_or_else(|| {
        Failure::new(
            Reason::MissingClaim,
            format!("the token names no subject (`{}`)", names.subject),
        )
    })?;
    Ok(Identity {
        subject,
        tenant: text(&names.tenant)?,
        scopes: list(&names.scopes)?,
        roles: list(&names.roles)?,
        tier: text(&names.tier)?,
        api_key_id: None,
        signing_key_id: kid.filter(|k| header_safe(k)).map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::issuer::{ClaimNames, JwksSettings};
    use std::sync::Arc;
    use std::time::Duration;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    fn issuer() -> IssuerConfig {
        IssuerConfig {
            name: Arc::from("main"),
            issuer: "https://issuer.test".into(),
            jwks_url: "http://127.0.0.1:1/jwks".parse().expect("uri"),
            audiences: vec!["api".into()],
            algorithms: vec![Algorithm::RS256],
            leeway_secs: 30,
            max_lifetime_secs: 3600,
            required_claims: vec![],
            claims: ClaimNames::default(),
            jwks: JwksSettings {
                ttl: Duration::from_secs(300),
                refetch_cooldown: Duration::from_secs(30),
                fetch_timeout: Duration::from_secs(5),
                max_stale: Duration::from_secs(3600),
                ca_file: None,
                tls: None,
            },
        }
    }

    fn reason<T: std::fmt::Debug>(r: Result<T, Failure>) -> &'static str {
        r.expect_err("refused").reason.as_str()
    }

    #[test]
    fn headers_that_choose_their_own_key_or_no_signature_are_refused() {
        let claims = r#"{"sub":"a"}"#;
        let cases = [
            (r#"{"alg":"none"}"#, "algorithm-not-allowed"),
            (r#"{"alg":"NONE"}"#, "algorithm-not-allowed"),
            (r#"{"alg":"HS257"}"#, "algorithm-not-allowed"),
            (r#"{"alg":"RS256","crit":["exp"]}"#, "unsupported-crit"),
            (r#"{"alg":"RS256","jwk":{"kty":"oct"}}"#, "embedded-key"),
            (
                r#"{"alg":"RS256","jku":"https://evil/jwks"}"#,
                "embedded-key",
            ),
            (
                r#"{"alg":"RS256","x5u":"https://evil/cert"}"#,
                "embedded-key",
            ),
            (r#"{"alg":"RS256","x5c":["MII"]}"#, "embedded-key"),
            (r#"{"alg":"RS256","kid":7}"#, "malformed-token"),
            (r#"{"kid":"k"}"#, "malformed-token"),
            (r#"[1]"#, "malformed-token"),
        ];
        for (header, want) in cases {
            assert_eq!(reason(parse(&token(header, claims))), want, "{header}");
        }
        assert_eq!(reason(parse("a.b")), "malformed-token");
        assert_eq!(reason(parse("a.b.c.d.e")), "malformed-token");
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64(claims));
        assert_eq!(reason(parse(&unsigned)), "algorithm-not-allowed");
        let es256 = token(r#"{"alg":"ES256","kid":"k1"}"#, claims);
        let ok = parse(&es256).expect("parses");
        assert_eq!(ok.alg, Algorithm::ES256);
        assert_eq!(ok.kid.as_deref(), Some("k1"));
    }

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("json")
    }

    /// The claim rules as a table: claims at now = 1000 → the reason, or ok.
    #[test]
    fn claims_are_checked_against_the_injected_time() {
        let i = issuer();
        let base = r#""iss":"https://issuer.test","aud":"api","sub":"u""#;
        let cases: &[(&str, &str)] = &[
            (r#""exp":2000"#, "ok"),
            (r#""exp":1000"#, "ok"), // within the 30 s leeway
            (r#""exp":970"#, "token-expired"),
            (r#""exp":2000,"nbf":1020"#, "ok"),
            (r#""exp":2000,"nbf":1031"#, "token-not-yet-valid"),
            (r#""exp":2000,"iat":1100"#, "token-not-yet-valid"),
            (r#""exp":9000,"iat":900"#, "token-lifetime-too-long"),
            (r#""exp":4700"#, "token-lifetime-too-long"),
            (r#""exp":"2000""#, "invalid-claim"),
            (r#""exp":2000.9"#, "ok"),
            (r#""nbf":10"#, "missing-claim"),
        ];
        for (extra, want) in cases {
            let c = claims(&format!("{{{base},{extra}}}"));
            let got = match validate_claims(&c, &i, 1000) {
                Ok(_) => "ok",
                Err(f) => f.reason.as_str(),
            };
            assert_eq!(got, *want, "{extra}");
        }
        let wrong_iss = claims(r#"{"iss":"https://other","aud":"api","exp":2000}"#);
        assert_eq!(
            reason(validate_claims(&wrong_iss, &i, 1000)),
            "wrong-issuer"
        );
        for aud in [r#""other""#, r#"["x","y"]"#, "null"] {
            let c = claims(&format!(
                r#"{{"iss":"https://issuer.test","aud":{aud},"exp":2000}}"#
            ));
            assert_eq!(
                reason(validate_claims(&c, &i, 1000)),
                "wrong-audience",
                "{aud}"
            );
        }
        let many = claims(r#"{"iss":"https://issuer.test","aud":["x","api"],"exp":2000}"#);
        assert!(validate_claims(&many, &i, 1000).is_ok());
    }

    #[test]
    fn claims_map_to_an_identity_and_refuse_header_breaking_values() {
        let i = issuer();
        let id = identity(
            &claims(
                r#"{"sub":"u1","tenant":"acme","scope":"read write","roles":["admin"],"tier":"paid"}"#,
            ),
            &i,
            Some("k1"),
            NonAscii::PercentEncode,
        )
        .expect("identity");
        assert_eq!(id.subject, "u1");
        assert_eq!(id.tenant.as_deref(), Some("acme"));
        assert_eq!(id.scopes, ["read", "write"]);
        assert_eq!(id.roles, ["admin"]);
        assert_eq!(id.tier.as_deref(), Some("paid"));
        assert_eq!(id.signing_key_id.as_deref(), Some("k1"));
        assert_eq!(id.api_key_id, None, "a JWT caller has no API key");
        for bad in [
            r#"{"sub":"u1\r\nX-Admin: yes"}"#,
            r#"{"sub":"u1\u0000"}"#,
            r#"{"sub":"u","tenant":"a\nb"}"#,
            r#"{"sub":"u","scope":["a\rb"]}"#,
            r#"{"sub":"u","scope":["a b"]}"#,
            r#"{"sub":"u","roles":[1]}"#,
            r#"{"sub":7}"#,
        ] {
            assert_eq!(
                reason(identity(&claims(bad), &i, None, NonAscii::PercentEncode)),
                "invalid-claim",
                "{bad}"
            );
        }
        let utf8 = claims(r#"{"sub":"José","tenant":"Zürich","scope":"lire:é"}"#);
        let id = identity(&utf8, &i, None, NonAscii::PercentEncode).expect("UTF-8 claims");
        assert_eq!(
            id.subject, "José",
            "the identity keeps the claim; headers encode it"
        );
        assert_eq!(
            reason(identity(&utf8, &i, None, NonAscii::Reject)),
            "invalid-claim"
        );
        assert_eq!(
            reason(identity(
                &claims(r#"{"scope":"a"}"#),
                &i,
                None,
                NonAscii::PercentEncode
            )),
            "missing-claim"
        );
    }
}
