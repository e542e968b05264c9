//! One script call to Redis, on either kind of connection, and what can go wrong with it: the
//! connection (one Redis or a Cluster), `EVALSHA` with its `EVAL` fallback, the script itself, the
//! errors a call ends in, and the decoding of its answer. Shared by the store's own calls
//! ([`super`]), its batches ([`crate::ratelimit::store::batch`]) and lease fetches.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use crate::ratelimit::{Decision, NEVER};

/// The script, shared by every store.
pub const SCRIPT: &str = include_str!("../ratelimit.lua");

/// Kept past a key's full restoration before Redis drops it, for clock skew between gateways.
pub const TTL_MARGIN_MS: u64 = 1_000;

/// Why a decision could not be had from Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the Redis breaker is open")]
    BreakerOpen,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Redis: {0}")]
    Connection(String),
    #[error("Redis refused the script: {0}")]
    Script(String),
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::BreakerOpen => "breaker_open",
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Script(_) => "script",
        }
    }
}

/// One Redis or a Cluster; both multiplex concurrent calls and are cheap to clone.
#[derive(Clone)]
pub(in crate::ratelimit::store) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(in crate::ratelimit::store) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// One call of the script whose SHA1 is `hash`, with the arguments `fill` adds after it:
    /// `EVALSHA`, and on `NOSCRIPT` the same call as `EVAL` of `source`, which loads the script
    /// on the node that lacked it.
    pub(in crate::ratelimit::store) async fn eval(
        &self,
        hash: &str,
        source: &str,
        fill: impl Fn(&mut Cmd),
    ) -> Result<Vec<i64>, StoreError> {
        let command = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script);
            fill(&mut cmd);
            cmd
        };
        match self.query(&command("EVALSHA", hash)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => self
                .query(&command("EVAL", source))
                .await
                .map_err(|e| classify(&e)),
            other => other.map_err(|e| classify(&e)),
        }
    }
}

/// The script's four integers per check as decisions; an answer of the wrong length is a
/// script error.
pub(in crate::ratelimit::store) fn decisions(
    values: &[i64],
    checks: usize,
) -> Result<Vec<Decision>, StoreError> {
    if values.len() != checks * 4 {
        return Err(StoreError::Script(format!(
            "{} values for {checks} checks",
            values.len()
        )));
    }
    Ok(values
        .chunks_exact(4)
        .map(|v| Decision {
            allowed: v[0] == 1,
            remaining: u64::try_from(v[1]).unwrap_or(0),
            retry_after_nanos: u64::try_from(v[2]).unwrap_or(NEVER),
            reset_nanos: u64::try_from(v[3]).unwrap_or(0),
        })
        .collect())
}

/// An error reply read on the batch driver's own connection, classified as [`classify`] does
/// redis-rs's: a Cluster or a Redis between states is unreachable for now, any other refusal is
/// the script's.
pub(in crate::ratelimit::store) fn refusal(message: String) -> StoreError {
    const UNREACHABLE: [&str; 7] = [
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "READONLY",
        "LOADING",
    ];
    let code = message.split(' ').next().unwrap_or_default();
    if UNREACHABLE.contains(&code) {
        StoreError::Connection(message)
    } else {
        StoreError::Script(message)
    }
}

pub(in crate::ratelimit::store) fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(Duration::ZERO)
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreError::Connection(e.to_string())
    } else if matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
        )
    ) {
        // A Cluster between topologies (a failover under way): unreachable for now, not a
        // script that Redis refused.
        StoreError::Connection(e.to_string())
    } else if matches!(e.kind(), ErrorKind::Server(_)) {
        StoreError::Script(e.to_string())
    } else {
        StoreError::Connection(e.to_string())
    }
}
