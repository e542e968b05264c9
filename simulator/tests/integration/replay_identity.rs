//! Identities minted at replay time, judged by a real gateway (in-process, `gateway::start`)
//! whose config points at the real fake issuer and fake upstreams: recorded credential
//! references become valid tokens for the same identity, the same kind of invalid token (refused
//! for the recorded reason), test API keys by key id; a replay across a key rotation sees no
//! false 401; `--resign` re-signs a foreign JWT; `--target` runs sign with a key directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gateway::record::RequestRecord;
use gateway::record::recording::format::{
    CredentialKind, CredentialPlace, CredentialRef, REDACTED,
};
use gateway::vocab::Identity;
use http_body_util::Full;
use simulator::fake::issuer::{FakeIssuer, KeyDir};
use simulator::fake::upstream::{Behaviour, FakeInstance};
use simulator::replay::identity::{IdentityArgs, Minter, Prepared, parse_rotation, test_api_keys};
use simulator::replay::model::Exchange;
use simulator::scenario::fakes::{Fakes, point_config_at_fakes};
use simulator::scenario::model::FakeIssuerSpec;
use tokio::sync::broadcast;

/// The engine shares one minter between the tasks that send.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Minter>();
};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures"))
}

fn now_unix() -> u64 {
    gateway::clock::Clock::unix_millis(&gateway::clock::SystemClock::new()) / 1000
}

/// A real gateway in-process, its fakes, and its record stream.
struct Gateway {
    handle: gateway::GatewayHandle,
    records: broadcast::Receiver<Arc<RequestRecord>>,
    fakes: Arc<Fakes>,
    client: simulator::http_client::HttpClient,
    /// The config as started: pointed at the fakes.
    config: String,
}

/// Starts `text` (edited by `edit` first) with its issuer and upstreams pointed at fakes.
async fn start(text: &str, edit: impl FnOnce(&mut serde_yaml_ng::Value)) -> Gateway {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("yaml");
    edit(&mut value);
    let text = serde_yaml_ng::to_string(&value).expect("yaml");
    let spec = FakeIssuerSpec {
        name: None,
        timeline: Vec::new(),
    };
    let (rewritten, fakes) =
        point_config_at_fakes("replay.yaml", &text, &BTreeMap::new(), Some(&spec))
            .await
            .unwrap_or_else(|e| panic!("fakes: {e:?}"));
    let runtime = load(&rewritten);
    let handle = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            ]),
            ..gateway::StartOptions::default()
        },
    )
    .await
    .expect("start the gateway");
    Gateway {
        records: handle.subscribe(),
        handle,
        fakes: Arc::new(fakes),
        client: simulator::http_client::new(),
        config: rewritten,
    }
}

