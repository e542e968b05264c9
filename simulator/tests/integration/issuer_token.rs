//! `simulator issuer` and `simulator token` as a user runs them by hand: the issuer is its own
//! process, tokens come from another, and a real gateway (in-process, `gateway::start`) whose
//! `jwks_url` points at the issuer accepts or refuses them. Keys live in a directory and survive
//! an issuer restart.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use simulator::fake::upstream::{Behaviour, FakeInstance};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// A running `simulator issuer`, killed when dropped.
struct IssuerProcess {
    child: Child,
    jwks_url: String,
    signing: String,
    output: Lines<BufReader<ChildStdout>>,
}

impl IssuerProcess {
    async fn start(keys: &Path, extra: &[&str]) -> IssuerProcess {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
            .args(["issuer", "--listen", "127.0.0.1:0", "--keys"])
            .arg(keys)
            .args(extra)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start simulator issuer");
        let mut output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut jwks_url, mut signing) = (String::new(), String::new());
        while jwks_url.is_empty() || signing.is_empty() {
            let line = next_line(&mut output).await;
            if let Some(url) = line.strip_prefix("jwks_url") {
                jwks_url = url.trim().to_string();
            } else if let Some(kid) = line.strip_prefix("signing") {
                signing = kid.trim().to_string();
            }
        }
        IssuerProcess {
            child,
            jwks_url,
            signing,
            output,
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill the issuer");
    }
}

async fn next_line(output: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(20), output.next_line())
        .await
        .expect("the issuer prints within 20 s")
        .expect("read the issuer's stdout")
        .expect("the issuer is still running")
}

async fn token(keys: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("token")
        .arg("--keys")
        .arg(keys)
        .args(args)
        .output()
        .await
        .expect("run simulator token");
    assert!(
        out.status.success(),
        "simulator token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("the token is text")
        .trim()
        .to_string()
}

fn kid_of(token: &str) -> String {
    let head = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("a base64url JWT header");
    let header: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON JWT header");
    header["kid"].as_str().unwrap_or_default().to_string()
}

/// A real gateway trusting `jwks_url`, in front of a fake upstream, on loopback.
struct Gateway {
    _handle: gateway::GatewayHandle,
    _upstream: FakeInstance,
    address: std::net::SocketAddr,
}

async fn gateway_trusting(jwks_url: &str) -> Gateway {
    let upstream = FakeInstance::start(Behaviour::default())
        .await
        .expect("fake upstream");
    let config = format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
access_log: off
auth:
  issuers:
    - name: by-hand
      issuer: https://issuer.gatehouse.test/
      jwks_url: {jwks_url}
      audiences: [gatehouse-api]
      algorithms: [ES256]
upstreams:
  app:
    instances: [{upstream}]
routes:
  - name: users
    match:
      path: /api/users/*
    upstream: app
    auth:
      scopes: [users:read]
"#,
        upstream = upstream.address
    );
    let runtime = gateway::config::load_str("by-hand.yaml", &config).unwrap_or_else(|d| {
        panic!(
            "config: {}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![listener]),
            ..gateway::StartOptions::default()
        },
    )
    .await
    .expect("start the gateway");
    Gateway {
        address: handle.address(),
        _handle: handle,
        _upstream: upstream,
    }
}

/// GET /api/users/1 with `token`; the status and the body.
async fn call(gateway: &Gateway, token: &str) -> (u16, String) {
    let client = simulator::http_client::new();
    let request = http::Request::get(format!("http://{}/api/users/1", gateway.address))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("the gateway answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The first call to a fresh gateway: it fetches the JWKS in the background and answers 401
/// `keys-unavailable` until the keys are in, so ask again (every 20 ms, for up to 10 s) until
/// it answers anything else.
async fn first_call(gateway: &Gateway, token: &str) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(gateway, token).await;
        if !body.contains("keys-unavailable") || tokio::time::Instant::now() >= deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ALICE: &[&str] = &["--sub", "alice", "--scope", "users:read", "--tier", "paid"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_accepts_a_token_from_simulator_token_and_refuses_an_expired_one() {
    let keys = tempfile::tempdir().expect("temp dir");
    let issuer = IssuerProcess::start(keys.path(), &[]).await;
    let gateway = gateway_trusting(&issuer.jwks_url).await;

    let good = token(keys.path(), ALICE).await;
    assert_eq!(
        kid_of(&good),
        issuer.signing,
        "signed with the published key"
    );
    let (status, body) = first_call(&gateway, &good).await;
    assert_eq!(status, 200, "{body}");

    let expired = token(keys.path(), &[ALICE, &["--hostile", "expired"]].concat()).await;
    let (status, body) = call(&gateway, &expired).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token-expired"), "{body}");

    // The scope the route needs is checked too: the token says who, the gateway decides.
    let no_scope = token(keys.path(), &["--sub", "bob", "--scope", "orders:read"]).await;
    let (status, body) = call(&gateway, &no_scope).await;
    assert_eq!(status, 403, "{body}");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_an_issuer_restart_and_private_keys_are_owner_only() {
    let keys = tempfile::tempdir().expect("temp dir");
    let first = IssuerProcess::start(keys.path(), &[]).await;
    let minted_before = token(keys.path(), ALICE).await;
    let signing_before = first.signing.clone();
    first.stop().await;

    let second = IssuerProcess::start(keys.path(), &[]).await;
    assert_eq!(
        second.signing, signing_before,
        "the same key after a restart"
    );
    // A gateway that has never seen the first issuer fetches the JWKS from the second.
    let gateway = gateway_trusting(&second.jwks_url).await;
    let (status, body) = first_call(&gateway, &minted_before).await;
    assert_eq!(status, 200, "a token minted before the restart: {body}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let pem = keys.path().join(format!("{signing_before}.pem"));
        let mode = std::fs::metadata(&pem)
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", pem.display());
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_a_new_key_and_keeps_the_previous_one_published_for_a_period() {
    let keys = tempfile::tempdir().expect("temp dir");
    // Long enough that minting, restarting nothing and calling the gateway all fit in one period.
    let mut issuer = IssuerProcess::start(keys.path(), &["--rotate-every", "3s"]).await;
    let before = token(keys.path(), ALICE).await;
    assert_eq!(
        kid_of(&before),
        issuer.signing,
        "minted before the first rotation"
    );
    let rotated = next_line(&mut issuer.output).await;
    assert!(rotated.starts_with("rotated"), "{rotated}");
    let after = token(keys.path(), ALICE).await;
    assert_ne!(kid_of(&before), kid_of(&after), "a new signing key");
    assert!(rotated.contains(&kid_of(&after)), "{rotated}");

    let gateway = gateway_trusting(&issuer.jwks_url).await;
    let (status, body) = first_call(&gateway, &after).await;
    assert_eq!(status, 200, "signed with the new key: {body}");
    let (status, body) = call(&gateway, &before).await;
    assert_eq!(
        status, 200,
        "signed with the previous key, still published: {body}"
    );
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refuses_an_unknown_hostile_kind_with_the_list_of_kinds() {
    let keys = tempfile::tempdir().expect("temp dir");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("token")
        .arg("--keys")
        .arg(keys.path())
        .args(["--sub", "alice", "--hostile", "sneaky"])
        .output()
        .await
        .expect("run simulator token");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a hostile kind") && stderr.contains("bad_signature"),
        "{stderr}"
    );
}
