//! What a replay sends to: the real gateway in-process or as the `gateway` binary (with fake
//! upstreams answering 200 and the fake issuer for the config's first issuer), or a running
//! gateway at `--target`, whose records come from its admin `/records` stream when `--admin`
//! names it. Either way records are collected by request id, so each outcome gets the decision
//! of the record with its id. For `--virtual-time` the in-process gateway runs on the run's
//! [`VirtualTime`] clock instead of the system's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway::config::compiled::Runtime;

use gateway::record::RequestRecord;
use http_body_util::BodyExt;

use super::identity::test_api_keys;
use super::send::VirtualTime;
use crate::fake::issuer::FakeIssuer;
use crate::http_client;
use crate::scenario::fakes::{Fakes, point_config_at_fakes};
use crate::scenario::model::FakeIssuerSpec;
use crate::scenario::outcome::RunError;
use crate::scenario::sink::RecordSink;
use crate::scenario::under_test::{GatewayMode, Records, RunningGateway, start_gateway_on_clock};

/// Where to replay.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// The real gateway on this config, in-process or as the binary at `GatewayMode::Process`;
    /// with `record`, the gateway records the replay there (`replay --record`).
    Config {
        config: PathBuf,
        mode: GatewayMode,
        record: Option<PathBuf>,
    },
    /// A gateway already running at `url`; its records from `admin`'s `/records`, when given.
    Url { url: String, admin: Option<String> },
}

/// Why a target could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The config cannot be read or is refused (exit 2).
    #[error("{0}")]
    Config(String),
    /// It could not be started or reached (exit 3).
    #[error("{0}")]
    Runtime(String),
}

