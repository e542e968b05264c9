//! Rate-limit configuration (`rate_limits:`): the store and the policies.
//!
//! A policy says how much (`algorithm`, `limit`, `period`, `burst`), per what (`key`: API key,
//! subject, tenant, client IP, route, a header, or several of them together), where (`routes`,
//! `tiers`) and what to do when the shared store is down (`on_store_error`). Every request is
//! checked against every policy that selects it; all must admit it. See docs/ratelimit.md.
//!
//! Split as the whole config is: [`raw`] (serde types, as written) → `compile` (meaning, every
//! problem) → here, the compiled forms the `ratelimit` stage reads, and the few enums that are
//! the same written and compiled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use serde::Deserialize;

use crate::ratelimit::lease::LeaseRule;
use crate::ratelimit::store::RedisConfig;
use crate::ratelimit::{Algorithm, AnyLimiter, Quota};

mod compile;
pub mod raw;

pub use compile::compile;
pub use raw::RawRateLimits;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

/// The words a field accepts, each with its meaning: how `store`, `when_missing` and
/// `on_store_error` are read, so a typo is reported with "did you mean" beside every other problem.
pub trait Word: Copy + 'static {
    const WORDS: &'static [(&'static str, Self)];
}

impl Word for StoreKind {
    const WORDS: &'static [(&'static str, Self)] =
        &[("memory", StoreKind::Memory), ("redis", StoreKind::Redis)];
}

impl Word for WhenMissing {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("client_ip", WhenMissing::ClientIp),
        ("skip", WhenMissing::Skip),
    ];
}

impl Word for OnStoreError {
    const WORDS: &'static [(&'static str, Self)] =
        &[("allow", OnStoreError::Allow), ("deny", OnStoreError::Deny)];
}

impl StoreKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenMissing {
    #[default]
    ClientIp,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    Allow,
    Deny,
}

// ---------------------------------------------------------------------------------------------
// Compiled forms.

/// The `rate_limits:` section as requests read it.
#[derive(Debug, Default)]
pub struct CompiledRateLimits {
    pub policies: Vec<Arc<CompiledPolicy>>,
    /// Policies per route name, in declaration order (those without `routes` included).
    by_route: HashMap<Arc<str>, Box<[Arc<CompiledPolicy>]>, foldhash::fast::RandomState>,
    /// Policies without a `routes` filter: what a request without a route is checked against.
    unrouted: Box<[Arc<CompiledPolicy>]>,
    pub trusted_proxies: Vec<Cidr>,
    pub client_ip_header: Option<HeaderName>,
    pub ipv6_prefix: u8,
    pub default_tier: Option<String>,
    pub legacy_headers: bool,
    pub max_keys: usize,
    pub redis: Option<RedisConfig>,
}

impl CompiledRateLimits {
    /// The policies that may apply to a request on `route` (tiers are checked per request).
    pub fn policies_for(&self, route: Option<&str>) -> &[Arc<CompiledPolicy>] {
        match route.and_then(|r| self.by_route.get(r)) {
            Some(p) => p,
            None => &self.unrouted,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[derive(Debug)]
pub struct CompiledPolicy {
    pub id: Arc<str>,
    /// `id` plus a fingerprint of the definition: the counters' namespace. A reload that keeps
    /// the definition keeps the counters; one that changes it starts them afresh.
    pub store_key: Arc<str>,
    pub algorithm: Algorithm,
    /// The quota in nanoseconds, as written.
    pub quota: Quota,
    /// The same algorithm over store ticks (microseconds): what both stores run.
    pub limiter: AnyLimiter,
    pub key: Vec<KeyPart>,
    pub tiers: Vec<String>,
    pub when_missing: WhenMissing,
    pub cost: u64,
    pub store: StoreKind,
    pub on_store_error: OnStoreError,
    /// Redis policies with `lease:`: the local rule over store ticks (size resolved to units).
    pub lease: Option<LeaseRule>,
    /// `q` of the `RateLimit-Policy` field: the units the policy grants per `w` seconds.
    pub header_quota: u64,
    pub header_window_secs: u64,
    /// The policy's `RateLimit-Policy` member, rendered once as the field value every response
    /// carries: `"paid";q=100;w=6`. `None` for an id no field value can hold.
    pub policy_item: Option<http::HeaderValue>,
}

impl CompiledPolicy {
    pub fn applies_to_tier(&self, tier: Option<&str>) -> bool {
        self.tiers.is_empty() || tier.is_some_and(|t| self.tiers.iter().any(|x| x == t))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The id of the API key that authenticated the request (`identity.api_key_id`); a JWT caller has none, so `when_missing` applies.
    ApiKey,
    Subject,
    Tenant,
    ClientIp,
    Route,
    Header(HeaderName),
}

/// An address block: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then(|| Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// `ip` with all but its first `prefix` bits cleared.
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_contain_what_they_should() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.1.0.9".parse().expect("ip")));
        let one = Cidr::parse("::1").expect("cidr");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert_eq!(
            mask("2001:db8:1:2:3:4:5:6".parse().expect("ip"), 64),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
    }
}
