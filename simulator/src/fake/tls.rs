//! Certificates for fake upstreams that speak TLS: one CA per run, generated in memory (rcgen),
//! and a leaf for loopback (plus any name the gateway config expects) per server. The gateway
//! trusts the CA through its upstream's `tls.ca_file`, so the handshake is a real, verified one.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway certificate authority.
pub struct FakeCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl FakeCa {
    pub fn generate() -> Result<FakeCa, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse simulator fake CA");
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(|e| e.to_string())?;
        Ok(FakeCa { issuer })
    }

    /// The CA certificate, PEM, for a `ca_file`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server config with a fresh leaf for `127.0.0.1`, `localhost` and `names`, offering
    /// `alpn` in that order of preference.
    pub fn server_config(
        &self,
        names: &[String],
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        sans.extend(
            names
                .iter()
                .filter(|n| !sans.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let leaf = CertificateParams::new(sans)
            .map_err(|e| e.to_string())?
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(gateway::identity::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(leaf.der().to_vec())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .map_err(|e| e.to_string())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}