/// A target ready to take requests.
pub struct Target {
    /// What the report calls it: the config path or the URL.
    pub label: String,
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` for exchanges that recorded none.
    pub authority: String,
    /// Every record the target emits, by request id; `None` when the replay cannot see them.
    pub records: Option<Records>,
    /// The fakes behind an in-process or `--process` gateway (the issuer mints replay tokens).
    pub fakes: Option<Arc<Fakes>>,
    /// The test API keys that replaced the config's, by key id (in-process and `--process`).
    pub api_keys: BTreeMap<String, String>,
    /// The config the gateway runs, compiled (its issuers' claim names, its policies).
    pub runtime: Option<Arc<Runtime>>,
    /// The clock the in-process gateway runs on, for a `--virtual-time` run.
    pub virtual_time: Option<VirtualTime>,
    gateway: Option<RunningGateway>,
    attach: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    pub fn issuer(&self) -> Option<&FakeIssuer> {
        self.fakes.as_ref().and_then(|f| f.issuer.as_ref())
    }

    /// The records of these request ids, waiting up to `within` for the ones not yet in.
    pub async fn records_for(
        &self,
        ids: &[String],
        within: Duration,
    ) -> Vec<Option<RequestRecord>> {
        match &self.records {
            Some(records) => records.wait_for(ids, within).await,
            None => vec![None; ids.len()],
        }
    }

    /// Every record the in-process gateway emits from now on (`None` for the others).
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<RequestRecord>>> {
        self.gateway.as_ref()?.subscribe()
    }

    pub async fn stop(self) {
        if let Some(attach) = self.attach {
            attach.abort();
        }
        if let Some(gateway) = self.gateway {
            gateway.stop().await;
        }
    }
}

/// Starts (or reaches) the target.
pub async fn start(spec: &TargetSpec) -> Result<Target, TargetError> {
    start_on(spec, None).await
}

/// [`start`], the in-process gateway on `virtual_time`'s clock when given; only an in-process
/// gateway can run on it (the binary and a running gateway read their own clocks).
pub async fn start_on(
    spec: &TargetSpec,
    virtual_time: Option<VirtualTime>,
) -> Result<Target, TargetError> {
    start_watched(spec, virtual_time, &RecordSink::unwatched()).await
}

/// [`start_on`], offering each of the target's records to `watchers` as it is collected (a
/// `--target` without `--admin` has none to offer).
pub async fn start_watched(
    spec: &TargetSpec,
    virtual_time: Option<VirtualTime>,
    watchers: &RecordSink,
) -> Result<Target, TargetError> {
    match (spec, virtual_time) {
        (
            TargetSpec::Config {
                config,
                mode,
                record,
            },
            None,
        ) => start_gateway_on(config, mode, record.as_deref(), None, watchers).await,
        (
            TargetSpec::Config {
                config,
                mode: GatewayMode::InProcess,
                record,
            },
            Some(time),
        ) => {
            start_gateway_on(
                config,
                &GatewayMode::InProcess,
                record.as_deref(),
                Some(time),
                watchers,
            )
            .await
        }
        (TargetSpec::Url { url, admin }, None) => reach(url, admin.as_deref(), watchers).await,
        (_, Some(_)) => Err(TargetError::Runtime(VIRTUAL_TIME_IN_PROCESS_ONLY.into())),
    }
}

/// Why a virtual-time run refuses `--process` and `--target`.
pub const VIRTUAL_TIME_IN_PROCESS_ONLY: &str = "--virtual-time drives the in-process gateway's \
    clock: use it with --config, without --process or --target";

/// The config the target runs: its text, its fakes and the test API keys that replaced its own.
pub struct PreparedConfig {
    pub source: String,
    pub text: String,
    pub fakes: Fakes,
    pub api_keys: BTreeMap<String, String>,
}

/// The config with every upstream pointed at a fake answering 200, its first issuer at the fake
/// issuer and its API keys replaced by test keys; listeners on a free loopback port, no access
/// log. The config's own `recording:` is dropped (it would record the replay over the file it
/// names); with `record`, the replay is recorded there instead, every request, with responses.
pub async fn prepare_config(
    config: &Path,
    record: Option<&Path>,
) -> Result<PreparedConfig, TargetError> {
    let source = config.display().to_string();
    if let Err(diagnostics) = gateway::config::load_file(config) {
        return Err(TargetError::Config(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let text = std::fs::read_to_string(config)
        .map_err(|e| TargetError::Config(format!("{source}: {e}")))?;
    let has_issuer = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("auth")?
                .get("issuers")?
                .as_sequence()
                .map(|s| !s.is_empty())
        })
        .unwrap_or(false);
    let issuer = has_issuer.then(|| FakeIssuerSpec {
        name: None,
        timeline: Vec::new(),
    });
    let (rewritten, fakes) =
        point_config_at_fakes(&source, &text, &BTreeMap::new(), issuer.as_ref())
            .await
            .map_err(|RunError::Parse(e)| TargetError::Config(e))?;
    // A config that records would record the replay itself: never wanted here.
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rewritten)
        .map_err(|e| TargetError::Config(format!("{source}: {e}")))?;
    if let Some(map) = value.as_mapping_mut() {
        map.remove("recording");
        if let Some(path) = record {
            let path = std::path::absolute(path)
                .map_err(|e| TargetError::Config(format!("--record {}: {e}", path.display())))?;
            // A new recording of this replay, not this one appended to the last.
            std::fs::File::create(&path)
                .map_err(|e| TargetError::Config(format!("--record {}: {e}", path.display())))?;
            let mut recording = serde_yaml_ng::Mapping::new();
            recording.insert("path".into(), path.display().to_string().into());
            recording.insert("responses".into(), true.into());
            recording.insert("rotate_bytes".into(), 0.into());
            map.insert("recording".into(), recording.into());
        }
    }
    let rewritten = serde_yaml_ng::to_string(&value)
        .map_err(|e| TargetError::Config(format!("cannot rewrite {source}: {e}")))?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let (text, api_keys) = test_api_keys(&rewritten, dir)
        .map_err(|e| TargetError::Config(format!("{source}: {e}")))?;
    Ok(PreparedConfig {
        source,
        text,
        fakes,
        api_keys,
    })
}

async fn start_gateway_on(
    config: &Path,
    mode: &GatewayMode,
    record: Option<&Path>,
    virtual_time: Option<VirtualTime>,
    watchers: &RecordSink,
) -> Result<Target, TargetError> {
    let PreparedConfig {
        source,
        text,
        fakes,
        api_keys,
    } = prepare_config(config, record).await?;
    let runtime = gateway::config::load_str(&source, &text).map_err(|d| {
        TargetError::Config(
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let clock = virtual_time
        .as_ref()
        .map_or_else(gateway::clock::SystemClock::shared, VirtualTime::clock);
    let gateway = start_gateway_on_clock(&source, &text, mode, watchers, clock)
        .await
        .map_err(|e| TargetError::Runtime(format!("cannot start the gateway on {source}: {e}")))?;
    wait_for_first_key_fetch(&fakes).await;
    let address = gateway.address.to_string();
    Ok(Target {
        label: source,
        authority: address.clone(),
        address,
        records: Some(gateway.records.clone()),
        fakes: Some(Arc::new(fakes)),
        api_keys,
        runtime: Some(Arc::new(runtime)),
        virtual_time,
        gateway: Some(gateway),
        attach: None,
    })
}

/// The gateway answers 401 until it has its issuers' keys; a replay starts once the fake issuer
/// served the first fetch, so a replay measures the config, not start-up order.
async fn wait_for_first_key_fetch(fakes: &Fakes) {
    let Some(issuer) = &fakes.issuer else { return };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while issuer.fetches() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn reach(
    url: &str,
    admin: Option<&str>,
    watchers: &RecordSink,
) -> Result<Target, TargetError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| TargetError::Runtime(format!("--target `{url}` is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(TargetError::Runtime(format!(
            "--target `{url}`: write an http:// URL (replay speaks plain HTTP/1.1)"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| TargetError::Runtime(format!("--target `{url}` names no host")))?;
    let address = format!("{}:{}", authority.host(), uri.port_u16().unwrap_or(80));
    // Unreachable is a runtime failure found now, not 10,000 connect errors later.
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address.as_str()),
    )
    .await
    .map_err(|_| TargetError::Runtime(format!("--target {url}: no connection within 5 s")))?
    .map_err(|e| TargetError::Runtime(format!("--target {url}: cannot connect: {e}")))?;
    let (records, attach) = match admin {
        Some(admin) => {
            let (records, task) = attach_records(admin, watchers.clone()).await?;
            (Some(records), Some(task))
        }
        None => (None, None),
    };
    Ok(Target {
        label: url.to_string(),
        address,
        authority: authority.as_str().to_string(),
        records,
        fakes: None,
        api_keys: BTreeMap::new(),
        runtime: None,
        virtual_time: None,
        gateway: None,
        attach,
    })
}

/// Reads a running gateway's `/records` stream (one JSON record per line) into [`Records`].
async fn attach_records(
    admin: &str,
    watchers: RecordSink,
) -> Result<(Records, tokio::task::JoinHandle<()>), TargetError> {
    let base = admin.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    let client = http_client::new();
    let request = http::Request::get(format!("{base}/records"))
        .body(Default::default())
        .map_err(|e| TargetError::Runtime(format!("--admin {admin}: {e}")))?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| TargetError::Runtime(format!("--admin {admin}: no answer within 5 s")))?
        .map_err(|e| {
            TargetError::Runtime(format!("--admin {admin}: cannot attach to /records: {e}"))
        })?;
    if !response.status().is_success() {
        return Err(TargetError::Runtime(format!(
            "--admin {admin}: /records answered {}",
            response.status()
        )));
    }
    let records = Records::default();
    let collected = records.clone();
    let task = tokio::spawn(async move {
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(record) = serde_json::from_slice::<RequestRecord>(&line) {
                        let record = Arc::new(record);
                        watchers.offer(&record);
                        collected.insert(Arc::unwrap_or_clone(record));
                    }
                }
            }
        }
    });
    Ok((records, task))
}
