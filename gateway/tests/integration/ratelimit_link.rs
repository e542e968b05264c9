//! The batch driver's own connection to Redis, against a real `redis-server`: it authenticates
//! and selects the database its URL names, says why when Redis refuses it, reloads a script
//! Redis lost, and never reads a late reply as a later call's.

use std::sync::Arc;
use std::time::Duration;

use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::redis::{RedisStore, StoreError};
use gateway::ratelimit::store::{Check, RedisConfig};
use gateway::ratelimit::{Algorithm, AnyLimiter, Quota};

use super::ratelimit_support::*;
use super::util::eventually_blocking;

/// 2024-01-01 in ticks (microseconds).
const EPOCH: u64 = 1_704_067_200_000_000;

fn store(url: String, timeout: Duration) -> Arc<RedisStore> {
    let config = RedisConfig {
        url,
        cluster_nodes: Vec::new(),
        key_prefix: "link:".into(),
        timeout,
        breaker_failures: 1_000,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: 64,
    };
    Arc::new(RedisStore::new(&config, RateLimitMetrics::default()).expect("store"))
}

/// Ten an hour: each admission takes one from `remaining`, and nothing comes back meanwhile.
fn ten_an_hour() -> AnyLimiter {
    AnyLimiter::new(
        Algorithm::Gcra,
        Quota::new(10, 3_600_000_000).with_burst(10),
    )
}

/// What is left of `policy`'s quota after one more admission, or the store's error.
async fn remaining_after_one(
    store: &RedisStore,
    policy: &str,
    limiter: &AnyLimiter,
) -> Result<u64, StoreError> {
    let check = Check {
        policy,
        subject: "s",
        limiter,
        cost: 1,
    };
    let decisions = store.decide_all(&[check], EPOCH, 0).await?;
    assert!(decisions[0].allowed, "{decisions:?}");
    Ok(decisions[0].remaining)
}

#[tokio::test]
async fn a_url_with_a_user_a_password_and_a_database_is_honoured() {
    let redis = RedisServer::start();
    let port = redis.port;
    assert_eq!(
        redis
            .command("ACL SETUSER gate on >s3cret ~* +@all\r\n")
            .as_deref(),
        Some("+OK\r\n")
    );
    assert_eq!(
        redis.command("CONFIG SET requirepass other\r\n").as_deref(),
        Some("+OK\r\n")
    );
    let limiter = ten_an_hour();
    let db3 = store(
        format!("redis://gate:s3cret@127.0.0.1:{port}/3"),
        Duration::from_secs(2),
    );
    let db0 = store(
        format!("redis://gate:s3cret@127.0.0.1:{port}/0"),
        Duration::from_secs(2),
    );
    let wrong = store(
        format!("redis://gate:wrong@127.0.0.1:{port}/3"),
        Duration::from_secs(2),
    );

    assert_eq!(remaining_after_one(&db3, "p", &limiter).await, Ok(9));
    assert_eq!(remaining_after_one(&db3, "p", &limiter).await, Ok(8));
    // The same key in another database is another counter.
    assert_eq!(remaining_after_one(&db0, "p", &limiter).await, Ok(9));
    match remaining_after_one(&wrong, "p", &limiter).await {
        Err(StoreError::Connection(e)) if e.contains("AUTH refused") => {}
        other => panic!("a wrong password is a connection refused, said so: {other:?}"),
    }
}

#[tokio::test]
async fn a_script_redis_lost_is_sent_again_with_its_text() {
    let redis = RedisServer::start();
    let limiter = ten_an_hour();
    let store = store(redis.url(), Duration::from_secs(2));
    assert_eq!(remaining_after_one(&store, "p", &limiter).await, Ok(9));
    assert_eq!(
        redis.command("SCRIPT FLUSH\r\n").as_deref(),
        Some("+OK\r\n")
    );
    assert_eq!(remaining_after_one(&store, "p", &limiter).await, Ok(8));
    assert_eq!(
        redis
            .command(&format!("SCRIPT EXISTS {}\r\n", sha1_of_script()))
            .as_deref(),
        Some("*1\r\n:1\r\n"),
        "the EVAL loaded it again"
    );
}

fn sha1_of_script() -> String {
    redis::Script::new(gateway::ratelimit::store::redis::SCRIPT)
        .get_hash()
        .to_owned()
}

#[tokio::test]
async fn a_reply_too_late_fails_its_call_and_the_next_call_reads_its_own() {
    let redis = RedisServer::start();
    let limiter = ten_an_hour();
    let store = store(redis.url(), Duration::from_millis(150));
    for want in [9, 8, 7] {
        assert_eq!(
            remaining_after_one(&store, "late", &limiter).await,
            Ok(want)
        );
    }
    // Redis holds every command for 600 ms: the next call's reply comes long after its 150.
    assert_eq!(
        redis.command("CLIENT PAUSE 600 ALL\r\n").as_deref(),
        Some("+OK\r\n")
    );
    match remaining_after_one(&store, "late", &limiter).await {
        Err(StoreError::Timeout(_)) => {}
        other => panic!("the held call times out: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // On a connection still waiting for the late reply this would read it (6 or fewer left of
    // "late"); a fresh counter answers 9.
    assert_eq!(remaining_after_one(&store, "fresh", &limiter).await, Ok(9));
}

/// A redis-server on a Unix socket only (no TCP port), stopped when dropped.
struct UnixRedis {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl UnixRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("redis.sock");
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        eventually_blocking(
            &format!("redis-server listens on {}", socket.display()),
            Duration::from_secs(5),
            || {
                std::os::unix::net::UnixStream::connect(&socket)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        Self {
            child,
            _dir: dir,
            socket,
        }
    }
}

impl Drop for UnixRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_unix_socket_url_is_a_connection_too() {
    let redis = UnixRedis::start();
    let limiter = ten_an_hour();
    let store = store(
        format!("redis+unix://{}", redis.socket.display()),
        Duration::from_secs(2),
    );
    assert_eq!(remaining_after_one(&store, "p", &limiter).await, Ok(9));
    assert_eq!(remaining_after_one(&store, "p", &limiter).await, Ok(8));
}
