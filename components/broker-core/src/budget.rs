//! Time budgets for delivery: how long the attempts of one message (or of
//! one broadcast, or one queue drain) may go on starting. The caller reads
//! the monotonic clock; this module only decides, so it is tested without
//! one.

/// When attempts must stop starting, on the caller's monotonic clock (ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    ends_ns: u64,
}

impl Budget {
    /// A budget of `ms` milliseconds from `now_ns`.
    pub fn new(now_ns: u64, ms: u64) -> Budget {
        Budget { ends_ns: now_ns.saturating_add(ms.saturating_mul(1_000_000)) }
    }

    /// Whether waiting `wait_ms` from `now_ns` and then starting one more
    /// attempt still fits.
    pub fn allows(&self, now_ns: u64, wait_ms: u64) -> bool {
        now_ns.saturating_add(wait_ms.saturating_mul(1_000_000)) < self.ends_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_attempt_may_start_until_the_budget_ends() {
        let b = Budget::new(1_000 * MS, 12_000);
        assert!(b.allows(1_000 * MS, 0));
        assert!(b.allows(12_999 * MS, 0));
        assert!(!b.allows(13_000 * MS, 0));
    }

    #[test]
    fn a_back_off_that_would_end_past_the_budget_is_not_taken() {
        let b = Budget::new(0, 12_000);
        assert!(b.allows(11_000 * MS, 400));
        assert!(!b.allows(11_700 * MS, 400));
    }

    #[test]
    fn huge_values_do_not_wrap_around() {
        let b = Budget::new(u64::MAX - 5, u64::MAX);
        assert!(!b.allows(u64::MAX, u64::MAX));
        assert!(Budget::new(0, u64::MAX).allows(u64::MAX - 1, 0));
    }
}
