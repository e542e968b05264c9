//! `recording:` end to end: a real gateway, real signed JWTs from a real JWKS endpoint, real
//! sockets, the recording file read back. Every credential is redacted into whose it was (a
//! test greps the file for every secret it sent), bodies are kept up to the cap, responses are
//! hashed, files rotate, sampling at 0 writes nothing, and a writer stuck on a FIFO that nobody
//! reads drops and counts lines without ever holding a request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use gateway::record::recording::format::{
    CredentialKind, CredentialPlace, CredentialRef, FORMAT_VERSION, REDACTED, RecordingLine,
};
use serde_json::json;

use super::identity_support::*;
use super::util::*;

struct Setup {
    gw: TestGateway,
    key: SigningKey,
    _upstream: Upstream,
    _issuer: FakeIssuer,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// A gateway with the identity tests' issuer, API keys and routes, recording into a temporary
/// directory with `recording` (indented two spaces under `recording:`).
async fn setup(recording: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("traffic.jsonl");
    let key = SigningKey::rsa("rsa-1", 0);
    let issuer = FakeIssuer::start(&[&key]).await;
    let upstream = Upstream::start().await;
    let config = format!(
        "{}recording:\n  path: \"{}\"\n{recording}\n",
        auth_config(
            upstream.address,
            &issuer.url(),
            "ttl: 10m",
            "  token_query_param: token",
        ),
        path.display()
    );
    let gw = TestGateway::start(&config).await;
    issuer.wait_for_fetches(1).await;
    let warm = key.sign(&claims("warm-up"));
    eventually(
        "a protected route answers 200 once the keys are in",
        Duration::from_secs(5),
        async || match bearer(&gw, "/jwt/warm", &warm, "warm").await.status {
            http::StatusCode::OK => Ok(()),
            status => Err(status),
        },
    )
    .await;
    Setup {
        gw,
        key,
        _upstream: upstream,
        _issuer: issuer,
        _dir: dir,
        path,
    }
}

async fn bearer(gw: &TestGateway, path: &str, token: &str, id: &str) -> Reply {
    gw.send(
        request("GET", &gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", id)
            .body(empty())
            .expect("request"),
    )
    .await
}

/// Every line of the file, parsed; a line that does not parse fails the test.
fn lines_of(path: &Path) -> Vec<RecordingLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let parsed: RecordingLine = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {} does not parse: {e}\n{line}", i + 1));
            assert_eq!(parsed.v, FORMAT_VERSION, "line {}", i + 1);
            parsed
        })
        .collect()
}

/// Waits until the lines with these request ids are written, and returns them in that order.
async fn lines_for(path: &Path, ids: &[&str]) -> Vec<RecordingLine> {
    eventually(
        "the recording holds a line per request",
        Duration::from_secs(10),
        async || {
            let lines = lines_of(path);
            ids.iter()
                .map(|id| {
                    lines
                        .iter()
                        .find(|l| l.id == *id)
                        .cloned()
                        .ok_or_else(|| format!("no line for `{id}` among {}", lines.len()))
                })
                .collect::<Result<Vec<_>, _>>()
        },
    )
    .await
}

fn only(line: &RecordingLine, kind: CredentialKind) -> &CredentialRef {
    let found: Vec<&CredentialRef> = line.credentials.iter().filter(|c| c.kind == kind).collect();
    assert_eq!(found.len(), 1, "{}: {:?}", line.id, line.credentials);
    found[0]
}

/// The line as a reader sees it: the accepted credential's identity put back from the record.
fn restored(line: &RecordingLine) -> RecordingLine {
    let mut line = line.clone();
    line.restore_accepted_identity();
    line
}

