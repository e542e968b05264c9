//! The fake issuer: an OAuth-style token issuer on loopback with a JWKS endpoint, several keys and
//! a rotation schedule (publish a new key, start signing with it, retire the old one). It can go
//! down, hang or serve garbage; it counts JWKS fetches; it mints tokens for named identities and
//! hostile ones (expired, not yet valid, wrong issuer or audience, `alg: none`, unknown kid,
//! bad signature). Keys are generated fresh (rcgen), signatures are real (jsonwebtoken).
//!
//! Keys can also be kept in a directory ([`KeyDir`](super::keys::KeyDir), in `keys.rs`) so that they survive restarts and so that a
//! separate process (`simulator token`) signs with the key the running issuer publishes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use super::keys::KeyDir;

/// How the JWKS endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IssuerMode {
    #[default]
    Up,
    /// Connections refused... approximated by answering 503 at once, since the gateway must see
    /// a failed fetch either way; `hang` covers the slow failure.
    Down,
    /// Accept and never answer.
    Hang,
    /// 200 with a body that is not a JWKS.
    Garbage,
}

/// Who a token speaks for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    pub subject: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub tier: Option<String>,
}

/// A token that must be refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    AlgNone,
    UnknownKid,
    BadSignature,
}

pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) jwk: serde_json::Value,
    /// The private key as PKCS#8 PEM, for [`KeyDir`] to save.
    pub(super) private_pem: String,
}

pub(super) struct IssuerState {
    /// Keys in the JWKS, oldest first.
    pub(super) published: Vec<Arc<SigningKey>>,
    /// The key tokens are signed with.
    pub(super) signing: Arc<SigningKey>,
    pub(super) mode: IssuerMode,
    pub(super) generation: u64,
}

pub struct FakeIssuer {
    pub address: SocketAddr,
    pub issuer: String,
    pub audience: String,
    state: Arc<Mutex<IssuerState>>,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    /// Where every rotation is saved, when the keys are kept on disk.
    keys: Option<KeyDir>,
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn new_key(generation: u64) -> Result<SigningKey, String> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate a key: {e}"))?;
    let kid = format!("key-{generation}-{:08x}", fastrand::u32(..));
    key_from_pair(kid, &pair)
}

pub(super) fn key_from_pair(kid: String, pair: &rcgen::KeyPair) -> Result<SigningKey, String> {
    let private_pem = pair.serialize_pem();
    let encoding = EncodingKey::from_ec_pem(private_pem.as_bytes())
        .map_err(|e| format!("cannot load the key: {e}"))?;
    // An uncompressed P-256 point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
    let raw = pair.public_key_raw();
    if raw.len() != 65 {
        return Err("unexpected public key encoding (not a P-256 key?)".into());
    }
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    Ok(SigningKey {
        kid,
        encoding,
        jwk,
        private_pem,
    })
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    exp: u64,
    iat: u64,
    nbf: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
}

