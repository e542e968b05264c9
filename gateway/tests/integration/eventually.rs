//! Waiting for a condition a test cannot be told about, in one place: the gateway's tests use it
//! through `util`, the simulator's include this file (`#[path]`) rather than keep a copy.
#![allow(dead_code)] // each including test binary uses its own part

use std::fmt::Display;
use std::time::Duration;

/// How often [`eventually`] and [`eventually_blocking`] ask again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Waits for a condition the test cannot be told about: runs `probe` until it returns `Ok`, every
/// 10 ms, and returns that value. A probe's `Err` says what it saw instead; if there is still no
/// `Ok` after `timeout`, the test fails naming `what` and the last thing seen.
///
/// Use it instead of a fixed sleep or a hand-written loop. A sleep that *is* the scenario (time
/// that must pass) is not a wait for a condition and stays a sleep.
pub async fn eventually<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {timeout:?}; last seen: {seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for a probe that blocks (a child process, a raw socket): it sleeps the thread
/// it runs on between tries.
#[track_caller]
pub fn eventually_blocking<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = match probe() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        #[allow(clippy::disallowed_methods)] // timing the test itself, not a rule under test
        let now = std::time::Instant::now();
        if now >= deadline {
            panic!("{what}: not within {timeout:?}; last seen: {seen}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
