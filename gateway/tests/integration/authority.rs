//! Host and authority, and ambiguous paths, over raw sockets: a missing, doubled or malformed
//! `Host` is refused at `tls`; an absolute-form target's authority and HTTP/2's `:authority`
//! win over `Host` for routing, the 421 check and the upstream's `Host`; `%2F`, `%5C`, a raw
//! backslash and `;` are refused, kept or redirected as the listener's `paths` say. Every refusal
//! is checked for its status, problem body and record (stage, reason, raw target), for nothing
//! having reached the upstream, and for a canary on a fresh connection being served after it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway::vocab::StageId;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::identity_support::{Pki, assert_refused};
use super::util::*;

fn config(upstream: SocketAddr, paths: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: "127.0.0.1:0"
{paths}
access_log: off
upstreams:
  svc:
    instances: ["{upstream}"]
routes:
  - {{ name: admin, match: {{ host: admin.example, path: /* }}, upstream: svc }}
  - {{ name: public, match: {{ path: /* }}, upstream: svc }}
"#
    )
}

/// A raw HTTP/1.1 answer read into a [`Reply`]; the connection is closed by then (every request
/// here says `Connection: close`, and a gateway that kept it open fails the test).
async fn raw(gw: &TestGateway, bytes: &[u8]) -> Reply {
    let (text, closed) = raw_exchange(gw.handle.address(), bytes, Duration::from_secs(5)).await;
    assert!(closed, "the gateway closed the connection: {text}");
    parse_reply(&text)
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a response head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).expect("name"),
                HeaderValue::from_str(value.trim()).expect("value"),
            );
        }
    }
    Reply {
        status: StatusCode::from_u16(code).expect("status"),
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// `bytes` is refused with `status` at `stage` for `reason`, the record names them and keeps
/// `target`, nothing reached the upstream, and a canary is served afterwards.
async fn assert_refused_raw(
    gw: &mut TestGateway,
    upstream: &Upstream,
    bytes: &[u8],
    (status, stage, reason): (u16, &str, &str),
    target: &str,
) -> Reply {
    let case = String::from_utf8_lossy(bytes).into_owned();
    let before = upstream.seen().len();
    let reply = raw(gw, bytes).await;
    assert_eq!(reply.status, status, "{case}: {:?}", reply.body);
    if status != 307 {
        assert_refused(&reply, status, stage, reason);
    }
    let record = gw.record().await;
    assert_eq!(record.status, status, "{case}");
    assert_eq!(
        record.stopped_at.map(StageId::as_str),
        Some(stage),
        "{case}"
    );
    assert_eq!(record.reason.as_deref(), Some(reason), "{case}");
    assert_eq!(record.target, target, "{case}");
    assert_eq!(
        upstream.seen().len(),
        before,
        "{case}: nothing reached the upstream"
    );
    canary(gw, upstream).await;
    reply
}

/// A plain request on a fresh connection, served.
async fn canary(gw: &mut TestGateway, upstream: &Upstream) {
    let reply = raw(
        gw,
        b"GET /canary HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "the canary is served");
    assert_eq!(upstream.last().target, "/canary");
    assert_eq!(gw.record().await.route.as_deref(), Some("public"));
}

fn get(target: &str, hosts: &[&str]) -> Vec<u8> {
    let mut out = format!("GET {target} HTTP/1.1\r\n");
    for host in hosts {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

#[tokio::test]
async fn an_http11_request_without_host_is_400_missing_host_and_http10_may_omit_it() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "")).await;
    let refused = (400, "tls", "missing-host");
    assert_refused_raw(&mut gw, &upstream, &get("/x", &[]), refused, "/x").await;
    // RFC 9112 §3.2: even an absolute-form request must carry Host.
    let absolute = get("http://admin.example/x", &[]);
    assert_refused_raw(
        &mut gw,
        &upstream,
        &absolute,
        refused,
        "http://admin.example/x",
    )
    .await;
    let reply = raw(&gw, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().target, "/old");
    assert_eq!(gw.record().await.route.as_deref(), Some("public"));
}

#[tokio::test]
async fn two_host_fields_or_a_host_that_is_not_host_and_port_are_400_invalid_host() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "")).await;
    let refused = (400, "tls", "invalid-host");
    let cases: &[&[&str]] = &[
        &["admin.example", "www.example"],
        &["admin.example", "admin.example"],
        &["user@admin.example"],
        &["user:pw@admin.example"],
        &["admin.example:80:81"],
        &["fe80::1"],
        &["admin example"],
        &["admin.example:"],
        &["admin.example:65536"],
        &["admin.example:8o"],
        &["adm%69n.example"],
        &["admin.example,www.example"],
        &["admin/example"],
        &["[::1"],
        &[""],
    ];
    for hosts in cases {
        let reply = assert_refused_raw(&mut gw, &upstream, &get("/x", hosts), refused, "/x").await;
        assert!(
            !String::from_utf8_lossy(&reply.body).contains(hosts[0]) || hosts[0].is_empty(),
            "the detail does not echo the host: {:?}",
            reply.body
        );
    }
    // An absolute-form target's authority is held to the same rules.
    let userinfo = get("http://u@admin.example/x", &["admin.example"]);
    assert_refused_raw(
        &mut gw,
        &upstream,
        &userinfo,
        refused,
        "http://u@admin.example/x",
    )
    .await;
    // Valid shapes pass: a port, an IPv6 literal, another case and a final dot.
    for host in ["admin.example:8080", "[::1]:80", "ADMIN.Example."] {
        let reply = raw(&gw, &get("/ok", &[host])).await;
        assert_eq!(reply.status, 200, "{host}");
        assert_eq!(upstream.last().headers["host"], host);
        let route = if host.starts_with('[') {
            "public"
        } else {
            "admin"
        };
        assert_eq!(gw.record().await.route.as_deref(), Some(route), "{host}");
    }
}

#[tokio::test]
async fn an_absolute_form_authority_wins_over_host_for_routing_the_upstream_and_the_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "")).await;
    let reply = raw(&gw, &get("http://admin.example/x?a=1", &["www.example"])).await;
    assert_eq!(reply.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["host"], "admin.example");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    assert_eq!(seen.target, "/x?a=1");
    let record = gw.record().await;
    assert_eq!(record.route.as_deref(), Some("admin"));
    assert_eq!(
        record.host.as_ref().map(|h| h.as_bytes()),
        Some(&b"admin.example"[..])
    );
    assert_eq!(record.target, "http://admin.example/x?a=1");
    assert_eq!(record.path, "/x");
    // And the other way round: a Host naming the admin host does not reach its route.
    let reply = raw(&gw, &get("http://www.example/x", &["admin.example"])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().headers["host"], "www.example");
    assert_eq!(gw.record().await.route.as_deref(), Some("public"));
}

/// One HTTP/2 request over cleartext (prior knowledge) with `:authority` from `uri` and the
/// given `host` fields.
async fn h2_get(gw: &TestGateway, uri: &str, hosts: &[&str]) -> Reply {
    let tcp = tokio::net::TcpStream::connect(gw.handle.address())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let mut builder = http::Request::get(uri);
    for host in hosts {
        builder = builder.header("host", *host);
    }
    let request = builder.body(Full::new(Bytes::new())).expect("request");
    let response = sender.send_request(request).await.expect("h2 answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    drop(sender);
    driver.abort();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

#[tokio::test]
async fn on_http2_authority_wins_and_a_host_field_naming_another_host_is_refused() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "")).await;
    // `:authority` alone: routing and the upstream's Host use it.
    let reply = h2_get(&gw, "http://admin.example/x", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().headers["host"], "admin.example");
    let record = gw.record().await;
    assert_eq!(record.route.as_deref(), Some("admin"));
    assert_eq!(record.target, "/x", "HTTP/2's target is :path");
    // A `host` naming the same host (another case, a final dot, the default port) is accepted.
    let reply = h2_get(&gw, "http://admin.example/x", &["ADMIN.example.:80"]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().headers["host"], "admin.example");
    assert_eq!(gw.record().await.route.as_deref(), Some("admin"));
    // A different one is refused: no stage may route on one and forward the other.
    let before = upstream.seen().len();
    let reply = h2_get(&gw, "http://www.example/x", &["admin.example"]).await;
    assert_refused(&reply, 400, "tls", "invalid-host");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Tls));
    assert_eq!(record.reason.as_deref(), Some("invalid-host"));
    assert_eq!(upstream.seen().len(), before);
    // An HTTP/2 path is held to the listener's path rules too.
    let reply = h2_get(&gw, "http://www.example/a%2Fb", &[]).await;
    assert_refused(&reply, 400, "route", "ambiguous-path");
    assert_eq!(gw.record().await.reason.as_deref(), Some("ambiguous-path"));
    assert_eq!(upstream.seen().len(), before);
    canary(&mut gw, &upstream).await;
}

#[tokio::test]
async fn the_421_check_reads_the_absolute_form_authority_not_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::generate();
    let upstream = Upstream::start().await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: "127.0.0.1:0"
    tls:
      client_ca_file: "{ca}"
      certificates:
        - {{ cert_file: "{server}", key_file: "{key}", hosts: [api.localhost] }}
        - {{ cert_file: "{payments}", key_file: "{payments_key}", hosts: [payments.localhost], client_auth: required }}
access_log: off
upstreams:
  svc: {{ instances: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path: /* }}, upstream: svc }}
"#,
        ca = pki.path_str("ca.pem"),
        server = pki.path_str("server.pem"),
        key = pki.path_str("server.key"),
        payments = pki.path_str("payments.pem"),
        payments_key = pki.path_str("payments.key"),
        up = upstream.address,
    );
    let mut gw = TestGateway::start(&yaml).await;
    let connector = super::identity_support::tls_client(
        &pki,
        super::identity_support::ClientCert::None,
        &[b"http/1.1"],
    );
    let address = gw.handle.address();
    let exchange = |bytes: Vec<u8>| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("api.localhost").expect("name");
            let mut tls = connector.connect(name, tcp).await.expect("handshake");
            tls.write_all(&bytes).await.expect("write");
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
            parse_reply(&String::from_utf8_lossy(&out))
        }
    };
    // The connection's handshake was for api.localhost; the target names the mTLS host.
    let reply = exchange(get("https://payments.localhost/charge", &["api.localhost"])).await;
    assert_refused(&reply, 421, "tls", "misdirected-request");
    let record = gw.record().await;
    assert_eq!(record.reason.as_deref(), Some("misdirected-request"));
    assert_eq!(record.target, "https://payments.localhost/charge");
    assert!(upstream.seen().is_empty());
    // A Host naming the mTLS host is overridden by the target's authority: served.
    let reply = exchange(get("https://api.localhost/ok", &["payments.localhost"])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().headers["host"], "api.localhost");
    assert_eq!(gw.record().await.status, 200);
}

fn paths(escaped_slashes: &str, path_parameters: &str) -> String {
    format!(
        "    paths: {{ escaped_slashes: {escaped_slashes}, path_parameters: {path_parameters} }}"
    )
}

/// The ambiguous spellings every option is tried on.
const AMBIGUOUS: [&str; 6] = ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/a\\b", "/a;b"];

#[tokio::test]
async fn by_default_encoded_slashes_backslashes_and_path_parameters_are_400_ambiguous_path() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, "")).await;
    let refused = (400, "route", "ambiguous-path");
    for path in AMBIGUOUS {
        assert_refused_raw(
            &mut gw,
            &upstream,
            &get(path, &["www.example"]),
            refused,
            path,
        )
        .await;
    }
    // Tomcat's bypass: `/admin;x=..` is `/admin` to it.
    let tomcat = "/public/..;/admin/x";
    assert_refused_raw(
        &mut gw,
        &upstream,
        &get(tomcat, &["www.example"]),
        refused,
        tomcat,
    )
    .await;
    // An encoded semicolon is data, not a parameter: it passes, still encoded.
    let reply = raw(&gw, &get("/a%3Bb", &["www.example"])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().target, "/a%3Bb");
    gw.record().await;
}

#[tokio::test]
async fn keep_passes_every_ambiguous_spelling_as_normalization_leaves_it() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&config(upstream.address, &paths("keep", "keep"))).await;
    let expected = ["/a%2Fb", "/a%2Fb", "/a%5Cb", "/a%5Cb", "/a\\b", "/a;b"];
    for (path, seen) in AMBIGUOUS.into_iter().zip(expected) {
        let reply = raw(&gw, &get(path, &["www.example"])).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(upstream.last().target, seen, "{path}");
        let record = gw.record().await;
        assert_eq!(record.target, path);
        assert_eq!(record.path, seen);
    }
}

#[tokio::test]
async fn each_option_applies_alone() {
    let upstream = Upstream::start().await;
    // Slashes kept, parameters refused.
    let mut gw = TestGateway::start(&config(upstream.address, &paths("keep", "reject"))).await;
    let reply = raw(&gw, &get("/a%2Fb", &["www.example"])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().target, "/a%2Fb");
    gw.record().await;
    let refused = (400, "route", "ambiguous-path");
    assert_refused_raw(
        &mut gw,
        &upstream,
        &get("/a;b", &["www.example"]),
        refused,
        "/a;b",
    )
    .await;
    // Parameters kept, slashes refused.
    let mut gw = TestGateway::start(&config(upstream.address, &paths("reject", "keep"))).await;
    let reply = raw(&gw, &get("/a;b", &["www.example"])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.last().target, "/a;b");
    gw.record().await;
    for path in &AMBIGUOUS[..5] {
        assert_refused_raw(
            &mut gw,
            &upstream,
            &get(path, &["www.example"]),
            refused,
            path,
        )
        .await;
    }
}

#[tokio::test]
async fn unescape_and_redirect_answers_307_to_the_unescaped_path_and_the_redirect_is_served() {
    let upstream = Upstream::start().await;
    let yaml = config(upstream.address, &paths("unescape_and_redirect", "reject"));
    let mut gw = TestGateway::start(&yaml).await;
    let redirected = (307, "route", "ambiguous-path");
    let cases = [
        ("/a%2Fb?x=1", "/a/b?x=1"),
        ("/a%2fb", "/a/b"),
        ("/a%5Cb", "/a/b"),
        ("/a%5cb", "/a/b"),
        ("/a\\b", "/a/b"),
        ("/a%2F..%2Fb", "/b"),
        // Never a protocol-relative Location that would send the client to another host.
        ("/%2F%2Fevil.example/x", "/evil.example/x"),
    ];
    for (path, location) in cases {
        let reply = assert_refused_raw(
            &mut gw,
            &upstream,
            &get(path, &["www.example"]),
            redirected,
            path,
        )
        .await;
        assert_eq!(reply.header("location"), Some(location), "{path}");
        // The client follows: the path has one meaning now, and is served.
        let reply = raw(&gw, &get(location, &["www.example"])).await;
        assert_eq!(reply.status, 200, "{location}");
        assert_eq!(upstream.last().target, location);
        gw.record().await;
    }
    // Parameters are still refused: no redirect is offered for a path that would be.
    let refused = (400, "route", "ambiguous-path");
    assert_refused_raw(
        &mut gw,
        &upstream,
        &get("/a%2Fb;c", &["www.example"]),
        refused,
        "/a%2Fb;c",
    )
    .await;
}
