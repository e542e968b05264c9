//! The Redis half of local leases: one `EVALSHA` takes a slice of each asked policy's shared
//! counter ([`crate::ratelimit::lease::take`], ported in `lease.lua`), through the store's own
//! connection, timeout and breaker — so a fetch fails exactly as a decision does, and the stage
//! takes the policy's `on_store_error`.
//!
//! The script is `ratelimit.lua`'s algorithms (the text before its `ENTRY` line) followed by
//! `lease.lua`: a leased counter is the policy's ordinary counter under its ordinary key, and a
//! slice is one decision of the slice's size, so leased and unleased gateways can share it.

use std::sync::LazyLock;

use futures_util::future::try_join_all;
use redis::Script;

use super::{Conn, RedisStore, SCRIPT, StoreError, TTL_MARGIN_MS, by_slot, cluster_key, code, key};
use crate::clock::Nanos;
use crate::ratelimit::lease::Grant;
use crate::ratelimit::store::Check;
use crate::ratelimit::{Decision, Limiter, NEVER};

/// `lease.lua`, the entry that follows the algorithms.
pub const LEASE_ENTRY: &str = include_str!("lease.lua");

/// The algorithms of `ratelimit.lua` and the lease entry, as one script's text (sent as `EVAL`
/// to a node that has not loaded it yet).
pub static LEASE_SOURCE: LazyLock<String> = LazyLock::new(|| {
    let algorithms = SCRIPT
        .split_once("-- ENTRY:")
        .map_or(SCRIPT, |(algorithms, _)| algorithms);
    format!("{algorithms}{LEASE_ENTRY}")
});

/// The same script, for its hash.
pub static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&LEASE_SOURCE));

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
        self.guarded(mono, self.lease_calls(asks, now)).await
    }

    /// The slices in one script call per slot (each slice is decided on its own, so slots need
    /// no second round as `decide_all`'s do): one call on a single Redis, keys as `decide_all`
    /// names them so a leased and an unleased gateway share a counter.
    async fn lease_calls(&self, asks: &[LeaseAsk<'_>], now: u64) -> Result<Vec<Grant>, StoreError> {
        let prefix = &self.config.key_prefix;
        let (keys, groups): (Vec<String>, Vec<Vec<usize>>) = match self.conn {
            Conn::Single(_) => (
                asks.iter().map(|a| key(prefix, &a.check)).collect(),
                vec![(0..asks.len()).collect()],
            ),
            Conn::Cluster(_) => {
                let keys: Vec<String> =
                    asks.iter().map(|a| cluster_key(prefix, &a.check)).collect();
                let groups = by_slot(&keys);
                (keys, groups)
            }
        };
        let answers = try_join_all(
            groups
                .iter()
                .map(|group| self.lease_call(&keys, asks, group, now)),
        )
        .await?;
        let mut out = vec![None; asks.len()];
        for (group, grants) in groups.iter().zip(answers) {
            for (&i, grant) in group.iter().zip(grants) {
                out[i] = Some(grant);
            }
        }
        out.into_iter()
            .map(|g| g.ok_or_else(|| StoreError::Script("a lease went unanswered".into())))
            .collect()
    }

    /// One script call for the slices at `indices` (their keys share a slot): `EVALSHA`, and on
    /// `NOSCRIPT` the same call as `EVAL`.
    async fn lease_call(
        &self,
        keys: &[String],
        asks: &[LeaseAsk<'_>],
        indices: &[usize],
        now: u64,
    ) -> Result<Vec<Grant>, StoreError> {
        let fill = |cmd: &mut redis::Cmd| {
            cmd.arg(indices.len());
            for &i in indices {
                cmd.arg(&keys[i]);
            }
            cmd.arg(now).arg(TTL_MARGIN_MS);
            for &i in indices {
                let a = &asks[i];
                let quota = a.check.limiter.quota();
                cmd.arg(code(a.check.limiter.algorithm()))
                    .arg(quota.limit)
                    .arg(quota.period())
                    .arg(quota.burst)
                    .arg(a.check.cost)
                    .arg(a.want);
            }
        };
        let values = self
            .conn
            .eval(LEASE_SCRIPT.get_hash(), &LEASE_SOURCE, fill)
            .await?;
        if values.len() != indices.len() * 5 {
            return Err(StoreError::Script(format!(
                "{} values for {} leases",
                values.len(),
                indices.len()
            )));
        }
        Ok(values
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
            .collect())
    }
}
