//! Live config: reloads under load fail no request; an invalid file leaves everything as it was
//! and says why; health, ejections and breakers survive a reload for what did not change; an
//! instance a reload removes finishes its requests; `gateway run` reloads on SIGHUP and when the
//! file changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gateway::clock::ManualClock;

use super::resilience_util::*;
use super::util::*;

fn config(instances: &[SocketAddr], extra_route: &str, upstream_extra: &str) -> String {
    let list = instances
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
listeners: [{{ name: public, address: "127.0.0.1:0" }}]
access_log: off
upstreams:
  svc:
    instances: [{list}]
{upstream_extra}
routes:
  - {{ name: svc, match: {{ path: /svc/* }}, upstream: svc }}
{extra_route}
  - {{ name: catch-all, match: {{ path: /* }}, respond: {{ status: 404 }} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_reloads_under_steady_load_fail_no_request() {
    let (a, b, c) = (
        Fake::start("a").await,
        Fake::start("b").await,
        Fake::start("c").await,
    );
    let gw = TestGateway::start(&config(&[a.address, b.address], "", "")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url) = (gw.client.clone(), gw.url("/svc/load"));
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // Bounded: at most 5,000 requests per worker, and it stops when told.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = client.request(request("GET", &url).body(empty()).expect("request"));
                match tokio::time::timeout(Duration::from_secs(5), sent).await {
                    Ok(Ok(response)) if response.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Each reload changes something different: instances, a route, weights, a breaker, back.
    let versions = [
        config(&[a.address, b.address, c.address], "", ""),
        config(
            &[b.address, c.address],
            "  - { name: extra, match: { path: /extra/* }, upstream: svc }",
            "",
        ),
        config(
            &[b.address, c.address],
            "",
            "    load_balancing: { policy: least_outstanding }",
        ),
        config(
            &[c.address, a.address],
            "",
            "    circuit_breaker: { consecutive_failures: 50 }",
        ),
        config(&[a.address, b.address], "", ""),
    ];
    for (i, text) in versions.iter().enumerate() {
        // The scenario: the load runs a while between reloads (and after the last one).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let reloaded = gw.handle.reload(runtime(text));
        assert_eq!(reloaded.version, i as u64 + 2);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across the reloads",
        ok + failed
    );
    assert!(ok > 100, "steady load: only {ok} requests");
    assert!(c.hits() > 0, "the reloads took effect");
    let config = admin_json(&gw, "/config").await;
    assert_eq!(config["version"], 6);
    assert!(
        metrics(&gw)
            .await
            .contains(r#"gatehouse_config_reloads_total{result="success"} 5"#)
    );
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-reload-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test]
async fn an_invalid_file_leaves_the_active_config_in_place_and_says_why() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let good = config(&[a.address], "", "");
    let path = temp_config("invalid", &good);
    let gw = TestGateway::start(&good).await;
    let hash = admin_json(&gw, "/config").await["hash"].clone();

    let bad = config(
        &[b.address],
        "  - { name: typo, match: { path: /t/* }, upstream: svx }",
        "    retries: { attempts: 50 }",
    );
    std::fs::write(&path, &bad).expect("write bad config");
    let problems = gateway::reload::reload_file(gw.handle.state(), &path).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let file = path.display().to_string();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].starts_with(&format!("{file}:7:")),
        "file and line: {shown:#?}"
    );
    assert!(
        shown[0].contains("upstreams.svc.retries.attempts"),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with(&format!("{file}:10:")),
        "file and line: {shown:#?}"
    );
    assert!(shown[1].contains("unknown upstream `svx`"), "{shown:#?}");

    // Behaviour unchanged: still `a`, same version and hash; the failure is reported.
    let reply = gw.get("/svc/x").await;
    assert_eq!(&reply.body[..], b"a");
    assert_eq!(b.hits(), 0);
    let config = admin_json(&gw, "/config").await;
    assert_eq!(config["version"], 1);
    assert_eq!(config["hash"], hash);
    assert_eq!(
        config["last_reload_failure"]["problems"]
            .as_array()
            .expect("problems")
            .len(),
        2
    );
    assert!(
        metrics(&gw)
            .await
            .contains(r#"gatehouse_config_reloads_total{result="failure"} 1"#)
    );

    // A good file afterwards is taken, and clears the failure.
    std::fs::write(&path, config_text(&[b.address])).expect("write good config");
    let reloaded = gateway::reload::reload_file(gw.handle.state(), &path).expect("accepted");
    assert_eq!(reloaded.version, 2);
    assert_eq!(&gw.get("/svc/x").await.body[..], b"b");
    assert!(admin_json(&gw, "/config").await["last_reload_failure"].is_null());
}

fn config_text(instances: &[SocketAddr]) -> String {
    config(instances, "", "")
}

#[tokio::test]
async fn ejections_and_breakers_survive_a_reload_of_what_did_not_change() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    b.set(Mode::Status(500));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let resilience = "    outlier_ejection: { consecutive_5xx: 2, base_ejection_time: 30s }\n    circuit_breaker: { consecutive_failures: 100, open_for: 10s }";
    let gw = gateway_on_clock(
        &config(&[a.address, b.address], "", resilience),
        clock.clone(),
    )
    .await;
    for _ in 0..4 {
        gw.get("/svc/x").await;
    }
    assert_eq!(instance(&gw, "svc", b.address).await["ejected"], true);

    // A new route, the upstream untouched: b stays ejected.
    gw.handle.reload(runtime(&config(
        &[a.address, b.address],
        "  - { name: extra, match: { path: /extra/* }, upstream: svc }",
        resilience,
    )));
    assert_eq!(instance(&gw, "svc", b.address).await["ejected"], true);
    assert_eq!(
        instance(&gw, "svc", b.address).await["ejected_for_ms"],
        30_000
    );
    for _ in 0..4 {
        assert_eq!(&gw.get("/extra/x").await.body[..], b"a");
    }

    // An instance added beside it starts in rotation; b keeps its state.
    let c = Fake::start("c").await;
    gw.handle.reload(runtime(&config(
        &[a.address, b.address, c.address],
        "",
        resilience,
    )));
    assert_eq!(instance(&gw, "svc", b.address).await["ejected"], true);
    assert_eq!(instance(&gw, "svc", c.address).await["available"], true);

    // Open the breaker, then reload with the same breaker: still open. A changed breaker
    // starts closed.
    a.set(Mode::Status(500));
    c.set(Mode::Status(500));
    let tight = "    outlier_ejection: { consecutive_5xx: 2, base_ejection_time: 30s }\n    circuit_breaker: { consecutive_failures: 2, open_for: 10s }";
    gw.handle.reload(runtime(&config(
        &[a.address, b.address, c.address],
        "",
        tight,
    )));
    gw.get("/svc/x").await;
    gw.get("/svc/x").await;
    assert_eq!(
        admin_json(&gw, "/upstreams").await["upstreams"][0]["breaker"],
        "open"
    );
    gw.handle.reload(runtime(&config(
        &[a.address, b.address, c.address],
        "  - { name: more, match: { path: /more/* }, upstream: svc }",
        tight,
    )));
    assert_eq!(
        admin_json(&gw, "/upstreams").await["upstreams"][0]["breaker"],
        "open"
    );
    let loose = "    circuit_breaker: { consecutive_failures: 3, open_for: 10s }";
    gw.handle.reload(runtime(&config(
        &[a.address, b.address, c.address],
        "",
        loose,
    )));
    assert_eq!(
        admin_json(&gw, "/upstreams").await["upstreams"][0]["breaker"],
        "closed"
    );
}

#[tokio::test]
async fn an_instance_removed_by_a_reload_finishes_its_request_in_flight() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set(Mode::Slow(Duration::from_millis(800)));
    let gw = TestGateway::start(&config(&[a.address], "", "")).await;
    let in_flight = {
        let (client, url) = (gw.client.clone(), gw.url("/svc/slow"));
        tokio::spawn(async move {
            let response = client
                .request(request("GET", &url).body(empty()).expect("request"))
                .await
                .expect("answered");
            Reply::read(response).await
        })
    };
    eventually(
        "the slow request reached a",
        Duration::from_secs(5),
        async || match a.hits() {
            1 => Ok(()),
            n => Err(format!("{n} requests at a")),
        },
    )
    .await;
    gw.handle.reload(runtime(&config(&[b.address], "", "")));
    assert_eq!(
        &gw.get("/svc/x").await.body[..],
        b"b",
        "new requests go to the new instance"
    );
    let reply = in_flight.await.expect("task");
    assert_eq!((reply.status.as_u16(), &reply.body[..]), (200, &b"a"[..]));
}

#[tokio::test]
async fn the_watcher_reloads_when_the_file_changes_and_keeps_the_last_good_config() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let path = temp_config("watch", &config_text(&[a.address]));
    let gw = TestGateway::start(&config_text(&[a.address])).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(
        gateway::reload::ConfigWatch::arm(gw.handle.state().clone(), path.clone()).run(stopped),
    );

    // Armed before the spawn: an edit made from here on is seen.
    std::fs::write(&path, "upstreams: [\n").expect("write broken config");
    eventually(
        "the broken file is refused",
        Duration::from_secs(5),
        async || {
            let config = admin_json(&gw, "/config").await;
            if config["last_reload_failure"].is_null() {
                Err(config)
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert_eq!(&gw.get("/svc/x").await.body[..], b"a");

    std::fs::write(&path, config_text(&[b.address])).expect("write config");
    eventually(
        "the changed file is loaded",
        Duration::from_secs(5),
        async || {
            let config = admin_json(&gw, "/config").await;
            if config["version"] == 2 {
                Ok(())
            } else {
                Err(config)
            }
        },
    )
    .await;
    assert_eq!(&gw.get("/svc/x").await.body[..], b"b");
    let _ = stop.send(true);
    watcher.await.expect("watcher ends on shutdown");
}

#[tokio::test]
async fn a_refused_edit_that_is_undone_clears_the_reported_failure() {
    let a = Fake::start("a").await;
    let good = config_text(&[a.address]);
    let path = temp_config("undone", &good);
    let gw = TestGateway::start(&good).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(
        gateway::reload::ConfigWatch::arm(gw.handle.state().clone(), path.clone()).run(stopped),
    );
    std::fs::write(&path, "upstreams: [\n").expect("write broken config");
    eventually(
        "the broken file is refused",
        Duration::from_secs(5),
        async || {
            let config = admin_json(&gw, "/config").await;
            if config["last_reload_failure"].is_null() {
                Err(config)
            } else {
                Ok(())
            }
        },
    )
    .await;

    // Back to the very text that is active: nothing to reload, but the failure is over.
    std::fs::write(&path, &good).expect("restore config");
    let config = eventually(
        "the failure is cleared",
        Duration::from_secs(5),
        async || {
            let config = admin_json(&gw, "/config").await;
            if config["last_reload_failure"].is_null() {
                Ok(config)
            } else {
                Err(config)
            }
        },
    )
    .await;
    assert_eq!(config["version"], 1, "the active config never changed");
    assert_eq!(&gw.get("/svc/x").await.body[..], b"a");
    let _ = stop.send(true);
    watcher.await.expect("watcher ends on shutdown");
}

/// An address free a moment ago, for the `gateway run` process to listen on.
async fn free_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test]
async fn gateway_run_reloads_on_sighup() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let (public, admin) = (free_address().await, free_address().await);
    let text = |upstream: SocketAddr| {
        config_text(&[upstream])
            .replace("127.0.0.1:0", &public.to_string())
            .replace(
                "access_log: off",
                &format!("access_log: off\nadmin: {{ address: \"{admin}\" }}"),
            )
    };
    let path = temp_config("sighup", &text(a.address));
    let ready = path.with_file_name("ready");
    let _ = std::fs::remove_file(&ready);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&path)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gateway run");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url.parse().expect("uri")).await.ok()?;
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .ok()?;
            Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
        }
    };
    // The ready file is the promise this test holds the gateway to: once it exists, the
    // watcher and the SIGHUP handler are armed, so one edit and one signal are enough.
    eventually(
        "gateway run writes its ready file",
        Duration::from_secs(10),
        async || match std::fs::read_to_string(&ready) {
            Ok(text) if text.contains(&public.to_string()) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        get(format!("http://{public}/svc/x")).await.as_deref(),
        Some("a")
    );

    // The watcher reloads a changed file (version 2); SIGHUP reloads even an unchanged one
    // (version 3), so each step is seen on its own.
    std::fs::write(&path, text(b.address)).expect("write config");
    eventually(
        "the file change is picked up",
        Duration::from_secs(10),
        async || match get(format!("http://{public}/svc/x")).await {
            Some(body) if body == "b" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    eventually("SIGHUP reloads", Duration::from_secs(10), async || {
        let config = get(format!("http://{admin}/config"))
            .await
            .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok());
        match config {
            Some(c) if c["version"] == 3 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    assert!(
        exited.is_ok_and(|s| s.is_ok_and(|s| s.success())),
        "gateway run stops on SIGTERM"
    );
}
