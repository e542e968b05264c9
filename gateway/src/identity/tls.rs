//! TLS with rustls: the listener side (certificates picked by SNI, ALPN h2 and http/1.1, TLS 1.2
//! and 1.3 only, client certificates verified against a CA bundle per listener or per host) and
//! the upstream side (server certificates verified against a configured CA, an optional client
//! certificate).
//!
//! A listener's [`ListenerTls`] is built when a config is compiled and read per handshake from
//! the active [`Runtime`](crate::config::Runtime), so a reload that swaps the runtime also swaps
//! the certificates: connections already open keep theirs, the next handshake uses the new ones.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Whether a listener (or one of its hosts) asks for a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for and verified when sent; routes that require one check for it.
    Optional,
    /// The handshake fails without a valid certificate.
    Required,
}

/// The crypto provider every TLS config uses: aws-lc-rs, the library jsonwebtoken uses too.
/// Named explicitly so a second provider compiled in by some dependency can never make rustls
/// pick at run time.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads every certificate of a PEM file (a leaf and its chain, or a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e))?
        .collect();
    let certs = certs.map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("`{}` holds no PEM private key", path.display())
        }
        other => pem_error(path, &other),
    })
}

fn pem_error(path: &Path, e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            // The usual first-hour mistake: trying a TLS example before making its certificates.
            format!(
                "cannot read `{}`: {io} (to try TLS locally, `cargo run -p gateway --example identity_fixtures -- DIR` writes a development CA, server and client certificates into DIR)",
                path.display()
            )
        }
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read `{}`: {io}", path.display()),
        other => format!("`{}` is not valid PEM: {other:?}", path.display()),
    }
}

/// A CA bundle as a root store.
pub fn root_store(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("`{}`: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The platform's trusted roots: what https toward an issuer or upstream trusts when no
/// `ca_file` is configured. Certificates the platform store holds but rustls cannot use are
/// skipped.
pub fn platform_roots() -> RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            roots
        })
        .clone()
}

/// An https-or-http connector over `http` for the pooled hyper-util client. `tls: None` is for
/// plaintext peers; `server_name` replaces the URI's host as the name the certificate must carry
/// (upstream instances are usually addressed by IP).
pub fn https_connector(
    http: hyper_util::client::legacy::connect::HttpConnector,
    tls: Option<ClientConfig>,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.unwrap_or_else(empty_client_config))
        .https_or_http();
    let builder = match server_name {
        Some(name) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    builder.enable_http1().wrap_connector(http)
}

/// A client config that trusts nothing: what a plaintext upstream's connector carries (it never
/// handshakes, but the connector type is the same for every upstream).
pub fn empty_client_config() -> ClientConfig {
    static EMPTY: OnceLock<ClientConfig> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    ClientConfig::builder()
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                })
        })
        .clone()
}

/// One certificate of a listener and the hosts it answers for.
#[derive(Debug)]
pub struct CertEntry {
    /// Lower-cased host names; `*.example.com` matches one label in front of `example.com`.
    pub hosts: Vec<String>,
    pub client_auth: ClientAuth,
    pub config: Arc<ServerConfig>,
}

/// A listener's TLS: its certificates in config order. The first answers handshakes whose SNI
/// names none of them (or that send none).
#[derive(Debug)]
pub struct ListenerTls {
    pub entries: Vec<CertEntry>,
}

impl ListenerTls {
    /// The entry a handshake uses for `sni`.
    pub fn select(&self, sni: Option<&str>) -> usize {
        sni.and_then(|name| self.entry_for_host(name)).unwrap_or(0)
    }

    /// The entry whose hosts name `host` (lower-cased, without port or trailing dot).
    pub fn entry_for_host(&self, host: &str) -> Option<usize> {
        let host = normalize_host(host);
        self.entries
            .iter()
            .position(|e| e.hosts.iter().any(|h| h == &host))
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|e| e.hosts.iter().any(|h| wildcard_matches(h, &host)))
            })
    }
}

/// `Host: API.Example.com.:8443` → `api.example.com`.
pub fn normalize_host(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    without_port
        .trim_start_matches('[')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn wildcard_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => false,
    }
}

