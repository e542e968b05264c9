//! The Redis store's key names, one per check and its sliding log, on one Redis and on a
//! Cluster (where the hash tag decides the slot: the parent module's doc says how). Names only:
//! both the store's own calls and its batches ([`crate::ratelimit::store::batch`]) name keys
//! with them.

use crate::ratelimit::store::Check;

/// The state key of one check (the sliding log's set is this plus `:log`).
pub fn key(prefix: &str, check: &Check<'_>) -> String {
    joined(&[prefix, "{", check.policy, "|", check.subject, "}"])
}

/// The key's pieces in one string. Pushed one by one: `format!` cost a Redis-limited request
/// some 3,000 instructions for its keys (docs/PERFORMANCE.md).
fn joined(pieces: &[&str]) -> String {
    let mut key = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        key.push_str(piece);
    }
    key
}

/// The sliding log's set of the check whose state key is `key`.
pub fn log_key(key: &str) -> String {
    joined(&[key, ":log"])
}

/// The state key of one check on a Cluster: the subject is the hash tag (see the parent
/// module's doc).
pub fn cluster_key(prefix: &str, check: &Check<'_>) -> String {
    let subject = check.subject;
    if subject.is_empty() || subject.contains(['{', '}']) {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(subject.as_bytes());
        let mut tag = String::with_capacity(7 + 32);
        tag.push_str("sha256:");
        for b in &hash[..16] {
            let _ = std::fmt::Write::write_fmt(&mut tag, format_args!("{b:02x}"));
        }
        format!("{prefix}{{{tag}}}|{}|{subject}", check.policy)
    } else {
        joined(&[prefix, "{", subject, "}|", check.policy])
    }
}
