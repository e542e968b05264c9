//! `compare RECORDING --config GATEWAY.yaml`: a recording split by the config's own rate-limit
//! policies — each policy's arrivals, under the key it counts them by — with each request placed
//! as the gateway placed it (its record) or as the gateway's own routing and credential rules
//! would place it (a line without one).

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use gateway::clock::Nanos;
use gateway::config::Runtime;
use gateway::config::ratelimit::CompiledPolicy;
use gateway::record::RequestRecord;
use gateway::record::recording::format::{CredentialKind, FORMAT_VERSION, RecordingLine};
use gateway::vocab::{Identity, StageId};
use serde::Serialize;

use super::Trace;
use super::traffic::{MAX_ARRIVALS, TrafficError};

/// One policy of a gateway config and the arrivals it selects in a recording, keyed by the
/// subject the policy counts them under (`compare RECORDING --config`).
#[derive(Debug, Clone)]
pub struct PolicyTrace {
    pub policy: Arc<CompiledPolicy>,
    pub trace: Trace,
}

/// What reading a recording against a config found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConfigTally {
    /// Requests read.
    pub requests: u64,
    /// Requests the config's stages before `ratelimit` stop (no valid credential, a missing
    /// scope or role): no policy counts them.
    pub stopped_before: u64,
}

/// The facts the `ratelimit` stage reads of one recorded request.
struct Facts {
    at: Nanos,
    route: Option<String>,
    identity: Option<Identity>,
    headers: http::HeaderMap,
    peer: IpAddr,
}

/// Reads a recording (request records, or recording lines with or without their record) and
/// splits it by the policies of `runtime`: each policy's own arrivals, under its own key. A
/// request with a gateway record is placed by that record (route, identity, where it stopped);
/// one without — a generated or imported line — is routed by the gateway's own route lookup and
/// its credentials read as `authn` and `authz` would (valid or not, scopes, roles; a tenant rule
/// is not checked offline).
pub fn policy_traces(
    path: &Path,
    runtime: &Runtime,
) -> Result<(Vec<PolicyTrace>, ConfigTally), TrafficError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| TrafficError::Read {
        file: name.clone(),
        message: e.to_string(),
    })?;
    let limits = &runtime.rate_limits;
    let mut events: Vec<Vec<(Nanos, String, u32)>> = vec![Vec::new(); limits.policies.len()];
    let mut tally = ConfigTally::default();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrafficError::Read {
            file: name.clone(),
            message: e.to_string(),
        })?;
        let text = line.trim();
        if text.is_empty() || text.starts_with("{\"lagged\"") {
            continue;
        }
        let parse = |message: String| TrafficError::Parse {
            file: name.clone(),
            line: index + 1,
            message,
        };
        let facts = facts_of_line(text, runtime).map_err(parse)?;
        tally.requests += 1;
        if tally.requests > MAX_ARRIVALS as u64 {
            return Err(TrafficError::Usage(format!(
                "{name}: more than {MAX_ARRIVALS} records"
            )));
        }
        let Some(facts) = facts else {
            tally.stopped_before += 1;
            continue;
        };
        let selected = gateway::stage::ratelimit::select(
            limits,
            facts.route.as_deref(),
            facts.identity.as_ref(),
            &facts.headers,
            facts.peer,
        );
        for (policy, subject) in selected {
            if let Some(i) = limits.policies.iter().position(|p| Arc::ptr_eq(p, policy)) {
                let cost = u32::try_from(policy.cost).unwrap_or(u32::MAX);
                events[i].push((facts.at, subject, cost));
            }
        }
    }
    let traces = limits
        .policies
        .iter()
        .zip(events)
        .map(|(policy, events)| PolicyTrace {
            policy: policy.clone(),
            trace: Trace::from_events(format!("{name} [{}]", policy.id), events),
        })
        .collect();
    Ok((traces, tally))
}

/// One line's facts, `None` when the stages before `ratelimit` stop it, or why it is not a
/// request.
fn facts_of_line(text: &str, runtime: &Runtime) -> Result<Option<Facts>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("v").is_none() {
        let record: RequestRecord = serde_json::from_value(value)
            .map_err(|e| format!("neither a request record nor a recording line: {e}"))?;
        return Ok(facts_of_record(&record, http::HeaderMap::new()));
    }
    let line: RecordingLine =
        serde_json::from_value(value).map_err(|e| format!("not a recording line: {e}"))?;
    if line.v != FORMAT_VERSION {
        return Err(format!(
            "recording line version {} (this simulator reads version {FORMAT_VERSION})",
            line.v
        ));
    }
    let mut headers = http::HeaderMap::new();
    for (name, value) in &line.request.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    if let Some(record) = &line.record {
        return Ok(facts_of_record(record, headers));
    }
    let method = http::Method::from_bytes(line.request.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", line.request.method))?;
    let uri: http::Uri = line
        .request
        .target
        .parse()
        .map_err(|_| format!("`{}` is not a request target", line.request.target))?;
    // As `gateway routes --test` evaluates a case: the target's authority over `host`, the
    // first listener's path options.
    let authority =
        gateway::routing::authority::request_authority(http::Version::HTTP_10, &uri, &headers);
    let paths = runtime
        .listeners
        .first()
        .map_or_else(Default::default, |l| l.paths);
    let found = gateway::stage::route::resolve(
        runtime,
        &method,
        &uri,
        authority.value.as_ref(),
        &headers,
        &paths,
    );
    let route = found.route();
    let mut identity = None;
    if let Some(rules) = route.and_then(|r| runtime.auth.route(r.declaration_index)) {
        let credential = line
            .credentials
            .iter()
            .find(|c| matches!(c.kind, CredentialKind::Bearer | CredentialKind::ApiKey));
        match credential {
            // A credential the gateway refused stops the request at authn.
            Some(c) if c.invalid.is_some() => return Ok(None),
            Some(c) => identity = c.identity.clone(),
            None if rules.optional || (!rules.accept_jwt && !rules.accept_api_key) => {}
            None => return Ok(None),
        }
        if let Some(id) = &identity {
            if gateway::identity::grants::missing_grant(&rules.scopes, &rules.roles, id).is_some() {
                return Ok(None);
            }
        }
    }
    Ok(Some(Facts {
        at: line.unix_micros.saturating_mul(1_000),
        route: route.map(|r| r.name.to_string()),
        identity,
        headers,
        peer: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    }))
}

/// A recorded request as its gateway decided it: counted when it reached `ratelimit`.
fn facts_of_record(record: &RequestRecord, headers: http::HeaderMap) -> Option<Facts> {
    if record.stopped_at.is_some_and(|s| s < StageId::Ratelimit) {
        return None;
    }
    Some(Facts {
        at: record.unix_millis.saturating_mul(1_000_000),
        route: record.route.as_deref().map(str::to_owned),
        identity: record.identity.as_deref().cloned(),
        headers,
        peer: record.peer.ip(),
    })
}
