//! Component bucket identifiers to JetStream KV buckets.
//!
//! A component opens a bucket by identifier ("registry", "twins",
//! "broker"); on the lattice that is the JetStream KV bucket
//! `<prefix>_<identifier>`, with every character outside `[A-Za-z0-9_-]`
//! (what JetStream accepts in a bucket name) replaced by `_`. Buckets are
//! created on first use (history 1, file storage) and their handles cached.
//! A component bucket's stream allows atomic batch publish (nats-server
//! 2.12+, ADR-50), which `set-many`/`delete-many` need: set when the bucket
//! is created, and turned on when an existing one (made by an older
//! provider or server) is first opened.

use crate::error::KvError;
use async_nats::jetstream::{self, kv, stream::StorageType};
use std::collections::{HashMap, HashSet};
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

/// A component's bucket, opened.
#[derive(Clone)]
pub struct DataBucket {
    pub name: String,
    pub store: kv::Store,
    /// Its stream takes atomic batches (`allow_atomic`).
    pub atomic: bool,
}

/// Opens and caches the provider's KV buckets.
pub struct Buckets {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The JetStream API prefix of `js` (`$JS.API`, or `$JS.<domain>.API`):
    /// async-nats keeps its own private, and a batch's subjects need it.
    api_prefix: String,
    prefix: String,
    replicas: usize,
    /// Bucket names components may not open (the locks bucket).
    reserved: Vec<String>,
    open: RwLock<HashMap<String, kv::Store>>,
    /// Buckets whose stream is known to allow atomic publish.
    atomic: RwLock<HashSet<String>>,
}

/// Why a bucket's stream cannot take atomic batches.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AtomicSetupError(String);

impl Buckets {
    pub fn new(
        client: async_nats::Client,
        js_domain: Option<&str>,
        prefix: &str,
        replicas: usize,
        reserved: Vec<String>,
    ) -> Buckets {
        let (js, api_prefix) = match js_domain {
            Some(domain) => (jetstream::with_domain(client.clone(), domain), format!("$JS.{domain}.API")),
            None => (jetstream::new(client.clone()), "$JS.API".to_string()),
        };
        Buckets {
            client,
            js,
            api_prefix,
            prefix: prefix.to_string(),
            replicas: replicas.max(1),
            reserved,
            open: RwLock::default(),
            atomic: RwLock::default(),
        }
    }

    /// The connection the buckets are on (batches publish on it directly).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The subject a write of the (encoded) `key` is published to, as
    /// async-nats' `put` makes it.
    pub fn put_subject(&self, store: &kv::Store, key: &str) -> String {
        let mut subject = String::new();
        if store.use_jetstream_prefix {
            subject.push_str(&self.api_prefix);
            subject.push('.');
        }
        subject.push_str(store.put_prefix.as_ref().unwrap_or(&store.prefix));
        subject.push_str(key);
        subject
    }

    /// The bucket behind a component's identifier, opened or created. The
    /// first open turns atomic publish on for its stream; a server that
    /// cannot (older than 2.12, or a mirror) leaves the bucket usable key
    /// by key, and its batches are refused.
    pub async fn for_identifier(&self, identifier: &str) -> Result<DataBucket, KvError> {
        let name = bucket_name(&self.prefix, identifier)?;
        if self.reserved.contains(&name) {
            return Err(KvError::ReservedBucket { identifier: identifier.to_string(), bucket: name });
        }
        let store = self.open(&name, BucketSpec::DATA).await?;
        let atomic = self.atomic.read().unwrap_or_else(|e| e.into_inner()).contains(&name);
        let atomic = atomic || self.ensure_atomic(&name).await.is_ok();
        Ok(DataBucket { name, store, atomic })
    }

    /// Turn on atomic publish for bucket `name`'s stream, unless it is on.
    ///
    /// async-nats 0.39 does not know the stream setting, so the config is
    /// read and written back as JSON: every other field goes back as the
    /// server gave it. A server that does not know the setting (before
    /// 2.12) drops it, which the answer shows.
    pub async fn ensure_atomic(&self, name: &str) -> Result<(), AtomicSetupError> {
        let stream = format!("KV_{name}");
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            let e = AtomicSetupError(format!("{what} of stream {stream}: {e}"));
            tracing::warn!(bucket = name, error = %e, "atomic batches unavailable for this bucket (set-many/delete-many refused)");
            e
        };
        let info: serde_json::Value = self
            .js
            .request(format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
            .await
            .map_err(|e| fail("info", &e))?;
        let allowed = |v: &serde_json::Value| v.pointer("/config/allow_atomic").and_then(serde_json::Value::as_bool) == Some(true);
        if !allowed(&info) {
            if let Some(error) = info.get("error") {
                return Err(fail("info", error));
            }
            let Some(mut config) = info.get("config").cloned() else {
                return Err(fail("info", &"answer without config"));
            };
            config["allow_atomic"] = serde_json::Value::Bool(true);
            let updated: serde_json::Value = self
                .js
                .request(format!("STREAM.UPDATE.{stream}"), &config)
                .await
                .map_err(|e| fail("update", &e))?;
            if let Some(error) = updated.get("error") {
                return Err(fail("update", error));
            }
            if !allowed(&updated) {
                return Err(fail("update", &"the server ignored allow_atomic (atomic batches need nats-server 2.12 or later)"));
            }
            tracing::info!(bucket = name, "allowed atomic batch publish on the bucket's stream");
        }
        self.atomic.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        Ok(())
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
