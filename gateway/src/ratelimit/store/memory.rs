//! The in-memory store: counters per (policy, subject) in up to 64 shards, each a
//! `Mutex<HashMap>` — no global lock, and a decision holds one shard's lock for the length of one
//! algorithm step.
//!
//! **Memory is bounded** by `max_keys` (default 1,000,000): each shard holds at most its share
//! of it. A small budget gets fewer shards (one per 1,024 keys, at least one), so that a shard's
//! share is never so small that two subjects which happen to hash to one shard evict each
//! other. Every entry remembers when its quota will be fully restored (the
//! decision's reset time); from then on its state is equivalent to a fresh one, so dropping it
//! loses nothing. A shard drops such idle entries every 10 s of traffic, and whenever a new key
//! finds it full. If that frees less than 1/16 of the shard, the entries closest to full
//! restoration go too (counted as `pressure` evictions: those subjects start afresh) — so a flood
//! of new keys costs amortized O(16) per insert and the budget always holds
//! (`the_budget_of_a_million_keys_holds_under_a_flood_of_new_subjects`).
//!
//! One key costs about 130 bytes plus its policy's counter name and its subject (each at most
//! 128 bytes: longer subjects are digested by the stage): the state (48 bytes, plus the sliding
//! log's ring of up to `limit` × 16 bytes), the expiry, two string headers and allocations, and
//! hashbrown's slot. A million keys of short names: roughly 150–200 MB.

use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use hashbrown::{DefaultHashBuilder, Equivalent, HashMap};

use super::{Check, decide_together};
use crate::ratelimit::metrics::{EvictionLabels, RateLimitMetrics};
use crate::ratelimit::{AnyLimiter, AnyState, Decision, Limiter};

const MAX_SHARDS: usize = 64;
/// The fewest keys a shard is given room for, while there are keys enough.
const MIN_SHARD_KEYS: usize = 1024;
/// The default memory budget: keys (policy × subject) held at once before idle ones are evicted.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Idle entries are swept at most this often per shard (in ticks: 10 s).
const SWEEP_EVERY: u64 = 10_000_000;

pub struct MemoryStore {
    shards: Box<[Shard]>,
    /// Picks the shard; independent of the maps' own hashers so a shard's keys do not all share
    /// the hash bits hashbrown uses inside the table.
    pick: DefaultHashBuilder,
    shard_budget: usize,
    metrics: RateLimitMetrics,
}

/// Padded to a cache line so two shards' locks never share one.
#[repr(align(128))]
struct Shard(Mutex<ShardInner>);

struct ShardInner {
    map: HashMap<(Arc<str>, Box<str>), Entry>,
    next_sweep: u64,
}

struct Entry {
    state: AnyState,
    /// Tick from which the state is equivalent to a fresh one.
    idle_from: u64,
}

/// A borrowed (policy, subject) that hashes like the owned key tuple, so lookups never allocate.
#[derive(Hash)]
struct Lookup<'a>(&'a str, &'a str);

impl Equivalent<(Arc<str>, Box<str>)> for Lookup<'_> {
    fn equivalent(&self, key: &(Arc<str>, Box<str>)) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}

impl MemoryStore {
    pub fn new(max_keys: usize, metrics: RateLimitMetrics) -> Self {
        let count = (max_keys / MIN_SHARD_KEYS).clamp(1, MAX_SHARDS);
        let shards = (0..count)
            .map(|_| {
                Shard(Mutex::new(ShardInner {
                    map: HashMap::new(),
                    next_sweep: 0,
                }))
            })
            .collect();
        Self {
            shards,
            pick: DefaultHashBuilder::default(),
            shard_budget: (max_keys / count).max(1),
            metrics,
        }
    }

    /// The most keys held at once.
    pub fn capacity(&self) -> usize {
        self.shard_budget * self.shards.len()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, check: &Check<'_>) -> usize {
        (self.pick.hash_one(Lookup(check.policy, check.subject)) >> 32) as usize % self.shards.len()
    }

    /// Decides one check at `now` (ticks); the decision is in ticks.
    pub fn decide(&self, check: &Check<'_>, now: u64) -> Decision {
        let mut shard = self.shards[self.shard_of(check)].0.lock();
        self.decide_in(&mut shard, check, check.cost, now)
    }

