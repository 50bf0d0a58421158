//! The library core of the jetstream-state provider: the lattice's state
//! (`wasi:keyvalue` buckets and `twinlattice:coordination` locks) on NATS
//! JetStream KV, as plain async Rust over async-nats. The provider binary
//! (`src/main.rs`) serves it over wRPC; the tests drive it directly against
//! a real nats-server.

pub mod buckets;
pub mod error;
pub mod keys;
pub mod kv;
pub mod locks;

mod backoff;

pub use error::{KvError, LockError};
pub use kv::MAX_BATCH;
pub use kv::{KeyPage, KeyValue};
pub use locks::Locks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A provider config value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("provider config {key} = {value:?}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The provider's settings, from its config (named config in wadm.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `bucket_prefix`: component bucket `x` is JetStream KV bucket
    /// `<prefix>_x`.
    pub bucket_prefix: String,
    /// `locks_bucket`: the KV bucket of the locks (default
    /// `<prefix>-locks`, which no component identifier maps to).
    pub locks_bucket: String,
    /// `replicas`: replicas of buckets this provider creates.
    pub replicas: usize,
    /// `lock_wait_ms`: how long `acquire` waits before `unavailable`.
    pub lock_max_wait: Duration,
    /// `nats_url`: the NATS server holding the state; default: the
    /// lattice's own connection.
    pub nats_url: Option<String>,
    /// `nats_creds_file`: credentials for `nats_url`.
    pub nats_creds_file: Option<String>,
    /// `js_domain`: JetStream domain (leaf nodes / hubs).
    pub js_domain: Option<String>,
}

fn non_empty(config: &HashMap<String, String>, key: &str) -> Option<String> {
    config.get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl Settings {
    pub fn from_config(config: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let bucket_prefix = non_empty(config, "bucket_prefix").unwrap_or_else(|| buckets::DEFAULT_BUCKET_PREFIX.to_string());
        if buckets::sanitize(&bucket_prefix) != bucket_prefix {
            return Err(ConfigError { key: "bucket_prefix", value: bucket_prefix, reason: "only [A-Za-z0-9_-] allowed" });
        }
        let locks_bucket = non_empty(config, "locks_bucket").unwrap_or_else(|| format!("{bucket_prefix}-locks"));
        if buckets::sanitize(&locks_bucket) != locks_bucket {
            return Err(ConfigError { key: "locks_bucket", value: locks_bucket, reason: "only [A-Za-z0-9_-] allowed" });
        }
        let replicas = match non_empty(config, "replicas") {
            None => 1,
            Some(v) => match v.parse::<usize>() {
                Ok(n @ 1..=5) => n,
                _ => return Err(ConfigError { key: "replicas", value: v, reason: "expected 1 to 5" }),
            },
        };
        let lock_max_wait = match non_empty(config, "lock_wait_ms") {
            None => locks::DEFAULT_MAX_WAIT,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => return Err(ConfigError { key: "lock_wait_ms", value: v, reason: "expected milliseconds > 0" }),
            },
        };
        Ok(Settings {
            bucket_prefix,
            locks_bucket,
            replicas,
            lock_max_wait,
            nats_url: non_empty(config, "nats_url"),
            nats_creds_file: non_empty(config, "nats_creds_file"),
            js_domain: non_empty(config, "js_domain"),
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        let bucket_prefix = buckets::DEFAULT_BUCKET_PREFIX.to_string();
        Settings {
            locks_bucket: format!("{bucket_prefix}-locks"),
            bucket_prefix,
            replicas: 1,
            lock_max_wait: locks::DEFAULT_MAX_WAIT,
            nats_url: None,
            nats_creds_file: None,
            js_domain: None,
        }
    }
}

/// Everything the provider serves, over one JetStream context.
#[derive(Clone)]
pub struct State {
    pub kv: KeyValue,
    pub locks: Locks,
}

impl State {
    /// The provider's state on `client` (JetStream in `settings`' domain,
    /// if any).
    pub fn new(client: async_nats::Client, settings: &Settings) -> State {
        let buckets = Arc::new(buckets::Buckets::new(
            client,
            settings.js_domain.as_deref(),
            &settings.bucket_prefix,
            settings.replicas,
            vec![settings.locks_bucket.clone()],
        ));
        State {
            kv: KeyValue::new(buckets.clone()),
            locks: Locks::new(buckets, &settings.locks_bucket, settings.lock_max_wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_validation() {
        let s = Settings::default();
        assert_eq!(Settings::from_config(&HashMap::new()).ok().as_ref(), Some(&s));
        assert_eq!(s.bucket_prefix, "twinlattice");
        assert_eq!(s.locks_bucket, "twinlattice-locks");
        assert_eq!(s.replicas, 1);
        assert_eq!(s.lock_max_wait, locks::DEFAULT_MAX_WAIT);
        let cfg = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let s = Settings::from_config(&cfg(&[("bucket_prefix", "prod"), ("replicas", "3"), ("lock_wait_ms", "500")]));
        let s = s.expect("valid config");
        assert_eq!((s.locks_bucket.as_str(), s.replicas, s.lock_max_wait), ("prod-locks", 3, Duration::from_millis(500)));
        assert!(Settings::from_config(&cfg(&[("bucket_prefix", "a.b")])).is_err());
        assert!(Settings::from_config(&cfg(&[("replicas", "0")])).is_err());
        assert!(Settings::from_config(&cfg(&[("lock_wait_ms", "soon")])).is_err());
    }
}
