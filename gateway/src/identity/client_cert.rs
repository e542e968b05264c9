//! A verified client certificate as an identity: the names it carries (read once per
//! connection, at the handshake) and `auth.client_cert`'s mapping of them to a subject and a
//! tenant, which authz and rate limits then use as they use a JWT's.
//!
//! rustls has verified the chain before any of this runs; x509-parser only reads names.

use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::failure::Failure;
use super::header_text::{self, NonAscii};
use crate::vocab::{Identity, Reason};

/// The names of a verified leaf certificate, in the order it lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    pub common_names: Vec<String>,
    pub organizational_units: Vec<String>,
    pub san_uris: Vec<String>,
    pub san_dns: Vec<String>,
}

impl CertNames {
    /// Reads the names of a DER certificate; `None` when x509-parser cannot read it (rustls
    /// accepted it, so that is a certificate without usable names, never a panic).
    pub fn read(der: &[u8]) -> Option<CertNames> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let text = |attrs: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            attrs
                .filter_map(|a| a.as_str().ok().map(String::from))
                .collect::<Vec<_>>()
        };
        let subject = cert.subject();
        let mut names = CertNames {
            common_names: text(&mut subject.iter_common_name()),
            organizational_units: text(&mut subject.iter_organizational_unit()),
            ..CertNames::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => names.san_uris.push((*uri).to_string()),
                    GeneralName::DNSName(dns) => names.san_dns.push((*dns).to_string()),
                    _ => {}
                }
            }
        }
        Some(names)
    }
}

/// `auth.client_cert.subject`: which name is the identity's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectFrom {
    /// The subject's first Common Name.
    Cn,
    /// The first URI subject alternative name (a SPIFFE ID, say).
    SanUri,
    /// The first DNS subject alternative name.
    SanDns,
}

/// Where the tenant comes from, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFrom {
    /// The subject's first Organizational Unit.
    Ou,
    /// The `{tenant}` of the first URI SAN the pattern matches.
    SanUri(UriPattern),
}

/// `prefix{tenant}suffix`, and with a trailing `*` anything after the suffix. `{tenant}` is one
/// or more characters without `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriPattern {
    prefix: String,
    suffix: String,
    open_ended: bool,
}

impl UriPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<UriPattern, String> {
        let (body, open_ended) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let Some((prefix, suffix)) = body.split_once("{tenant}") else {
            return Err(format!("`{text}` has no `{{tenant}}`"));
        };
        if prefix.is_empty() || suffix.contains("{tenant}") || body.contains('*') {
            return Err(format!(
                "`{text}` must be a literal prefix, one `{{tenant}}`, a literal rest and at most a trailing `*`"
            ));
        }
        Ok(UriPattern {
            prefix: prefix.into(),
            suffix: suffix.into(),
            open_ended,
        })
    }

    /// The tenant `uri` names, if it matches.
    pub fn tenant<'u>(&self, uri: &'u str) -> Option<&'u str> {
        let rest = uri.strip_prefix(self.prefix.as_str())?;
        let end = rest.find('/').unwrap_or(rest.len());
        let (tenant, after) = rest.split_at(end);
        let after = if self.suffix.is_empty() {
            after
        } else {
            after.strip_prefix(self.suffix.as_str())?
        };
        (!tenant.is_empty() && (self.open_ended || after.is_empty())).then_some(tenant)
    }
}

/// The compiled `auth.client_cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertMapping {
    pub subject: SubjectFrom,
    pub tenant: Option<TenantFrom>,
}

impl ClientCertMapping {
    /// The identity a verified certificate proves. A certificate without the configured subject
    /// name is `missing-claim`; a name that could not travel in a header is `invalid-claim`.
    pub fn identity(&self, names: &CertNames, non_ascii: NonAscii) -> Result<Identity, Failure> {
        let (subject, what) = match self.subject {
            SubjectFrom::Cn => (names.common_names.first(), "Common Name"),
            SubjectFrom::SanUri => (names.san_uris.first(), "URI subject alternative name"),
            SubjectFrom::SanDns => (names.san_dns.first(), "DNS subject alternative name"),
        };
        let subject = subject.filter(|s| !s.is_empty()).ok_or_else(|| {
            Failure::new(
                Reason::MissingClaim,
                format!("the client certificate has no {what}"),
            )
        })?;
        let tenant = match &self.tenant {
            None => None,
            Some(TenantFrom::Ou) => names.organizational_units.first().map(String::as_str),
            Some(TenantFrom::SanUri(pattern)) => {
                names.san_uris.iter().find_map(|u| pattern.tenant(u))
            }
        };
        for value in std::iter::once(subject.as_str()).chain(tenant) {
            if !header_text::acceptable(value, non_ascii) {
                return Err(Failure::new(
                    Reason::InvalidClaim,
                    "a name in the client certificate cannot be passed on",
                ));
            }
        }
        Ok(Identity {
            subject: subject.clone(),
            tenant: tenant.filter(|t| !t.is_empty()).map(String::from),
            ..Identity::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_pattern_finds_the_tenant_segment_or_nothing() {
        let p = UriPattern::parse("spiffe://acme.test/tenants/{tenant}/*").expect("pattern");
        assert_eq!(
            p.tenant("spiffe://acme.test/tenants/blue/svc/a"),
            Some("blue")
        );
        assert_eq!(p.tenant("spiffe://acme.test/tenants/blue/"), Some("blue"));
        assert_eq!(p.tenant("spiffe://acme.test/tenants/blue"), None);
        assert_eq!(p.tenant("spiffe://other.test/tenants/blue/x"), None);
        assert_eq!(p.tenant("spiffe://acme.test/tenants//x"), None);
        let exact = UriPattern::parse("spiffe://acme.test/{tenant}").expect("pattern");
        assert_eq!(exact.tenant("spiffe://acme.test/blue"), Some("blue"));
        assert_eq!(exact.tenant("spiffe://acme.test/blue/x"), None);
        for bad in [
            "spiffe://x/",
            "{tenant}/x",
            "a/{tenant}/{tenant}",
            "a/*/{tenant}",
        ] {
            assert!(UriPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
