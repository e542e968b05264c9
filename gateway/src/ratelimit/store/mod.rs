//! Where counters live: [`memory`] (embedded, sharded, bounded) and [`redis`] (shared by every
//! gateway process, one round trip per request through a Lua script, concurrent requests
//! sharing one call: [`batch`]), with [`lease`] holding this node's slices of leased Redis
//! policies.
//!
//! Both stores run the same algorithms on the same timeline, so they decide identically:
//!
//! - **Time** is wall time in microseconds since the Unix epoch ("ticks"), read through the
//!   gateway's [`Clock`]: its wall reading once, then its monotonic one ([`WallTicks`]). Wall time,
//!   not the monotonic origin, because every gateway process sharing a Redis must agree on where a
//!   fixed window starts; the gateway's clock rather than Redis `TIME` so time stays injected
//!   (tests drive both stores in virtual time) and the rule "only `clock.rs` reads the system
//!   clock" holds. The price: hosts must keep their clocks in sync (NTP); a host `s` ahead of the
//!   others can admit up to `s / T` extra units of a bucket policy.
//! - **Units**: a policy's quota is compiled into ticks (`CompiledPolicy::limiter` in the config layer), because
//!   Redis's Lua numbers are doubles — exact up to 2^53, which nanoseconds since 1970 exceed and
//!   microseconds do not (until the year 2112 with the margin [`MAX_EXACT`] keeps).
//! - **Several policies on one request** are decided all-or-nothing: if any refuses, none is
//!   charged (a request refused by a per-second burst does not eat the per-minute quota).
//!
//! [`Clock`]: crate::clock::Clock

pub mod batch;
pub mod breaker;
pub mod lease;
pub mod memory;
pub mod redis;

pub use redis::RedisConfig;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::clock::{Nanos, SharedClock};
use crate::ratelimit::metrics::RateLimitMetrics;
use crate::ratelimit::{AnyLimiter, Decision, NEVER};

/// The gateway's counters, in `GatewayState`: they outlive config reloads, which swap the
/// `Runtime` but not this. Counters are keyed by a policy's id and a fingerprint of its definition,
/// so a policy a reload leaves unchanged keeps counting and a changed one starts afresh.
pub struct Stores {
    pub memory: memory::MemoryStore,
    /// This node's slices of leased Redis policies.
    pub leases: lease::LeaseStore,
    redis: ArcSwapOption<redis::RedisStore>,
    pub ticks: WallTicks,
    pub metrics: RateLimitMetrics,
}

impl Stores {
    /// The memory budget is fixed here, at start; the Redis store follows the active config.
    pub fn new(
        clock: SharedClock,
        max_keys: usize,
        redis: Option<&RedisConfig>,
        metrics: RateLimitMetrics,
    ) -> Self {
        let stores = Self {
            memory: memory::MemoryStore::new(max_keys, metrics.clone()),
            leases: lease::LeaseStore::new(max_keys),
            redis: ArcSwapOption::empty(),
            ticks: WallTicks::new(clock),
            metrics,
        };
        if let Some(config) = redis {
            stores.redis(config);
        }
        stores
    }

    /// The Redis store for `config`, made (and swapped in) when the config names another one.
    /// Must run inside a Tokio runtime.
    pub fn redis(&self, config: &RedisConfig) -> Option<Arc<redis::RedisStore>> {
        if let Some(store) = self.redis.load_full().filter(|s| s.config == *config) {
            return Some(store);
        }
        match redis::RedisStore::new(config, self.metrics.clone()) {
            Ok(store) => {
                let store = Arc::new(store);
                self.redis.store(Some(store.clone()));
                Some(store)
            }
            Err(error) => {
                tracing::warn!(%error, "rate limits: cannot set up the Redis store");
                None
            }
        }
    }
}

/// One tick of the stores' timeline, in nanoseconds.
pub const TICK_NANOS: u64 = 1_000;

/// Largest product the Lua ports form (limit × period, burst × T, in ticks), and far above any
/// tick of this century: every intermediate value stays below 2^53, where doubles are exact.
pub const MAX_EXACT: u64 = 1 << 50;

/// One policy's question about one request: may `subject` spend `cost` units now?
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The policy's counter namespace (`CompiledPolicy::store_key`: id and fingerprint).
    pub policy: &'a str,
    pub subject: &'a str,
    /// The algorithm over ticks.
    pub limiter: &'a AnyLimiter,
    pub cost: u64,
}

