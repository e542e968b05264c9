//! The verified-token cache: a token seen before skips parsing and signature verification.
//!
//! Keyed by the SHA-256 of the token (the token itself is not kept), bounded, sharded. An entry
//! is only as good as what vouched for it: it is used only while the token has not expired, its
//! issuer's config is the one in force (a reload re-verifies) and its signing key is still in
//! the issuer's current key set — a key removed from the JWKS takes its tokens with it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::config::identity::IssuerConfig;
use crate::identity::jwks::{JwksCache, VerifyKey};
use crate::pipeline::Identity;

pub type TokenDigest = [u8; 32];

pub fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

/// What a verified token established, and what it depends on.
#[derive(Debug)]
pub struct CachedToken {
    pub identity: Identity,
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
            && self.jwks.current().is_some_and(|keys| keys.contains(&self.key))
    }
}

const SHARDS: usize = 16;

/// The digest is already uniformly distributed: its first eight bytes are the hash. Only
/// verified tokens are inserted, so nobody can choose digests to crowd a bucket.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (8 * i);
        }
    }
}

type Shard = HashMap<TokenDigest, Arc<CachedToken>, BuildHasherDefault<DigestHasher>>;

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

    fn shard(&self, digest: &TokenDigest) -> &Mutex<Shard> {
        &self.shards[usize::from(digest[31]) % SHARDS]
    }

    fn lock<'a>(shard: &'a Mutex<Shard>) -> std::sync::MutexGuard<'a, Shard> {
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<CachedToken>> {
        Self::lock(self.shard(digest)).get(digest).cloned()
    }

    pub fn remove(&self, digest: &TokenDigest) {
        Self::lock(self.shard(digest)).remove(digest);
    }

    /// Remembers a verified token. A full shard first drops its expired entries, then, if still
    /// full, an arbitrary one.
    pub fn insert(&self, digest: TokenDigest, entry: CachedToken, now: i64) {
        let per_shard = self.capacity.load(Ordering::Relaxed).div_ceil(SHARDS);
        let mut shard = Self::lock(self.shard(&digest));
        if shard.len() >= per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, e| now < e.exp.saturating_add(e.issuer.leeway_secs));
            while shard.len() >= per_shard {
                let Some(victim) = shard.keys().next().copied() else {
                    break;
                };
                shard.remove(&victim);
            }
        }
        shard.insert(digest, Arc::new(entry));
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
