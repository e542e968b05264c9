//! What the simulator's tests share: `eventually_blocking` for waiting on a condition.

use std::fmt::Display;
use std::time::Duration;

/// How often [`eventually_blocking`] asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Waits for a condition the test cannot be told about (a screen to show something, a child to
/// exit): runs `probe` until it returns `Ok`, every 10 ms, and returns that value. A probe's
/// `Err` says what it saw instead; if there is still no `Ok` after `timeout`, the test fails
/// naming `what` and the last thing seen. It sleeps the thread it runs on between tries.
///
/// Use it instead of a fixed sleep or a hand-written loop. A sleep that *is* the scenario (time
/// that must pass) is not a wait for a condition and stays a sleep.
#[track_caller]
pub fn eventually_blocking<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    #[allow(clippy::disallowed_methods)] // timing the test itself
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = match probe() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        #[allow(clippy::disallowed_methods)] // timing the test itself
        let now = std::time::Instant::now();
        if now >= deadline {
            panic!("{what}: not within {timeout:?}; last seen: {seen}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