/// Wall time in ticks through an injected clock: the wall reading taken once, advanced by the
/// monotonic reading, so it never goes backwards within a process.
pub struct WallTicks {
    clock: SharedClock,
    origin_ticks: u64,
    origin_mono: Nanos,
}

impl WallTicks {
    pub fn new(clock: SharedClock) -> Self {
        let origin_mono = clock.now();
        let origin_ticks = clock.unix_millis().saturating_mul(1_000_000 / TICK_NANOS);
        Self {
            clock,
            origin_ticks,
            origin_mono,
        }
    }

    pub fn now(&self) -> u64 {
        self.origin_ticks + self.clock.now().saturating_sub(self.origin_mono) / TICK_NANOS
    }

    /// The monotonic clock, for breaker timing.
    pub fn mono(&self) -> Nanos {
        self.clock.now()
    }
}

/// A decision over ticks turned into one over nanoseconds (what headers and records read).
pub fn to_nanos(d: Decision) -> Decision {
    let scale = |t: u64| {
        if t == NEVER {
            NEVER
        } else {
            t.saturating_mul(TICK_NANOS)
        }
    };
    Decision {
        retry_after_nanos: scale(d.retry_after_nanos),
        reset_nanos: scale(d.reset_nanos),
        ..d
    }
}

/// Decides `checks` all-or-nothing with per-check `decide(check, cost)`, given exclusive access
/// to every check's state: when any would refuse, none is charged. Relies on what the property
/// test `remaining_predicts_admission` holds for every algorithm: a decision of cost 0 (which
/// changes nothing the next decision can see) reports `remaining ≥ cost` exactly when `cost`
/// would be admitted.
pub fn decide_together(
    checks: &[Check<'_>],
    mut decide: impl FnMut(usize, u64) -> Decision,
) -> Vec<Decision> {
    if let [only] = checks {
        return vec![decide(0, only.cost)];
    }
    let peeks: Vec<Decision> = (0..checks.len()).map(|i| decide(i, 0)).collect();
    let all = checks
        .iter()
        .zip(&peeks)
        .all(|(c, p)| p.remaining >= c.cost);
    checks
        .iter()
        .zip(peeks)
        .enumerate()
        .map(|(i, (c, peek))| {
            if all || peek.remaining < c.cost {
                // Admitted (all fit), or this one's refusal with its exact retry-after; a
                // refusal changes no counter.
                decide(i, c.cost)
            } else {
                peek
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ratelimit::{Algorithm, Limiter, Quota};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// What `decide_together` relies on, for all five algorithms.
        #[test]
        fn remaining_predicts_admission(
            alg in 0usize..5,
            limit in 1u64..20,
            period in 1u64..2_000,
            burst in 1u64..20,
            steps in prop::collection::vec((0u64..300, 0u64..6), 1..60),
            probe in 0u64..25,
        ) {
            let limiter = AnyLimiter::new(Algorithm::ALL[alg], Quota { limit, period_nanos: period, burst });
            let mut state = crate::ratelimit::AnyState::default();
            let mut now = 0;
            for (dt, cost) in steps {
                now += dt;
                let peek = limiter.decide(&mut state.clone(), now, 0);
                let real = limiter.decide(&mut state.clone(), now, probe);
                prop_assert_eq!(peek.remaining >= probe, real.allowed, "probe {} at {}", probe, now);
                limiter.decide(&mut state, now, cost);
            }
        }
    }

    #[test]
    fn ticks_scale_to_nanos_and_never_stays_never() {
        let d = Decision {
            allowed: false,
            remaining: 0,
            retry_after_nanos: 1_500,
            reset_nanos: NEVER,
        };
        let n = to_nanos(d);
        assert_eq!(n.retry_after_nanos, 1_500_000);
        assert_eq!(n.reset_nanos, NEVER);
    }

    #[test]
    fn wall_ticks_follow_the_injected_clock() {
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new(1_700_000_000_000));
        let ticks = WallTicks::new(clock.clone());
        assert_eq!(ticks.now(), 1_700_000_000_000_000);
        clock.advance(std::time::Duration::from_micros(1_234));
        assert_eq!(ticks.now(), 1_700_000_000_001_234);
    }
}
