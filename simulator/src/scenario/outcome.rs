//! What running a scenario produces — per request, per load phase, per step and per scenario —
//! in one place below both the runner that fills it in and the expectations that judge it, so
//! neither has to import the other.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway::record::RequestRecord;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::fake::upstream::Received;
use crate::http_client::Exchange;

/// What happened to one request.
pub struct RequestOutcome {
    /// The answer at the client — status, headers, trailers, gRPC messages and when each part
    /// arrived — or the transport failure.
    pub response: Result<Exchange, String>,
    pub record: Option<RequestRecord>,
    /// What each fake upstream received carrying this request's id, by upstream name.
    pub received: Vec<(String, Received)>,
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

/// What a load phase did, summarized for expectations and reports.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseOutcome {
    pub sent: u64,
    /// By status code; `none` for requests that got no response.
    pub statuses: BTreeMap<String, u64>,
    /// By stopping stage; `none` when the upstream answered; `no-record` when none arrived.
    pub stopped_at: BTreeMap<String, u64>,
    /// Stop reasons, `stage/reason`.
    pub reasons: BTreeMap<String, u64>,
    /// Quantiles in microseconds, from scheduled send time.
    pub latency_us: BTreeMap<String, u64>,
    pub upstream_hits: BTreeMap<String, u64>,
}

pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

impl PhaseOutcome {
    pub fn summarize(sent: Vec<Sent>, upstream_hits: BTreeMap<String, u64>) -> Self {
        let mut statuses = BTreeMap::new();
        let mut stopped_at = BTreeMap::new();
        let mut reasons = BTreeMap::new();
        // 1 µs .. 1 h at 3 significant digits: enough for any loopback phase.
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        for s in &sent {
            *statuses
                .entry(s.status.map_or("none".into(), |c| c.to_string()))
                .or_insert(0) += 1;
            let stage = match &s.record {
                Some(r) => r.stopped_at.map_or("none".to_string(), |st| st.to_string()),
                None => "no-record".to_string(),
            };
            if let Some(Some(reason)) = s.record.as_ref().map(|r| r.reason.as_deref()) {
                *reasons.entry(format!("{stage}/{reason}")).or_insert(0) += 1;
            }
            *stopped_at.entry(stage).or_insert(0) += 1;
            if let Some(h) = histogram.as_mut() {
                let _ = h.record((s.latency.as_micros() as u64).clamp(1, 3_600_000_000));
            }
        }
        let latency_us = match histogram {
            Some(h) if !h.is_empty() => QUANTILES
                .iter()
                .map(|(name, q)| (name.to_string(), h.value_at_quantile(*q)))
                .collect(),
            _ => BTreeMap::new(),
        };
        PhaseOutcome {
            sent: sent.len() as u64,
            statuses,
            stopped_at,
            reasons,
            latency_us,
            upstream_hits,
        }
    }
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
    /// When the scenario started, in milliseconds since the Unix epoch (JUnit's `timestamp`).
    pub started_unix_ms: u64,
    pub duration_ms: u64,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.runtime_error.is_none() && self.steps.iter().all(|s| s.passed)
    }

    pub fn status(&self) -> Status {
        if self.runtime_error.is_some() {
            Status::Errored
        } else if self.passed() {
            Status::Passed
        } else {
            Status::Failed
        }
    }
}

/// A scenario's verdict in the reports: it passed, an expectation failed, or it could not be
/// run to the end (its file was rejected, a fake or the gateway failed, the run was interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Errored,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario or its gateway config could not be accepted (exit 2).
    #[error("{0}")]
    Parse(String),
}
