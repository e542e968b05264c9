//! Where `auth:` gets its meaning: issuers held to asymmetric algorithms and real audiences, API
//! keys hashed (and their file read), route rules resolved against the issuers and the route's
//! path. Every problem is reported with its field; none stops the rest.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::raw::{
    RawApiKey, RawApiKeys, RawCertTenant, RawClientCert, RawCredential, RawIssuer, RawRouteAuth,
};
use super::{AuthConfig, DEFAULT_API_KEY_HEADER, RouteAuth, TenantRule};
use crate::config::files::resolve;
use crate::config::problem::Problem;
use crate::config::raw::RawConfig;
use crate::identity::api_key::{ApiKeyStore, digest, parse_hex_digest};
use crate::identity::client_cert::{ClientCertMapping, TenantFrom, UriPattern};
use crate::identity::issuer::{IssuerConfig, JwksSettings, header_safe};
use crate::identity::tls;
use crate::routing::pattern::{RoutePattern, Segment};
use crate::vocab::Identity;

/// Compiles `auth:` and every route's `auth`.
pub fn compile_auth(raw: &RawConfig, source: &str, problems: &mut Vec<Problem>) -> AuthConfig {
    let auth = &raw.auth;
    let mut issuers: Vec<Arc<IssuerConfig>> = Vec::new();
    let mut names = HashSet::new();
    let mut iss_values = HashSet::new();
    for (i, r) in auth.issuers.iter().enumerate() {
        let at = |f: &str| format!("auth.issuers[{i}].{f}");
        if !names.insert(r.name.as_str()) {
            problems.push((at("name"), format!("duplicate issuer name `{}`", r.name)));
        }
        if !iss_values.insert(r.issuer.as_str()) {
            problems.push((
                at("issuer"),
                format!(
                    "two issuers claim `iss` `{}`: a token could not tell which keys to use",
                    r.issuer
                ),
            ));
        }
        if let Some(issuer) = compile_issuer(r, source, &at, problems) {
            issuers.push(Arc::new(issuer));
        }
    }

    if auth.max_token_bytes < 64 {
        problems.push((
            "auth.max_token_bytes".into(),
            "must be at least 64 bytes".into(),
        ));
    }
    if auth.token_cache_entries == 0 {
        problems.push((
            "auth.token_cache_entries".into(),
            "must be at least 1".into(),
        ));
    }
    if let Some(p) = &auth.token_query_param {
        if p.is_empty() || p.contains(['&', '=', '#']) {
            problems.push((
                "auth.token_query_param".into(),
                format!("`{p}` is not a query parameter name"),
            ));
        }
    }

    let mut api_key_tiers = BTreeSet::new();
    let api_keys = auth
        .api_keys
        .as_ref()
        .and_then(|k| compile_api_keys(k, source, &mut api_key_tiers, problems));

    let client_ca_configured = raw
        .listeners
        .iter()
        .any(|l| l.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()));
    let client_cert = auth
        .client_cert
        .as_ref()
        .and_then(|c| compile_client_cert(c, client_ca_configured, problems));
    let mut credential_headers = vec![
        http::header::AUTHORIZATION,
        HeaderName::from_static(DEFAULT_API_KEY_HEADER),
    ];
    if let Some(store) = &api_keys {
        if !credential_headers.contains(&store.header) {
            credential_headers.push(store.header.clone());
        }
    }
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            route.auth.as_ref().and_then(|a| {
                compile_route_auth(
                    i,
                    &route.match_.path,
                    a,
                    &issuers,
                    Available {
                        api_keys: api_keys.is_some(),
                        client_cert_identity: auth.client_cert.is_some(),
                        client_ca: client_ca_configured,
                    },
                    problems,
                )
                .map(Arc::new)
            })
        })
        .collect();

    AuthConfig {
        issuers,
        api_keys,
        api_key_tiers,
        max_token_bytes: auth.max_token_bytes,
        token_query_param: auth.token_query_param.clone(),
        token_cache_entries: auth.token_cache_entries.max(1),
        non_ascii: auth.identity_headers.non_ascii,
        client_cert,
        credential_headers,
        routes,
    }
}

