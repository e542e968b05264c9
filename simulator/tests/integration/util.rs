//! What the simulator's tests share: `eventually_blocking` for waiting on a condition — the
//! gateway tests' own helper, included from its file rather than copied.

#[path = "../../../gateway/tests/integration/eventually.rs"]
mod eventually;

pub use eventually::eventually_blocking;
