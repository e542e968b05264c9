//! The compare view's state: the traffic it compares on (a fixed trace or the records so far), the
//! one quota every algorithm gets, and re-running the comparison whenever either changes.

use gateway::config::ratelimit::CompiledRateLimits;
use gateway::ratelimit::Quota;

use super::App;
use crate::compare::{CompareParams, Comparison, KeyField, Trace, compare};

/// A rate-limit policy of the gateway being watched: its id and quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPolicy {
    pub id: String,
    pub quota: Quota,
}

/// The policies of a running config, in config order.
pub fn policies_of(limits: &CompiledRateLimits) -> Vec<LabPolicy> {
    limits
        .policies
        .iter()
        .map(|p| LabPolicy {
            id: p.id.to_string(),
            quota: p.quota,
        })
        .collect()
}

/// The policies a gateway's admin `/config` names (`rate_limits`), in config order; none when the
/// answer holds no such list.
pub fn policies_of_admin_config(config: &serde_json::Value) -> Vec<LabPolicy> {
    let Some(list) = config["rate_limits"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            Some(LabPolicy {
                id: p["id"].as_str()?.to_owned(),
                quota: Quota {
                    limit: p["limit"].as_u64()?,
                    period_nanos: p["period_nanos"].as_u64()?,
                    burst: p["burst"].as_u64()?,
                },
            })
        })
        .collect()
}

/// Where the compare view's traffic comes from.
#[derive(Debug, Clone)]
pub enum LabTraffic {
    /// A fixed trace (`simulator compare --tui`).
    Fixed(Trace),
    /// The records seen so far, keyed by this field.
    Live(KeyField),
}

/// The compare view: one quota for every algorithm, re-run whenever it changes.
#[derive(Debug, Clone)]
pub struct Lab {
    pub traffic: LabTraffic,
    pub params: CompareParams,
    pub result: Option<Comparison>,
    /// Comparisons run so far.
    pub runs: u64,
    /// The watched gateway's policies (empty: not known); `policy` is the one the quota came
    /// from, until a key changes it.
    pub policies: Vec<LabPolicy>,
    pub policy: usize,
    /// The last re-run, for this view's footer only.
    pub status: String,
}

impl Lab {
    pub fn new(traffic: LabTraffic, params: CompareParams) -> Self {
        Self {
            traffic,
            params,
            result: None,
            runs: 0,
            policies: Vec::new(),
            policy: 0,
            status: String::new(),
        }
    }

    /// The policy the quota is, if it still is one.
    pub fn current_policy(&self) -> Option<&LabPolicy> {
        self.policies
            .get(self.policy)
            .filter(|p| p.quota == self.params.quota)
    }
}

/// A step of the compare quota, from the compare view's keys.
#[derive(Debug, Clone, Copy)]
pub(super) enum QuotaChange {
    RateUp,
    RateDown,
    BurstUp,
    BurstDown,
    WindowUp,
    WindowDown,
}

impl App {
    /// Runs the comparison again on the current parameters (and, live, on the traffic so far).
    pub fn rerun(&mut self) {
        let result = match &self.lab.traffic {
            LabTraffic::Fixed(trace) => compare(trace, &self.lab.params),
            LabTraffic::Live(_) => {
                let trace = Trace::from_events(
                    "live traffic",
                    self.live
                        .iter()
                        .map(|(ms, key)| (ms.saturating_mul(1_000_000), key.as_ref(), 1)),
                );
                compare(&trace, &self.lab.params)
            }
        };
        self.lab.runs += 1;
        self.lab.status = format!(
            "compared {} arrivals: {} per {} ms, burst {}",
            result.trace.arrivals,
            self.lab.params.quota.limit,
            result.quota.period_ms,
            self.lab.params.quota.burst
        );
        self.lab.result = Some(result);
    }

    /// The next of the gateway's policies, and re-runs on its quota.
    pub(super) fn next_policy(&mut self) {
        if self.lab.policies.is_empty() {
            self.lab.status = "the gateway's policies are not known here".into();
            return;
        }
        self.lab.policy = (self.lab.policy + 1) % self.lab.policies.len();
        self.lab.params.quota = self.lab.policies[self.lab.policy].quota;
        self.rerun();
    }

    /// Changes the compare quota and re-runs at once.
    pub(super) fn adjust(&mut self, change: QuotaChange) {
        let q = &mut self.lab.params.quota;
        let up = |n: u64| (n + (n / 4).max(1)).min(1_000_000_000);
        let down = |n: u64| n.saturating_sub((n / 5).max(1)).max(1);
        match change {
            QuotaChange::RateUp => {
                let burst_follows = q.burst == q.limit;
                q.limit = up(q.limit);
                if burst_follows {
                    q.burst = q.limit;
                }
            }
            QuotaChange::RateDown => {
                let burst_follows = q.burst == q.limit;
                q.limit = down(q.limit);
                if burst_follows {
                    q.burst = q.limit;
                }
            }
            QuotaChange::BurstUp => q.burst = up(q.burst),
            QuotaChange::BurstDown => q.burst = down(q.burst),
            QuotaChange::WindowUp => q.period_nanos = q.period().saturating_mul(2),
            QuotaChange::WindowDown => q.period_nanos = (q.period() / 2).max(1_000_000),
        }
        self.rerun();
    }
}