/// A listener-side config for one certificate: ALPN h2 then http/1.1, TLS 1.2 and 1.3, the
/// client-certificate policy.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
    client_roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let builder = match (client_auth, client_roots) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err("client certificates need `client_ca_file`".into());
        }
        (mode, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client-side config toward an upstream (or an issuer): verify against `roots`, present
/// `client` when given. No ALPN: the gateway speaks HTTP/1.1 to upstreams.
pub fn client_config(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate and key do not go together: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// What a TLS connection established, for the stages: the SNI it named, the entry that answered,
/// whether a verified client certificate came with it.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// Index into `listener.entries` of the certificate the handshake used.
    pub entry: usize,
    /// A client certificate was presented and verified against the listener's CA bundle.
    pub client_cert: bool,
    /// The verified client certificate first, then the chain the client sent with it (DER):
    /// what RFC 9440 `Client-Cert` and `Client-Cert-Chain` forward. Empty without one.
    pub client_chain: Vec<CertificateDer<'static>>,
    /// The leaf's names, read once here, for `auth.client_cert`'s identity.
    pub client_names: Option<crate::identity::client_cert::CertNames>,
    /// The listener's TLS as it was at the handshake, to find the entry a `Host` names.
    pub listener: Arc<ListenerTls>,
}

/// Why a handshake failed, as a bounded metric label.
#[derive(Debug)]
pub struct HandshakeFailure {
    pub reason: &'static str,
    pub error: String,
}

/// A client connection, plaintext or TLS.
pub enum EdgeStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Accepts a connection: plaintext when the listener has no TLS, else the handshake, bounded
/// by `timeout`, with the certificate picked by SNI.
pub async fn accept(
    stream: TcpStream,
    tls: Option<Arc<ListenerTls>>,
    timeout: Duration,
) -> Result<(EdgeStream, Option<Arc<TlsInfo>>), HandshakeFailure> {
    let Some(listener) = tls else {
        return Ok((EdgeStream::Plain(stream), None));
    };
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await
                .map_err(|e| classify(&e))?;
        let sni = start.client_hello().server_name().map(normalize_host);
        let entry = listener.select(sni.as_deref());
        let config = listener.entries[entry].config.clone();
        let stream = start.into_stream(config).await.map_err(|e| classify(&e))?;
        let client_chain: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        Ok::<_, HandshakeFailure>((stream, sni, entry, client_chain))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(HandshakeFailure {
            reason: "timeout",
            error: "the handshake did not finish in time".into(),
        }),
        Ok(Err(failure)) => Err(failure),
        Ok(Ok((stream, sni, entry, client_chain))) => {
            let client_names = client_chain
                .first()
                .and_then(|leaf| crate::identity::client_cert::CertNames::read(leaf));
            Ok((
                EdgeStream::Tls(Box::new(stream)),
                Some(Arc::new(TlsInfo {
                    sni,
                    entry,
                    client_cert: !client_chain.is_empty(),
                    client_chain,
                    client_names,
                    listener,
                })),
            ))
        }
    }
}

fn classify(error: &io::Error) -> HandshakeFailure {
    let reason = match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => "no-client-cert",
        Some(rustls::Error::InvalidCertificate(_)) => "bad-client-cert",
        Some(rustls::Error::AlertReceived(_)) => "alert-received",
        Some(rustls::Error::NoApplicationProtocol) => "no-common-alpn",
        Some(rustls::Error::InvalidMessage(_)) => "not-tls",
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(rustls::Error::PeerMisbehaved(_)) => "protocol-violation",
        Some(_) => "other",
        None => match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => "closed",
            io::ErrorKind::InvalidData => "not-tls",
            _ => "other",
        },
    };
    HandshakeFailure {
        reason,
        error: error.to_string(),
    }
}

impl AsyncRead for EdgeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EdgeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            EdgeStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EdgeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            EdgeStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EdgeStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            EdgeStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            EdgeStream::Plain(s) => s.is_write_vectored(),
            EdgeStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EdgeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            EdgeStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EdgeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            EdgeStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TLS toward an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub config: ClientConfig,
    pub server_name: Option<ServerName<'static>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_compared_without_port_case_or_trailing_dot() {
        assert_eq!(normalize_host("API.Example.com.:8443"), "api.example.com");
        assert_eq!(normalize_host("[::1]:443"), "::1");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert!(wildcard_matches("*.example.com", "api.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
    }
}
