//! TLS configuration: a listener's (`listeners[].tls`: certificates by SNI, client certificates)
//! and an upstream's (`upstreams.<name>.tls`). Apart from `auth` because it is about connections,
//! not callers: it is compiled with the listener or upstream it belongs to, into the types
//! `identity::tls` serves handshakes and connects with.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use serde::Deserialize;

use super::files::resolve;
use super::problem::Problem;
use crate::identity::tls::{self, CertEntry, ClientAuth, ListenerTls, UpstreamTls};

/// `listeners[].tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// The first one answers handshakes whose SNI names no listed host.
    pub certificates: Vec<RawCertificate>,
    /// CA bundle client certificates are verified against.
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// The listener's default; a certificate entry may set its own.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// The certificate and its chain, PEM.
    pub cert_file: String,
    pub key_file: String,
    /// SNI names this certificate answers; `*.example.com` matches one label.
    pub hosts: Vec<String>,
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// `upstreams.<name>.tls`: connect with TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// CA bundle the upstream's certificate is verified against; the platform's roots when
    /// absent.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The name the upstream's certificate must carry (and the SNI sent); by default the
    /// instance's host.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
}

/// Compiles a listener's `tls`: reads its certificates, keys and client CA bundle.
pub fn compile_listener_tls(
    raw: Option<&RawListenerTls>,
    at: &str,
    source: &str,
    problems: &mut Vec<Problem>,
) -> Option<Arc<ListenerTls>> {
    let raw = raw?;
    let before = problems.len();
    if raw.certificates.is_empty() {
        problems.push((
            format!("{at}.certificates"),
            "a TLS listener needs at least one certificate".into(),
        ));
    }
    let client_roots = raw.client_ca_file.as_ref().and_then(|ca| {
        tls::root_store(&resolve(source, ca))
            .map(Arc::new)
            .map_err(|e| problems.push((format!("{at}.client_ca_file"), e)))
            .ok()
    });
    let mut entries = Vec::new();
    let mut seen_hosts: HashMap<String, usize> = HashMap::new();
    for (j, c) in raw.certificates.iter().enumerate() {
        let field = |f: &str| format!("{at}.certificates[{j}].{f}");
        let client_auth = c.client_auth.unwrap_or(raw.client_auth);
        if client_auth != ClientAuth::None && raw.client_ca_file.is_none() {
            problems.push((
                field("client_auth"),
                "client certificates need `client_ca_file` in the listener's `tls`".into(),
            ));
            continue;
        }
        if c.hosts.is_empty() {
            problems.push((
                field("hosts"),
                "list the host names (SNI) this certificate answers".into(),
            ));
        }
        for (k, host) in c.hosts.iter().enumerate() {
            let host = host.to_ascii_lowercase();
            if let Some(first) = seen_hosts.insert(host.clone(), j) {
                problems.push((
                    field(&format!("hosts[{k}]")),
                    format!("`{host}` is already answered by certificates[{first}]"),
                ));
            }
        }
        let chain = tls::load_certs(&resolve(source, &c.cert_file))
            .map_err(|e| problems.push((field("cert_file"), e)))
            .ok();
        let key = tls::load_key(&resolve(source, &c.key_file))
            .map_err(|e| problems.push((field("key_file"), e)))
            .ok();
        if let (Some(chain), Some(key)) = (chain, key) {
            match tls::server_config(chain, key, client_auth, client_roots.clone()) {
                Ok(config) => entries.push(CertEntry {
                    hosts: c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    client_auth,
                    config,
                }),
                Err(e) => problems.push((field("key_file"), e)),
            }
        }
    }
    (problems.len() == before && !entries.is_empty()).then(|| Arc::new(ListenerTls { entries }))
}

/// Compiles an upstream's `tls`.
pub fn compile_upstream_tls(
    raw: Option<&RawUpstreamTls>,
    at: &str,
    source: &str,
    problems: &mut Vec<Problem>,
) -> Option<UpstreamTls> {
    let raw = raw?;
    let before = problems.len();
    let roots = match &raw.ca_file {
        Some(ca) => tls::root_store(&resolve(source, ca))
            .map_err(|e| problems.push((format!("{at}.ca_file"), e)))
            .ok(),
        None => Some(tls::platform_roots()),
    };
    let client = match (&raw.client_cert_file, &raw.client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = tls::load_certs(&resolve(source, cert))
                .map_err(|e| problems.push((format!("{at}.client_cert_file"), e)))
                .ok();
            let key = tls::load_key(&resolve(source, key))
                .map_err(|e| problems.push((format!("{at}.client_key_file"), e)))
                .ok();
            chain.zip(key)
        }
        _ => {
            problems.push((
                format!("{at}.client_cert_file"),
                "give both `client_cert_file` and `client_key_file`, or neither".into(),
            ));
            None
        }
    };
    let server_name = raw.server_name.as_ref().and_then(|name| {
        ServerName::try_from(name.clone())
            .map_err(|_| {
                problems.push((
                    format!("{at}.server_name"),
                    format!("`{name}` is not a DNS name or IP address"),
                ))
            })
            .ok()
    });
    if problems.len() != before {
        return None;
    }
    let config = tls::client_config(roots?, client)
        .map_err(|e| problems.push((format!("{at}.client_key_file"), e)))
        .ok()?;
    Some(UpstreamTls {
        config,
        server_name,
    })
}

#[cfg(test)]
mod tests {

    use crate::config::test_support::{ROUTES, problems};

    /// `gateway check` on listener TLS: each mistake, where it is reported.
    #[test]
    fn listener_tls_mistakes_are_reported_with_their_field() {
        let cases: &[(&str, &str)] = &[
            (
                "listeners: [{ name: l, address: '127.0.0.1:0', tls: { certificates: [{ cert_file: /nonexistent.pem, key_file: /nonexistent.key, hosts: [a] }] } }]",
                "listeners[0].tls.certificates[0].cert_file: cannot read `/nonexistent.pem`",
            ),
            (
                "listeners: [{ name: l, address: '127.0.0.1:0', tls: { client_auth: required, certificates: [{ cert_file: c, key_file: k, hosts: [a] }] } }]",
                "listeners[0].tls.certificates[0].client_auth: client certificates need `client_ca_file`",
            ),
        ];
        for (yaml, want) in cases {
            let got = problems(&format!("{yaml}\n{ROUTES}"));
            assert!(
                got.iter().any(|p| p.starts_with(want)),
                "{yaml}\nwant {want}\ngot {got:#?}"
            );
        }
        // A missing certificate says how to make development ones.
        let got = problems(&format!("{}\n{ROUTES}", cases[0].0));
        assert!(
            got.iter()
                .any(|p| p.contains("cargo run -p gateway --example identity_fixtures")),
            "{got:#?}"
        );
    }
}
