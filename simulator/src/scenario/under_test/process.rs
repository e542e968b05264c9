//! `--process`: the gateway under test as a child process — the `gateway` binary on a temporary
//! config — with records read from its admin `/records` stream.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gateway::record::RequestRecord;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Records, RunningGateway};
use crate::http_client;
use crate::scenario::sink::RecordSink;

pub async fn start(
    binary: &Path,
    config_text: &str,
    watchers: &RecordSink,
) -> Result<RunningGateway, String> {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-sim-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let config = dir.join("gateway.yaml");
    let text = format!("{config_text}\nadmin:\n  address: \"127.0.0.1:0\"\n");
    std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let mut child = tokio::process::Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut address = None;
    let mut admin = None;
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = field(&line, "address=") {
                address = Some(a);
            }
            if let Some(a) = field(&line, "admin=") {
                admin = Some(a);
            }
            if address.is_some() && admin.is_some() {
                return true;
            }
        }
        false
    })
    .await;
    let (Ok(true), Some(address), Some(admin)) = (found, address, admin) else {
        return Err(format!("{} did not report its addresses", binary.display()));
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let records = Records::default();
    let client = http_client::new();
    let request = http::Request::get(format!("http://{admin}/records"))
        .body(Default::default())
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot attach to the record stream: {e}"))?;
    let collected = records.clone();
    let watchers = watchers.clone();
    tokio::spawn(async move {
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(record) = serde_json::from_slice::<RequestRecord>(&line) {
                        let record = std::sync::Arc::new(record);
                        watchers.offer(&record);
                        collected.insert((*record).clone());
                    }
                }
            }
        }
    });
    let pid = child.id();
    Ok(RunningGateway::from_process(
        address,
        records,
        Box::new(move || {
            // SIGTERM so the child drains like it would in production; kill_on_drop backs it up.
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            drop(child);
            let _ = std::fs::remove_dir_all(dir);
        }),
    ))
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()?.parse().ok()
}
