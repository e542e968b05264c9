//! mutate_request and mutate_response: what the upstream and the client get to see.

use super::util::*;

#[tokio::test]
async fn spoofed_identity_and_hop_by_hop_headers_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/api/v1/users/1"))
                .header("x-user-id", "admin")
                .header("x-tenant-id", "other-tenant")
                .header("x-auth-scopes", "everything")
                .header("x-internal-debug", "1")
                .header("connection", "x-drop-me")
                .header("x-drop-me", "1")
                .header("keep-alive", "timeout=5")
                .header("x-forwarded-for", "6.6.6.6")
                .header("x-kept", "yes")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.last().headers;
    for gone in [
        "x-user-id",
        "x-tenant-id",
        "x-auth-scopes",
        "x-internal-debug",
        "x-drop-me",
        "keep-alive",
    ] {
        assert!(
            !seen.contains_key(gone),
            "{gone} must not reach the upstream"
        );
    }
    assert_eq!(seen["x-kept"], "yes");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "from the socket peer, not the client's claim"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn request_id_and_traceparent_are_kept_when_well_formed_and_made_when_not() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;

    gw.send(
        request("GET", &gw.url("/api/v1/users/1"))
            .header("x-request-id", "client-chosen-id-1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(empty())
            .expect("request"),
    )
    .await;
    let seen = upstream.last().headers;
    assert_eq!(seen["x-request-id"], "client-chosen-id-1");
    let traceparent = seen["traceparent"].to_str().expect("ascii");
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the gateway's span is the parent"
    );
    let record = gw.record().await;
    assert_eq!(record.request_id, "client-chosen-id-1");
    assert_eq!(record.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

    gw.send(
        request("GET", &gw.url("/api/v1/users/1"))
            .header("x-request-id", "bad id with spaces")
            .header(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )
            .body(empty())
            .expect("request"),
    )
    .await;
    let seen = upstream.last().headers;
    let id = seen["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 32, "a fresh id replaces a malformed one");
    let traceparent = seen["traceparent"].to_str().expect("ascii");
    assert_eq!(traceparent.len(), 55);
    assert!(!traceparent.contains("00000000000000000000000000000000"));
    assert_eq!(gw.record().await.request_id, id);
}

#[tokio::test]
async fn internal_hop_by_hop_server_and_powered_by_headers_are_stripped_from_responses() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("GET", &gw.url("/api/v1/users/1"))
                .header("x-test-behaviour", "leaky")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    for gone in [
        "server",
        "x-powered-by",
        "x-internal-debug",
        "x-user-id",
        "connection",
        "keep-alive",
        "x-hop-field",
    ] {
        assert!(
            reply.header(gone).is_none(),
            "{gone} must not reach the client"
        );
    }
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert!(
        reply.header("access-control-allow-origin").is_none(),
        "CORS is the gateway's alone: the upstream's wildcard is removed"
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_at_the_gateway_for_an_allowed_origin() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("OPTIONS", &gw.url("/api/v1/users/1"))
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "GET")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(reply.header("access-control-allow-methods").is_some());
    assert_eq!(reply.header("vary"), Some("Origin"));
    assert!(
        upstream.seen().is_empty(),
        "preflights never reach the upstream"
    );
    let record = gw.record().await;
    assert_eq!(record.stopped_at, None);
    assert_eq!(record.reason.as_deref(), Some("cors-preflight"));
}

#[tokio::test]
async fn cors_preflight_from_an_unknown_origin_is_refused() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("OPTIONS", &gw.url("/api/v1/users/1"))
                .header("origin", "https://evil.example.net")
                .header("access-control-request-method", "GET")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.problem()["stage"], "mutate_response");
    assert!(reply.header("access-control-allow-origin").is_none());
    assert_eq!(gw.record().await.reason.as_deref(), Some("cors-rejected"));
}

#[tokio::test]
async fn cors_on_actual_requests_echoes_only_the_allowed_origin_never_a_wildcard() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let allowed = gw
        .send(
            request("GET", &gw.url("/api/v1/users/1"))
                .header("origin", "https://app.example.com")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let other = gw
        .send(
            request("GET", &gw.url("/api/v1/users/1"))
                .header("origin", "https://evil.example.net")
                .header("x-test-behaviour", "leaky")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(
        other.status, 200,
        "CORS is the browser's to enforce on simple requests"
    );
    assert!(other.header("access-control-allow-origin").is_none());
    // Stops carry CORS too, so a browser can read the 404's problem body.
    let stopped = gw
        .send(
            request("GET", &gw.url("/api/nope"))
                .header("origin", "https://app.example.com")
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(stopped.status, 404);
    assert_eq!(
        stopped.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}
