//! Resilience and reload metrics, registered in the gateway's one registry. Labels are bounded by
//! the config: upstream names and instance addresses come from it, never from requests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub upstream: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub upstream: String,
    pub instance: String,
}

pub struct ResilienceMetrics {
    pub reloads: Family<ResultLabels, Counter>,
    pub config_version: Gauge,
    pub breaker_state: Family<BreakerLabels, Gauge>,
    pub breaker_transitions: Family<BreakerLabels, Counter>,
    pub retries: Family<UpstreamLabels, Counter>,
    pub retries_over_budget: Family<UpstreamLabels, Counter>,
    pub ejections: Family<UpstreamLabels, Counter>,
    pub instance_available: Family<InstanceLabels, Gauge>,
}

impl ResilienceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads by result (success, failure)",
            reloads.clone(),
        );
        let config_version = Gauge::default();
        registry.register(
            "config_version",
            "Version of the active config: 1 at start, one more per successful reload",
            config_version.clone(),
        );
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "1 for each upstream's current circuit-breaker state (closed, open, half_open), 0 for the others",
            breaker_state.clone(),
        );
        let breaker_transitions = Family::<BreakerLabels, Counter>::default();
        registry.register(
            "breaker_transitions",
            "Circuit-breaker transitions by upstream and the state entered",
            breaker_transitions.clone(),
        );
        let retries = Family::<UpstreamLabels, Counter>::default();
        registry.register("retries", "Retries sent, by upstream", retries.clone());
        let retries_over_budget = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "retries_over_budget",
            "Retries not sent because the upstream's retry budget was spent",
            retries_over_budget.clone(),
        );
        let ejections = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "outlier_ejections",
            "Instances taken out of rotation by outlier ejection, by upstream",
            ejections.clone(),
        );
        let instance_available = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "instance_available",
            "1 when an instance is in rotation (passing health checks, not ejected), else 0",
            instance_available.clone(),
        );
        Self {
            reloads,
            config_version,
            breaker_state,
            breaker_transitions,
            retries,
            retries_over_budget,
            ejections,
            instance_available,
        }
    }

    pub fn upstream(name: &str) -> UpstreamLabels {
        UpstreamLabels {
            upstream: name.to_string(),
        }
    }
}
