//! Local leases: a gateway node takes a slice of a shared quota in one round trip and decides
//! locally until the slice runs out or its sync interval passes — Kong's `sync_rate` and Envoy's
//! quota assignments, over our own algorithms.
//!
//! Two halves, both pure over an explicit `now` (in whatever unit the limiter's quota is in: store
//! ticks in the gateway, nanoseconds in the simulator):
//!
//! - [`take`], the **shared** side, runs where the counter lives (the Redis store runs its Lua
//!   port, `store/redis/lease.lua`): a grant of `g = min(want, remaining)` units — at least the
//!   request's cost, or nothing — is charged to the policy's own algorithm as one decision of cost
//!   `g`. The counter cannot tell a lease from a request of cost `g`, so every unit a node admits
//!   was charged under the algorithm's own rule first.
//! - [`LeaseRule`], the **local** side, one [`LeaseState`] per (policy, subject) per node: admits
//!   from the slice, remembers a refusal, and says when a fetch is due ([`Local::Fetch`]).
//!
//! # When a lease ends
//!
//! A slice is good for `sync_interval` from its grant; for `fixed-window` and
//! `sliding-window-counter` it also ends with the aligned window it was charged to, so a unit is
//! always spent in the window that counted it. A refusal is remembered the same way, but never
//! past the refusal's own retry-after: a denied node asks again exactly when the counter could say
//! yes, and not once per request meanwhile. Unused units are not given back: a return would need
//! a round trip of its own for a key that went idle, and for the buckets it is not sound as a
//! plain refund (the bucket would also keep the refill it earned while those units were out).
//! They cost under-admission, never over-admission, and come back with the quota.
//!
//! # The over-admission bound
//!
//! Units admitted in an interval `[a, b]` were charged either in `[a, b]` or before `a` by a slice
//! still live at `a` — at most `N · size` units over `N` nodes, all charged within
//! `sync_interval` before `a`. Hence, over any number of nodes, admitted in `[a, b]` ≤ what the
//! algorithm itself admits in `[a, b]` + `E`, where ([`LeaseRule::extra_bound`]):
//!
//! - `fixed-window`, `sliding-window-counter`: `E = 0` — a slice never outlives its window, and
//!   both algorithms' guarantees are per aligned window;
//! - `token-bucket`, `gcra`: `E = min(N · size, ⌈sync_interval / T⌉)`: the charges in
//!   `[a − sync_interval, b]` are at most `B + ⌊(b − a + sync_interval) / T⌋`.
//!
//! Against the exact limit (the sliding log's `L` per `(t − P, t]`) that adds to the algorithm's
//! own false allows; the algorithm lab (`simulator compare --lease`) scores both. The sliding log
//! takes no lease: it is the exact limit, and charging a unit before it is spent would move it
//! earlier in the log, out of the window while it is still being used.
//!
//! Under-admission: a slice that lapses leaves its unspent units charged but never used. A fetch
//! asks for twice the last slice when that ran out while live, and for what it spent plus the
//! request's cost when it lapsed (`size` for a first slice or after a refusal; always between the
//! cost and `size`), so a busy node takes full slices and a quiet one what it spends: what lapses
//! unspent is at most `size`, and under steady demand about one request's cost, per node per sync
//! interval. A remembered refusal never outlasts the counter's own retry-after.

use super::{Algorithm, Decision, Limiter, NEVER};
use crate::clock::Nanos;

/// How a policy leases: `size` units per fetch, good for `sync_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseSettings {
    /// Units one fetch asks for (the request's cost when that is more).
    pub size: u64,
    /// How long a slice, or a refusal, is good for: in the limiter's time unit.
    pub sync_interval: Nanos,
}

/// `size` as written: a number of units, or a share (1–100 %) of what the policy admits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseSize {
    Units(u64),
    Percent(u64),
}

