//! `authn`: establishes who is calling, for routes whose config has `auth`. Public routes pass
//! untouched.
//!
//! Credentials are a bearer JWT (the `Authorization` header, or a configured query parameter)
//! or an API key (a configured header), as the route accepts; a route may also require a
//! verified client certificate. Exactly one credential: two `Authorization` headers, a token in
//! both header and query, or a token and an API key together are refused, never "first one
//! wins". A credential that was used is removed before forwarding; identity headers are then
//! set by `mutate_request` from the verified identity only.
//!
//! Every refusal is a 401 with `WWW-Authenticate` (RFC 6750 §3) and a stable reason token;
//! `client-cert-required` is a 403, since no header the client could add would help.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, header};

use crate::config::auth::{AuthConfig, RouteAuth};
use crate::config::{CompiledRoute, Runtime};
use crate::identity::jwt::{self, Failure};
use crate::identity::tls::TlsInfo;
use crate::identity::token_cache::CachedToken;
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::{Identity, StageId};
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Authn;

/// Where a bearer token came from, so it can be removed before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Header,
    Query,
}

enum Credential {
    Bearer(Token, TokenSource),
    ApiKey(HeaderValue),
}

/// A bearer token without copying it: a header value shares the request's buffer, so holding it
/// costs a reference count; only a token from the query is owned.
enum Token {
    /// The Authorization value and where the token starts in it.
    Header(HeaderValue, usize),
    Query(String),
}

impl Token {
    fn as_str(&self) -> &str {
        match self {
            // `bearer` checked the value is visible ASCII, so this cannot fail.
            Token::Header(value, start) => value.to_str().map_or("", |v| &v[*start..]),
            Token::Query(token) => token,
        }
    }
}

pub async fn run(state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    if let Some(identity) = authenticate(
        state,
        &cx.active.config,
        cx.route.route().map(|r| &**r),
        cx.facts.connection.tls.as_deref(),
        &mut cx.parts,
    )
    .await?
    {
        cx.identity = Some(identity);
    }
    Ok(())
}

/// The stage on explicit inputs: the identity the request proves for `route` (`None` for a
/// public route, or an anonymous request to an optional one). The credential that was used is
/// removed from `parts`.
pub async fn authenticate(
    state: &GatewayState,
    runtime: &Runtime,
    route: Option<&CompiledRoute>,
    tls: Option<&TlsInfo>,
    parts: &mut Parts,
) -> Result<Option<Arc<Identity>>, Rejection> {
    let Some(route) = route else {
        return Ok(None);
    };
    let auth = &runtime.auth;
    let Some(rules) = auth.route(route.declaration_index) else {
        return Ok(None);
    };

    if rules.client_cert && !tls.is_some_and(|t| t.client_cert) {
        return Err(Rejection::new(
            STAGE,
            Reason::ClientCertRequired,
            "this route requires a verified client certificate",
        ));
    }

    let credential = credential(parts, auth, rules).map_err(|f| refuse(rules, auth, f))?;
    let identity = match credential {
        None if rules.optional || (!rules.accept_jwt && !rules.accept_api_key) => return Ok(None),
        None => {
            return Err(refuse(
                rules,
                auth,
                Failure::new(
                    Reason::MissingCredentials,
                    "this route requires credentials",
                ),
            ));
        }
        Some(Credential::Bearer(token, source)) => {
            let identity = verify_bearer(state, auth, rules, token.as_str())
                .await
                .map_err(|f| refuse(rules, auth, f))?;
            match source {
                TokenSource::Header => {
                    parts.headers.remove(header::AUTHORIZATION);
                }
                TokenSource::Query => remove_query_param(parts, auth),
            }
            identity
        }
        Some(Credential::ApiKey(value)) => {
            let store = auth.api_keys.as_ref().ok_or_else(|| {
                refuse(
                    rules,
                    auth,
                    Failure::new(Reason::InvalidApiKey, "API keys are not configured"),
                )
            })?;
            let identity = store.lookup(value.as_bytes()).ok_or_else(|| {
                refuse(
                    rules,
                    auth,
                    Failure::new(Reason::InvalidApiKey, "the API key is not valid"),
                )
            })?;
            parts.headers.remove(&store.header);
            identity
        }
    };
    Ok(Some(identity))
}

