//! This node's leases: one [`LeaseState`] per (policy, subject), the single flight that keeps
//! concurrent requests on one key from each fetching a slice, and the memory budget.
//!
//! A key's state sits behind an async mutex. A request takes it, decides from the slice
//! ([`LeaseRule::local`]) and lets go; when a fetch is due it keeps the lock for the round trip,
//! so requests on the same key queue behind that one fetch instead of sending their own. A
//! waiting request counts its cost into the slot's `waiting` units before it queues, and the
//! fetch asks for them on top of the slice: one fetch serves the queue it found, so a request
//! waits at most for the fetch in flight when it arrived and the one after it. A denied key is
//! remembered until the counter's retry-after (at most the sync interval), so a key over its
//! quota costs no round trip per request.
//!
//! Several leased policies of one request fetch together, in one round trip; their locks are
//! taken in the request's policy order, which is the config's for every request, so two requests
//! never wait on each other's.
//!
//! **Memory is bounded** by the memory store's `max_keys`: a full shard first drops the keys with
//! no live slice (their state is equivalent to a fresh one); a key that still finds no room is
//! decided without a lease, as one plain decision of its cost.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{DefaultHashBuilder, Equivalent, HashMap};
use parking_lot::Mutex;

use super::Check;
use super::redis::{LeaseAsk, RedisStore, StoreError};
use crate::clock::Nanos;
use crate::ratelimit::Decision;
use crate::ratelimit::lease::{LeaseRule, LeaseState, Local, is_live};

const SHARDS: usize = 16;

/// One leased policy's question about one request.
#[derive(Debug, Clone, Copy)]
pub struct Leased<'a> {
    pub check: Check<'a>,
    pub rule: &'a LeaseRule,
}

/// One shard: (policy, subject) → its slot.
type Shard = Mutex<HashMap<(Arc<str>, Box<str>), Arc<Slot>>>;

pub struct LeaseStore {
    shards: Box<[Shard]>,
    pick: DefaultHashBuilder,
    shard_budget: usize,
}

#[derive(Default)]
struct Slot {
    state: Arc<tokio::sync::Mutex<LeaseState>>,
    /// Units wanted by requests queued on `state`: the next fetch asks for them too.
    waiting: AtomicU64,
}

/// A borrowed (policy, subject) that hashes like the owned key, so lookups never allocate.
#[derive(Hash)]
struct Lookup<'a>(&'a str, &'a str);

impl Equivalent<(Arc<str>, Box<str>)> for Lookup<'_> {
    fn equivalent(&self, key: &(Arc<str>, Box<str>)) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}

impl LeaseStore {
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            pick: DefaultHashBuilder::default(),
            shard_budget: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, lookup: &Lookup<'_>) -> &Shard {
        &self.shards[(self.pick.hash_one(lookup) as usize) % SHARDS]
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key's slot, and whether it is kept (`false`: no room, a slot for this request only).
    fn slot(&self, check: &Check<'_>, now: Nanos) -> (Arc<Slot>, bool) {
        let lookup = Lookup(check.policy, check.subject);
        let mut map = self.shard(&lookup).lock();
        if let Some(slot) = map.get(&lookup) {
            return (slot.clone(), true);
        }
        if map.len() >= self.shard_budget {
            // A key nobody is using whose slice has lapsed is as good as fresh.
            map.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.state.try_lock().map_or(true, |s| is_live(&s, now))
            });
        }
        if map.len() >= self.shard_budget {
            return (Arc::new(Slot::default()), false);
        }
        let slot = Arc::new(Slot::default());
        map.insert(
            (Arc::from(check.policy), Box::from(check.subject)),
            slot.clone(),
        );
        (slot, true)
    }

    /// Decides every leased check at `now` (ticks): from the slices where they can, with one
    /// round trip to `redis` for those that need a fetch. An `Err` is a check the store could not
    /// answer (its policy's `on_store_error` applies); a slice already held still answers while
    /// Redis is down.
    pub async fn decide_all(
        &self,
        redis: Option<&RedisStore>,
        leased: &[Leased<'_>],
        now: Nanos,
        mono: Nanos,
    ) -> Vec<Result<Decision, StoreError>> {
        let mut out: Vec<Option<Result<Decision, StoreError>>> = vec![None; leased.len()];
        let mut fetching = Vec::new();
        for (i, l) in leased.iter().enumerate() {
            let (slot, kept) = self.slot(&l.check, now);
            let cost = l.check.cost;
            slot.waiting.fetch_add(cost, Ordering::Relaxed);
            let mut state = slot.state.clone().lock_owned().await;
            slot.waiting.fetch_sub(cost, Ordering::Relaxed);
            match l.rule.local(&mut state, now, cost) {
                Local::Decided(d) => out[i] = Some(Ok(d)),
                Local::Fetch { want } => {
                    let want = if kept {
                        want.saturating_add(slot.waiting.load(Ordering::Relaxed))
                    } else {
                        cost
                    };
                    fetching.push((i, state, want));
                }
            }
        }
        if !fetching.is_empty() {
            let asks: Vec<LeaseAsk<'_>> = fetching
                .iter()
                .map(|(i, _, want)| LeaseAsk {
                    check: leased[*i].check,
                    want: *want,
                })
                .collect();
            let answer = match redis {
                Some(store) => store.take_leases(&asks, now, mono).await,
                None => Err(StoreError::Connection("no Redis store".into())),
            };
            match answer {
                Ok(grants) => {
                    for ((i, mut state, _), grant) in fetching.into_iter().zip(grants) {
                        let l = &leased[i];
                        out[i] = Some(Ok(l.rule.granted(&mut state, now, l.check.cost, grant)));
                    }
                }
                Err(e) => {
                    for (i, _, _) in fetching {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|d| d.unwrap_or_else(|| Err(StoreError::Script("no decision".into()))))
            .collect()
    }

    /// Puts a request's units back into its key's live slice (another policy refused it).
    pub async fn give_back(&self, leased: &Leased<'_>) {
        let lookup = Lookup(leased.check.policy, leased.check.subject);
        let slot = self.shard(&lookup).lock().get(&lookup).cloned();
        if let Some(slot) = slot {
            let mut state = slot.state.lock().await;
            leased.rule.give_back(&mut state, leased.check.cost);
        }
    }
}
