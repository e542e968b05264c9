//! Identity test harness: real keys and certificates made with rcgen, tokens signed with
//! jsonwebtoken, a real JWKS server on loopback that rotates keys and can go down, hang or serve
//! garbage, and a TLS client (tokio-rustls) that can present a client certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use super::util::{Reply, eventually};

// ---------------------------------------------------------------------------------------------
// Signing keys and tokens.

/// A signing key of the fake issuer: its private half signs, its public JWK is published.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: Arc<EncodingKey>,
    pub jwk: Value,
    /// PKCS#8 PEM of the private key (for algorithm-confusion tests that misuse the public key).
    pub private_pem: String,
}

fn rsa_pair(slot: usize) -> KeyPair {
    // RSA generation takes a while; each test process makes a handful and shares them.
    static PAIRS: OnceLock<Vec<String>> = OnceLock::new();
    let pems = PAIRS.get_or_init(|| {
        (0..4)
            .map(|_| {
                KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                    .expect("RSA key")
                    .serialize_pem()
            })
            .collect()
    });
    KeyPair::from_pem(&pems[slot % pems.len()]).expect("RSA key from PEM")
}

impl SigningKey {
    /// An RS256 key; `slot` picks one of a few shared RSA keys (0..4).
    pub fn rsa(kid: &str, slot: usize) -> SigningKey {
        Self::from_pair(kid, Algorithm::RS256, &rsa_pair(slot))
    }

    pub fn es256(kid: &str) -> SigningKey {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        Self::from_pair(kid, Algorithm::ES256, &pair)
    }

    pub fn ed25519(kid: &str) -> SigningKey {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        Self::from_pair(kid, Algorithm::EdDSA, &pair)
    }

    fn from_pair(kid: &str, alg: Algorithm, pair: &KeyPair) -> SigningKey {
        let pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let jwk = if alg == Algorithm::EdDSA {
            // rcgen writes PKCS#8 v2, which jsonwebtoken's JWK helper does not take apart.
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": base64url(pair.public_key_raw())})
        } else {
            let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK");
            jwk.common.key_id = Some(kid.to_string());
            serde_json::to_value(jwk).expect("JWK JSON")
        };
        SigningKey {
            kid: kid.to_string(),
            alg,
            encoding: Arc::new(encoding),
            jwk,
            private_pem: pem,
        }
    }

    /// Signs `claims` with this key and its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Signs with a header of the caller's making (embedded keys, crit, another kid).
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
    }
}

pub const ISS: &str = "https://issuer.test";
pub const AUD: &str = "gatehouse-api";

/// Seconds since the Unix epoch, as the gateway's system clock sees them.
pub fn now() -> i64 {
    #[allow(clippy::disallowed_methods)] // the test mints tokens against the real clock
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Claims a valid token carries; tests override single fields.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": sub,
        "tenant": "acme",
        "scope": "users:read users:write",
        "roles": ["member"],
        "tier": "paid",
        "iat": now - 10,
        "exp": now + 600,
    })
}

pub fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// The fake issuer: a JWKS server on loopback.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerMode {
    /// Serves the current keys.
    Up,
    /// Answers 503.
    Down,
    /// Accepts and never answers.
    Hang,
    /// Answers 200 with a body that is not a JWKS.
    Garbage,
}

struct IssuerState {
    keys: Vec<Value>,
    mode: IssuerMode,
}

/// A JWKS endpoint whose keys and behaviour the test changes while the gateway runs; it
/// counts the fetches it receives.
#[derive(Clone)]
pub struct FakeIssuer {
    pub address: SocketAddr,
    state: Arc<Mutex<IssuerState>>,
    fetches: Arc<AtomicUsize>,
}

