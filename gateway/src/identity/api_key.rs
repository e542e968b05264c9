//! API keys: held only as SHA-256 digests, each mapped to an identity and a tier.
//!
//! A presented key is hashed and looked up by the first eight bytes of its digest; the whole
//! digest is then compared in constant time (`subtle`). What the lookup's timing can reveal is a
//! prefix of the SHA-256 of a valid key, which does not help anyone find a key. The keys
//! themselves are never stored, logged or put in a record: the record carries the key's `id`.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::vocab::Identity;

pub type KeyDigest = [u8; 32];

pub fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

/// Parses a 64-digit hex SHA-256 (either case).
pub fn parse_hex_digest(text: &str) -> Option<KeyDigest> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// One configured key: its digest and who it stands for.
pub struct ApiKeyEntry {
    digest: KeyDigest,
    pub identity: Arc<Identity>,
}

/// The configured API keys and the header they arrive in.
pub struct ApiKeyStore {
    pub header: HeaderName,
    buckets: HashMap<u64, Vec<ApiKeyEntry>>,
    len: usize,
}

impl std::fmt::Debug for ApiKeyStore {
    // Never prints a digest: even a digest of a weak key can be brute-forced offline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyStore")
            .field("header", &self.header)
            .field("keys", &self.len)
            .finish()
    }
}

impl ApiKeyStore {
    pub fn new(header: HeaderName) -> Self {
        Self {
            header,
            buckets: HashMap::new(),
            len: 0,
        }
    }

    /// Adds a key; false when a key with the same digest is already there.
    pub fn insert(&mut self, digest: KeyDigest, identity: Identity) -> bool {
        if self.find_digest(&digest).is_some() {
            return false;
        }
        self.buckets
            .entry(prefix(&digest))
            .or_default()
            .push(ApiKeyEntry {
                digest,
                identity: Arc::new(identity),
            });
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The identity a presented key stands for.
    pub fn lookup(&self, presented: &[u8]) -> Option<Arc<Identity>> {
        self.find_digest(&digest(presented))
            .map(|e| e.identity.clone())
    }

    fn find_digest(&self, digest: &KeyDigest) -> Option<&ApiKeyEntry> {
        let bucket = self.buckets.get(&prefix(digest))?;
        // Every entry of the bucket is compared, whatever matched before.
        let mut found = None;
        for entry in bucket {
            if bool::from(entry.digest.ct_eq(digest)) {
                found = Some(entry);
            }
        }
        found
    }
}

fn prefix(digest: &KeyDigest) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(subject: &str) -> Identity {
        Identity {
            subject: subject.into(),
            api_key_id: Some(subject.into()),
            ..Identity::default()
        }
    }

    #[test]
    fn keys_are_found_by_their_digest_only() {
        let mut store = ApiKeyStore::new(HeaderName::from_static("x-api-key"));
        assert!(store.insert(digest(b"secret-one"), identity("one")));
        assert!(store.insert(digest(b"secret-two"), identity("two")));
        assert!(!store.insert(digest(b"secret-two"), identity("again")));
        assert_eq!(store.lookup(b"secret-one").expect("one").subject, "one");
        assert_eq!(store.lookup(b"secret-two").expect("two").subject, "two");
        assert!(store.lookup(b"secret-three").is_none());
        assert!(store.lookup(b"").is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(
            format!("{store:?}"),
            r#"ApiKeyStore { header: "x-api-key", keys: 2 }"#
        );
    }

    #[test]
    fn hex_digests_parse_in_either_case() {
        let d = digest(b"k");
        let hex: String = d.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_hex_digest(&hex), Some(d));
        assert_eq!(parse_hex_digest(&hex.to_lowercase()), Some(d));
        assert_eq!(parse_hex_digest("abc"), None);
        assert_eq!(parse_hex_digest(&"g".repeat(64)), None);
    }
}
