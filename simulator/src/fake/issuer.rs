//! The fake issuer: an OAuth-style token issuer on loopback with a JWKS endpoint, several keys and
//! a rotation schedule (publish a new key, start signing with it, retire the old one). It can go
//! down, hang or serve garbage; it counts JWKS fetches; it mints tokens for named identities and
//! hostile ones — one per reason the gateway's `authn` refuses a token for (expired, not yet
//! valid, wrong issuer or audience, `alg: none`, unknown kid, bad signature, a missing or invalid
//! claim, a lifetime too long, an embedded key, `crit`, too large, malformed). Keys are generated
//! fresh (rcgen), signatures are real (jsonwebtoken).
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
use gateway::identity::issuer::ClaimNames;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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

/// A token that must be refused, and why: each kind is refused for one reason (in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// `exp` an hour ago (`token-expired`).
    Expired,
    /// `nbf` an hour ahead (`token-not-yet-valid`).
    NotYetValid,
    /// Another `iss` (`wrong-issuer`).
    WrongIssuer,
    /// Another `aud` (`wrong-audience`).
    WrongAudience,
    /// `alg: none` and no signature (`algorithm-not-allowed`).
    AlgNone,
    /// A `kid` the JWKS does not publish (`unknown-kid`).
    UnknownKid,
    /// One bit of the signature flipped (`bad-signature`).
    BadSignature,
    /// Signed, but without `exp` (`missing-claim`).
    MissingClaim,
    /// Signed, `exp` a string (`invalid-claim`).
    InvalidClaim,
    /// Signed, valid for ten years (`token-lifetime-too-long`).
    LifetimeTooLong,
    /// A `jku` header naming the token's own key set (`embedded-key`).
    EmbeddedKey,
    /// A `crit` header (`unsupported-crit`).
    UnsupportedCrit,
    /// Padded past [`MintOptions::min_token_bytes`] (`token-too-large`).
    TooLarge,
    /// Header and payload without a signature part (`malformed-token`).
    Malformed,
}

/// How to mint one token beyond who it speaks for: when, for how long, in which claims, and how
/// it is hostile.
#[derive(Debug, Clone)]
pub struct MintOptions {
    /// `iat` and `nbf` (a hostile kind may move them).
    pub now_unix: u64,
    /// `exp` − `iat` (at least a second).
    pub lifetime: Duration,
    pub hostile: Option<Hostile>,
    /// Which claims hold subject, tenant, scopes, roles and tier: the gateway issuer's `claims`.
    pub claim_names: ClaimNames,
    /// The length a [`Hostile::TooLarge`] token exceeds: the gateway's `auth.max_token_bytes`.
    pub min_token_bytes: usize,
}

