//! The verified-token cache: a token seen before skips parsing and signature verification.
//!
//! Keyed by a hash of the token — foldhash, seeded at random per process — and bounded and
//! sharded. A hit is confirmed by comparing the whole token, so a hash collision is a miss, never
//! someone else's identity; the hash only has to be fast (a SHA-256 of a 700-byte RS256 token
//! costs more than the rest of the hit). The cached token is held in memory like the request
//! that carried it; it is never logged. An entry is only as good as what vouched for it: it is
//! used only while the token has not expired, its issuer's config is the one in force (a reload
//! re-verifies) and its signing key is still in the issuer's current key set — a key removed
//! from the JWKS takes its tokens with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::issuer::IssuerConfig;
use crate::identity::jwks::{JwksCache, VerifyKey};
use crate::vocab::Identity;

/// The cache key of a token: its seeded 64-bit hash.
pub fn key(token: &[u8]) -> u64 {
    static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::quality::RandomState::default)
        .hash_one(token)
}

/// What a verified token established, and what it depends on.
#[derive(Debug)]
pub struct CachedToken {
    /// The token itself: a hit must match it byte for byte.
    pub token: Box<str>,
    pub identity: Arc<Identity>,
    pub issuer: Arc<IssuerConfig>,
    pub jwks: Arc<JwksCache>,
    pub key: Arc<VerifyKey>,
    /// `exp`, Unix seconds.
    pub exp: i64,
}

impl CachedToken {
    /// Whether the entry may still stand in for verification at `now` (Unix seconds):
    /// unexpired (the same rule, leeway included, that verification applies), its issuer's
    /// config unchanged and its key still published.
    pub fn still_valid(&self, current_issuer: &Arc<IssuerConfig>, now: i64) -> bool {
        now < self.exp.saturating_add(self.issuer.leeway_secs)
            && Arc::ptr_eq(current_issuer, &self.issuer)
            && self
                .jwks
                .current()
                .is_some_and(|keys| keys.contains(&self.key))
    }
}

const SHARDS: usize = 16;

/// The key is already a seeded hash; the map uses it as is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, Arc<CachedToken>, BuildHasherDefault<KeyHasher>>;

pub struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    capacity: AtomicUsize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
            .field("len", &self.len())
            .finish()
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity: AtomicUsize::new(capacity.max(1)),
        }
    }

    /// A reload may change the bound; entries beyond it are evicted as inserts come.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        // The top bits pick the shard; the map's buckets use the low ones.
        &self.shards[(key >> 60) as usize % SHARDS]
    }

    /// The entry for exactly this token, byte for byte: a token is looked up as sent, before
    /// anything checks its characters, since a cached one passed every check.
    pub fn get(&self, token: &[u8]) -> Option<Arc<CachedToken>> {
        let key = key(token);
        self.shard(key)
            .lock()
            .get(&key)
            .filter(|e| e.token.as_bytes() == token)
            .cloned()
    }

    pub fn remove(&self, token: &[u8]) {
        let key = key(token);
        let mut shard = self.shard(key).lock();
        if shard.get(&key).is_some_and(|e| e.token.as_bytes() == token) {
            shard.remove(&key);
        }
    }

    /// Remembers a verified token. A full shard first drops its expired entries, then, if still
    /// full, an arbitrary one.
    pub fn insert(&self, entry: CachedToken, now: i64) {
        let key = key(entry.token.as_bytes());
        let per_shard = self.capacity.load(Ordering::Relaxed).div_ceil(SHARDS);
        let mut shard = self.shard(key).lock();
        if shard.len() >= per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.exp.saturating_add(e.issuer.leeway_secs));
            while shard.len() >= per_shard {
                let Some(victim) = shard.keys().next().copied() else {
                    break;
                };
                shard.remove(&victim);
            }
        }
        shard.insert(key, Arc::new(entry));
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
