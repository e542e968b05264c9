//! `authz`: checks the identity `authn` established against the matched route's rules —
//! required scopes (all of them), roles (any one of them), the tenant the request names. A
//! failed rule is a 403 whose reason says which rule failed, with
//! `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1).

use http::{HeaderValue, StatusCode, header};

use crate::config::identity::TenantRule;
use crate::pipeline::{RequestContext, StageId, StageResult};
use crate::rejection::Rejection;

const STAGE: StageId = StageId::Authz;

pub fn run(cx: &mut RequestContext) -> StageResult {
    let Some(route) = cx.route.as_deref() else {
        return Ok(());
    };
    let Some(rules) = cx.runtime.auth.route(route) else {
        return Ok(());
    };
    // authn let an anonymous request through: the route's auth is optional (which compile
    // allows only without scopes, roles or tenant), or it only asks for a client certificate.
    let Some(identity) = &cx.identity else {
        return Ok(());
    };

    let missing: Vec<&str> = rules
        .scopes
        .iter()
        .filter(|s| !identity.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(forbidden(
            "insufficient-scope",
            format!("the token lacks the scope(s): {}", missing.join(" ")),
            Some(&rules.scopes.join(" ")),
        ));
    }
    if !rules.roles.is_empty() && !rules.roles.iter().any(|r| identity.roles.contains(r)) {
        return Err(forbidden(
            "missing-role",
            format!(
                "this route requires one of the roles: {}",
                rules.roles.join(", ")
            ),
            None,
        ));
    }
    if let Some(rule) = &rules.tenant {
        let named = match rule {
            TenantRule::PathSegment { index, .. } => cx
                .normalized_path
                .strip_prefix('/')
                .and_then(|p| p.split('/').nth(*index))
                .map(str::to_owned),
            TenantRule::Header(name) => cx
                .parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if named.is_none() || named.as_deref() != identity.tenant.as_deref() {
            return Err(forbidden(
                "tenant-mismatch",
                "the identity belongs to another tenant than the one this request names".into(),
                None,
            ));
        }
    }
    Ok(())
}

fn forbidden(reason: &'static str, detail: String, scope: Option<&str>) -> Rejection {
    let mut challenge = format!(
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", error_description=\"{reason}\""
    );
    if let Some(scope) = scope {
        challenge.push_str(", scope=\"");
        challenge.push_str(scope);
        challenge.push('"');
    }
    let rejection = Rejection::new(STAGE, StatusCode::FORBIDDEN, reason, detail);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => rejection.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => rejection,
    }
}