impl MintOptions {
    /// A valid token living `lifetime` from `now_unix`, in the default claim names.
    pub fn valid(now_unix: u64, lifetime: Duration) -> MintOptions {
        MintOptions {
            now_unix,
            lifetime,
            hostile: None,
            claim_names: ClaimNames::default(),
            min_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// The gateway's default `auth.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

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
        self.mint_with(who, &MintOptions::valid(now_unix, lifetime))
    }

    pub fn mint_hostile(
        &self,
        who: &IdentitySpec,
        now_unix: u64,
        kind: Hostile,
    ) -> Result<String, String> {
        let options = MintOptions {
            hostile: Some(kind),
            ..MintOptions::valid(now_unix, Duration::from_secs(300))
        };
        self.mint_with(who, &options)
    }

    /// A token for `who` as `options` say, signed with the current signing key.
    pub fn mint_with(&self, who: &IdentitySpec, options: &MintOptions) -> Result<String, String> {
        let key = self
            .state
            .lock()
            .map(|s| s.signing.clone())
            .map_err(|_| "issuer state poisoned")?;
        sign_token(&key, &self.issuer, &self.audience, who, options)
    }
}

/// Signs a token for `who` with `key`: valid for `options.lifetime` from `options.now_unix`, or
/// hostile in the way `options.hostile` says.
pub(super) fn sign_token(
    key: &SigningKey,
    issuer: &str,
    audience: &str,
    who: &IdentitySpec,
    options: &MintOptions,
) -> Result<String, String> {
    let now = options.now_unix;
    let (mut iat, mut nbf) = (now, now);
    let mut exp = json!(now + options.lifetime.as_secs().max(1));
    let (mut iss, mut aud) = (issuer, audience);
    let mut header = Map::new();
    header.insert("alg".into(), json!("ES256"));
    header.insert("typ".into(), json!("JWT"));
    header.insert("kid".into(), json!(key.kid));
    match options.hostile {
        Some(Hostile::Expired) => {
            iat = now.saturating_sub(7200);
            nbf = iat;
            exp = json!(now.saturating_sub(3600));
        }
        Some(Hostile::NotYetValid) => {
            nbf = now + 3600;
            exp = json!(now + 7200);
        }
        Some(Hostile::WrongIssuer) => iss = "https://evil.example.net/",
        Some(Hostile::WrongAudience) => aud = "some-other-api",
        Some(Hostile::UnknownKid) => {
            header.insert(
                "kid".into(),
                json!(format!("unknown-{:016x}", fastrand::u64(..))),
            );
        }
        Some(Hostile::MissingClaim) => exp = Value::Null,
        Some(Hostile::InvalidClaim) => exp = json!("soon"),
        Some(Hostile::LifetimeTooLong) => exp = json!(now + 10 * 365 * 86_400),
        Some(Hostile::EmbeddedKey) => {
            header.insert("jku".into(), json!("https://evil.example.net/jwks.json"));
        }
        Some(Hostile::UnsupportedCrit) => {
            header.insert("crit".into(), json!(["exp"]));
        }
        _ => {}
    }
    let names = &options.claim_names;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(iss));
    claims.insert("aud".into(), json!(aud));
    claims.insert(names.subject.clone(), json!(who.subject));
    if !exp.is_null() {
        claims.insert("exp".into(), exp);
    }
    claims.insert("iat".into(), json!(iat));
    claims.insert("nbf".into(), json!(nbf));
    if let Some(tenant) = &who.tenant {
        claims.insert(names.tenant.clone(), json!(tenant));
    }
    if !who.scopes.is_empty() {
        claims.insert(names.scopes.clone(), json!(who.scopes.join(" ")));
    }
    if !who.roles.is_empty() {
        claims.insert(names.roles.clone(), json!(who.roles));
    }
    if let Some(tier) = &who.tier {
        claims.insert(names.tier.clone(), json!(tier));
    }
    if options.hostile == Some(Hostile::TooLarge) {
        // Base64url grows by 4/3: this many bytes of padding put the token past the limit.
        let pad = options.min_token_bytes * 3 / 4 + 64;
        claims.insert("pad".into(), json!("x".repeat(pad)));
    }
    let encode =
        |part: &Map<String, Value>| URL_SAFE_NO_PAD.encode(Value::from(part.clone()).to_string());
    let message = format!("{}.{}", encode(&header), encode(&claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, Algorithm::ES256)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(match options.hostile {
        Some(Hostile::AlgNone) => {
            // `{"alg":"none"}` with the real claims and no signature.
            let payload = message.split_once('.').map_or("", |(_, p)| p);
            let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{head}.{payload}.")
        }
        Some(Hostile::BadSignature) => {
            // Flip one bit of the signature: structurally valid, cryptographically wrong.
            let mut bytes = URL_SAFE_NO_PAD.decode(&signature).unwrap_or_default();
            if let Some(b) = bytes.first_mut() {
                *b ^= 0x01;
            }
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        // Two parts: not a compact JWS at all.
        Some(Hostile::Malformed) => message,
        _ => format!("{message}.{signature}"),
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
                 wrong_audience, alg_none, unknown_kid, bad_signature, missing_claim, \
                 invalid_claim, lifetime_too_long, embedded_key, unsupported_crit, too_large \
                 or malformed"
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