/// The one credential the request carries among those the route accepts.
fn credential(
    parts: &Parts,
    auth: &AuthConfig,
    rules: &RouteAuth,
) -> Result<Option<Credential>, Failure> {
    let duplicate = |detail: &'static str| Failure::new(Reason::DuplicateCredentials, detail);
    // At most one credential may be found; a second is refused, never "first one wins".
    let mut found: Option<Credential> = None;
    let mut push = |credential: Credential| {
        if found.replace(credential).is_some() {
            return Err(duplicate(
                "the request carries more than one credential; send exactly one",
            ));
        }
        Ok(())
    };
    if rules.accept_jwt {
        let mut headers = parts.headers.get_all(header::AUTHORIZATION).iter();
        if let Some(value) = headers.next() {
            if headers.next().is_some() {
                return Err(duplicate(
                    "the request carries more than one Authorization header",
                ));
            }
            push(Credential::Bearer(bearer(value)?, TokenSource::Header))?;
        }
        if let Some(param) = &auth.token_query_param {
            let mut tokens = query_values(parts.uri.query(), param);
            if let Some(token) = tokens.next() {
                if tokens.next().is_some() {
                    return Err(duplicate(
                        "the query carries the token parameter more than once",
                    ));
                }
                push(Credential::Bearer(
                    Token::Query(token.to_string()),
                    TokenSource::Query,
                ))?;
            }
        }
    }
    if rules.accept_api_key {
        if let Some(store) = &auth.api_keys {
            let mut values = parts.headers.get_all(&store.header).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(duplicate("the request carries more than one API key"));
                }
                push(Credential::ApiKey(value.clone()))?;
            }
        }
    }
    Ok(found)
}

/// `Bearer <token68>`, the scheme compared case-insensitively (RFC 9110 §11.1).
fn bearer(value: &HeaderValue) -> Result<Token, Failure> {
    let text = value.to_str().map_err(|_| {
        Failure::new(
            Reason::MalformedToken,
            "the Authorization header is not text",
        )
    })?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Failure::new(
            Reason::UnsupportedAuthScheme,
            "only the Bearer scheme is accepted",
        ));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Failure::new(
            Reason::MalformedToken,
            "the bearer token is empty",
        ));
    }
    // Its characters are checked in `verify_bearer` on a cache miss: a token the cache holds
    // is byte for byte one that passed that check.
    Ok(Token::Header(value.clone(), text.len() - token.len()))
}

/// RFC 6750 `b64token` characters (token68 plus `.` for JWTs), as a table: a long token is
/// checked at a table lookup per byte.
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

