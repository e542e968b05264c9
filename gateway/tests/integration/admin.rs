//! The admin listener and the record sinks: Prometheus metrics, the record stream, the access log.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::util::*;

#[tokio::test]
async fn with_nothing_reading_records_requests_are_counted_and_a_new_subscriber_gets_whole_ones() {
    let upstream = Upstream::start().await;
    let mut gw = TestGateway::start(&reference_config(upstream.address)).await;
    // The test config's access log is off. With the one subscription swapped for a channel of
    // its own, nothing reads records, and the pipeline makes them for the metrics alone.
    gw.records = tokio::sync::broadcast::channel(1).1;
    assert_eq!(gw.get("/api/v1/users/1").await.status, 200);
    let admin = gw.handle.admin_address().expect("admin address");
    let text = String::from_utf8_lossy(
        &gw.get_absolute(&format!("http://{admin}/metrics"))
            .await
            .body,
    )
    .into_owned();
    assert!(
        text.contains(r#"gatehouse_requests_total{route="/api/v1/users/*",method="GET",status_class="2xx",stopped_at="none"} 1"#),
        "{text}"
    );

    gw.records = gw.handle.subscribe();
    assert_eq!(gw.get("/api/v1/users/2?page=3").await.status, 200);
    let record = gw.record().await;
    assert_eq!(
        record.path, "/api/v1/users/2",
        "the first request's record is never sent"
    );
    assert_eq!(record.target, "/api/v1/users/2?page=3");
    assert_eq!(record.trace_id.len(), 32, "{record:?}");
    assert!(record.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_stop_stage_never_by_raw_path() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    gw.get("/api/v1/users/12345").await;
    gw.get("/api/unknown-thing").await;
    let admin = gw.handle.admin_address().expect("admin address");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.contains(r#"gatehouse_requests_total{route="/api/v1/users/*",method="GET",status_class="2xx",stopped_at="none"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"gatehouse_requests_total{route="/api/*",method="GET",status_class="4xx",stopped_at="route"} 1"#),
        "{text}"
    );
    assert!(text.contains("gatehouse_request_duration_seconds_bucket"));
    assert!(
        text.contains(r#"gatehouse_stage_duration_seconds_count{stage="forward"} 1"#),
        "{text}"
    );
    assert!(!text.contains("12345"), "raw paths never become labels");
    assert!(
        !text.contains("unknown-thing"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn the_admin_record_stream_carries_every_request_as_a_json_line() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let admin = gw.handle.admin_address().expect("admin address");
    let response = gw
        .client
        .request(
            request("GET", &format!("http://{admin}/records"))
                .body(empty())
                .expect("request"),
        )
        .await
        .expect("record stream");
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();
    // The subscription exists once the response head is back; now make traffic.
    gw.get("/api/v1/users/9").await;
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a record line within 5 s")
        .expect("frame")
        .expect("data");
    let line = frame.into_data().expect("data frame");
    let record: serde_json::Value = serde_json::from_slice(&line).expect("JSON line");
    assert_eq!(record["route"], "users-v1");
    assert_eq!(record["status"], 200);
    assert_eq!(record["path"], "/api/v1/users/9");
    assert!(record["stage_ns"]["forward"].as_u64().is_some());
}

#[tokio::test]
async fn the_config_endpoint_reports_source_and_hash() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&reference_config(upstream.address)).await;
    let admin = gw.handle.admin_address().expect("admin address");
    let reply = gw.get_absolute(&format!("http://{admin}/config")).await;
    let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
    assert_eq!(body["source"], "<test>");
    assert_eq!(body["hash"].as_str().expect("hash").len(), 16);
}

/// A directory of this process's own under the temporary one, and an access-log path in it
/// that holds no file yet.
fn fresh_log(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let log = dir.join("access.jsonl");
    let _ = std::fs::remove_file(&log);
    (dir, log)
}

/// The first whole line of the log at `log`, once there is one.
async fn first_log_line(log: &std::path::Path) -> String {
    eventually(
        "a whole line in the log",
        Duration::from_secs(5),
        async || {
            let file = tokio::fs::File::open(log).await.expect("log file");
            let mut line = String::new();
            BufReader::new(file)
                .read_line(&mut line)
                .await
                .expect("read");
            if line.ends_with('\n') {
                Ok(line)
            } else {
                Err(format!("{line:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn an_access_log_with_fields_writes_those_fields_alone_in_the_records_order() {
    let upstream = Upstream::start().await;
    let (dir, log) = fresh_log("gatehouse-log-fields");
    let config = reference_config(upstream.address).replace(
        "access_log: off",
        &format!(
            "access_log:\n  path: {}\n  fields: [status, request_id, upstream_instance, stage_ns]",
            log.display()
        ),
    );
    let mut gw = TestGateway::start(&config).await;
    gw.send(
        request("GET", &gw.url("/api/v1/users/5"))
            .header("x-request-id", "fields-request-1")
            .body(empty())
            .expect("request"),
    )
    .await;
    // The in-process subscriber still gets the whole record.
    let whole = gw.record().await;
    assert_eq!(whole.route_template.as_deref(), Some("/api/v1/users/*"));
    let line = first_log_line(&log).await;
    let prefix = r#"{"request_id":"fields-request-1","status":200,"stage_ns":{"tls":"#;
    assert!(line.starts_with(prefix), "{line}");
    let record: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let keys: Vec<&str> = record
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = ["request_id", "stage_ns", "status", "upstream_instance"];
    expected.sort_unstable();
    assert_eq!(keys, expected, "serde_json's map sorts its keys");
    assert_eq!(
        record["upstream_instance"],
        upstream.address.to_string(),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_access_log_writes_one_json_line_per_request() {
    let upstream = Upstream::start().await;
    let (_dir, log) = fresh_log("gatehouse-log");
    let config = reference_config(upstream.address)
        .replace("access_log: off", &format!("access_log: {}", log.display()));
    let mut gw = TestGateway::start(&config).await;
    gw.send(
        request("GET", &gw.url("/api/v1/users/5"))
            .header("x-request-id", "logged-request-1")
            .header("authorization", "Bearer secret-token")
            .body(empty())
            .expect("request"),
    )
    .await;
    gw.record().await;
    let line = first_log_line(&log).await;
    let record: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(record["request_id"], "logged-request-1");
    assert_eq!(record["route_template"], "/api/v1/users/*");
    assert!(
        !line.contains("secret-token"),
        "credentials never reach the log"
    );
}