impl FakeIssuer {
    pub async fn start(issuer: &str, audience: &str) -> Result<FakeIssuer, String> {
        let first = Arc::new(new_key(0)?);
        let state = IssuerState {
            published: vec![first.clone()],
            signing: first,
            mode: IssuerMode::Up,
            generation: 0,
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the issuer: {e}"))?;
        Self::serve_state(listener, state, issuer, audience, None)
    }

    /// Listens on `address` and publishes the keys kept in `keys` (made there first if it holds
    /// none); every rotation is saved back, and `issuer` and `audience` are recorded so that
    /// [`KeyDir::mint`] signs matching claims.
    pub async fn start_with_keys(
        address: SocketAddr,
        keys: KeyDir,
        issuer: &str,
        audience: &str,
    ) -> Result<FakeIssuer, String> {
        let state = keys.load_or_create()?;
        keys.save(&state, Some((issuer, audience)))?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        Self::serve_state(listener, state, issuer, audience, Some(keys))
    }

    fn serve_state(
        listener: TcpListener,
        state: IssuerState,
        issuer: &str,
        audience: &str,
        keys: Option<KeyDir>,
    ) -> Result<FakeIssuer, String> {
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(Mutex::new(state));
        let fetches = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, state.clone(), fetches.clone()));
        Ok(FakeIssuer {
            address,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            state,
            fetches,
            task,
            keys,
        })
    }

    /// Saves the key set, when it is kept on disk.
    fn persist(&self) -> Result<(), String> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let s = self.state.lock().map_err(|_| "issuer state poisoned")?;
        keys.save(&s, Some((&self.issuer, &self.audience)))
    }

    /// The kids the JWKS publishes, oldest first.
    pub fn published_kids(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.published.iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default()
    }

    /// A gentle rotation, as `--rotate-every` does: publish a new key and sign with it at once,
    /// and retire every key older than the previous one. The previous key stays published for
    /// one more period, so the tokens it signed keep verifying until the next rotation.
    pub fn rotate_keeping_previous(&self) -> Result<String, String> {
        let kid = {
            let mut s = self.state.lock().map_err(|_| "issuer state poisoned")?;
            s.generation += 1;
            let key = Arc::new(new_key(s.generation)?);
            s.published.push(key.clone());
            s.signing = key.clone();
            let keep_from = s.published.len().saturating_sub(2);
            s.published.drain(..keep_from);
            key.kid.clone()
        };
        self.persist()?;
        Ok(kid)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.address)
    }

    /// JWKS requests served (or attempted while down, hanging or serving garbage).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn set_mode(&self, mode: IssuerMode) {
        if let Ok(mut s) = self.state.lock() {
            s.mode = mode;
        }
    }

    /// Rotation step 1: publish a new key without signing with it yet.
    pub fn publish_next_key(&self) -> Result<String, String> {
        let mut s = self.state.lock().map_err(|_| "issuer state poisoned")?;
        s.generation += 1;
        let key = Arc::new(new_key(s.generation)?);
        let kid = key.kid.clone();
        s.published.push(key);
        drop(s);
        self.persist()?;
        Ok(kid)
    }

    /// Rotation step 2: sign with the newest published key.
    pub fn sign_with_newest(&self) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(newest) = s.published.last().cloned() {
                s.signing = newest;
            }
        }
        // Rotation steps on an in-memory issuer cannot fail to save; on disk a failure is
        // reported by the next step that returns a Result.
        let _ = self.persist();
    }

    /// Rotation step 3: retire every published key but the signing one.
    pub fn retire_old_keys(&self) {
        if let Ok(mut s) = self.state.lock() {
            let signing = s.signing.kid.clone();
            s.published.retain(|k| k.kid == signing);
        }
        let _ = self.persist();
    }

    /// All three steps at once: what a careless issuer does, and what the gateway must survive
    /// by refetching on the unknown kid.
    pub fn rotate_abruptly(&self) -> Result<(), String> {
        self.publish_next_key()?;
        self.sign_with_newest();
        self.retire_old_keys();
        Ok(())
    }

    pub fn signing_kid(&self) -> String {
        self.state
            .lock()
            .map(|s| s.signing.kid.clone())
            .unwrap_or_default()
    }

    /// A valid token for `who`, living `lifetime` from `now_unix`.
    pub fn mint(
        &self,
        who: &IdentitySpec,
        now_unix: u64,
        lifetime: Duration,
    ) -> Result<String, String> {
        self.sign(who, now_unix, lifetime, None)
    }

    pub fn mint_hostile(
        &self,
        who: &IdentitySpec,
        now_unix: u64,
        kind: Hostile,
    ) -> Result<String, String> {
        self.sign(who, now_unix, Duration::from_secs(300), Some(kind))
    }

    fn sign(
        &self,
        who: &IdentitySpec,
        now: u64,
        lifetime: Duration,
        hostile: Option<Hostile>,
    ) -> Result<String, String> {
        let key = self
            .state
            .lock()
            .map(|s| s.signing.clone())
            .map_err(|_| "issuer state poisoned")?;
        sign_token(
            &key,
            &self.issuer,
            &self.audience,
            who,
            now,
            lifetime,
            hostile,
        )
    }
}

