//! The Redis half of local leases: one `EVALSHA` takes a slice of each asked policy's shared
//! counter ([`crate::ratelimit::lease::take`], ported in `lease.lua`), through the store's own
//! connection, timeout and breaker — so a fetch fails exactly as a decision does, and the stage
//! takes the policy's `on_store_error`.
//!
//! The script is `ratelimit.lua`'s algorithms (the text before its `ENTRY` line) followed by
//! `lease.lua`: a leased counter is the policy's ordinary counter under its ordinary key, and a
//! slice is one decision of the slice's size, so leased and unleased gateways can share it.

use std::sync::LazyLock;

use redis::Script;

use super::{RedisStore, SCRIPT, StoreError, TTL_MARGIN_MS, classify, code, key};
use crate::clock::Nanos;
use crate::ratelimit::lease::Grant;
use crate::ratelimit::store::Check;
use crate::ratelimit::{Decision, Limiter, NEVER};

/// `lease.lua`, the entry that follows the algorithms.
pub const LEASE_ENTRY: &str = include_str!("lease.lua");

/// The algorithms of `ratelimit.lua` and the lease entry, as one script.
pub static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    let algorithms = SCRIPT
        .split_once("-- ENTRY:")
        .map_or(SCRIPT, |(algorithms, _)| algorithms);
    Script::new(&format!("{algorithms}{LEASE_ENTRY}"))
});

/// One slice asked for: the check (its cost is the request's) and the units wanted.
#[derive(Debug, Clone, Copy)]
pub struct LeaseAsk<'a> {
    pub check: Check<'a>,
    pub want: u64,
}

impl RedisStore {
    /// Takes the slices `asks` want at `now` (ticks) in one round trip; each is granted or refused
    /// on its own. `mono` is the monotonic time for the breaker.
    pub async fn take_leases(
        &self,
        asks: &[LeaseAsk<'_>],
        now: u64,
        mono: Nanos,
    ) -> Result<Vec<Grant>, StoreError> {
        let admit = self.breaker.admit(mono);
        if admit == super::Admit::Refuse {
            return Err(self.failed(StoreError::BreakerOpen, mono, false));
        }
        let mut invocation = LEASE_SCRIPT.prepare_invoke();
        for a in asks {
            invocation.key(key(&self.config.key_prefix, &a.check));
        }
        invocation.arg(now).arg(TTL_MARGIN_MS);
        for a in asks {
            let quota = a.check.limiter.quota();
            invocation
                .arg(code(a.check.limiter.algorithm()))
                .arg(quota.limit)
                .arg(quota.period())
                .arg(quota.burst)
                .arg(a.check.cost)
                .arg(a.want);
        }
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async::<Vec<i64>>(&mut conn),
        )
        .await;
        let result = match answer {
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(values)) if values.len() == asks.len() * 5 => Ok(values
                .chunks_exact(5)
                .map(|v| Grant {
                    units: u64::try_from(v[1]).unwrap_or(0),
                    decision: Decision {
                        allowed: v[0] == 1,
                        remaining: u64::try_from(v[2]).unwrap_or(0),
                        retry_after_nanos: u64::try_from(v[3]).unwrap_or(NEVER),
                        reset_nanos: u64::try_from(v[4]).unwrap_or(0),
                    },
                })
                .collect()),
            Ok(Ok(values)) => Err(StoreError::Script(format!(
                "{} values for {} leases",
                values.len(),
                asks.len()
            ))),
        };
        match result {
            Ok(grants) => {
                if self.breaker.success() {
                    tracing::info!("rate limits: Redis answers again; breaker closed");
                    self.metrics.breaker_open.set(0);
                }
                Ok(grants)
            }
            Err(e) => Err(self.failed(e, mono, admit == super::Admit::Probe)),
        }
    }
}