impl FakeIssuer {
    pub async fn start(keys: &[&SigningKey]) -> FakeIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        Self::serve(listener, keys, IssuerMode::Up)
    }

    /// An issuer on `listener`, in `mode` from the first request on.
    pub fn serve(listener: TcpListener, keys: &[&SigningKey], mode: IssuerMode) -> FakeIssuer {
        let address = listener.local_addr().expect("issuer address");
        let issuer = FakeIssuer {
            address,
            state: Arc::new(Mutex::new(IssuerState {
                keys: keys.iter().map(|k| k.jwk.clone()).collect(),
                mode,
            })),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let served = issuer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let served = served.clone();
                        async move { served.answer(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        issuer
    }

    async fn answer(
        &self,
        _req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let (mode, body) = {
            let state = self.state.lock().expect("issuer state");
            (state.mode, json!({ "keys": state.keys }).to_string())
        };
        let (status, body) = match mode {
            IssuerMode::Up => (StatusCode::OK, body),
            IssuerMode::Down => (StatusCode::SERVICE_UNAVAILABLE, "down".to_string()),
            IssuerMode::Garbage => (StatusCode::OK, "<html>not a key set</html>".to_string()),
            IssuerMode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                (StatusCode::OK, body)
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.address)
    }

    pub fn publish(&self, keys: &[&SigningKey]) {
        self.state.lock().expect("issuer state").keys =
            keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn set_mode(&self, mode: IssuerMode) {
        self.state.lock().expect("issuer state").mode = mode;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the issuer has been asked for its keys `n` times.
    pub async fn wait_for_fetches(&self, n: usize) {
        eventually(
            &format!("the issuer is asked for its keys {n} times"),
            Duration::from_secs(5),
            async || match self.fetches() {
                seen if seen >= n => Ok(()),
                seen => Err(format!("{seen} fetches")),
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway config the identity tests run.

/// A config with one issuer at `jwks_url`, API keys, and routes for each rule under test.
/// `extra_auth` is appended to the `auth:` section (indented two spaces), `jwks` to the issuer's
/// `jwks:` block.
pub fn auth_config(upstream: SocketAddr, jwks_url: &str, jwks: &str, extra_auth: &str) -> String {
    let key_digest = sha256_hex(b"partner-secret-key");
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
auth:
  issuers:
    - name: main
      issuer: "{ISS}"
      jwks_url: "{jwks_url}"
      audiences: [{AUD}]
      algorithms: [RS256, ES256, EdDSA]
      leeway: 5s
      max_lifetime: 2h
      jwks:
        {jwks}
  api_keys:
    header: X-Api-Key
    keys:
      - {{ id: partner-1, sha256: "{key_digest}", subject: partner-app, tenant: acme, tier: free, scopes: [users:read] }}
{extra_auth}
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - name: users
    match: {{ path: /users/* }}
    upstream: svc
    auth: {{ scopes: [users:read] }}
  - name: jwt-only
    match: {{ path: /jwt/* }}
    upstream: svc
    auth: {{ credentials: [jwt] }}
  - name: admin
    match: {{ path: /admin/* }}
    upstream: svc
    auth: {{ credentials: [jwt], roles: [admin] }}
  - name: tenant
    match: {{ path: "/tenants/{{tenant}}/*" }}
    upstream: svc
    auth: {{ tenant: {{ path_param: tenant }} }}
  - name: optional
    match: {{ path: /maybe/* }}
    upstream: svc
    auth: {{ optional: true }}
  - name: public
    match: {{ path: /public/* }}
    upstream: svc
  - name: catch-all
    match: {{ path: /* }}
    respond: {{ status: 404 }}
"#
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts a 401 or 403 stop: status, stage and reason in the problem body and the record,
/// and a `WWW-Authenticate` challenge.
pub fn assert_refused(reply: &Reply, status: u16, stage: &str, reason: &str) {
    assert_eq!(reply.status, status, "{reason}: {:?}", reply.body);
    let problem = reply.problem();
    assert_eq!(problem["stage"], stage, "{reason}");
    assert_eq!(
        problem["type"],
        format!("urn:gatehouse:problem:{reason}"),
        "{problem}"
    );
    if status == 401 || (status == 403 && stage == "authz") {
        let challenge = reply
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{reason}: a challenge"));
        assert!(
            challenge.starts_with("Bearer") || challenge.starts_with("ApiKey"),
            "{challenge}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PKI for TLS tests.

/// A CA, a server certificate for `localhost`, `api.localhost` and `payments.localhost`, and
/// a client certificate, written as PEM files into a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// A trusted client certificate naming a workload of tenant `acme`: CN `svc-orders`,
    /// OU `acme`, SAN URI `spiffe://acme.test/tenants/acme/orders`, SAN DNS `orders.acme.test`.
    pub tenant_cert_pem: String,
    pub tenant_key_pem: String,
    /// A client certificate from a CA the gateway does not trust.
    pub rogue_cert_pem: String,
    pub rogue_key_pem: String,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = new_ca("Gatehouse Test CA");
        let (server_cert, server_key) = leaf(
            &ca,
            &[
                "localhost",
                "api.localhost",
                "secure.localhost",
                "127.0.0.1",
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (payments_cert, payments_key) = leaf(
            &ca,
            &["payments.localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &ca,
            &["client.localhost"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (tenant_cert, tenant_key) = {
            let mut params = CertificateParams::new(vec!["orders.acme.test".to_string()])
                .expect("tenant client params");
            params
                .distinguished_name
                .push(DnType::CommonName, "svc-orders");
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, "acme");
            params.subject_alt_names.push(rcgen::SanType::URI(
                "spiffe://acme.test/tenants/acme/orders"
                    .try_into()
                    .expect("URI SAN"),
            ));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("tenant client key");
            let cert = params.signed_by(&key, &ca).expect("tenant client");
            (cert.pem(), key.serialize_pem())
        };
        let rogue_ca = new_ca("Rogue CA");
        let (rogue_cert, rogue_key) = leaf(
            &rogue_ca,
            &["client.localhost"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        };
        write("ca.pem", &ca.pem());
        write("server.pem", &server_cert);
        write("server.key", &server_key);
        write("payments.pem", &payments_cert);
        write("payments.key", &payments_key);
        write("client.pem", &client_cert);
        write("client.key", &client_key);
        let (upstream_cert, upstream_key) = leaf(
            &ca,
            &["upstream.localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("upstream.pem", &upstream_cert);
        write("upstream.key", &upstream_key);
        write("rogue-ca.pem", &rogue_ca.pem());
        Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client_cert,
            client_key_pem: client_key,
            tenant_cert_pem: tenant_cert,
            tenant_key_pem: tenant_key,
            rogue_cert_pem: rogue_cert,
            rogue_key_pem: rogue_key,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// What a TLS client presents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ClientCert {
    None,
    Trusted,
    /// [`Pki::tenant_cert_pem`].
    Tenant,
    Rogue,
}

/// A rustls client trusting the test CA, offering `alpn`, presenting `cert`.
pub fn tls_client(pki: &Pki, cert: ClientCert, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let pems = match cert {
        ClientCert::None => None,
        ClientCert::Trusted => Some((&pki.client_cert_pem, &pki.client_key_pem)),
        ClientCert::Tenant => Some((&pki.tenant_cert_pem, &pki.tenant_key_pem)),
        ClientCert::Rogue => Some((&pki.rogue_cert_pem, &pki.rogue_key_pem)),
    };
    let mut config = match pems {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client cert"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A gateway config with one TLS listener (the test CA's server certificate, for `localhost`),
/// `limits` as given (indented YAML lines, or empty), and one route `users` matching `path` to
/// `upstream`.
pub fn tls_listener_config(pki: &Pki, upstream: SocketAddr, path: &str, limits: &str) -> String {
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("limits:\n{limits}\n")
    };
    format!(
        r#"
listeners:
  - name: edge
    address: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert_file: "{server}", key_file: "{key}", hosts: [localhost] }}
{limits}access_log: off
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - name: users
    match: {{ path: {path} }}
    upstream: svc
"#,
        server = pki.path_str("server.pem"),
        key = pki.path_str("server.key"),
    )
}

/// A TLS connection to `address` as `localhost`, trusting the test CA and offering `alpn`, with
/// no client certificate: the handshake done, nothing sent.
pub async fn tls_connect(
    pki: &Pki,
    alpn: &[&[u8]],
    address: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tls_client(pki, ClientCert::None, alpn)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// One HTTP/1.1 or HTTP/2 exchange over a fresh TLS connection with SNI `sni`. Err when the
/// handshake or the exchange fails.
pub async fn tls_get(
    address: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    sni: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Reply, Option<Vec<u8>>), String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let h2 = alpn.as_deref() == Some(b"h2");
    let io = TokioIo::new(tls);
    let mut builder = Request::builder().method("GET").uri(if h2 {
        format!("https://{host}{path}")
    } else {
        path.to_string()
    });
    if !h2 {
        builder = builder.header("host", host);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("h2 request: {e}"))?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("h1 request: {e}"))?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        alpn,
    ))
}

/// Writes `text` as `name` into `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}
