//! `authn`: establishes who is calling, for routes whose config has `auth`; on public routes it
//! only enforces the credential hygiene below.
//!
//! Credentials are a bearer JWT (the `Authorization` header, or a configured query parameter),
//! an API key (a configured header) or, with `auth.client_cert`, a verified client certificate,
//! as the route accepts; a route may also require a client certificate.
//!
//! On every route, public ones included: at most one credential — counted over every place the
//! gateway reads one from (`Authorization`, the API-key headers, the token query parameters),
//! whatever the route accepts — or `duplicate-credentials`, never "first one wins"; and every
//! one of those places is emptied before forwarding, used or not. Identity headers are then set
//! by `mutate_request` from the verified identity only.
//!
//! Every refusal is a 401 with `WWW-Authenticate` (RFC 6750 §3) and a stable reason token;
//! `client-cert-required` is a 403, since no header the client could add would help.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, header};

use crate::config::auth::{AuthConfig, RouteAuth, percent_decoded};
use crate::config::{CompiledRoute, Runtime};
use crate::identity::failure::Failure;
use crate::identity::jwt;
use crate::identity::tls::TlsInfo;
use crate::identity::token_cache::CachedToken;
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::{Identity, StageId};
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Authn;

enum Credential {
    Bearer(Token),
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
    /// The token as sent: its characters are checked only on a cache miss.
    fn as_bytes(&self) -> &[u8] {
        match self {
            Token::Header(value, start) => &value.as_bytes()[*start..],
            Token::Query(token) => token.as_bytes(),
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
/// public route, or an anonymous request to an optional one).
///
/// On every matched route, public ones included, a request carrying more than one credential
/// is refused. Every credential it carries — used, ignored or of a kind the route does not take
/// — is removed later, by `mutate_request` (the fields with the others it removes by name,
/// `Runtime::request_fields_removed`; a token in the query by [`strip_token_params`]):
/// `ratelimit` may key a policy on one (`key: header:x-api-key`), hashed, and runs in between.
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
    let rules = auth.route(route.declaration_index).map(|r| &**r);
    let present = credentials_present(parts, auth);
    if present > 1 {
        return Err(refuse(
            rules,
            auth,
            Failure::new(
                Reason::DuplicateCredentials,
                format!(
                    "the request carries more than one credential ({}); send exactly one",
                    places(parts, auth)
                ),
            ),
        ));
    }
    let identity = match rules {
        None => None,
        Some(rules) => authenticate_for(state, auth, rules, tls, parts).await?,
    };
    Ok(identity)
}

async fn authenticate_for(
    state: &GatewayState,
    auth: &AuthConfig,
    rules: &RouteAuth,
    tls: Option<&TlsInfo>,
    parts: &Parts,
) -> Result<Option<Arc<Identity>>, Rejection> {
    let deny = |f| refuse(Some(rules), auth, f);
    if rules.client_cert && !tls.is_some_and(|t| t.client_cert) {
        return Err(Rejection::new(
            STAGE,
            Reason::ClientCertRequired,
            "this route requires a verified client certificate",
        ));
    }

    let identity = match credential(parts, auth, rules).map_err(deny)? {
        None => {
            let names = tls.and_then(|t| t.client_names.as_ref());
            if let (true, Some(mapping), Some(names)) =
                (rules.accept_client_cert, &auth.client_cert, names)
            {
                let identity = mapping.identity(names, auth.non_ascii).map_err(deny)?;
                return Ok(Some(Arc::new(identity)));
            }
            if rules.optional
                || (!rules.accept_jwt && !rules.accept_api_key && !rules.accept_client_cert)
            {
                return Ok(None);
            }
            return Err(deny(Failure::new(
                Reason::MissingCredentials,
                "this route requires credentials",
            )));
        }
        Some(Credential::Bearer(token)) => verify_bearer(state, auth, rules, token.as_bytes())
            .await
            .map_err(deny)?,
        Some(Credential::ApiKey(value)) => {
            let store = auth.api_keys.as_ref().ok_or_else(|| {
                deny(Failure::new(
                    Reason::InvalidApiKey,
                    "API keys are not configured",
                ))
            })?;
            store.lookup(value.as_bytes()).ok_or_else(|| {
                deny(Failure::new(
                    Reason::InvalidApiKey,
                    "the API key is not valid",
                ))
            })?
        }
    };
    Ok(Some(identity))
}

/// How many credentials a request carries, counted over every place the gateway reads one from,
/// whatever the route accepts.
fn credentials_present(parts: &Parts, auth: &AuthConfig) -> usize {
    // One pass over the request's fields, not a hashed lookup per credential name: there are
    // few of either, and this runs on every request.
    let in_headers: usize = parts
        .headers
        .keys()
        .filter(|name| auth.credential_headers.contains(name))
        .map(|name| parts.headers.get_all(name).iter().count())
        .sum();
    let in_query = parts.uri.query().map_or(0, |query| {
        query
            .split('&')
            .filter(|pair| auth.is_token_query_param(param_name(pair)))
            .count()
    });
    in_headers + in_query
}

/// A query pair's name (the whole pair when it has no `=`).
fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(k, _)| k)
}

