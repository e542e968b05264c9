//! The settings the resilience rules run on, as a compiled config holds them: balancing, health
//! checks, outlier ejection, the breaker, retries and their budget. Defined here, beside the
//! rules, so the rules never reach up into the config layer; `config/resilience.rs` compiles the
//! YAML into them.

use std::time::Duration;

use http::{HeaderName, Method};

/// Everything resilience-related about one upstream, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamResilience {
    pub load_balancing: LoadBalancing,
    pub health_check: Option<HealthCheck>,
    pub outlier: Option<OutlierEjection>,
    pub breaker: Option<BreakerConfig>,
    pub retries: Option<RetryPolicy>,
    /// All tries together, backoff included; `None` leaves only the per-try `request_timeout`.
    pub total_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastOutstanding,
    ConsistentHash(HashOn),
}

impl LoadBalancing {
    pub fn name(&self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round_robin",
            LoadBalancing::LeastOutstanding => "least_outstanding",
            LoadBalancing::ConsistentHash(_) => "consistent_hash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Subject,
    Header(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query, starting with `/`.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub expected_status: Vec<u16>,
}

impl HealthCheck {
    pub fn expects(&self, status: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected_status.contains(&status)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierEjection {
    pub consecutive_5xx: u32,
    pub consecutive_connect_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejected_percent: u32,
}

impl OutlierEjection {
    /// How many of `instances` may be out of rotation at once: the configured share, rounded
    /// down, but at least one when the share is not zero (otherwise a small upstream could never
    /// eject anything).
    pub fn max_ejected(&self, instances: usize) -> usize {
        if self.max_ejected_percent == 0 {
            return 0;
        }
        (instances * self.max_ejected_percent as usize / 100).max(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub window: Duration,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub consecutive_failures: u32,
    pub open_for: Duration,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub methods: Vec<Method>,
    pub backoff: Duration,
    pub budget: BudgetConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    pub ratio: f64,
    pub min_per_second: f64,
    pub window: Duration,
}

/// Most retries one request may make: beyond a few, retries only multiply an outage.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// RFC 9110 §9.2.2 idempotent methods: what is retried unless `retries.methods` says otherwise.
pub const IDEMPOTENT: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::TRACE,
    Method::PUT,
    Method::DELETE,
];
