//! The `rate_limits:` section exactly as YAML spells it, defaults included: the schema `gateway
//! check` locates fields in, and the one input compilation reads. No meaning is checked here.

use std::time::Duration;

use serde::Deserialize;

use crate::ratelimit::store::memory::DEFAULT_MAX_KEYS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// Where counters live unless a policy says otherwise: `memory` (default) or `redis`. Read as
    /// text and checked when compiling, so a typo here never hides the section's other problems.
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub memory: RawMemoryStore,
    /// Required when any policy uses the Redis store.
    #[serde(default)]
    pub redis: Option<RawRedisStore>,
    /// Peers (addresses or CIDR blocks) whose `client_ip_header` is believed; from anyone else the
    /// client IP is the socket peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_client_ip_header")]
    pub client_ip_header: String,
    /// IPv6 clients are counted per prefix of this length (a host usually owns a whole /64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// The tier of a request whose identity names none (or that has no identity).
    #[serde(default)]
    pub default_tier: Option<String>,
    /// Tiers that only tokens carry (a JWT's tier claim): a policy's `tiers` may name these, an
    /// API key's `tier` or the `default_tier`, and nothing else, so a misspelt tier is an error
    /// rather than a policy that silently never applies.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
    #[serde(default)]
    pub legacy_headers: bool,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
}

/// The same defaults as an empty `rate_limits:` section (a derived Default would leave the header
/// name empty and the IPv6 prefix 0).
impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            store: None,
            memory: RawMemoryStore::default(),
            redis: None,
            trusted_proxies: Vec::new(),
            client_ip_header: default_client_ip_header(),
            ipv6_prefix: default_ipv6_prefix(),
            default_tier: None,
            tiers: Vec::new(),
            legacy_headers: false,
            policies: Vec::new(),
        }
    }
}

fn default_client_ip_header() -> String {
    "x-forwarded-for".into()
}

fn default_ipv6_prefix() -> u8 {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMemoryStore {
    pub max_keys: usize,
}

impl Default for RawMemoryStore {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisStore {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`). Exactly one of this and
    /// `cluster_nodes`.
    #[serde(default)]
    pub url: Option<String>,
    /// A Redis Cluster's seed nodes, `redis://host:port` each: any reachable one yields the
    /// whole topology.
    #[serde(default)]
    pub cluster_nodes: Option<Vec<String>>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for one decision (connecting included) before it counts as a store error.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive store errors that open the breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker answers with the fallback before one request probes Redis again.
    #[serde(default = "default_breaker_cooldown", with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// One Redis: most concurrent requests decided in one script call (1: a call each).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

fn default_key_prefix() -> String {
    "gatehouse:rl:".into()
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_breaker_failures() -> u32 {
    3
}

fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(1)
}

fn default_max_batch() -> usize {
    crate::ratelimit::store::batch::DEFAULT_MAX_BATCH
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Stable name: the header's policy name, the metric label, part of every counter's key.
    pub id: String,
    /// One of [`Algorithm`]'s names, checked when the section is compiled rather than by serde:
    /// a schema error would stop the check before the policy's other fields (its key parts,
    /// routes and tiers) are looked at, so one typo would hide the next.
    pub algorithm: String,
    /// Units admitted per `period`.
    pub limit: u64,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Bucket algorithms only: the most admitted at once (default: `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// What a counter is per: one part or a list of parts.
    pub key: RawKey,
    /// Route names this policy applies to; empty means every request.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Tiers this policy applies to; empty means every tier.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// When a key part is absent (no identity yet): count per client IP instead, or skip.
    #[serde(default)]
    pub when_missing: Option<String>,
    /// Units one request costs.
    #[serde(default = "default_cost")]
    pub cost: u64,
    /// `memory` or `redis`; default: the section's `store`.
    #[serde(default)]
    pub store: Option<String>,
    /// Redis policies: admit (`allow`) or refuse (`deny`) while the store cannot answer.
    #[serde(default)]
    pub on_store_error: Option<String>,
    /// Redis policies: decide locally from slices of the shared quota (docs/ratelimit.md).
    #[serde(default)]
    pub lease: Option<RawLease>,
}

/// `lease: {size: 10%, sync_interval: 100ms}`: each node takes `size` units of the shared
/// counter per round trip and spends them locally for at most `sync_interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLease {
    /// Units per fetch: a number, or a share of what the policy admits at once (`10%`). Checked
    /// when compiling.
    #[serde(default = "default_lease_size")]
    pub size: RawLeaseSize,
    /// How long a slice (or a refusal) is good for before the node asks the counter again.
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    pub sync_interval: Duration,
}

/// `size: 20` or `size: 10%`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawLeaseSize {
    Units(u64),
    Text(String),
}

fn default_lease_size() -> RawLeaseSize {
    RawLeaseSize::Text("10%".into())
}

fn default_sync_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_cost() -> u64 {
    1
}

/// `key: client_ip` or `key: [tenant, route]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawKey {
    One(String),
    Many(Vec<String>),
}

impl RawKey {
    pub(super) fn parts(&self) -> Vec<&str> {
        match self {
            RawKey::One(s) => vec![s.as_str()],
            RawKey::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}
