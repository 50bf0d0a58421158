//! Per-source-address admission of CoAP datagrams: a token bucket per IP,
//! checked before a datagram is parsed, so one source flooding the inbox
//! (Block1 floods, request storms, spoofed retransmissions) costs a hash
//! lookup per datagram and cannot starve other sources of the receive loop.
//! Excess datagrams are dropped silently, as RFC 7252 lets a server do with
//! messages it cannot process; the sender's retransmission is its retry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Datagrams per second one address may send, sustained, and in a burst.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimits {
    /// Far above what a device sends (a few messages a second), far below
    /// what one core can parse.
    fn default() -> RateLimits {
        RateLimits { per_second: 1_000, burst: 2_000 }
    }
}

/// At most this many addresses are tracked; past it, buckets that are full
/// again (idle sources) are forgotten first, and if none is, all are: a
/// spoofed-address flood can make the limiter forget, never grow.
const MAX_TRACKED: usize = 65_536;

struct Bucket {
    tokens: f64,
    at: Instant,
    dropped: u64,
    warned: Option<Instant>,
}

pub struct RateLimiter {
    limits: RateLimits,
    buckets: HashMap<IpAddr, Bucket>,
}

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Drop it; `warn` carries the number dropped since the last warning
    /// (this one included),
    /// at most once per `WARN_EVERY` per address.
    No { warn: Option<u64> },
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter { limits, buckets: HashMap::new() }
    }

    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admit {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            self.forget_idle(now);
        }
        let (rate, burst) = (f64::from(self.limits.per_second), f64::from(self.limits.burst.max(1)));
        let bucket = self.buckets.entry(ip).or_insert(Bucket { tokens: burst, at: now, dropped: 0, warned: None });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Admit::Yes;
        }
        bucket.dropped += 1;
        let due = bucket.warned.is_none_or(|w| now.saturating_duration_since(w) >= WARN_EVERY);
        if due {
            bucket.warned = Some(now);
            let n = std::mem::take(&mut bucket.dropped);
            Admit::No { warn: Some(n) }
        } else {
            Admit::No { warn: None }
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let (rate, burst) = (f64::from(self.limits.per_second), f64::from(self.limits.burst.max(1)));
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut limiter = RateLimiter::new(RateLimits { per_second: 100, burst: 10 });
        let t0 = Instant::now();
        let passed = (0..50).filter(|_| limiter.admit(ip(1), t0) == Admit::Yes).count();
        assert_eq!(passed, 10, "the burst");
        // A second later, 100 more tokens (capped at the burst of 10).
        let later = t0 + Duration::from_secs(1);
        let passed = (0..50).filter(|_| limiter.admit(ip(1), later) == Admit::Yes).count();
        assert_eq!(passed, 10);
        // 50 ms later: 5 tokens.
        let soon = later + Duration::from_millis(50);
        let passed = (0..50).filter(|_| limiter.admit(ip(1), soon) == Admit::Yes).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn one_flooding_address_does_not_limit_another() {
        let mut limiter = RateLimiter::new(RateLimits { per_second: 10, burst: 5 });
        let t0 = Instant::now();
        for _ in 0..1_000 {
            limiter.admit(ip(2), t0);
        }
        assert_eq!(limiter.admit(ip(1), t0), Admit::Yes);
    }

    #[test]
    fn drops_are_reported_at_most_every_ten_seconds() {
        let mut limiter = RateLimiter::new(RateLimits { per_second: 1, burst: 1 });
        let t0 = Instant::now();
        assert_eq!(limiter.admit(ip(1), t0), Admit::Yes);
        assert_eq!(limiter.admit(ip(1), t0), Admit::No { warn: Some(1) });
        assert_eq!(limiter.admit(ip(1), t0), Admit::No { warn: None });
        assert_eq!(limiter.admit(ip(1), t0), Admit::No { warn: None });
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.admit(ip(1), t1), Admit::No { warn: None });
        let t2 = t0 + Duration::from_secs(11);
        assert_eq!(limiter.admit(ip(1), t2), Admit::Yes);
        // Two more at t0, one at t1, and this one.
        assert_eq!(limiter.admit(ip(1), t2), Admit::No { warn: Some(4) });
    }

    #[test]
    fn tracking_is_bounded_under_spoofed_sources() {
        let mut limiter = RateLimiter::new(RateLimits { per_second: 1, burst: 1 });
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            limiter.admit(a, t0);
        }
        assert!(limiter.buckets.len() <= MAX_TRACKED);
    }
}
