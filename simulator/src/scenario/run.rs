//! Runs a scenario's steps against a gateway under test: each request sent with its own request
//! id, matched to the record that explains it, and checked against what the step expects; load
//! phases are sent on their profile's schedule and summarized. Starting the fakes and the gateway
//! is left to [`super::fakes`] and [`super::under_test`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::task::JoinSet;

use super::expect;
use super::fakes::{Fakes, prepare, spawn_timelines};
use super::interrupt::Interrupt;
use super::model::{RequestSpec, Scenario, Step};
use super::outcome::{PhaseOutcome, RequestOutcome, RunError, ScenarioResult, Sent, StepResult};
use super::sink::RecordSink;
use super::under_test::{GatewayMode, RunningGateway, start_gateway};
use crate::fake::client::Profile;
use crate::fake::grpc;
use crate::http_client::{Clients, exchange, send};
use gateway::vocab::grpc::{GRPC_CONTENT_TYPE, GRPC_TIMEOUT, format_timeout};

/// How to run a scenario: on which gateway, and who else sees its records.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub gateway: GatewayMode,
    /// Offered every record the gateway emits (the run itself keeps them all anyway).
    pub watchers: RecordSink,
    /// Raised to stop early: the step under way is abandoned, the scenario reported as far as
    /// it got.
    pub interrupt: Interrupt,
}

/// Checks and runs one scenario file (see [`super::check::check_file`]).
pub async fn run_file(path: &Path, options: &RunOptions) -> Result<ScenarioResult, RunError> {
    let scenario = super::check::check_file(path).map_err(|diagnostics| {
        RunError::Parse(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    run(&scenario, dir, &path.display().to_string(), options).await
}

pub async fn run(
    scenario: &Scenario,
    dir: &Path,
    file: &str,
    options: &RunOptions,
) -> Result<ScenarioResult, RunError> {
    let started = tokio::time::Instant::now();
    let (source, config_text, fakes) = prepare(scenario, dir).await?;
    let mut result = ScenarioResult {
        name: scenario.name.clone(),
        file: file.to_string(),
        steps: Vec::new(),
        runtime_error: None,
        started_unix_ms: gateway::clock::Clock::unix_millis(&gateway::clock::SystemClock::new()),
        duration_ms: 0,
    };
    let gateway =
        match start_gateway(&source, &config_text, &options.gateway, &options.watchers).await {
            Ok(g) => g,
            Err(e) => {
                result.runtime_error = Some(format!("cannot start the gateway: {e}"));
                return Ok(result);
            }
        };
    let fakes = Arc::new(fakes);
    wait_for_first_key_fetch(&fakes).await;
    let timeline = spawn_timelines(scenario, fakes.clone());
    let client = Clients::new();
    for (index, step) in scenario.steps.iter().enumerate() {
        tokio::select! {
            // Checked first, so a raised interrupt never starts another step.
            biased;
            () = options.interrupt.raised() => {
                result.runtime_error =
                    Some(format!("interrupted before step `{}` finished", step.name));
                break;
            }
            outcome = run_step(index, step, &gateway, &fakes, &client) => result.steps.push(outcome),
        }
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

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn request_id(step: usize) -> String {
    let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sim-{:08x}-s{step}-{n}", fastrand::u32(..))
}

/// The request a step sends: HTTP/2 when it asks (the version tells [`Clients`] which client);
/// for a gRPC call, gRPC's headers and its messages length-prefixed (`body` is then ignored),
/// the step's own `headers` written last so a scenario can send a hostile value.
pub fn build_request(
    spec: &RequestSpec,
    address: SocketAddr,
    id: &str,
    authorization: Option<&str>,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(spec.method())
        .uri(format!("http://{address}{}", spec.path))
        .header("x-request-id", id);
    if spec.http2() {
        builder = builder.version(http::Version::HTTP_2);
    }
    if let Some(value) = authorization {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    let body = match &spec.grpc {
        Some(call) => {
            builder = builder
                .header(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE)
                .header(http::header::TE, "trailers");
            if let Some(timeout) = call.timeout {
                // The field cannot say zero; `0n` is what a zero deadline means to receivers
                // (the gateway and grpc-go read it as already passed).
                let value =
                    format_timeout(timeout).unwrap_or_else(|| http::HeaderValue::from_static("0n"));
                builder = builder.header(&GRPC_TIMEOUT, value);
            }
            let mut body = Vec::new();
            for message in &call.messages {
                body.extend_from_slice(&grpc::frame(message.as_bytes(), false));
            }
            Bytes::from(body)
        }
        None => spec.body.clone().map(Bytes::from).unwrap_or_default(),
    };
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in &spec.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("the request cannot be built: header {name}: {e}"))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| format!("the request cannot be built: header {name}: {e}"))?;
            headers.insert(name, value);
        }
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("the request cannot be built: {e}"))
}

async fn run_step(
    index: usize,
    step: &Step,
    gateway: &RunningGateway,
    fakes: &Fakes,
    client: &Clients,
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
            Ok(request) => exchange(client.for_request(&request), request).await,
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

async fn run_phase(
    index: usize,
    profile: &Profile,
    spec: &RequestSpec,
    gateway: &RunningGateway,
    fakes: &Fakes,
    client: &Clients,
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
                        Ok(r) => send(client.for_request(&r), r).await.ok().map(|(s, _)| s),
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
                                Ok(r) => send(client.for_request(&r), r).await.ok().map(|(s, _)| s),
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