/// Signs a token for `who` with `key`: valid for `lifetime` from `now`, or hostile in the way
/// `hostile` says.
pub(super) fn sign_token(
    key: &SigningKey,
    issuer: &str,
    audience: &str,
    who: &IdentitySpec,
    now: u64,
    lifetime: Duration,
    hostile: Option<Hostile>,
) -> Result<String, String> {
    let (mut iat, mut exp) = (now, now + lifetime.as_secs().max(1));
    let mut nbf = now;
    let mut iss = issuer;
    let mut aud = audience;
    match hostile {
        Some(Hostile::Expired) => {
            iat = now.saturating_sub(7200);
            nbf = iat;
            exp = now.saturating_sub(3600);
        }
        Some(Hostile::NotYetValid) => {
            nbf = now + 3600;
            exp = now + 7200;
        }
        Some(Hostile::WrongIssuer) => iss = "https://evil.example.net/",
        Some(Hostile::WrongAudience) => aud = "some-other-api",
        _ => {}
    }
    let claims = Claims {
        iss,
        aud,
        sub: &who.subject,
        exp,
        iat,
        nbf,
        tenant: who.tenant.as_deref(),
        scope: who.scopes.join(" "),
        roles: &who.roles,
        tier: who.tier.as_deref(),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(match hostile {
        Some(Hostile::UnknownKid) => format!("unknown-{:016x}", fastrand::u64(..)),
        _ => key.kid.clone(),
    });
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(match hostile {
        Some(Hostile::AlgNone) => {
            // `{"alg":"none"}` with the real claims and no signature.
            let mut parts = token.split('.');
            let _ = parts.next();
            let payload = parts.next().unwrap_or_default();
            let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{head}.{payload}.")
        }
        Some(Hostile::BadSignature) => {
            // Flip one bit of the signature: structurally valid, cryptographically wrong.
            let (rest, signature) = token.rsplit_once('.').unwrap_or((&token, ""));
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
            if let Some(b) = bytes.first_mut() {
                *b ^= 0x01;
            }
            format!("{rest}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        _ => token,
    })
}

// ---------------------------------------------------------------------------------------------
// Keys kept in a directory.

/// The issuer `simulator issuer` and `simulator token` use when none is given: the one
/// fixtures/testbed.yaml trusts.
pub const DEFAULT_ISSUER: &str = "https://issuer.gatehouse.test/";
/// The audience fixtures/testbed.yaml accepts.
pub const DEFAULT_AUDIENCE: &str = "gatehouse-api";

impl std::str::FromStr for Hostile {
    type Err = String;

    fn from_str(s: &str) -> Result<Hostile, String> {
        serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
            format!(
                "`{s}` is not a hostile kind: expired, not_yet_valid, wrong_issuer, \
                 wrong_audience, alg_none, unknown_kid or bad_signature"
            )
        })
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<IssuerState>>, fetches: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let state = state.clone();
        let fetches = fetches.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let fetches = fetches.clone();
                async move { answer(req, state, fetches).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<Mutex<IssuerState>>,
    fetches: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.uri().path() != "/.well-known/jwks.json" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    }
    fetches.fetch_add(1, Ordering::Relaxed);
    let (mode, jwks) = match state.lock() {
        Ok(s) => (
            s.mode,
            serde_json::json!({ "keys": s.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }),
        ),
        Err(_) => (IssuerMode::Down, serde_json::Value::Null),
    };
    let (status, body) = match mode {
        IssuerMode::Up => (StatusCode::OK, Bytes::from(jwks.to_string())),
        IssuerMode::Down => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"down")),
        IssuerMode::Hang => {
            std::future::pending::<()>().await;
            (StatusCode::OK, Bytes::new())
        }
        IssuerMode::Garbage => (
            StatusCode::OK,
            Bytes::from_static(b"{\"keys\": \"<html>oops"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