fn header<'l>(line: &'l RecordingLine, name: &str) -> Option<&'l str> {
    line.request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn recording_redacts_every_credential_into_whose_it_was_and_no_secret_reaches_the_file() {
    let s = setup("  max_body_bytes: 1024\n  redact_headers: [X-Session-Secret]").await;
    let gw = &s.gw;
    let valid = s.key.sign(&claims("alice"));
    let now = now();
    let expired = s.key.sign(&with(
        with(claims("bob"), "exp", json!(now - 120)),
        "iat",
        json!(now - 300),
    ));
    // Same kid, another RSA key: the signature does not verify against the published key.
    let forged = SigningKey::rsa("rsa-1", 1).sign(&claims("mallory"));
    let query_token = s.key.sign(&claims("carol"));
    let conventional_token = s.key.sign(&claims("dave"));
    let api_key = "partner-secret-key";
    let cookie = "session=cookie-secret-4711";
    let session_secret = "session-secret-0815";

    assert_eq!(bearer(gw, "/users/1", &valid, "valid").await.status, 200);
    assert_eq!(
        bearer(gw, "/users/1", &expired, "expired").await.status,
        401
    );
    assert_eq!(bearer(gw, "/users/1", &forged, "forged").await.status, 401);
    let send = |path: &str, id: &str, extra: (&str, &str)| {
        request("GET", &gw.url(path))
            .header("x-request-id", id)
            .header(extra.0, extra.1)
            .body(empty())
            .expect("request")
    };
    assert_eq!(
        gw.send(send("/users/1", "api-key", ("x-api-key", api_key)))
            .await
            .status,
        200
    );
    assert_eq!(
        gw.send(send("/users/1", "bad-api-key", ("x-api-key", "not-a-key")))
            .await
            .status,
        401
    );
    assert_eq!(
        gw.send(send("/public/c", "cookie", ("cookie", cookie)))
            .await
            .status,
        200
    );
    assert_eq!(
        gw.send(send(
            "/public/s",
            "session",
            ("x-session-secret", session_secret)
        ))
        .await
        .status,
        200
    );
    let query = format!("/jwt/q?page=2&token={query_token}&sort=asc");
    assert_eq!(
        gw.send(send(&query, "query", ("accept", "*/*")))
            .await
            .status,
        200
    );
    let conventional = format!("/public/p?access_token={conventional_token}");
    assert_eq!(
        gw.send(send(&conventional, "access-token", ("accept", "*/*")))
            .await
            .status,
        200
    );
    let body = vec![b'x'; 5000];
    let upload = gw
        .send(
            request("POST", &gw.url("/public/upload"))
                .header("x-request-id", "upload")
                .body(full(body.clone()))
                .expect("request"),
        )
        .await;
    assert_eq!(upload.status, 200);

    let ids = [
        "valid",
        "expired",
        "forged",
        "api-key",
        "bad-api-key",
        "cookie",
        "session",
        "query",
        "access-token",
        "upload",
    ];
    let lines = lines_for(&s.path, &ids).await;
    let [
        valid_l,
        expired_l,
        forged_l,
        key_l,
        bad_key_l,
        cookie_l,
        session_l,
        query_l,
        access_l,
        upload_l,
    ] = &lines[..]
    else {
        unreachable!("one line per id");
    };

    // The accepted token: the identity authn established — the record's, not repeated in the
    // credential and put back by a reader — plus what the token says of itself.
    let c = only(valid_l, CredentialKind::Bearer);
    assert_eq!(
        c.identity, None,
        "the record's identity is not written twice"
    );
    let valid_l = &restored(valid_l);
    let c = only(valid_l, CredentialKind::Bearer);
    assert_eq!(c.place, CredentialPlace::Header("authorization".into()));
    assert_eq!(c.scheme.as_deref(), Some("Bearer"));
    let identity = c.identity.as_ref().expect("identity");
    let recorded = valid_l.record.as_ref().and_then(|r| r.identity.as_deref());
    assert_eq!(Some(identity), recorded);
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.tenant.as_deref(), Some("acme"));
    assert_eq!(identity.scopes, ["users:read", "users:write"]);
    assert_eq!(identity.roles, ["member"]);
    assert_eq!(identity.tier.as_deref(), Some("paid"));
    assert_eq!(identity.signing_key_id.as_deref(), Some("rsa-1"));
    assert_eq!(c.issuer.as_deref(), Some(ISS));
    assert_eq!(c.audience.as_deref(), Some(AUD));
    assert!((590..=600).contains(&c.expires_in_s.expect("exp")), "{c:?}");
    assert_eq!(c.invalid, None);
    assert_eq!(header(valid_l, "authorization"), Some(REDACTED));
    assert_eq!(valid_l.record.as_ref().expect("record").status, 200);

    // Refused tokens: what they claimed, and why they were refused.
    let c = only(expired_l, CredentialKind::Bearer);
    assert_eq!(c.identity.as_ref().expect("claimed").subject, "bob");
    assert_eq!(c.invalid.as_deref(), Some("token-expired"));
    assert!(
        (-125..=-115).contains(&c.expires_in_s.expect("exp")),
        "{c:?}"
    );
    let c = only(forged_l, CredentialKind::Bearer);
    assert_eq!(c.identity.as_ref().expect("claimed").subject, "mallory");
    assert_eq!(
        c.identity
            .as_ref()
            .expect("claimed")
            .signing_key_id
            .as_deref(),
        Some("rsa-1")
    );
    assert_eq!(c.invalid.as_deref(), Some("bad-signature"));

    // API keys: the key's id when accepted (the record's identity), the reason when refused.
    assert_eq!(only(key_l, CredentialKind::ApiKey).identity, None);
    let key_l = &restored(key_l);
    let c = only(key_l, CredentialKind::ApiKey);
    assert_eq!(c.place, CredentialPlace::Header("x-api-key".into()));
    assert_eq!(
        c.identity.as_ref().and_then(|i| i.api_key_id.as_deref()),
        Some("partner-1")
    );
    assert_eq!(c.invalid, None);
    let c = only(bad_key_l, CredentialKind::ApiKey);
    assert_eq!(c.identity, None);
    assert_eq!(c.invalid.as_deref(), Some("invalid-api-key"));

    // Cookies and configured headers: opaque.
    let c = only(cookie_l, CredentialKind::Opaque);
    assert_eq!(c.place, CredentialPlace::Header("cookie".into()));
    assert_eq!(header(cookie_l, "cookie"), Some(REDACTED));
    let c = only(session_l, CredentialKind::Opaque);
    assert_eq!(c.place, CredentialPlace::Header("x-session-secret".into()));

    // Query tokens: out of the target, listed where they were.
    assert_eq!(query_l.request.target, "/jwt/q?page=2&sort=asc");
    assert_eq!(only(query_l, CredentialKind::Bearer).identity, None);
    let query_l = &restored(query_l);
    let c = only(query_l, CredentialKind::Bearer);
    assert_eq!(c.place, CredentialPlace::Query("token".into()));
    assert_eq!(c.identity.as_ref().expect("identity").subject, "carol");
    assert_eq!(access_l.request.target, "/public/p");
    let c = only(access_l, CredentialKind::Bearer);
    assert_eq!(c.place, CredentialPlace::Query("access_token".into()));
    assert_eq!(c.identity.as_ref().expect("claimed").subject, "dave");

    // The body: its first 1024 bytes, its whole length.
    assert_eq!(upload_l.request.method, "POST");
    assert_eq!(upload_l.request.body_len, 5000);
    assert!(upload_l.request.body_truncated);
    let kept = base64::engine::general_purpose::STANDARD
        .decode(upload_l.request.body_base64.as_deref().expect("body"))
        .expect("base64");
    assert_eq!(kept, body[..1024]);
    assert_eq!(upload_l.request.version, "HTTP/1.1");
    assert!(upload_l.response.is_none(), "responses are off");

    // Requests on one keep-alive connection share its id; another connection has another.
    let connection = valid_l.request.connection.expect("connection id");
    assert_eq!(expired_l.request.connection, Some(connection));
    let other: hyper_util::client::legacy::Client<
        _,
        http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>,
    > = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let reply = Reply::read(
        other
            .request(
                request("GET", &gw.url("/public/other"))
                    .header("x-request-id", "other-connection")
                    .body(empty())
                    .expect("request"),
            )
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let other_l = &lines_for(&s.path, &["other-connection"]).await[0];
    assert_ne!(other_l.request.connection, Some(connection));

    // No secret reaches the file.
    let text = std::fs::read_to_string(&s.path).expect("recording");
    for secret in [
        valid.as_str(),
        expired.as_str(),
        forged.as_str(),
        query_token.as_str(),
        conventional_token.as_str(),
        api_key,
        "not-a-key",
        "cookie-secret-4711",
        session_secret,
    ] {
        assert!(
            !text.contains(secret),
            "the recording holds the secret `{secret}`"
        );
        // Nor its signature alone, for tokens.
        if let Some((_, signature)) = secret.rsplit_once('.') {
            assert!(
                !text.contains(signature),
                "the recording holds a token's signature"
            );
        }
    }
}

