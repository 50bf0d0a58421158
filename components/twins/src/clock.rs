//! Time as the API writes it: Unix seconds with three decimals.

use crate::bindings::wasi::clocks::wall_clock;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let t = wall_clock::now();
    (t.seconds as i64) * 1000 + i64::from(t.nanoseconds / 1_000_000)
}

/// A stored millisecond time as the API's float seconds.
pub fn ts(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// An API float-seconds time as milliseconds (rounded, as the API keeps
/// three decimals).
pub fn ms(ts: f64) -> i64 {
    (ts * 1000.0).round() as i64
}

/// How Python's `str(float)` writes a time: `1650882205.34`, `1650882205.0`.
pub fn python_float(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        return format!("{secs}.0");
    }
    let digits = format!("{frac:03}");
    format!("{secs}.{}", digits.trim_end_matches('0'))
}
