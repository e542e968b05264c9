//! What an identity must hold to use a route: every required scope, and one of the required roles
//! when any are named. The `authz` stage answers with it; the simulator's offline routing of a
//! recording asks the same rule.

use crate::vocab::Identity;

/// The first grant an identity lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingGrant<'r> {
    /// These required scopes, in the route's order.
    Scopes(Vec<&'r str>),
    /// None of these roles (any one would do).
    Role(&'r [String]),
}

/// `None` when `identity` holds every scope and, if roles are named, one of them; scopes are
/// checked first.
pub fn missing_grant<'r>(
    scopes: &'r [String],
    roles: &'r [String],
    identity: &Identity,
) -> Option<MissingGrant<'r>> {
    let missing: Vec<&str> = scopes
        .iter()
        .filter(|s| !identity.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(MissingGrant::Scopes(missing));
    }
    if !roles.is_empty() && !roles.iter().any(|r| identity.roles.contains(r)) {
        return Some(MissingGrant::Role(roles));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(scopes: &[&str], roles: &[&str]) -> Identity {
        Identity {
            subject: "u".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn every_scope_and_any_role() {
        let scopes = vec!["read".to_string(), "write".to_string()];
        let roles = vec!["admin".to_string(), "ops".to_string()];
        assert_eq!(
            missing_grant(&scopes, &roles, &who(&["read"], &["ops"])),
            Some(MissingGrant::Scopes(vec!["write"]))
        );
        assert_eq!(
            missing_grant(&scopes, &roles, &who(&["read", "write"], &[])),
            Some(MissingGrant::Role(&roles))
        );
        assert_eq!(
            missing_grant(&scopes, &roles, &who(&["write", "read"], &["ops"])),
            None
        );
        assert_eq!(missing_grant(&[], &[], &who(&[], &[])), None);
    }
}
