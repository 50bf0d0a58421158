//! Bounds an operator may lower through the component's config (like
//! `max-body-bytes`), never raise: the defaults are what the API promises
//! (API.md) and what keeps each request's work finite.

use crate::bindings::wasi::config::store as config;

/// `max` lowered by a configured value (which cannot raise it); a value
/// that is not a number is ignored.
pub fn lowered(configured: Option<&str>, max: usize) -> usize {
    configured.and_then(|v| v.trim().parse().ok()).map_or(max, |c: usize| c.min(max))
}

/// `max`, lowered by the config key `key` when it is set.
pub fn bound(key: &str, max: usize) -> usize {
    lowered(config::get(key).ok().flatten().as_deref(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_bound_only_lowers_the_default() {
        assert_eq!(lowered(None, 10_000), 10_000);
        assert_eq!(lowered(Some("5"), 10_000), 5);
        assert_eq!(lowered(Some(" 7 "), 1_000), 7);
        assert_eq!(lowered(Some("99999"), 10_000), 10_000);
        assert_eq!(lowered(Some("many"), 1_000), 1_000);
        assert_eq!(lowered(Some("-3"), 1_000), 1_000);
    }
}