fn compile_client_cert(
    raw: &RawClientCert,
    client_ca_configured: bool,
    problems: &mut Vec<Problem>,
) -> Option<ClientCertMapping> {
    let before = problems.len();
    if !client_ca_configured {
        problems.push((
            "auth.client_cert".into(),
            "maps client certificates to identities, but no listener verifies them: set `client_ca_file` in a listener's `tls`".into(),
        ));
    }
    let tenant = match &raw.tenant {
        None => None,
        Some(RawCertTenant {
            ou: true,
            san_uri_pattern: None,
        }) => Some(TenantFrom::Ou),
        Some(RawCertTenant {
            ou: false,
            san_uri_pattern: Some(pattern),
        }) => match UriPattern::parse(pattern) {
            Ok(p) => Some(TenantFrom::SanUri(p)),
            Err(e) => {
                problems.push(("auth.client_cert.tenant.san_uri_pattern".into(), e));
                None
            }
        },
        Some(_) => {
            problems.push((
                "auth.client_cert.tenant".into(),
                "give exactly one of `ou: true` or `san_uri_pattern`".into(),
            ));
            None
        }
    };
    (problems.len() == before).then_some(ClientCertMapping {
        subject: raw.subject,
        tenant,
    })
}

/// The algorithms an issuer may use: asymmetric only. An HMAC keyed by a public key is the
/// classic algorithm-confusion attack, and `none` is no signature at all.
const ALLOWED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn compile_issuer(
    r: &RawIssuer,
    source: &str,
    at: &dyn Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) -> Option<IssuerConfig> {
    let before = problems.len();
    if r.issuer.is_empty() {
        problems.push((at("issuer"), "the `iss` value must not be empty".into()));
    }
    let jwks_url = match r.jwks_url.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            Some(uri)
        }
        _ => {
            problems.push((
                at("jwks_url"),
                format!("`{}` is not an http:// or https:// URL", r.jwks_url),
            ));
            None
        }
    };
    if r.audiences.is_empty() {
        problems.push((
            at("audiences"),
            "list at least one audience: a token minted for another service must not be accepted here".into(),
        ));
    }
    let mut algorithms = Vec::new();
    for (j, name) in r.algorithms.iter().enumerate() {
        match name.parse::<Algorithm>() {
            Ok(alg) if ALLOWED_ALGORITHMS.contains(&name.as_str()) => algorithms.push(alg),
            _ => problems.push((
                at(&format!("algorithms[{j}]")),
                format!(
                    "`{name}` is not allowed: use one of {} (never `none` or an HMAC)",
                    ALLOWED_ALGORITHMS.join(", ")
                ),
            )),
        }
    }
    if r.algorithms.is_empty() {
        problems.push((at("algorithms"), "list at least one algorithm".into()));
    }
    for (field, d) in [
        ("jwks.ttl", r.jwks.ttl),
        ("jwks.fetch_timeout", r.jwks.fetch_timeout),
        ("jwks.max_stale", r.jwks.max_stale),
        ("max_lifetime", r.max_lifetime),
    ] {
        if d.is_zero() {
            problems.push((at(field), "must be longer than 0s".into()));
        }
    }
    for (field, name) in [
        ("claims.subject", &r.claims.subject),
        ("claims.tenant", &r.claims.tenant),
        ("claims.scopes", &r.claims.scopes),
        ("claims.roles", &r.claims.roles),
        ("claims.tier", &r.claims.tier),
    ] {
        if name.is_empty() {
            problems.push((at(field), "a claim name must not be empty".into()));
        }
    }
    let tls = match &r.jwks.ca_file {
        Some(ca) => tls::root_store(&resolve(source, ca))
            .and_then(|roots| tls::client_config(roots, None))
            .map_err(|e| problems.push((at("jwks.ca_file"), e)))
            .ok(),
        None => None,
    };
    if problems.len() != before {
        return None;
    }
    Some(IssuerConfig {
        name: Arc::from(r.name.as_str()),
        issuer: r.issuer.clone(),
        jwks_url: jwks_url?,
        audiences: r.audiences.clone(),
        algorithms,
        leeway_secs: secs(r.leeway),
        max_lifetime_secs: secs(r.max_lifetime),
        required_claims: r.required_claims.clone(),
        claims: r.claims.clone(),
        jwks: JwksSettings {
            ttl: r.jwks.ttl,
            refetch_cooldown: r.jwks.refetch_cooldown,
            fetch_timeout: r.jwks.fetch_timeout,
            max_stale: r.jwks.max_stale,
            ca_file: r.jwks.ca_file.clone(),
            tls,
        },
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn compile_api_keys(
    raw: &RawApiKeys,
    source: &str,
    tiers: &mut BTreeSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<ApiKeyStore> {
    let before = problems.len();
    let header = match HeaderName::from_bytes(raw.header.to_ascii_lowercase().as_bytes()) {
        Ok(h) if h != http::header::AUTHORIZATION => Some(h),
        _ => {
            problems.push((
                "auth.api_keys.header".into(),
                format!(
                    "`{}` cannot carry API keys: use a header name other than Authorization",
                    raw.header
                ),
            ));
            None
        }
    };
    let mut entries: Vec<(String, RawApiKey)> = raw
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("auth.api_keys.keys[{i}]"), k.clone()))
        .collect();
    if let Some(file) = &raw.file {
        let path = resolve(source, file);
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
            .and_then(|text| {
                serde_yaml_ng::from_str::<Vec<RawApiKey>>(&text).map_err(|e| {
                    format!(
                        "`{}` is not a sequence of keys (`- id: ..., sha256: ...`): {e}",
                        path.display()
                    )
                })
            });
        match parsed {
            Ok(keys) => entries.extend(keys.into_iter().enumerate().map(|(i, k)| {
                (
                    format!("auth.api_keys.file: {}: keys[{i}]", path.display()),
                    k,
                )
            })),
            Err(e) => problems.push(("auth.api_keys.file".into(), e)),
        }
    }
    let mut store = ApiKeyStore::new(header.unwrap_or(HeaderName::from_static("x-api-key")));
    let mut ids = HashSet::new();
    for (at, k) in entries {
        // A problem inside the key file is reported at `file`, naming the file and the entry.
        let field = |f: &str| {
            if at.starts_with("auth.api_keys.file") {
                ("auth.api_keys.file".to_string(), format!("{at}.{f}: "))
            } else {
                (format!("{at}.{f}"), String::new())
            }
        };
        let mut report = |f: &str, message: String| {
            let (path, prefix) = field(f);
            problems.push((path, format!("{prefix}{message}")));
        };
        tiers.extend(k.tier.iter().cloned());
        if !ids.insert(k.id.clone()) {
            report("id", format!("duplicate API key id `{}`", k.id));
        }
        let digest = match (&k.key, &k.sha256) {
            (Some(key), None) if !key.is_empty() => Some(digest(key.as_bytes())),
            (None, Some(hex)) => {
                let d = parse_hex_digest(hex);
                if d.is_none() {
                    report("sha256", "expected 64 hex digits (a SHA-256)".into());
                }
                d
            }
            _ => {
                report(
                    "key",
                    "give exactly one of `key` (clear text) or `sha256` (its digest)".into(),
                );
                None
            }
        };
        let identity = Identity {
            subject: k.subject.clone().unwrap_or_else(|| k.id.clone()),
            tenant: k.tenant.clone(),
            scopes: k.scopes.clone(),
            roles: k.roles.clone(),
            tier: k.tier.clone(),
            api_key_id: Some(k.id.clone()),
            signing_key_id: None,
        };
        let texts = std::iter::once(&identity.subject)
            .chain(identity.tenant.iter())
            .chain(identity.tier.iter())
            .chain(identity.scopes.iter())
            .chain(identity.roles.iter());
        let mut safe = header_safe(&k.id);
        for t in texts {
            safe &= header_safe(t) && !t.is_empty();
        }
        if identity
            .scopes
            .iter()
            .any(|s| s.contains(char::is_whitespace))
        {
            safe = false;
        }
        if !safe {
            report(
                "id",
                "id, subject, tenant, tier, scopes and roles must be non-empty text without control characters (scopes without spaces)".into(),
            );
        }
        if let Some(d) = digest {
            if !store.insert(d, identity) {
                report(
                    "key",
                    format!("key `{}` is the same key as another entry", k.id),
                );
            }
        }
    }
    (problems.len() == before).then_some(store)
}

/// What `auth:` and the listeners make presentable, beyond issuers: what a route's rules are
/// checked against.
#[derive(Clone, Copy)]
struct Available {
    api_keys: bool,
    /// `auth.client_cert` maps certificates to identities.
    client_cert_identity: bool,
    /// Some listener verifies client certificates.
    client_ca: bool,
}

fn compile_route_auth(
    i: usize,
    path: &str,
    r: &RawRouteAuth,
    issuers: &[Arc<IssuerConfig>],
    available: Available,
    problems: &mut Vec<Problem>,
) -> Option<RouteAuth> {
    let Available {
        api_keys,
        client_cert_identity,
        client_ca: client_ca_configured,
    } = available;
    let at = |f: &str| format!("routes[{i}].auth.{f}");
    let before = problems.len();
    let (accept_jwt, accept_api_key, accept_client_cert) = match &r.credentials {
        None => (!issuers.is_empty(), api_keys, client_cert_identity),
        Some(kinds) => {
            let jwt = kinds.contains(&RawCredential::Jwt);
            let key = kinds.contains(&RawCredential::ApiKey);
            let cert = kinds.contains(&RawCredential::ClientCert);
            if cert && !client_cert_identity {
                problems.push((
                    at("credentials"),
                    "accepts `client_cert` but `auth.client_cert` configures no mapping".into(),
                ));
            }
            if jwt && issuers.is_empty() {
                problems.push((
                    at("credentials"),
                    "accepts `jwt` but `auth.issuers` configures none".into(),
                ));
            }
            if key && !api_keys {
                problems.push((
                    at("credentials"),
                    "accepts `api_key` but `auth.api_keys` configures none".into(),
                ));
            }
            (jwt, key, cert)
        }
    };
    if !accept_jwt && !accept_api_key && !accept_client_cert && !r.client_cert {
        problems.push((
            format!("routes[{i}].auth"),
            "the route requires credentials but none can be presented: configure `auth.issuers` or `auth.api_keys`, or require `client_cert`".into(),
        ));
    }
    let mut route_issuers = Vec::new();
    for (j, name) in r.issuers.iter().enumerate() {
        match issuers.iter().find(|i| &*i.name == name) {
            Some(issuer) => route_issuers.push(issuer.name.clone()),
            None => problems.push((
                at(&format!("issuers[{j}]")),
                format!(
                    "unknown issuer `{name}` (known: {})",
                    if issuers.is_empty() {
                        "none".to_string()
                    } else {
                        issuers
                            .iter()
                            .map(|i| &*i.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )),
        }
    }
    for (field, names) in [("scopes", &r.scopes), ("roles", &r.roles)] {
        for (j, name) in names.iter().enumerate() {
            // They are compared with claim values and quoted in WWW-Authenticate.
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !ok {
                problems.push((
                    at(&format!("{field}[{j}]")),
                    format!("`{name}` must be printable ASCII without spaces or quotes"),
                ));
            }
        }
    }
    if r.client_cert && !client_ca_configured {
        problems.push((
            at("client_cert"),
            "requires a client certificate, but no listener verifies them: set `client_ca_file` and `client_auth` in a listener's `tls`".into(),
        ));
    }
    if r.optional
        && (!r.scopes.is_empty() || !r.roles.is_empty() || r.tenant.is_some() || r.client_cert)
    {
        problems.push((
            at("optional"),
            "an optional identity cannot be required to have scopes, roles, a tenant or a client certificate".into(),
        ));
    }
    let tenant = r
        .tenant
        .as_ref()
        .and_then(|t| match (&t.path_param, &t.header, &t.equals) {
            (None, None, Some(tenant)) => {
                if tenant.is_empty() || !header_safe(tenant) {
                    problems.push((
                        at("tenant.equals"),
                        format!("`{tenant}` must be non-empty text without control characters"),
                    ));
                    None
                } else {
                    Some(TenantRule::Equals(tenant.clone()))
                }
            }
            (Some(name), None, None) => {
                let index = RoutePattern::parse(path).ok().and_then(|p| {
                    p.segments()
                        .iter()
                        .position(|s| matches!(s, Segment::Param(n) if **n == **name))
                });
                match index {
                    Some(index) => Some(TenantRule::PathSegment {
                        name: name.clone(),
                        index,
                    }),
                    None => {
                        problems.push((
                            at("tenant.path_param"),
                            format!("the route's path `{path}` has no `{{{name}}}` segment"),
                        ));
                        None
                    }
                }
            }
            (None, Some(header), None) => {
                match HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()) {
                    Ok(h) => Some(TenantRule::Header(h)),
                    Err(_) => {
                        problems.push((
                            at("tenant.header"),
                            format!("`{header}` is not a valid header name"),
                        ));
                        None
                    }
                }
            }
            _ => {
                problems.push((
                    at("tenant"),
                    "give exactly one of `path_param`, `header` or `equals`".into(),
                ));
                None
            }
        });
    if problems.len() != before {
        return None;
    }
    Some(RouteAuth {
        optional: r.optional,
        accept_jwt,
        accept_api_key,
        accept_client_cert,
        issuers: route_issuers,
        scopes: r.scopes.clone(),
        roles: r.roles.clone(),
        tenant,
        client_cert: r.client_cert,
    })
}

#[cfg(test)]
mod tests {

    use crate::config::test_support::{ROUTES, problems};

    /// `gateway check` on `auth:`: each mistake, where it is reported.
    #[test]
    fn auth_mistakes_are_reported_with_their_field() {
        let cases: &[(&str, &str)] = &[
            (
                "auth: { issuers: [{ name: a, issuer: x, jwks_url: ftp://x/jwks, audiences: [api] }] }",
                "auth.issuers[0].jwks_url: `ftp://x/jwks` is not an http:// or https:// URL",
            ),
            (
                "auth: { issuers: [{ name: a, issuer: x, jwks_url: http://x/j, audiences: [api], algorithms: [HS256] }] }",
                "auth.issuers[0].algorithms[0]: `HS256` is not allowed",
            ),
            (
                "auth: { issuers: [{ name: a, issuer: x, jwks_url: http://x/j, audiences: [] }] }",
                "auth.issuers[0].audiences: list at least one audience",
            ),
            (
                "auth: { api_keys: { keys: [{ id: k, key: a, sha256: ab }] } }",
                "auth.api_keys.keys[0].key: give exactly one of `key`",
            ),
            (
                "auth: { api_keys: { header: Authorization, keys: [{ id: k, key: a }] } }",
                "auth.api_keys.header: `Authorization` cannot carry API keys",
            ),
            (
                "auth: { api_keys: { keys: [{ id: k, key: a }, { id: k, key: b }] } }",
                "auth.api_keys.keys[1].id: duplicate API key id `k`",
            ),
        ];
        for (yaml, want) in cases {
            let got = problems(&format!("{yaml}\n{ROUTES}"));
            assert!(
                got.iter().any(|p| p.starts_with(want)),
                "{yaml}\nwant {want}\ngot {got:#?}"
            );
        }
    }

    #[test]
    fn route_auth_mistakes_are_reported_with_their_field() {
        let auth = "auth: { issuers: [{ name: main, issuer: x, jwks_url: http://x/j, audiences: [api] }] }";
        let cases: &[(&str, &str)] = &[
            (
                "{ issuers: [other] }",
                "routes[0].auth.issuers[0]: unknown issuer `other` (known: main)",
            ),
            (
                "{ credentials: [api_key] }",
                "routes[0].auth.credentials: accepts `api_key`",
            ),
            (
                "{ client_cert: true }",
                "routes[0].auth.client_cert: requires a client certificate",
            ),
            (
                "{ optional: true, scopes: [a] }",
                "routes[0].auth.optional: an optional identity",
            ),
            (
                "{ tenant: { path_param: t } }",
                "routes[0].auth.tenant.path_param: the route's path `/x/*` has no `{t}` segment",
            ),
            (
                "{ scopes: ['a b'] }",
                "routes[0].auth.scopes[0]: `a b` must be printable ASCII",
            ),
        ];
        for (rule, want) in cases {
            let yaml = format!(
                "{auth}\nupstreams: {{ s: {{ instances: ['127.0.0.1:9'] }} }}\nroutes:\n  - {{ name: x, match: {{ path: /x/* }}, upstream: s, auth: {rule} }}\n  - {{ name: all, match: {{ path: /* }}, respond: {{ status: 404 }} }}\n"
            );
            let got = problems(&yaml);
            assert!(
                got.iter().any(|p| p.starts_with(want)),
                "{rule}\nwant {want}\ngot {got:#?}"
            );
        }
        let ok = format!(
            "{auth}\nupstreams: {{ s: {{ instances: ['127.0.0.1:9'] }} }}\nroutes:\n  - {{ name: x, match: {{ path: '/t/{{tenant}}/*' }}, upstream: s, auth: {{ scopes: [r], tenant: {{ path_param: tenant }} }} }}\n  - {{ name: all, match: {{ path: /* }}, respond: {{ status: 404 }} }}\n"
        );
        assert_eq!(problems(&ok), Vec::<String>::new());
    }
}