impl LeaseSize {
    /// `20` or `10%`; `None` for anything else, 0 and shares above 100 % included.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(pct) => match pct.trim().parse::<u64>().ok()? {
                pct @ 1..=100 => Some(Self::Percent(pct)),
                _ => None,
            },
            None => text.parse::<u64>().ok().filter(|n| *n > 0).map(Self::Units),
        }
    }

    /// Units per fetch for a policy that admits `capacity` at once (its burst for the buckets,
    /// its limit for the windows): a share rounds down, to at least 1.
    pub fn units(self, capacity: u64) -> u64 {
        match self {
            Self::Units(n) => n,
            Self::Percent(pct) => (capacity.saturating_mul(pct) / 100).max(1),
        }
    }
}

/// The local rule of one leased policy, shared by all its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRule {
    pub settings: LeaseSettings,
    /// The aligned window a slice must end with (window algorithms), else `None`.
    window: Option<Nanos>,
}

/// One key's lease on one node. The default holds nothing: the first request fetches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// Units granted and not yet spent.
    units: u64,
    /// Units the current slice was granted (0: none yet, or a refusal).
    granted: u64,
    /// The slice (or the refusal) is good while `now < until`.
    until: Nanos,
    /// The counter's `remaining` after the grant: the rest of the quota as last seen.
    shared_remaining: u64,
    /// When the quota is fully restored, as the counter said at the grant.
    reset_at: Nanos,
    /// A remembered refusal: the counter said no, retry at `retry_at`.
    refused: bool,
    retry_at: Nanos,
    /// The latest `now` seen; an earlier `now` is read as this one.
    last: Nanos,
}

/// What the local side can say without the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Decided from the slice or a remembered refusal.
    Decided(Decision),
    /// Ask the counter for `want` units ([`take`]) and hand its answer to [`LeaseRule::granted`].
    Fetch { want: u64 },
}

/// The counter's answer to a fetch: `units` granted (0 when refused) and its decision on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub units: u64,
    /// Allowed with the counter's remaining after the grant, or the refusal of the request's
    /// own cost with its exact retry-after.
    pub decision: Decision,
}

impl LeaseRule {
    /// The rule for `limiter`'s algorithm and quota, or `None` for the sliding log (which takes
    /// no lease: see the module docs).
    pub fn new(limiter: &impl Limiter, settings: LeaseSettings) -> Option<Self> {
        let window = match limiter.algorithm() {
            Algorithm::SlidingLog => return None,
            Algorithm::FixedWindow | Algorithm::SlidingWindowCounter => {
                Some(limiter.quota().period())
            }
            Algorithm::TokenBucket | Algorithm::Gcra => None,
        };
        Some(Self { settings, window })
    }

    /// When a slice granted at `now` ends.
    pub fn expiry(&self, now: Nanos) -> Nanos {
        let by_interval = now.saturating_add(self.settings.sync_interval.max(1));
        match self.window {
            Some(p) => by_interval.min((now / p).saturating_add(1).saturating_mul(p)),
            None => by_interval,
        }
    }

    /// Decides `cost` at `now` from the slice or a remembered refusal, or says a fetch is due.
    pub fn local(&self, state: &mut LeaseState, now: Nanos, cost: u64) -> Local {
        let now = now.max(state.last);
        state.last = now;
        if cost == 0 {
            // A read needs no slice; what was last seen is all a node knows.
            return Local::Decided(allow(state, now));
        }
        if now < state.until {
            if state.refused {
                return Local::Decided(deny(state.retry_at.saturating_sub(now), state, now));
            }
            if state.units >= cost {
                state.units -= cost;
                return Local::Decided(allow(state, now));
            }
        }
        Local::Fetch {
            want: self.want(state, now, cost),
        }
    }

    /// Units the next fetch asks for, between the cost and `size`: the full size for a key's
    /// first slice or after a refusal; twice the last slice when it ran out while live (demand
    /// outgrew it); what it spent plus this cost when it lapsed (the demand of one interval). A
    /// busy key soon asks for `size`; a quiet one for about what it spends per interval, so what
    /// lapses unspent is about one request's cost rather than most of `size`.
    fn want(&self, state: &LeaseState, now: Nanos, cost: u64) -> u64 {
        let size = self.settings.size.max(cost);
        if state.granted == 0 {
            return size;
        }
        let spent = state.granted - state.units;
        let want = if now < state.until {
            state.granted.saturating_mul(2)
        } else {
            spent.saturating_add(cost)
        };
        want.clamp(cost, size)
    }

