//! Component bucket identifiers to JetStream KV buckets.
//!
//! A component opens a bucket by identifier ("registry", "twins",
//! "broker"); on the lattice that is the JetStream KV bucket
//! `<prefix>_<identifier>`, with every character outside `[A-Za-z0-9_-]`
//! (what JetStream accepts in a bucket name) replaced by `_`. Buckets are
//! created on first use (history 1, file storage) and their handles cached.

use crate::error::KvError;
use async_nats::jetstream::{self, kv, stream::StorageType};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// `bucket_prefix` when the provider config names none.
pub const DEFAULT_BUCKET_PREFIX: &str = "twinlattice";

/// `identifier` with every character JetStream refuses in a bucket name
/// replaced by `_`.
pub fn sanitize(identifier: &str) -> String {
    identifier
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect()
}

/// The JetStream KV bucket for a component's bucket identifier.
pub fn bucket_name(prefix: &str, identifier: &str) -> Result<String, KvError> {
    if identifier.is_empty() {
        return Err(KvError::InvalidBucket { identifier: identifier.to_string() });
    }
    Ok(format!("{}_{}", sanitize(prefix), sanitize(identifier)))
}

/// How a bucket is created when it does not exist yet.
#[derive(Debug, Clone, Copy)]
pub struct BucketSpec {
    /// Entries older than this are removed (zero: never).
    pub max_age: Duration,
}

impl BucketSpec {
    /// Component data: kept until deleted.
    pub const DATA: BucketSpec = BucketSpec { max_age: Duration::ZERO };
}

/// Opens and caches the provider's KV buckets.
pub struct Buckets {
    js: jetstream::Context,
    prefix: String,
    replicas: usize,
    /// Bucket names components may not open (the locks bucket).
    reserved: Vec<String>,
    open: RwLock<HashMap<String, kv::Store>>,
}

impl Buckets {
    pub fn new(js: jetstream::Context, prefix: &str, replicas: usize, reserved: Vec<String>) -> Buckets {
        Buckets { js, prefix: prefix.to_string(), replicas: replicas.max(1), reserved, open: RwLock::default() }
    }

    /// The bucket behind a component's identifier, opened or created.
    pub async fn for_identifier(&self, identifier: &str) -> Result<(String, kv::Store), KvError> {
        let name = bucket_name(&self.prefix, identifier)?;
        if self.reserved.contains(&name) {
            return Err(KvError::ReservedBucket { identifier: identifier.to_string(), bucket: name });
        }
        let store = self.open(&name, BucketSpec::DATA).await?;
        Ok((name, store))
    }

    fn cached(&self, name: &str) -> Option<kv::Store> {
        // A poisoned map still holds valid handles.
        self.open.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Open the bucket `name`, creating it when it does not exist.
    ///
    /// Two providers (or tasks) may race to create it: JetStream accepts a
    /// create with an identical config, and a loser whose create is refused
    /// opens what the winner made.
    pub async fn open(&self, name: &str, spec: BucketSpec) -> Result<kv::Store, KvError> {
        if let Some(store) = self.cached(name) {
            return Ok(store);
        }
        let store = match self.js.get_key_value(name).await {
            Ok(store) => store,
            Err(open_err) => {
                tracing::debug!(bucket = name, error = %open_err, "bucket not found, creating it");
                let config = kv::Config {
                    bucket: name.to_string(),
                    description: "twinlattice jetstream-state provider".to_string(),
                    history: 1,
                    storage: StorageType::File,
                    num_replicas: self.replicas,
                    max_age: spec.max_age,
                    ..Default::default()
                };
                match self.js.create_key_value(config).await {
                    Ok(store) => {
                        tracing::info!(bucket = name, replicas = self.replicas, "created JetStream KV bucket");
                        store
                    }
                    Err(create_err) => self.js.get_key_value(name).await.map_err(|_| KvError::NoSuchStore {
                        bucket: name.to_string(),
                        reason: create_err.to_string(),
                    })?,
                }
            }
        };
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_map_to_prefixed_sanitized_names() {
        assert_eq!(bucket_name("twinlattice", "registry").ok().as_deref(), Some("twinlattice_registry"));
        assert_eq!(bucket_name("tl", "a.b c/d:e-f_g").ok().as_deref(), Some("tl_a_b_c_d_e-f_g"));
        assert_eq!(bucket_name("tl", "ü").ok().as_deref(), Some("tl__"));
        assert!(matches!(bucket_name("tl", ""), Err(KvError::InvalidBucket { .. })));
    }
}