/// Whether the query carries the token parameter.
fn token_in_query(parts: &Parts, auth: &AuthConfig) -> bool {
    parts.uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| auth.is_token_query_param(param_name(pair)))
    })
}

/// Where the credentials are (names, never values): the duplicate refusal's detail, built only
/// for that refusal.
fn places(parts: &Parts, auth: &AuthConfig) -> String {
    let mut places = Vec::new();
    for name in &auth.credential_headers {
        for _ in parts.headers.get_all(name) {
            places.push(format!("header {name}"));
        }
    }
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let name = param_name(pair);
        if auth.is_token_query_param(name) {
            places.push(format!("query {}", escape_name(name)));
        }
    }
    places.join(", ")
}

/// A query parameter's name for the refusal's detail: printable ASCII as sent, anything else
/// dropped (it is the client's own text, echoed back).
fn escape_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// Removes every token parameter from the query, so the upstream never sees a credential there,
/// whichever route this is. The credential fields go with the others `mutate_request` removes by
/// name (`Runtime::request_fields_removed`, which holds `auth.credential_headers`).
pub fn strip_token_params(parts: &mut Parts, auth: &AuthConfig) {
    if token_in_query(parts, auth) {
        remove_token_params(parts, auth);
    }
}

/// The one credential the request carries among those the route accepts (at most one is
/// present: more was refused before).
fn credential(
    parts: &Parts,
    auth: &AuthConfig,
    rules: &RouteAuth,
) -> Result<Option<Credential>, Failure> {
    if rules.accept_jwt {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            return bearer(value).map(|t| Some(Credential::Bearer(t)));
        }
        if let Some(param) = &auth.token_query_param {
            if let Some(token) = query_values(parts.uri.query(), param).next() {
                return Ok(Some(Credential::Bearer(Token::Query(token.to_string()))));
            }
        }
    }
    if rules.accept_api_key {
        if let Some(store) = &auth.api_keys {
            if let Some(value) = parts.headers.get(&store.header) {
                return Ok(Some(Credential::ApiKey(value.clone())));
            }
        }
    }
    Ok(None)
}

/// `Bearer <token68>`, the scheme compared case-insensitively (RFC 9110 §11.1).
///
/// Read as bytes: the token's characters are checked in `verify_bearer` on a cache miss (a token
/// the cache holds is byte for byte one that passed that check), so a value that is not text
/// fails there as a malformed token. Checking the whole value as text here as well read a
/// token of hundreds of bytes once more on every request.
fn bearer(value: &HeaderValue) -> Result<Token, Failure> {
    let bytes = value.as_bytes();
    // The scheme is a few bytes: its end found by a plain scan, not a searcher.
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Failure::new(
            Reason::UnsupportedAuthScheme,
            "only the Bearer scheme is accepted",
        ));
    }
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    if spaces == rest.len() {
        return Err(Failure::new(
            Reason::MalformedToken,
            "the bearer token is empty",
        ));
    }
    Ok(Token::Header(
        value.clone(),
        bytes.len() - rest.len() + spaces,
    ))
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

/// The values of the parameter `name` (its name compared percent-decoded).
fn query_values<'q>(query: Option<&'q str>, name: &'q str) -> impl Iterator<Item = &'q str> {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (*percent_decoded(k) == *name.as_bytes()).then_some(v)
    })
}

/// Removes the token parameters from the query, so the upstream never sees one. Every other
/// parameter stays byte for byte, in its order: nothing is decoded or re-encoded.
fn remove_token_params(parts: &mut Parts, auth: &AuthConfig) {
    let Some(query) = parts.uri.query() else {
        return;
    };
    let mut path_and_query = String::with_capacity(parts.uri.path().len() + query.len() + 1);
    path_and_query.push_str(parts.uri.path());
    let mut first = true;
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(k, _)| k);
        if auth.is_token_query_param(name) {
            continue;
        }
        path_and_query.push(if first { '?' } else { '&' });
        path_and_query.push_str(pair);
        first = false;
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
    token: &[u8],
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
    let not_token68 = || Failure::new(Reason::MalformedToken, "the bearer token is not a token68");
    if !token.iter().all(|&b| TOKEN68[usize::from(b)]) {
        return Err(not_token68());
    }
    // token68 is ASCII: this cannot fail.
    let token = std::str::from_utf8(token).map_err(|_| not_token68())?;

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
    let identity = Arc::new(jwt::identity(&parsed.claims, issuer, kid, auth.non_ascii)?);
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

/// The 401 for a refused credential, with the challenge for what the route accepts (a public
/// route's duplicate credentials get the Bearer challenge).
fn refuse(rules: Option<&RouteAuth>, auth: &AuthConfig, failure: Failure) -> Rejection {
    let challenge = challenge(rules, auth, failure.reason);
    let rejection = Rejection::new(STAGE, failure.reason, failure.detail);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => rejection.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => rejection,
    }
}

fn challenge(rules: Option<&RouteAuth>, auth: &AuthConfig, reason: Reason) -> String {
    let error = reason.bearer_error();
    let mut out = if rules.is_none_or(|r| r.accept_jwt || !r.accept_api_key) {
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
