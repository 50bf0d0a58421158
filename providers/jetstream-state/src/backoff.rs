//! Randomised waits between retries, so that contenders that collided do
//! not collide again in lockstep.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

/// A random number without a dependency: every `RandomState` is seeded
/// afresh, and hashing nothing with it gives a different value each time.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// A random wait in `[0, 2^step)` ms, capped at 256 ms.
pub(crate) fn jitter(step: u32) -> Duration {
    let cap_ms = 1u64 << step.min(8);
    Duration::from_micros(random_u64() % (cap_ms * 1_000))
}