    /// Decides every check all-or-nothing (see [`decide_together`]): the shards involved are
    /// locked together, in index order so two requests can never wait on each other.
    pub fn decide_all(&self, checks: &[Check<'_>], now: u64) -> Vec<Decision> {
        if let [only] = checks {
            return vec![self.decide(only, now)];
        }
        let shard_of: Vec<usize> = checks.iter().map(|c| self.shard_of(c)).collect();
        let mut order: Vec<usize> = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, ShardInner>)> = order
            .iter()
            .map(|&i| (i, self.shards[i].0.lock()))
            .collect();
        decide_together(checks, |i, cost| {
            let slot = guards
                .iter()
                .position(|(s, _)| *s == shard_of[i])
                .unwrap_or(0);
            self.decide_in(&mut guards[slot].1, &checks[i], cost, now)
        })
    }

    fn decide_in(
        &self,
        shard: &mut ShardInner,
        check: &Check<'_>,
        cost: u64,
        now: u64,
    ) -> Decision {
        if now >= shard.next_sweep {
            shard.next_sweep = now.saturating_add(SWEEP_EVERY);
            self.sweep_shard(shard, now);
        }
        let limiter: &AnyLimiter = check.limiter;
        let lookup = Lookup(check.policy, check.subject);
        if let Some(entry) = shard.map.get_mut(&lookup) {
            let d = limiter.decide(&mut entry.state, now, cost);
            entry.idle_from = now.saturating_add(d.reset_nanos);
            return d;
        }
        let mut state = AnyState::default();
        let d = limiter.decide(&mut state, now, cost);
        if d.reset_nanos == 0 {
            // Still equivalent to fresh (a read, or a refusal of a fresh key): nothing to keep.
            return d;
        }
        if shard.map.len() >= self.shard_budget {
            self.make_room(shard, now);
        }
        shard.map.insert(
            (Arc::from(check.policy), Box::from(check.subject)),
            Entry {
                state,
                idle_from: now.saturating_add(d.reset_nanos),
            },
        );
        self.metrics.memory_keys.inc();
        d
    }

