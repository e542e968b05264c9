//! What the benches share: signing keys whose public half a JWKS endpoint on loopback serves, and
//! the tokens they sign — the identity a gateway started in-process verifies for real.
#![allow(dead_code)] // each bench uses its own part of this

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub struct Signer {
    pub alg: Algorithm,
    pub kid: &'static str,
    pub key: EncodingKey,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn signer(alg: Algorithm, kid: &'static str) -> Signer {
    let rcgen_alg = match alg {
        Algorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        _ => &rcgen::PKCS_ED25519,
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key pair");
    let pem = pair.serialize_pem();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .expect("encoding key");
    let jwk = if alg == Algorithm::EdDSA {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": b64(pair.public_key_raw())})
    } else {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).expect("jwk json")
    };
    Signer { alg, kid, key, jwk }
}

pub fn unix_now() -> i64 {
    #[allow(clippy::disallowed_methods)] // the bench mints tokens against the real clock
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Signer {
    pub fn token(&self, sub: &str) -> String {
        let now = unix_now();
        let claims = json!({
            "iss": "https://issuer.bench", "aud": "bench-api", "sub": sub, "tenant": "acme",
            "scope": "users:read users:write", "roles": ["member"], "tier": "paid",
            "iat": now, "exp": now + 3600,
        });
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

pub async fn jwks_server(keys: Vec<Value>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let body = Bytes::from(json!({ "keys": keys }).to_string());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}
