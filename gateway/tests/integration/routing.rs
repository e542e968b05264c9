//! Requests travel client → gateway → upstream → client along the reference routing table.

use gateway::vocab::StageId;

use super::util::*;

#[tokio::test]
async fn get_user_reaches_users_svc_with_rewritten_path_and_a_full_record() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;

    let reply = gw.get("/api/v1/users/42?fields=name").await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"upstream ok");
    let seen = upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/users/42?fields=name");

    let record = gw.record().await;
    assert_eq!(record.route.as_deref(), Some("users-v1"));
    assert_eq!(record.route_template.as_deref(), Some("/api/v1/users/*"));
    assert_eq!(record.upstream.as_deref(), Some("users-svc"));
    assert_eq!(record.upstream_path.as_deref(), Some("/users/42"));
    assert_eq!(record.status, 200);
    assert_eq!(record.stopped_at, None);
    assert_eq!(record.reason, None);
    assert!(record.completed);
    assert_eq!(record.bytes_out, 11);
    for stage in StageId::ALL {
        assert!(record.stage_ns.get(stage).is_some(), "{stage} timed");
    }
    assert_eq!(
        reply.header("x-request-id"),
        Some(record.request_id.as_str()),
        "the client sees the id its record carries"
    );
}

#[tokio::test]
async fn post_users_reaches_the_service_as_post_users_with_its_body() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("POST", &gw.url("/api/v1/users"))
                .header("content-type", "application/json")
                .body(full(&b"{\"name\":\"ada\"}"[..]))
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/users")
    );
    assert_eq!(seen.body_bytes, 14);
    assert_eq!(gw.record().await.bytes_in, 14);
}

#[tokio::test]
async fn unknown_route_stops_at_route_with_404_and_the_upstream_untouched() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw.get("/api/nothing/here").await;
    assert_eq!(reply.status, 404);
    let problem = reply.problem();
    assert_eq!(problem["stage"], "route");
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["type"], "urn:gatehouse:problem:catch-all");
    let record = gw.record().await;
    assert_eq!(record.stopped_at, Some(StageId::Route));
    assert_eq!(record.reason.as_deref(), Some("catch-all"));
    assert_eq!(record.route.as_deref(), Some("unknown-route"));
    assert_eq!(problem["request_id"], record.request_id.as_str());
    assert!(
        record.stage_ns.get(StageId::Forward).is_none(),
        "forward never ran"
    );
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn dot_segments_double_slashes_and_encoded_letters_cannot_dodge_the_admin_rule() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    for path in [
        "/api/admin/users",
        "/api/./admin/users",
        "/api//admin/users",
        "/api/%61dmin/users",
        "/api/v1/../admin/users",
    ] {
        let reply = gw.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        let record = gw.record().await;
        assert_eq!(record.route.as_deref(), Some("admin"), "{path}");
        assert_eq!(record.path, "/api/admin/users", "{path}");
        assert_eq!(upstream.last().target, "/api/admin/users", "{path}");
    }
}

#[tokio::test]
async fn an_encoded_slash_is_refused_by_default_and_never_a_separator_when_kept() {
    let upstream = Upstream::start().await;
    let text = reference_config(upstream.address);
    let mut gw = TestGateway::start(&text).await;
    let reply = gw.get("/api/admin%2Fusers").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.problem()["stage"], "route");
    assert_eq!(gw.record().await.reason.as_deref(), Some("ambiguous-path"));
    assert!(upstream.seen().is_empty());
    let kept = text.replace(
        "  - name: public\n",
        "  - name: public\n    paths: {escaped_slashes: keep}\n",
    );
    assert_ne!(
        kept, text,
        "the fixture's listener changed; update this test"
    );
    let mut gw = TestGateway::start(&kept).await;
    // `/api/admin%2Fusers` is one segment `admin%2Fusers` under /api, so the admin route does not match.
    let reply = gw.get("/api/admin%2Fusers").await;
    assert_eq!(reply.status, 404);
    assert_eq!(gw.record().await.route.as_deref(), Some("unknown-route"));
}

#[tokio::test]
async fn a_malformed_percent_escape_stops_at_route_with_400() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw.get("/api/v1/users/%zz").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.problem()["stage"], "route");
    assert_eq!(gw.record().await.reason.as_deref(), Some("bad-path"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn method_mismatch_falls_through_to_the_catch_all() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    let reply = gw
        .send(
            request("DELETE", &gw.url("/api/v1/users/42"))
                .body(empty())
                .expect("request"),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(gw.record().await.route.as_deref(), Some("unknown-route"));
}