    /// Drops, in every shard, the entries whose quota is fully restored at `now`: lossless.
    pub fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| self.sweep_shard(&mut s.0.lock(), now))
            .sum()
    }

    /// Drops every entry whose quota is fully restored: lossless.
    fn sweep_shard(&self, shard: &mut ShardInner, now: u64) -> usize {
        let before = shard.map.len();
        shard.map.retain(|_, e| e.idle_from > now);
        let dropped = before - shard.map.len();
        if dropped > 0 {
            self.evicted("idle", dropped);
        }
        dropped
    }

    /// Frees at least 1/16 of a full shard: idle entries first, then those nearest to idle.
    fn make_room(&self, shard: &mut ShardInner, now: u64) {
        self.sweep_shard(shard, now);
        let target = self.shard_budget - (self.shard_budget / 16).max(1);
        let excess = shard.map.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut idle_from: Vec<u64> = shard.map.values().map(|e| e.idle_from).collect();
        let (_, &mut cut, _) = idle_from.select_nth_unstable(excess - 1);
        let mut left = excess;
        shard.map.retain(|_, e| {
            if left > 0 && e.idle_from <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.evicted("pressure", excess - left);
    }

    fn evicted(&self, kind: &'static str, n: usize) {
        self.metrics.memory_keys.dec_by(n as i64);
        self.metrics
            .memory_evictions
            .get_or_create(&EvictionLabels { kind })
            .inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Algorithm, Quota};

    const S: u64 = 1_000_000; // one second in ticks

    fn check<'a>(policy: &'a str, subject: &'a str, limiter: &'a AnyLimiter) -> Check<'a> {
        Check {
            policy,
            subject,
            limiter,
            cost: 1,
        }
    }

    #[test]
    fn counters_are_per_policy_and_subject() {
        let store = MemoryStore::new(1_000, RateLimitMetrics::default());
        let two = AnyLimiter::new(Algorithm::FixedWindow, Quota::new(2, S));
        let t = 5 * S;
        for _ in 0..2 {
            assert!(store.decide(&check("a", "alice", &two), t).allowed);
        }
        assert!(!store.decide(&check("a", "alice", &two), t).allowed);
        assert!(store.decide(&check("a", "bob", &two), t).allowed);
        assert!(store.decide(&check("b", "alice", &two), t).allowed);
        assert!(store.decide(&check("a", "alice", &two), 6 * S).allowed);
    }

    #[test]
    fn several_policies_charge_nothing_when_one_refuses() {
        let store = MemoryStore::new(1_000, RateLimitMetrics::default());
        let minute = AnyLimiter::new(Algorithm::TokenBucket, Quota::new(10, 60 * S));
        let second = AnyLimiter::new(Algorithm::FixedWindow, Quota::new(2, S));
        let both = [check("minute", "k", &minute), check("second", "k", &second)];
        let t = 10 * S;
        for _ in 0..2 {
            assert!(store.decide_all(&both, t).iter().all(|d| d.allowed));
        }
        let refused = store.decide_all(&both, t);
        assert!(refused[0].allowed, "the minute policy would admit it");
        assert_eq!(refused[0].remaining, 8, "but is not charged");
        assert!(!refused[1].allowed);
        assert_eq!(refused[1].retry_after_nanos, S);
        for _ in 0..5 {
            store.decide_all(&both, t);
        }
        // Eight left in the minute bucket: only two were ever admitted.
        let d = store.decide(&Check { cost: 0, ..both[0] }, t);
        assert_eq!(d.remaining, 8);
    }

    #[test]
    fn idle_keys_leave_without_losing_anything() {
        let store = MemoryStore::new(1_000, RateLimitMetrics::default());
        let l = AnyLimiter::new(Algorithm::Gcra, Quota::new(5, S));
        assert!(store.decide(&check("p", "x", &l), 0).allowed);
        assert_eq!(store.len(), 1);
        // Restored after 200 ms: a sweep drops it (each shard sweeps itself every 10 s of
        // traffic; `sweep` does all at once).
        store.sweep(S / 5 - 1);
        assert_eq!(store.len(), 1, "not yet restored");
        store.sweep(S / 5);
        assert_eq!(store.len(), 0);
        // A read of a fresh key keeps nothing.
        store.decide(
            &Check {
                cost: 0,
                ..check("p", "reader", &l)
            },
            11 * S,
        );
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_small_budget_holds_exactly_its_keys_however_they_hash() {
        // 100 keys in 64 shards would give each shard room for one: two subjects hashing to one
        // shard would evict each other. A small budget is one shard of room for all of them.
        let metrics = RateLimitMetrics::default();
        let store = MemoryStore::new(100, metrics.clone());
        assert_eq!(store.capacity(), 100);
        let l = AnyLimiter::new(Algorithm::Gcra, Quota::new(10, 3_600 * S));
        for i in 0..100 {
            assert!(store.decide(&check("p", &format!("c{i}"), &l), S).allowed);
        }
        assert_eq!(store.len(), 100, "nothing evicted under the budget");
        for i in 0..100 {
            let d = store.decide(
                &Check {
                    cost: 0,
                    ..check("p", &format!("c{i}"), &l)
                },
                S,
            );
            assert_eq!(d.remaining, 9, "c{i} kept its count");
        }
        assert_eq!(MemoryStore::new(DEFAULT_MAX_KEYS, metrics).shards.len(), 64);
    }

    #[test]
    fn the_budget_of_a_million_keys_holds_under_a_flood_of_new_subjects() {
        let metrics = RateLimitMetrics::default();
        let store = MemoryStore::new(DEFAULT_MAX_KEYS, metrics.clone());
        assert!(store.capacity() <= 1_000_000);
        // A quota that takes an hour to restore: nothing is ever idle, so only pressure evicts,
        // the keys nearest to restoration (here: the oldest) first.
        let l = AnyLimiter::new(Algorithm::Gcra, Quota::new(10, 3_600 * S));
        let mut subject = String::new();
        for i in 0..1_300_000u32 {
            use std::fmt::Write;
            subject.clear();
            let _ = write!(subject, "client-{i}");
            assert!(
                store
                    .decide(&check("flood", &subject, &l), S + u64::from(i))
                    .allowed
            );
        }
        let held = store.len();
        assert!(held <= 1_000_000, "held {held}");
        assert!(held >= 900_000, "evicts only what it must: held {held}");
        assert_eq!(metrics.memory_keys.get(), held as i64);
        // The newest subjects are still counted.
        let d = store.decide(
            &Check {
                cost: 0,
                ..check("flood", "client-1299999", &l)
            },
            3 * S,
        );
        assert_eq!(d.remaining, 9);
    }
}