fn query_values<'q>(query: Option<&'q str>, name: &'q str) -> impl Iterator<Item = &'q str> {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Removes the token parameter from the query, so the upstream never sees it.
fn remove_query_param(parts: &mut Parts, auth: &AuthConfig) {
    let (Some(param), Some(query)) = (&auth.token_query_param, parts.uri.query()) else {
        return;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != param)
        .collect();
    let mut path_and_query = parts.uri.path().to_string();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut uri = parts.uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        uri.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
}

/// Verifies a bearer JWT, from the verified-token cache when it can.
pub async fn verify_bearer(
    state: &GatewayState,
    auth: &AuthConfig,
    rules: &RouteAuth,
    token: &str,
) -> Result<Arc<Identity>, Failure> {
    if token.len() > auth.max_token_bytes {
        return Err(Failure::new(
            Reason::TokenTooLarge,
            format!("the token exceeds {} bytes", auth.max_token_bytes),
        ));
    }
    let now = i64::try_from(state.clock.unix_millis() / 1000).unwrap_or(i64::MAX);
    let metrics = &state.sinks.metrics.identity;
    if let Some(hit) = state.identity.tokens.get(token) {
        let current = auth.issuer_named(&hit.issuer.name);
        if current.is_some_and(|issuer| hit.still_valid(issuer, now)) {
            if !rules.accepts_issuer(&hit.issuer.name) {
                return Err(issuer_not_accepted());
            }
            metrics.token_cache_hits.inc();
            return Ok(hit.identity.clone());
        }
        state.identity.tokens.remove(token);
    }
    metrics.token_cache_misses.inc();
    if !token.bytes().all(|b| TOKEN68[usize::from(b)]) {
        return Err(Failure::new(
            Reason::MalformedToken,
            "the bearer token is not a token68",
        ));
    }

    let parsed = jwt::parse(token)?;
    let issuer = match parsed.claims.get("iss") {
        Some(serde_json::Value::String(iss)) => auth.issuer_for(iss).ok_or_else(|| {
            Failure::new(
                Reason::WrongIssuer,
                "the token was not issued by a trusted issuer",
            )
        })?,
        _ => {
            return Err(Failure::new(
                Reason::MissingClaim,
                "the token names no issuer (`iss`)",
            ));
        }
    };
    if !rules.accepts_issuer(&issuer.name) {
        return Err(issuer_not_accepted());
    }
    if !issuer.algorithms.contains(&parsed.alg) {
        return Err(Failure::new(
            Reason::AlgorithmNotAllowed,
            "the token's algorithm is not allowed for its issuer",
        ));
    }
    let jwks = state.identity.jwks_for(issuer);
    let Some(mut keys) = jwks.current() else {
        jwks.kick();
        return Err(Failure::new(
            Reason::KeysUnavailable,
            "the issuer's signing keys are not available yet",
        ));
    };
    let kid = parsed.kid.as_deref();
    let key = match keys.find(kid) {
        Some(key) => key.clone(),
        None if kid.is_none() => {
            return Err(Failure::new(
                Reason::UnknownKid,
                "the token names no key (`kid`) and the issuer publishes several",
            ));
        }
        None => {
            // Whatever the refetch did, look again: keys may have arrived by another path.
            jwks.refetch_for_unknown_kid(keys.generation).await;
            if let Some(fresh) = jwks.current() {
                keys = fresh;
            }
            keys.find(kid).cloned().ok_or_else(|| {
                Failure::new(
                    Reason::UnknownKid,
                    "the token's key (`kid`) is not among the issuer's keys",
                )
            })?
        }
    };
    jwt::verify_signature(&parsed, &key)?;
    let exp = jwt::validate_claims(&parsed.claims, issuer, now)?;
    // Shared with the token cache: a hot token costs a reference count, not a copy of its claims.
    let identity = Arc::new(jwt::identity(&parsed.claims, issuer, kid)?);
    state.identity.tokens.insert(
        CachedToken {
            token: token.into(),
            identity: identity.clone(),
            issuer: issuer.clone(),
            jwks,
            key,
            exp,
        },
        now,
    );
    Ok(identity)
}

fn issuer_not_accepted() -> Failure {
    Failure::new(
        Reason::WrongIssuer,
        "tokens of this issuer are not accepted on this route",
    )
}

/// The 401 for a refused credential, with the challenge for what the route accepts.
fn refuse(rules: &RouteAuth, auth: &AuthConfig, failure: Failure) -> Rejection {
    let challenge = challenge(rules, auth, failure.reason);
    let rejection = Rejection::new(STAGE, failure.reason, failure.detail);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => rejection.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => rejection,
    }
}

fn challenge(rules: &RouteAuth, auth: &AuthConfig, reason: Reason) -> String {
    let error = reason.bearer_error();
    let mut out = if rules.accept_jwt || !rules.accept_api_key {
        String::from("Bearer realm=\"gatehouse\"")
    } else {
        let header = auth
            .api_keys
            .as_ref()
            .map_or("x-api-key", |k| k.header.as_str());
        format!("ApiKey realm=\"gatehouse\", header=\"{header}\"")
    };
    if let Some(error) = error {
        out.push_str(", error=\"");
        out.push_str(error);
        out.push_str("\", error_description=\"");
        out.push_str(reason.as_str());
        out.push('"');
    }
    out
}
