//! `authz`: checks the identity `authn` established against the matched route's rules —
//! required scopes (all of them), roles (any one of them), the tenant the request names (or the
//! one fixed tenant the route is for). An identity from a JWT, an API key or a client
//! certificate is checked alike. A
//! failed rule is a 403 whose reason says which rule failed, with
//! `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1).

use http::{HeaderValue, header};

use crate::config::auth::TenantRule;
use crate::identity::grants::{MissingGrant, missing_grant};
use crate::stage::context::{RequestContext, StageResult};
use crate::state::GatewayState;
use crate::vocab::StageId;
use crate::vocab::{Reason, Rejection};

const STAGE: StageId = StageId::Authz;

pub async fn run(_state: &GatewayState, cx: &mut RequestContext) -> StageResult {
    let Some(route) = cx.route.route().map(|r| &**r) else {
        return Ok(());
    };
    let Some(rules) = cx.active.config.auth.route(route.declaration_index) else {
        return Ok(());
    };
    // authn let an anonymous request through: the route's auth is optional (which compile
    // allows only without scopes, roles or tenant), or it only asks for a client certificate.
    let Some(identity) = &cx.identity else {
        return Ok(());
    };

    match missing_grant(&rules.scopes, &rules.roles, identity) {
        Some(MissingGrant::Scopes(missing)) => {
            return Err(forbidden(
                Reason::InsufficientScope,
                format!("the token lacks the scope(s): {}", missing.join(" ")),
                Some(&rules.scopes.join(" ")),
            ));
        }
        Some(MissingGrant::Role(roles)) => {
            return Err(forbidden(
                Reason::MissingRole,
                format!("this route requires one of the roles: {}", roles.join(", ")),
                None,
            ));
        }
        None => {}
    }
    if let Some(rule) = &rules.tenant {
        let named = match rule {
            TenantRule::PathSegment { index, .. } => cx
                .route
                .path()
                .and_then(|p| p.strip_prefix('/'))
                .and_then(|p| p.split('/').nth(*index)),
            TenantRule::Header(name) => cx.parts.headers.get(name).and_then(|v| v.to_str().ok()),
            TenantRule::Equals(tenant) => Some(tenant.as_str()),
        };
        if named.is_none() || named != identity.tenant.as_deref() {
            return Err(forbidden(
                Reason::TenantMismatch,
                "the identity belongs to another tenant than the one this request names".into(),
                None,
            ));
        }
    }
    Ok(())
}

fn forbidden(reason: Reason, detail: String, scope: Option<&str>) -> Rejection {
    let mut challenge = format!(
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", error_description=\"{reason}\""
    );
    if let Some(scope) = scope {
        challenge.push_str(", scope=\"");
        challenge.push_str(scope);
        challenge.push('"');
    }
    let rejection = Rejection::new(STAGE, reason, detail);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => rejection.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => rejection,
    }
}
