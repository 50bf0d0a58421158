//! Time: wall clock for leases and timestamps, monotonic clock for back-off.

use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let now = wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds) / 1_000_000
}

/// Nanoseconds on the monotonic clock (for budgets; not a time of day).
pub fn monotonic_ns() -> u64 {
    monotonic_clock::now()
}

/// Block this instance for `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    monotonic_clock::subscribe_duration(ms * 1_000_000).block();
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` for a time in milliseconds since the epoch.
pub fn rfc3339(ms: u64) -> String {
    guest_time::rfc3339(ms / 1000, (ms % 1000) as u32)
}