    /// Applies the counter's answer to a fetch made for a request of `cost` at `now`: the slice
    /// (less this request's cost) or the refusal replaces whatever the state held.
    pub fn granted(&self, state: &mut LeaseState, now: Nanos, cost: u64, grant: Grant) -> Decision {
        let now = now.max(state.last);
        state.last = now;
        state.shared_remaining = grant.decision.remaining;
        state.reset_at = now.saturating_add(grant.decision.reset_nanos);
        if grant.decision.allowed && grant.units >= cost {
            state.refused = false;
            state.granted = grant.units;
            state.units = grant.units - cost;
            state.until = self.expiry(now);
            allow(state, now)
        } else {
            state.refused = true;
            state.granted = 0;
            state.units = 0;
            state.retry_at = match grant.decision.retry_after_nanos {
                NEVER => NEVER,
                wait => now.saturating_add(wait.max(1)),
            };
            state.until = self.expiry(now).min(state.retry_at);
            grant.decision
        }
    }

    /// Puts back `units` a request took from the slice when another policy refused it (the
    /// stage's all-or-nothing): local only, and only while the same slice is live.
    pub fn give_back(&self, state: &mut LeaseState, units: u64) {
        if state.last < state.until && !state.refused {
            state.units = state.units.saturating_add(units);
        }
    }

    /// `E` of the module docs: units beyond the algorithm's own admissions, in any interval,
    /// over `nodes` nodes.
    pub fn extra_bound(&self, limiter: &impl Limiter, nodes: u64) -> u64 {
        if self.window.is_some() {
            return 0;
        }
        let t = limiter.quota().emission_interval_nanos().max(1);
        nodes
            .saturating_mul(self.settings.size)
            .min(self.settings.sync_interval.div_ceil(t))
    }
}

/// Whether a state still holds a live slice or refusal at `now` (a store may drop it otherwise).
pub fn is_live(state: &LeaseState, now: Nanos) -> bool {
    now < state.until
}

fn allow(state: &LeaseState, now: Nanos) -> Decision {
    Decision::allow(
        state.units.saturating_add(state.shared_remaining),
        state.reset_at.saturating_sub(now),
    )
}

fn deny(retry: Nanos, state: &LeaseState, now: Nanos) -> Decision {
    let retry = if state.retry_at == NEVER {
        NEVER
    } else {
        retry
    };
    Decision::deny(0, retry, state.reset_at.saturating_sub(now))
}