#[tokio::test]
async fn with_responses_the_recorded_hash_is_the_sha256_of_what_the_client_got() {
    let s = setup("  responses: true").await;
    let reply =
        s.gw.send(
            request("GET", &s.gw.url("/public/hash"))
                .header("x-request-id", "hashed")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let refused = bearer(&s.gw, "/users/1", "not.a.token", "refused").await;
    assert_eq!(refused.status, 401);
    let lines = lines_for(&s.path, &["hashed", "refused"]).await;
    for (line, reply) in lines.iter().zip([&reply, &refused]) {
        let response = line.response.as_ref().expect("the response is recorded");
        assert_eq!(response.status, reply.status.as_u16());
        assert_eq!(response.body_len, reply.body.len() as u64);
        assert_eq!(
            response.body_sha256.as_deref(),
            Some(sha256_hex(&reply.body).as_str())
        );
        let content_type = response.headers.iter().find(|(n, _)| n == "content-type");
        assert_eq!(
            content_type.map(|(_, v)| v.as_str()),
            reply.header("content-type"),
            "{}",
            line.id
        );
    }
}

#[tokio::test]
async fn the_recording_rotates_by_size_and_keeps_at_most_keep_files() {
    let s = setup("  rotate_bytes: 4096\n  keep: 2").await;
    let before = s.gw.handle.state().sinks.metrics.recording_written.get();
    for i in 0..40 {
        let reply =
            s.gw.send(
                request("GET", &s.gw.url(&format!("/public/rotate/{i}")))
                    .header("x-request-id", format!("rotate-{i}"))
                    .body(empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let metrics = &s.gw.handle.state().sinks.metrics;
    eventually(
        "40 more lines written",
        Duration::from_secs(10),
        async || match metrics.recording_written.get() - before {
            40.. => Ok(()),
            n => Err(format!("{n} written")),
        },
    )
    .await;
    // Counted as written is not yet flushed: wait for the writer's flush before reading.
    let recorder = s.gw.handle.state().recorder.clone().expect("a recorder");
    assert!(
        tokio::task::spawn_blocking(move || recorder.flush(Duration::from_secs(5)))
            .await
            .expect("flush"),
        "the recording flushed"
    );
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", s.path.display()));
    assert!(
        numbered(1).exists() && numbered(2).exists(),
        "rotated files"
    );
    assert!(!numbered(3).exists(), "no more than `keep` rotated files");
    let mut ids = Vec::new();
    for file in [numbered(2), numbered(1), s.path.clone()] {
        let size = std::fs::metadata(&file).expect("file").len();
        assert!(size <= 4096, "{} holds {size} bytes", file.display());
        ids.extend(lines_of(&file).into_iter().map(|l| l.id));
    }
    // Oldest first, nothing repeated, the newest request in the current file.
    let rotated: Vec<&String> = ids.iter().filter(|id| id.starts_with("rotate-")).collect();
    let numbers: Vec<u32> = rotated
        .iter()
        .map(|id| id["rotate-".len()..].parse().expect("number"))
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] + 1 == w[1]), "{numbers:?}");
    assert_eq!(numbers.last(), Some(&39));
    assert!(numbers.first() > Some(&0), "the oldest file was removed");
    assert_eq!(metrics.recording_dropped.get(), 0);
}

#[tokio::test]
async fn sampling_at_zero_records_nothing() {
    let s = setup("  sample: 0").await;
    for i in 0..20 {
        assert_eq!(s.gw.get(&format!("/public/{i}")).await.status, 200);
    }
    let metrics = &s.gw.handle.state().sinks.metrics;
    // The draw happens at arrival: a request not sampled is never queued, so nothing can be
    // on its way to the file once the answers are in.
    assert_eq!(metrics.recording_written.get(), 0);
    assert_eq!(metrics.recording_dropped.get(), 0);
    assert_eq!(
        std::fs::metadata(&s.path).expect("created at start").len(),
        0
    );
}

#[tokio::test]
async fn a_stuck_writer_drops_and_counts_lines_and_never_holds_a_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("stuck.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Opened for reading (in a thread: opening a FIFO waits for the other end) and never read,
    // so the writer blocks as soon as the pipe's buffer is full.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).expect("open the FIFO"))
    };
    let upstream = Upstream::start().await;
    let config = format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
access_log: off
upstreams:
  svc:
    instances: [\"{upstream}\"]
routes:
  - {{ name: all, match: {{ path: /* }}, upstream: svc }}
recording:
  path: \"{fifo}\"
  rotate_bytes: 0
  queue: 2
  max_body_bytes: 65536
",
        upstream = upstream.address,
        fifo = fifo.display()
    );
    let gw = TestGateway::start(&config).await;
    let _reader = reader.join().expect("reader thread");
    let body = vec![b'y'; 60_000];
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..20 {
            let reply = gw
                .send(
                    request("POST", &gw.url("/upload"))
                        .body(full(body.clone()))
                        .expect("request"),
                )
                .await;
            assert_eq!(reply.status, 200);
        }
    })
    .await;
    assert!(sent.is_ok(), "requests were held by the stuck writer");
    let metrics = &gw.handle.state().sinks.metrics;
    eventually(
        "lines are dropped and counted",
        Duration::from_secs(5),
        async || match metrics.recording_dropped.get() {
            n if n > 0 => Ok(()),
            n => Err(format!("{n} dropped")),
        },
    )
    .await;
    // At most the line being written and the two queued ones escaped the count.
    assert!(
        metrics.recording_dropped.get() >= 17,
        "{}",
        metrics.recording_dropped.get()
    );
}