fn load(text: &str) -> gateway::config::Runtime {
    gateway::config::load_str("replay.yaml", text).unwrap_or_else(|d| {
        panic!(
            "config: {}\n{text}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

impl Gateway {
    /// Sends one prepared exchange; the status and the gateway's record of it.
    async fn send(
        &mut self,
        exchange: &Exchange,
        prepared: &Prepared,
    ) -> (u16, Arc<RequestRecord>) {
        let mut request = http::Request::builder()
            .method(exchange.method.as_str())
            .uri(format!(
                "http://{}{}",
                self.handle.address(),
                prepared.target
            ));
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::new())).expect("request");
        let (status, _) = simulator::http_client::send(&self.client, request)
            .await
            .expect("the gateway answers");
        let record = tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("a record within 10 s")
            .expect("the record stream is open");
        (status, record)
    }

    async fn replay(&mut self, minter: &Minter, exchange: &Exchange) -> (u16, Arc<RequestRecord>) {
        let prepared = minter.prepare(exchange, now_unix()).expect("prepare");
        self.send(exchange, &prepared).await
    }

    /// Replays `exchange` until the gateway has fetched the issuer's keys (a fresh gateway
    /// answers `keys-unavailable` until then).
    async fn warm_up(&mut self, minter: &Minter, exchange: &Exchange) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, record) = self.replay(minter, exchange).await;
            if record.reason.as_deref() != Some("keys-unavailable") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the JWKS never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn issuer(&self) -> &FakeIssuer {
        self.fakes.issuer.as_ref().expect("a fake issuer")
    }
}

fn exchange(target: &str, headers: &[(&str, &str)], credentials: Vec<CredentialRef>) -> Exchange {
    Exchange {
        position: 1,
        id: "r-1".into(),
        unix_nanos: 0,
        client: "-".into(),
        connection: None,
        method: "GET".into(),
        target: target.into(),
        version: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: Vec::new(),
        body_truncated: false,
        tls: None,
        credentials,
        recorded: None,
        response: None,
    }
}

fn person(subject: &str, scopes: &[&str], tier: &str) -> Identity {
    Identity {
        subject: subject.into(),
        tenant: Some("acme".into()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        roles: vec!["admin".into()],
        tier: Some(tier.into()),
        api_key_id: None,
        signing_key_id: Some("key-0-recorded".into()),
    }
}

fn bearer(identity: Identity, invalid: Option<&str>) -> CredentialRef {
    CredentialRef {
        kind: CredentialKind::Bearer,
        place: CredentialPlace::Header("authorization".into()),
        scheme: Some("Bearer".into()),
        identity: Some(identity),
        issuer: Some("https://issuer.gatehouse.test/".into()),
        audience: Some("gatehouse-api".into()),
        expires_in_s: Some(120),
        invalid: invalid.map(str::to_owned),
    }
}

/// A bearer-authenticated GET of a `users:read` route, the token redacted.
fn bearer_exchange(credential: CredentialRef) -> Exchange {
    exchange(
        "/api/v1/users/7",
        &[
            ("accept", "*/*"),
            ("authorization", REDACTED),
            ("cookie", REDACTED),
        ],
        vec![credential],
    )
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

fn testbed() -> String {
    std::fs::read_to_string(fixtures().join("testbed.yaml")).expect("testbed.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_refs_are_re_signed_for_the_recorded_identity_in_header_or_query() {
    let mut gateway = start(&testbed(), |config| {
        config["auth"]["token_query_param"] = "access_token".into();
    })
    .await;
    let minter = Minter::for_fakes(
        &IdentityArgs::default(),
        gateway.fakes.clone(),
        BTreeMap::new(),
    )
    .expect("minter");
    let warm_up = bearer_exchange(bearer(person("warm-up", &["users:read"], "paid"), None));
    gateway.warm_up(&minter, &warm_up).await;
    let alice = bearer_exchange(bearer(person("alice", &["users:read"], "paid"), None));

    let now = now_unix();
    let prepared = minter.prepare(&alice, now).expect("prepare");
    // The redacted cookie is dropped, the other headers stay in order.
    let names: Vec<&str> = prepared.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["accept", "authorization"]);
    let token = prepared.headers[1]
        .1
        .strip_prefix("Bearer ")
        .expect("a bearer value");
    let claims = claims_of(token);
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["nbf"], now);
    assert_eq!(claims["exp"], now + 120, "the recorded remaining lifetime");
    let (status, record) = gateway.send(&alice, &prepared).await;
    assert_eq!(status, 200, "{record:?}");
    let identity = record.identity.as_deref().expect("an identity");
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.tenant.as_deref(), Some("acme"));
    assert_eq!(identity.scopes, ["users:read"]);
    assert_eq!(identity.roles, ["admin"]);
    assert_eq!(identity.tier.as_deref(), Some("paid"));
    assert_eq!(
        identity.signing_key_id.as_deref(),
        Some(gateway.issuer().signing_kid().as_str()),
        "signed with the issuer's current key, not the recorded one"
    );

    // Later requests of the same recorded token reuse the minted one (the gateway's token cache
    // sees the recording's reuse); another recorded token of the same identity gets its own.
    let again = minter.prepare(&alice, now_unix()).expect("prepare");
    assert_eq!(again.headers, prepared.headers);
    let mut other_token = alice.clone();
    other_token.credentials[0].expires_in_s = Some(600);
    let other = minter.prepare(&other_token, now_unix()).expect("prepare");
    assert_ne!(other.headers, prepared.headers);

    let mut in_query = bearer(person("bob", &["users:read"], "free"), None);
    in_query.place = CredentialPlace::Query("access_token".into());
    in_query.scheme = None;
    let bob = exchange(
        &format!("/api/v1/users/8?expand=1&access_token={REDACTED}"),
        &[],
        vec![in_query],
    );
    let prepared = minter.prepare(&bob, now_unix()).expect("prepare");
    assert!(
        prepared
            .target
            .starts_with("/api/v1/users/8?expand=1&access_token=ey"),
        "{}",
        prepared.target
    );
    let (status, record) = gateway.send(&bob, &prepared).await;
    assert_eq!(status, 200, "{record:?}");
    assert_eq!(
        record.identity.as_deref().map(|i| i.subject.as_str()),
        Some("bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_kind_is_refused_for_the_recorded_reason() {
    let mut gateway = start(&testbed(), |_| {}).await;
    let minter = Minter::for_fakes(
        &IdentityArgs::default(),
        gateway.fakes.clone(),
        BTreeMap::new(),
    )
    .expect("minter");
    let alice = || person("alice", &["users:read"], "paid");
    gateway
        .warm_up(&minter, &bearer_exchange(bearer(alice(), None)))
        .await;
    let reasons = [
        "token-expired",
        "token-not-yet-valid",
        "bad-signature",
        "unknown-kid",
        "wrong-audience",
        "wrong-issuer",
        "algorithm-not-allowed",
        "malformed-token",
        "missing-claim",
        "invalid-claim",
        "token-lifetime-too-long",
        "embedded-key",
        "unsupported-crit",
        "token-too-large",
        "unsupported-auth-scheme",
        "missing-credentials",
    ];
    for reason in reasons {
        let (status, record) = gateway
            .replay(&minter, &bearer_exchange(bearer(alice(), Some(reason))))
            .await;
        assert_eq!(record.reason.as_deref(), Some(reason), "{record:?}");
        assert_eq!(status, 401, "{reason}");
    }
    // Refused after authn: the identity itself is refused again.
    let no_scope = bearer(
        person("alice", &["users:write"], "paid"),
        Some("insufficient-scope"),
    );
    let (status, record) = gateway.replay(&minter, &bearer_exchange(no_scope)).await;
    assert_eq!(
        (status, record.reason.as_deref()),
        (403, Some("insufficient-scope"))
    );
    // Refused for a reason the token cannot carry: sent malformed, as documented.
    let unavailable = bearer(alice(), Some("keys-unavailable"));
    let (_, record) = gateway.replay(&minter, &bearer_exchange(unavailable)).await;
    assert_eq!(record.reason.as_deref(), Some("malformed-token"));
}

/// fixtures/identity.yaml without its TLS listener's client-certificate route (the certificates
/// are not committed).
fn identity_config() -> (String, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(fixtures().join("identity.yaml")).expect("identity.yaml");
    let (text, keys) = test_api_keys(&text, fixtures()).expect("test keys");
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    if let Some(routes) = value["routes"].as_sequence_mut() {
        routes.retain(|r| r["name"].as_str() != Some("payments"));
    }
    (serde_yaml_ng::to_string(&value).expect("yaml"), keys)
}

fn api_key(id: &str, invalid: Option<&str>) -> CredentialRef {
    CredentialRef {
        kind: CredentialKind::ApiKey,
        place: CredentialPlace::Header("x-api-key".into()),
        scheme: None,
        identity: Some(Identity {
            subject: "partner-demo-app".into(),
            tenant: Some("acme".into()),
            scopes: vec!["users:read".into()],
            roles: Vec::new(),
            tier: Some("free".into()),
            api_key_id: Some(id.into()),
            signing_key_id: None,
        }),
        issuer: None,
        audience: None,
        expires_in_s: None,
        invalid: invalid.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_mapped_to_test_keys_by_key_id_and_claims_by_the_configs_names() {
    let (config, keys) = identity_config();
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["partner-demo"]);
    assert!(
        !config.contains("ff56acf1"),
        "the fixture's digest is replaced"
    );
    let mut gateway = start(&config, |_| {}).await;
    let runtime = load(&gateway.config);
    let minter = Minter::for_fakes(&IdentityArgs::default(), gateway.fakes.clone(), keys)
        .expect("minter")
        .for_gateway(&runtime);
    let with_key = |credential| {
        exchange(
            "/api/v1/users/3",
            &[("x-api-key", REDACTED)],
            vec![credential],
        )
    };

    let (status, record) = gateway
        .replay(&minter, &with_key(api_key("partner-demo", None)))
        .await;
    assert_eq!(status, 200, "{record:?}");
    let identity = record.identity.as_deref().expect("an identity");
    assert_eq!(identity.api_key_id.as_deref(), Some("partner-demo"));
    assert_eq!(identity.subject, "partner-demo-app");
    for (id, invalid) in [
        ("partner-demo", Some("invalid-api-key")),
        ("a-removed-key", None),
    ] {
        let (status, record) = gateway
            .replay(&minter, &with_key(api_key(id, invalid)))
            .await;
        assert_eq!(
            (status, record.reason.as_deref()),
            (401, Some("invalid-api-key")),
            "{id}"
        );
    }

    // identity.yaml names the tenant claim `tenant_id`: the minted token uses the config's names.
    let carol = bearer_exchange(bearer(person("carol", &["users:read"], "paid"), None));
    gateway.warm_up(&minter, &carol).await;
    let (status, record) = gateway.replay(&minter, &carol).await;
    assert_eq!(status, 200, "{record:?}");
    assert_eq!(
        record.identity.as_deref().and_then(|i| i.tenant.as_deref()),
        Some("acme")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_across_a_key_rotation_sees_no_false_401() {
    let mut gateway = start(&testbed(), |_| {}).await;
    let args = IdentityArgs {
        rotate: Some(parse_rotation("publish@1s,sign@2s,retire@3s,abrupt@4s").expect("timeline")),
        ..IdentityArgs::default()
    };
    let minter = Minter::for_fakes(&args, gateway.fakes.clone(), BTreeMap::new()).expect("minter");
    let subjects = ["alice", "bob", "carol"];
    let exchanges: Vec<Exchange> = subjects
        .iter()
        .map(|s| bearer_exchange(bearer(person(s, &["users:read"], "paid"), None)))
        .collect();
    gateway.warm_up(&minter, &exchanges[0]).await;
    let first_kid = gateway.issuer().signing_kid();

    let rotation = minter.spawn_rotation().expect("a rotation task");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(5_000);
    let (mut sent, mut refused, mut kids) = (0, Vec::new(), Vec::<String>::new());
    while tokio::time::Instant::now() < deadline {
        let (status, record) = gateway
            .replay(&minter, &exchanges[sent % exchanges.len()])
            .await;
        sent += 1;
        if status == 401 {
            refused.push(record.reason.clone());
        }
        let kid = record
            .identity
            .as_deref()
            .and_then(|i| i.signing_key_id.clone());
        if let Some(kid) = kid.filter(|k| !kids.contains(k)) {
            kids.push(kid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rotation.await.expect("the rotation ran to its end");
    // Each subject's recorded token was minted once per signing key, then reused.
    let tokens: std::collections::BTreeSet<String> = exchanges
        .iter()
        .map(|e| {
            minter.prepare(e, now_unix()).expect("prepare").headers[1]
                .1
                .clone()
        })
        .collect();
    assert_eq!(tokens.len(), subjects.len());
    assert!(
        refused.is_empty(),
        "{} of {sent} refused: {refused:?}",
        refused.len()
    );
    assert_eq!(
        kids.len(),
        3,
        "signed with the first, published and abrupt keys: {kids:?}"
    );
    assert_eq!(kids[0], first_kid);
    assert_eq!(kids[2], gateway.issuer().signing_kid());
    assert_eq!(gateway.issuer().published_kids(), [kids[2].clone()]);
}

/// A JWT from somebody else's issuer, as a HAR file holds it: unverifiable here.
fn foreign_jwt() -> String {
    let b64 = |json: &str| URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"theirs"}"#),
        b64(
            r#"{"iss":"https://login.example.org/","sub":"dave","scope":"users:read","tier":"paid","exp":1}"#
        ),
        b64("not their signature")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_re_signs_a_foreign_jwt_and_without_it_the_header_passes_unchanged() {
    let mut gateway = start(&testbed(), |_| {}).await;
    let authorization = format!("Bearer {}", foreign_jwt());
    let har = exchange(
        "/api/v1/users/9",
        &[("authorization", &authorization), ("x-trace", "1")],
        Vec::new(),
    );
    let resign = IdentityArgs {
        resign: Some("main".into()),
        ..IdentityArgs::default()
    };
    let minter =
        Minter::for_fakes(&resign, gateway.fakes.clone(), BTreeMap::new()).expect("minter");
    gateway.warm_up(&minter, &har).await;
    let (status, record) = gateway.replay(&minter, &har).await;
    assert_eq!(status, 200, "{record:?}");
    let identity = record.identity.as_deref().expect("an identity");
    assert_eq!(
        (identity.subject.as_str(), identity.tier.as_deref()),
        ("dave", Some("paid"))
    );

    for minter in [
        Minter::passthrough(),
        Minter::for_fakes(
            &IdentityArgs::default(),
            gateway.fakes.clone(),
            BTreeMap::new(),
        )
        .expect("minter"),
    ] {
        let prepared = minter.prepare(&har, now_unix()).expect("prepare");
        assert_eq!(prepared.headers, har.headers, "passed through unchanged");
        let (status, record) = gateway.send(&har, &prepared).await;
        assert_eq!(
            (status, record.reason.as_deref()),
            (401, Some("wrong-issuer"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_runs_sign_with_the_key_directory_and_send_keys_from_the_api_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = KeyDir::open(&dir.path().join("keys")).expect("key dir");
    let issuer = FakeIssuer::start_with_keys(
        "127.0.0.1:0".parse().expect("address"),
        keys,
        "https://issuer.gatehouse.test/",
        "gatehouse-api",
    )
    .await
    .expect("issuer");
    let upstream = FakeInstance::start(Behaviour::default())
        .await
        .expect("upstream");
    let config = format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
auth:
  issuers:
    - name: main
      issuer: https://issuer.gatehouse.test/
      jwks_url: {jwks}
      audiences: [gatehouse-api]
      algorithms: [ES256]
      jwks: {{ refetch_cooldown: 100ms }}
  api_keys:
    keys: [{{ id: partner, key: the-partners-key, scopes: [users:read] }}]
upstreams:
  app: {{ instances: ["{upstream}"] }}
routes:
  - name: users
    match: {{ path: /api/v1/users/* }}
    upstream: app
    auth: {{ scopes: [users:read] }}
"#,
        jwks = issuer.jwks_url(),
        upstream = upstream.address
    );
    let handle = gateway::start(
        load(&config),
        gateway::StartOptions {
            listeners: Some(vec![
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            ]),
            ..gateway::StartOptions::default()
        },
    )
    .await
    .expect("start the gateway");
    let api_keys = dir.path().join("api-keys.yaml");
    std::fs::write(&api_keys, "partner: the-partners-key\n").expect("write");
    let args = IdentityArgs {
        keys: Some(dir.path().join("keys")),
        api_keys: Some(api_keys),
        ..IdentityArgs::default()
    };
    let minter = Minter::for_target(&args).expect("minter");
    let mut gateway = Gateway {
        records: handle.subscribe(),
        handle,
        fakes: Arc::new(Fakes::default()),
        client: simulator::http_client::new(),
        config,
    };
    let alice = bearer_exchange(bearer(person("alice", &["users:read"], "paid"), None));
    gateway.warm_up(&minter, &alice).await;
    let (status, record) = gateway.replay(&minter, &alice).await;
    assert_eq!(status, 200, "{record:?}");
    // The issuer process rotates; the minter follows the directory.
    issuer.rotate_abruptly().expect("rotate");
    let (status, record) = gateway.replay(&minter, &alice).await;
    assert_eq!(status, 200, "{record:?}");
    assert_eq!(
        record
            .identity
            .as_deref()
            .and_then(|i| i.signing_key_id.clone()),
        Some(issuer.signing_kid())
    );
    let partner = exchange(
        "/api/v1/users/1",
        &[("x-api-key", REDACTED)],
        vec![api_key("partner", None)],
    );
    let (status, record) = gateway.replay(&minter, &partner).await;
    assert_eq!(status, 200, "{record:?}");
    assert_eq!(
        record
            .identity
            .as_deref()
            .and_then(|i| i.api_key_id.as_deref()),
        Some("partner")
    );

    assert!(
        Minter::for_target(&IdentityArgs {
            rotate: Some(parse_rotation("sign@1s").expect("timeline")),
            ..IdentityArgs::default()
        })
        .is_err()
    );
    let missing = IdentityArgs {
        keys: Some(dir.path().join("nowhere")),
        ..IdentityArgs::default()
    };
    assert!(
        Minter::for_target(&missing)
            .err()
            .is_some_and(|e| e.contains("nowhere"))
    );
}
