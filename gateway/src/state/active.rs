//! The active config: a compiled config bound to the live state it runs on. A request holds one
//! from arrival to its record, so a reload never changes its rules or its upstreams mid-request.

use std::collections::HashMap;
use std::sync::Arc;

use super::upstreams::Binding;
use crate::config::ratelimit::CompiledPolicy;
use crate::config::{CompiledRoute, Runtime};
use crate::ratelimit::metrics::PolicyMetrics;
use crate::record::metrics::{Metrics, RouteMetrics};

/// What `GatewayState::active` swaps on reload.
#[derive(Debug)]
pub struct Active {
    /// The compiled config: data only.
    pub config: Runtime,
    /// Its upstreams bound to their pools, breakers, budgets and instance state.
    pub upstreams: Binding,
    /// Each route's metric handles, by declaration index.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    /// Each rate-limit policy's decision counters, by the policy's address in this config.
    policy_metrics: HashMap<usize, PolicyMetrics, foldhash::fast::RandomState>,
}

impl Active {
    /// Binds `config` to its upstreams' live state and resolves its routes' metric handles.
    pub fn new(config: Runtime, upstreams: Binding, metrics: &Metrics) -> Self {
        let route_metrics = config
            .routes
            .routes()
            .iter()
            .map(|route| metrics.for_route(&route.template))
            .collect();
        let policy_metrics = config
            .rate_limits
            .policies
            .iter()
            .map(|p| (policy_key(p), metrics.ratelimit.for_policy(&p.id)))
            .collect();
        Self {
            config,
            upstreams,
            route_metrics,
            policy_metrics,
        }
    }

    /// The decision counters of `policy`, a policy of this config.
    pub fn policy_metrics(&self, policy: &Arc<CompiledPolicy>) -> Option<&PolicyMetrics> {
        self.policy_metrics.get(&policy_key(policy))
    }

    /// The handles of `route`, a route of this config.
    pub fn metrics_of(&self, route: &CompiledRoute) -> Option<&Arc<RouteMetrics>> {
        self.route_metrics.get(route.declaration_index)
    }
}

/// A policy is identified by its allocation: the config holds each once, behind one `Arc`.
fn policy_key(policy: &Arc<CompiledPolicy>) -> usize {
    Arc::as_ptr(policy) as usize
}

/// The writer redacts a recorded request under the config it ran with.
impl crate::record::recording::RuntimeView for Active {
    fn runtime(&self) -> &Runtime {
        &self.config
    }
}