/// The shared side of a fetch: grants `min(want, remaining)` units (at least `cost`) charged to
/// `limiter` as one decision, or refuses `cost` as the algorithm would. `store/redis/lease.lua`
/// is its port, decision for decision.
pub fn take<L: Limiter>(
    limiter: &L,
    state: &mut L::State,
    now: Nanos,
    cost: u64,
    want: u64,
) -> Grant {
    let peek = limiter.decide(&mut state.clone(), now, 0);
    let cost = cost.max(1);
    if peek.remaining < cost {
        let decision = limiter.decide(state, now, cost);
        return Grant { units: 0, decision };
    }
    // `remaining ≥ g` means `g` is admitted (the property `remaining_predicts_admission`).
    let units = want.min(peek.remaining).max(cost);
    let decision = limiter.decide(state, now, units);
    Grant { units, decision }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ratelimit::{AnyLimiter, AnyState, Quota, SlidingLog, TokenBucket};

    const MS: u64 = 1_000_000;

    fn settings(size: u64, sync_ms: u64) -> LeaseSettings {
        LeaseSettings {
            size,
            sync_interval: sync_ms * MS,
        }
    }

    /// One node against a shared counter, with no I/O: the loop the gateway and simulator run.
    fn decide(
        rule: &LeaseRule,
        limiter: &AnyLimiter,
        shared: &mut AnyState,
        local: &mut LeaseState,
        now: Nanos,
        cost: u64,
    ) -> (Decision, bool) {
        match rule.local(local, now, cost) {
            Local::Decided(d) => (d, false),
            Local::Fetch { want } => {
                let grant = take(limiter, shared, now, cost, want);
                (rule.granted(local, now, cost, grant), true)
            }
        }
    }

    #[test]
    fn a_slice_is_spent_locally_then_refetched_and_a_refusal_is_remembered() {
        let limiter = AnyLimiter::new(Algorithm::TokenBucket, Quota::per_second(10));
        let rule = LeaseRule::new(&limiter, settings(4, 500)).expect("leases");
        let (mut shared, mut local) = (AnyState::default(), LeaseState::default());
        let mut fetches = 0;
        let mut admitted = 0;
        for _ in 0..12 {
            let (d, fetched) = decide(&rule, &limiter, &mut shared, &mut local, 0, 1);
            fetches += u32::from(fetched);
            admitted += u32::from(d.allowed);
        }
        // Slices of 4, 4, 2 (all that was left), then one refusal remembered for the rest.
        assert_eq!((admitted, fetches), (10, 4));
        let (d, fetched) = decide(&rule, &limiter, &mut shared, &mut local, 50 * MS, 1);
        assert!(!d.allowed && !fetched);
        assert_eq!(
            d.retry_after_nanos,
            50 * MS,
            "the counter's own retry-after"
        );
        // At the retry-after the node asks again, and gets the one token earned.
        let (d, fetched) = decide(&rule, &limiter, &mut shared, &mut local, 100 * MS, 1);
        assert!(d.allowed && fetched);
    }

    #[test]
    fn a_quiet_node_asks_for_small_slices_and_a_busy_one_for_full_ones() {
        let limiter = AnyLimiter::new(Algorithm::FixedWindow, Quota::per_second(1_000));
        let rule = LeaseRule::new(&limiter, settings(40, 100)).expect("leases");
        let (mut shared, mut local) = (AnyState::default(), LeaseState::default());
        let want = |local: &mut LeaseState, now| match rule.local(local, now, 1) {
            Local::Fetch { want } => want,
            Local::Decided(_) => 0,
        };
        assert_eq!(want(&mut local.clone(), 0), 40, "a first slice is full");
        // Three requests in a slice that lapsed: the next asks for four.
        for at in [0, 10, 20] {
            decide(&rule, &limiter, &mut shared, &mut local, at * MS, 1);
        }
        assert_eq!(want(&mut local.clone(), 100 * MS), 4);
        decide(&rule, &limiter, &mut shared, &mut local, 100 * MS, 1);
        // Four spent while live: the next asks for eight, and so on up to the size.
        for _ in 0..3 {
            decide(&rule, &limiter, &mut shared, &mut local, 100 * MS, 1);
        }
        assert_eq!(want(&mut local.clone(), 100 * MS), 8);
    }

    #[test]
    fn a_window_slice_ends_with_its_window_and_a_bucket_slice_after_the_interval() {
        let quota = Quota::per_second(100);
        let window = AnyLimiter::new(Algorithm::FixedWindow, quota);
        let rule = LeaseRule::new(&window, settings(10, 300)).expect("leases");
        assert_eq!(rule.expiry(100 * MS), 400 * MS);
        assert_eq!(rule.expiry(800 * MS), 1_000 * MS);
        let bucket = LeaseRule::new(&TokenBucket::new(quota), settings(10, 300)).expect("leases");
        assert_eq!(bucket.expiry(800 * MS), 1_100 * MS);
        assert_eq!(
            LeaseRule::new(&SlidingLog::new(quota), settings(10, 300)),
            None
        );
    }

    #[test]
    fn the_extra_bound_is_zero_for_windows_and_the_lesser_of_slices_and_interval_for_buckets() {
        let quota = Quota::per_second(100); // T = 10 ms
        let s = settings(5, 100);
        let bucket = TokenBucket::new(quota);
        let rule = LeaseRule::new(&bucket, s).expect("leases");
        assert_eq!(rule.extra_bound(&bucket, 1), 5);
        assert_eq!(rule.extra_bound(&bucket, 3), 10);
        let fw = AnyLimiter::new(Algorithm::FixedWindow, quota);
        assert_eq!(
            LeaseRule::new(&fw, s).expect("leases").extra_bound(&fw, 3),
            0
        );
    }

    #[test]
    fn a_size_is_units_or_a_share_of_the_capacity() {
        assert_eq!(LeaseSize::parse("20"), Some(LeaseSize::Units(20)));
        assert_eq!(LeaseSize::parse(" 10 %"), Some(LeaseSize::Percent(10)));
        for bad in ["0", "0%", "101%", "ten", "-3", "1.5%"] {
            assert_eq!(LeaseSize::parse(bad), None, "{bad}");
        }
        assert_eq!(LeaseSize::Percent(10).units(1_000), 100);
        assert_eq!(LeaseSize::Percent(1).units(50), 1);
    }

    #[test]
    fn a_give_back_returns_units_to_the_live_slice_only() {
        let limiter = AnyLimiter::new(Algorithm::Gcra, Quota::per_second(10));
        let rule = LeaseRule::new(&limiter, settings(4, 100)).expect("leases");
        let (mut shared, mut local) = (AnyState::default(), LeaseState::default());
        decide(&rule, &limiter, &mut shared, &mut local, 0, 1);
        rule.give_back(&mut local, 1);
        assert_eq!(local.units, 4);
        // Nothing of that slice was spent: the next asks for the cost alone.
        assert_eq!(
            rule.local(&mut local, 200 * MS, 1),
            Local::Fetch { want: 1 }
        );
        rule.give_back(&mut local, 1);
        assert_eq!(local.units, 4, "an expired slice takes nothing back");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The bound of the module docs, on every interval of a random multi-node run, for the
        /// four algorithms that lease: admitted ≤ the algorithm's own bound for that interval + E.
        #[test]
        fn nodes_never_admit_beyond_the_algorithms_own_bound_plus_the_extra(
            alg in prop::sample::select(vec![
                Algorithm::TokenBucket, Algorithm::Gcra, Algorithm::FixedWindow,
                Algorithm::SlidingWindowCounter,
            ]),
            limit in 1u64..30,
            period_ms in 10u64..500,
            size in 1u64..8,
            sync_ms in 1u64..200,
            nodes in 1usize..4,
            steps in prop::collection::vec((0u64..20, 0usize..4), 1..150),
        ) {
            let quota = Quota::new(limit, period_ms * MS);
            let limiter = AnyLimiter::new(alg, quota);
            let rule = LeaseRule::new(&limiter, settings(size, sync_ms)).expect("leases");
            let mut shared = AnyState::default();
            let mut locals = vec![LeaseState::default(); nodes];
            let mut admitted = Vec::new();
            let mut now = 0;
            for (dt, node) in steps {
                now += dt * MS;
                let (d, _) = decide(&rule, &limiter, &mut shared, &mut locals[node % nodes], now, 1);
                if d.allowed {
                    admitted.push(now);
                }
            }
            let extra = rule.extra_bound(&limiter, nodes as u64);
            let t = quota.emission_interval_nanos();
            let p = quota.period();
            for (i, &a) in admitted.iter().enumerate() {
                for (j, &b) in admitted.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as u64;
                    let own = match alg {
                        Algorithm::TokenBucket | Algorithm::Gcra => quota.burst + (b - a) / t,
                        // Aligned windows touched by [a, b], `limit` each.
                        _ => (b / p - a / p + 1) * limit,
                    };
                    prop_assert!(n <= own + extra, "{} admitted in [{}, {}], own {}, extra {}", n, a, b, own, extra);
                }
            }
        }
    }
}
