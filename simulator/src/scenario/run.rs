//! Runs a scenario: starts the fakes, points the gateway config at them, starts the real gateway
//! (in-process by default, or the `gateway` binary as a child process), runs the steps, matches
//! each request to its record by request id, and checks the expectations.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::record::RequestRecord;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::task::JoinSet;

use super::expect::{self, PhaseOutcome, RequestOutcome};
use super::model::{RequestSpec, RotateStep, Scenario, ScenarioError, Step};
use crate::fake::client::Profile;
use crate::fake::issuer::{FakeIssuer, IdentitySpec};
use crate::fake::upstream::{Behaviour, FakeInstance};

/// How the gateway under test runs.
#[derive(Debug, Clone)]
pub enum GatewayMode {
    InProcess,
    /// The `gateway` binary at this path, as a child process.
    Process(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub name: String,
    pub passed: bool,
    /// Each unmet expectation: what was expected and what happened.
    pub failures: Vec<String>,
    /// The record that explains a single request's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RequestRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseOutcome>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub file: String,
    pub steps: Vec<StepResult>,
    /// Set when the scenario could not run (a fake or the gateway failed to start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_error: Option<String>,
    pub duration_ms: u64,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.runtime_error.is_none() && self.steps.iter().all(|s| s.passed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario or its gateway config could not be accepted (exit 2).
    #[error("{0}")]
    Parse(String),
}

/// The fakes of one scenario, by upstream name.
pub struct Fakes {
    pub upstreams: BTreeMap<String, Vec<FakeInstance>>,
    pub issuer: Option<FakeIssuer>,
    pub identities: BTreeMap<String, IdentitySpec>,
}

impl Fakes {
    pub fn issuer_fetches(&self) -> u64 {
        self.issuer.as_ref().map_or(0, FakeIssuer::fetches)
    }

    /// `Authorization` for a request acting as an identity, minted now.
    pub fn authorization(&self, spec: &RequestSpec) -> Result<Option<String>, String> {
        let Some(name) = &spec.as_identity else {
            return Ok(None);
        };
        let issuer = self
            .issuer
            .as_ref()
            .ok_or_else(|| format!("`as: {name}` needs an `issuer:` in the scenario"))?;
        let who = self
            .identities
            .get(name)
            .ok_or_else(|| format!("no identity named `{name}` in `identities:`"))?;
        let now = gateway::clock::Clock::unix_millis(&gateway::clock::SystemClock::new()) / 1000;
        let token = match spec.hostile {
            Some(kind) => issuer.mint_hostile(who, now, kind)?,
            None => issuer.mint(who, now, Duration::from_secs(300))?,
        };
        Ok(Some(format!("Bearer {token}")))
    }
}

impl Fakes {
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.upstreams
            .iter()
            .map(|(name, instances)| (name.clone(), instances.iter().map(FakeInstance::hits).sum()))
            .collect()
    }
}

/// Collects every record the gateway emits, by request id, for the whole scenario.
#[derive(Clone, Default)]
pub struct Records {
    by_id: Arc<Mutex<HashMap<String, RequestRecord>>>,
}

impl Records {
    pub fn insert(&self, record: RequestRecord) {
        if let Ok(mut map) = self.by_id.lock() {
            map.insert(record.request_id.clone(), record);
        }
    }

    pub fn get(&self, id: &str) -> Option<RequestRecord> {
        self.by_id.lock().ok()?.get(id).cloned()
    }

    /// Waits until every id has its record, or `within` passes; returns those found.
    pub async fn wait_for(&self, ids: &[String], within: Duration) -> Vec<Option<RequestRecord>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Records are emitted as response bodies end, so nearly all are here on the first pass.
            let found: Vec<Option<RequestRecord>> = match self.by_id.lock() {
                Ok(map) => ids.iter().map(|id| map.get(id).cloned()).collect(),
                Err(_) => vec![None; ids.len()],
            };
            if found.iter().all(Option::is_some) || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running gateway under test.
pub struct RunningGateway {
    pub address: SocketAddr,
    pub records: Records,
    stop: Option<Box<dyn FnOnce() + Send + Sync>>,
    handle: Option<gateway::GatewayHandle>,
}

impl RunningGateway {
    pub fn from_process(
        address: SocketAddr,
        records: Records,
        stop: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        Self {
            address,
            records,
            stop: Some(stop),
            handle: None,
        }
    }

    /// Every record from now on, for an in-process gateway.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<RequestRecord>>> {
        self.handle.as_ref().map(gateway::GatewayHandle::subscribe)
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

/// Starts one fake per upstream instance named in the config file and rewrites the config to
/// point at them; listeners move to a free loopback port, the access log is turned off.
pub async fn prepare(
    scenario: &Scenario,
    scenario_dir: &Path,
) -> Result<(String, String, Fakes), RunError> {
    let config_path = scenario_dir.join(&scenario.gateway.config);
    if let Err(diagnostics) = gateway::config::load_file(&config_path) {
        return Err(RunError::Parse(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| RunError::Parse(format!("{}: {e}", config_path.display())))?;
    let source = config_path.display().to_string();
    let (rewritten, mut fakes) = point_config_at_fakes(
        &source,
        &text,
        &scenario.upstreams,
        scenario.issuer.as_ref(),
    )
    .await?;
    fakes.identities = scenario.identities.clone();
    Ok((source, rewritten, fakes))
}

/// Starts the fake issuer for the config's issuer named in `spec` (or its first) and points that
/// issuer's `jwks_url` at it.
async fn point_issuer_at_fake(
    source: &str,
    config: &mut serde_yaml_ng::Value,
    spec: &super::model::FakeIssuerSpec,
) -> Result<FakeIssuer, RunError> {
    let issuers = config
        .get_mut("auth")
        .and_then(|a| a.get_mut("issuers"))
        .and_then(|i| i.as_sequence_mut())
        .ok_or_else(|| {
            RunError::Parse(format!(
                "issuer: the gateway config {source} has no auth.issuers"
            ))
        })?;
    let entry = issuers
        .iter_mut()
        .find(|i| {
            spec.name
                .as_deref()
                .is_none_or(|n| i.get("name").and_then(|v| v.as_str()) == Some(n))
        })
        .ok_or_else(|| RunError::Parse(format!("issuer.name: no such issuer in {source}")))?;
    let iss = entry
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let aud = entry
        .get("audiences")
        .and_then(|v| v.as_sequence())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let fake = FakeIssuer::start(&iss, &aud)
        .await
        .map_err(RunError::Parse)?;
    if let Some(map) = entry.as_mapping_mut() {
        map.insert("jwks_url".into(), fake.jwks_url().into());
    }
    Ok(fake)
}

/// Starts the fakes for every upstream of a config text and returns the text pointing at them.
pub async fn point_config_at_fakes(
    source: &str,
    text: &str,
    specs: &BTreeMap<String, super::model::FakeUpstream>,
    issuer: Option<&super::model::FakeIssuerSpec>,
) -> Result<(String, Fakes), RunError> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| RunError::Parse(format!("{source}: {e}")))?;
    let mut fakes = Fakes {
        upstreams: BTreeMap::new(),
        issuer: None,
        identities: BTreeMap::new(),
    };
    if let Some(spec) = issuer {
        fakes.issuer = Some(point_issuer_at_fake(source, &mut value, spec).await?);
    }
    let names: Vec<String> = value
        .get("upstreams")
        .and_then(|u| u.as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for name in specs.keys() {
        if !names.contains(name) {
            return Err(RunError::Parse(format!(
                "upstreams.{name}: the gateway config {source} has no upstream `{name}` (it has: {})",
                names.join(", ")
            )));
        }
    }
    for name in &names {
        let spec = specs.get(name);
        let count = spec.map_or(1, |s| s.instances.max(1));
        let behaviour = spec.map(|s| s.behaviour.clone()).unwrap_or_default();
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            let fake = FakeInstance::start(behaviour.clone())
                .await
                .map_err(|e| RunError::Parse(format!("cannot start a fake upstream: {e}")))?;
            instances.push(fake);
        }
        let addresses: Vec<serde_yaml_ng::Value> = instances
            .iter()
            .map(|i| serde_yaml_ng::Value::String(i.address.to_string()))
            .collect();
        if let Some(upstream) = value
            .get_mut("upstreams")
            .and_then(|u| u.get_mut(name.as_str()))
            .and_then(|u| u.as_mapping_mut())
        {
            upstream.insert(
                "instances".into(),
                serde_yaml_ng::Value::Sequence(addresses),
            );
        }
        fakes.upstreams.insert(name.clone(), instances);
    }
    if let Some(map) = value.as_mapping_mut() {
        let listener: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("[{name: public, address: \"127.0.0.1:0\"}]")
                .unwrap_or_default();
        map.insert("listeners".into(), listener);
        map.insert("access_log".into(), "off".into());
        map.remove("admin");
    }
    let rewritten = serde_yaml_ng::to_string(&value)
        .map_err(|e| RunError::Parse(format!("cannot rewrite the config: {e}")))?;
    Ok((rewritten, fakes))
}

pub async fn start_gateway(
    source: &str,
    config_text: &str,
    mode: &GatewayMode,
) -> Result<RunningGateway, String> {
    match mode {
        GatewayMode::InProcess => {
            let runtime = gateway::config::load_str(source, config_text).map_err(|d| {
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind the gateway listener: {e}"))?;
            let handle = gateway::start(
                runtime,
                gateway::StartOptions {
                    listeners: Some(vec![listener]),
                    ..gateway::StartOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let records = Records::default();
            let mut receiver = handle.subscribe();
            let sink = records.clone();
            tokio::spawn(async move {
                loop {
                    match receiver.recv().await {
                        Ok(record) => {
                            // Feeds `run --tui`; a no-op when no TUI listens.
                            crate::tui::term::tap(&record);
                            sink.insert((*record).clone());
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    }
                }
            });
            Ok(RunningGateway {
                address: handle.address(),
                records,
                stop: None,
                handle: Some(handle),
            })
        }
        GatewayMode::Process(binary) => super::process::start(binary, config_text).await,
    }
}

/// Runs one scenario file.
pub async fn run_file(path: &Path, mode: &GatewayMode) -> Result<ScenarioResult, RunError> {
    let scenario =
        super::model::load(path).map_err(|e: ScenarioError| RunError::Parse(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    run(&scenario, dir, &path.display().to_string(), mode).await
}

pub async fn run(
    scenario: &Scenario,
    dir: &Path,
    file: &str,
    mode: &GatewayMode,
) -> Result<ScenarioResult, RunError> {
    let started = tokio::time::Instant::now();
    let (source, config_text, fakes) = prepare(scenario, dir).await?;
    let mut result = ScenarioResult {
        name: scenario.name.clone(),
        file: file.to_string(),
        steps: Vec::new(),
        runtime_error: None,
        duration_ms: 0,
    };
    let gateway = match start_gateway(&source, &config_text, mode).await {
        Ok(g) => g,
        Err(e) => {
            result.runtime_error = Some(format!("cannot start the gateway: {e}"));
            return Ok(result);
        }
    };
    let fakes = Arc::new(fakes);
    wait_for_first_key_fetch(&fakes).await;
    let timeline = spawn_timeline(scenario, fakes.clone());
    let client = http_client();
    for (index, step) in scenario.steps.iter().enumerate() {
        let outcome = run_step(index, step, &gateway, &fakes, &client).await;
        result.steps.push(outcome);
    }
    for task in timeline {
        task.abort();
    }
    gateway.stop().await;
    result.duration_ms = started.elapsed().as_millis() as u64;
    Ok(result)
}

/// The gateway fetches its issuers' keys in the background after it starts, and answers 401
/// until they arrive — by design. Steps start once the fake issuer has served that first fetch
/// (plus a moment to parse it), so a scenario tests behaviour, not start-up order.
async fn wait_for_first_key_fetch(fakes: &Fakes) {
    let Some(issuer) = &fakes.issuer else { return };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while issuer.fetches() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Applies the fake issuer's timeline (rotation steps, modes) from now on.
pub fn spawn_issuer_timeline(
    changes: Vec<super::model::IssuerChange>,
    fakes: Arc<Fakes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for change in changes {
            tokio::time::sleep_until(start + change.at).await;
            let Some(issuer) = &fakes.issuer else { return };
            if let Some(mode) = change.mode {
                issuer.set_mode(mode);
            }
            let rotated = match change.rotate {
                Some(RotateStep::Publish) => issuer.publish_next_key().map(drop),
                Some(RotateStep::Sign) => {
                    issuer.sign_with_newest();
                    Ok(())
                }
                Some(RotateStep::Retire) => {
                    issuer.retire_old_keys();
                    Ok(())
                }
                Some(RotateStep::Abruptly) => issuer.rotate_abruptly(),
                None => Ok(()),
            };
            if let Err(e) = rotated {
                tracing::warn!(error = %e, "the fake issuer could not rotate");
            }
        }
    })
}

/// Applies the scenario's timelines; abort the returned tasks when the scenario ends.
fn spawn_timeline(scenario: &Scenario, fakes: Arc<Fakes>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut changes: Vec<(Duration, String, Option<usize>, Behaviour)> = scenario
        .upstreams
        .iter()
        .flat_map(|(name, spec)| {
            spec.timeline
                .iter()
                .map(move |c| (c.at, name.clone(), c.instance, c.behaviour.clone()))
        })
        .collect();
    changes.sort_by_key(|c| c.0);
    let issuer_changes: Vec<super::model::IssuerChange> = scenario
        .issuer
        .as_ref()
        .map(|i| i.timeline.clone())
        .unwrap_or_default();
    let mut tasks = vec![spawn_issuer_timeline(issuer_changes, fakes.clone())];
    tasks.push(tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (at, name, instance, behaviour) in changes {
            tokio::time::sleep_until(start + at).await;
            if let Some(instances) = fakes.upstreams.get(&name) {
                for (i, fake) in instances.iter().enumerate() {
                    if instance.is_none_or(|want| want == i) {
                        fake.set_behaviour(behaviour.clone());
                    }
                }
            }
        }
    }));
    tasks
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn request_id(step: usize) -> String {
    let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sim-{:08x}-s{step}-{n}", fastrand::u32(..))
}

pub fn build_request(
    spec: &RequestSpec,
    address: SocketAddr,
    id: &str,
    authorization: Option<&str>,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(spec.method.as_str())
        .uri(format!("http://{address}{}", spec.path))
        .header("x-request-id", id);
    if let Some(value) = authorization {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    for (name, value) in &spec.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = spec.body.clone().map(Bytes::from).unwrap_or_default();
    builder
        .body(Full::new(body))
        .map_err(|e| format!("the request cannot be built: {e}"))
}

/// Sends one request; returns the status and headers, or why it failed at the transport.
pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(u16, HeaderMap), String> {
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "no response within 30 s".to_string())?
        .map_err(|e| format!("transport error: {e}"))?;
    let (parts, body) = response.into_parts();
    // Read the body so the record (emitted at end of body) is complete and the connection reusable.
    let _ = body.collect().await;
    Ok((parts.status.as_u16(), parts.headers))
}

async fn run_step(
    index: usize,
    step: &Step,
    gateway: &RunningGateway,
    fakes: &Fakes,
    client: &HttpClient,
) -> StepResult {
    if let Some(after) = step.after {
        tokio::time::sleep(after).await;
    }
    let started = tokio::time::Instant::now();
    let hits_before = fakes.hits();
    let fetches_before = fakes.issuer_fetches();
    let mut result = StepResult {
        name: step.name.clone(),
        passed: false,
        failures: Vec::new(),
        record: None,
        phase: None,
        duration_ms: 0,
    };
    if let Some(spec) = &step.request {
        let id = request_id(index);
        let outcome = match fakes
            .authorization(spec)
            .and_then(|auth| build_request(spec, gateway.address, &id, auth.as_deref()))
        {
            Ok(request) => send(client, request).await,
            Err(e) => Err(e),
        };
        let record = gateway
            .records
            .wait_for(std::slice::from_ref(&id), Duration::from_secs(5))
            .await
            .pop()
            .flatten();
        let received: Vec<(String, crate::fake::upstream::Received)> = fakes
            .upstreams
            .iter()
            .flat_map(|(name, instances)| {
                instances
                    .iter()
                    .flat_map(move |i| i.received().into_iter().map(move |r| (name.clone(), r)))
            })
            .filter(|(_, r)| {
                r.headers
                    .get("x-request-id")
                    .is_some_and(|v| v == id.as_str())
            })
            .collect();
        let outcome = RequestOutcome {
            response: outcome,
            record: record.clone(),
            received,
        };
        result.failures = expect::check_request(&step.expect, &outcome);
        result.record = record;
    } else if let Some(load) = &step.load {
        let phase = run_phase(index, &load.profile, &load.request, gateway, fakes, client).await;
        let hits_after = fakes.hits();
        let hits: BTreeMap<String, u64> = hits_after
            .iter()
            .map(|(name, after)| {
                (
                    name.clone(),
                    after - hits_before.get(name).copied().unwrap_or(0),
                )
            })
            .collect();
        let phase = PhaseOutcome::summarize(phase, hits);
        result.failures = expect::check_phase(&step.expect, &phase);
        result.phase = Some(phase);
    }
    if let Some(rule) = &step.expect.issuer_fetches {
        let fetched = fakes.issuer_fetches() - fetches_before;
        expect::check_issuer_fetches(rule, fetched, &mut result.failures);
    }
    if step.expect.is_empty() {
        result
            .failures
            .push("the step expects nothing, so it could never fail".into());
    }
    result.passed = result.failures.is_empty();
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// One request of a load phase.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub status: Option<u16>,
    /// From the scheduled send time to the end of the response.
    pub latency: Duration,
    pub record: Option<RequestRecord>,
}

async fn run_phase(
    index: usize,
    profile: &Profile,
    spec: &RequestSpec,
    gateway: &RunningGateway,
    fakes: &Fakes,
    client: &HttpClient,
) -> Vec<Sent> {
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    match profile.schedule() {
        Some(offsets) => {
            for offset in offsets {
                let scheduled = start + offset;
                tokio::time::sleep_until(scheduled).await;
                let id = request_id(index);
                let request = fakes
                    .authorization(spec)
                    .and_then(|auth| build_request(spec, gateway.address, &id, auth.as_deref()));
                let client = client.clone();
                tasks.spawn(async move {
                    let status = match request {
                        Ok(r) => send(&client, r).await.ok().map(|(s, _)| s),
                        Err(_) => None,
                    };
                    vec![(id, status, scheduled.elapsed())]
                });
            }
        }
        None => {
            if let Profile::RetryStorm {
                clients,
                duration,
                think,
            } = profile
            {
                let deadline = start + *duration;
                // Each buggy client holds one token for the whole storm, as a real one would.
                // A token that cannot be minted fails every request of the storm, visibly.
                let authorization = fakes.authorization(spec);
                for _ in 0..*clients {
                    let client = client.clone();
                    let spec = spec.clone();
                    let authorization = authorization.clone();
                    let address = gateway.address;
                    let think = *think;
                    tasks.spawn(async move {
                        let mut sent = Vec::new();
                        while tokio::time::Instant::now() < deadline && sent.len() < 100_000 {
                            let id = request_id(index);
                            let t0 = tokio::time::Instant::now();
                            let request = authorization.clone().and_then(|auth| {
                                build_request(&spec, address, &id, auth.as_deref())
                            });
                            let status = match request {
                                Ok(r) => send(&client, r).await.ok().map(|(s, _)| s),
                                Err(_) => None,
                            };
                            sent.push((id, status, t0.elapsed()));
                            // The bug under test: a 429 is retried at once, with no backoff.
                            if status != Some(429) {
                                tokio::time::sleep(think).await;
                            }
                        }
                        sent
                    });
                }
            }
        }
    }
    let mut sent = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(batch) = done {
            sent.extend(batch);
        }
    }
    let ids: Vec<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    let records = gateway.records.wait_for(&ids, Duration::from_secs(5)).await;
    sent.into_iter()
        .zip(records)
        .map(|((id, status, latency), record)| Sent {
            id,
            status,
            latency,
            record,
        })
        .collect()
}
