//! The keyvalue operations (`store`, `atomics`, `batch`) on JetStream KV.
//!
//! Every call names its bucket by the component's identifier; keys are
//! encoded with [`crate::keys`]. Single-key writes are acknowledged by
//! JetStream after they are stored (on disk, on a quorum of replicas), so a
//! client reads its own writes. Batches are key by key: JetStream has no
//! multi-key transaction (the embedded host's batches are one redb
//! transaction; here a failed batch may leave part of it applied).

use crate::backoff;
use crate::buckets::Buckets;
use crate::error::KvError;
use crate::keys;
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use std::sync::Arc;

/// Keys per `list-keys` page; the cursor is the number of keys already
/// returned (an offset into the sorted key list), as on the embedded host.
pub const LIST_KEYS_PAGE: usize = 1_000;

/// How many keys of one batch are in flight at once.
pub const BATCH_CONCURRENCY: usize = 16;

/// Compare-and-swap attempts before `increment` gives up.
const MAX_CAS_ATTEMPTS: u32 = 1_000;

/// One page of `list-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Where the next page starts; `None` when this was the last.
    pub cursor: Option<u64>,
}

/// The keyvalue operations over the provider's buckets.
#[derive(Clone)]
pub struct KeyValue {
    buckets: Arc<Buckets>,
}

/// A bucket opened for one call.
struct Opened {
    name: String,
    store: kv::Store,
}

impl Opened {
    fn err(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> KvError {
        KvError::JetStream { op, bucket: self.name.clone(), key: key.to_string(), reason: e.to_string() }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        self.store.get(keys::encode(key)).await.map_err(|e| self.err("get", key, e))
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), KvError> {
        self.store.put(keys::encode(key), value).await.map_err(|e| self.err("put", key, e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.store.delete(keys::encode(key)).await.map_err(|e| self.err("delete", key, e))
    }
}

/// The value of a counter as the embedded host stores it: decimal text.
fn parse_counter(key: &str, value: &[u8]) -> Result<u64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| KvError::NotACounter { key: key.to_string() })
}

impl KeyValue {
    pub fn new(buckets: Arc<Buckets>) -> KeyValue {
        KeyValue { buckets }
    }

    async fn bucket(&self, identifier: &str) -> Result<Opened, KvError> {
        let (name, store) = self.buckets.for_identifier(identifier).await?;
        Ok(Opened { name, store })
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, KvError> {
        self.bucket(bucket).await?.get(key).await
    }

    pub async fn set(&self, bucket: &str, key: &str, value: Bytes) -> Result<(), KvError> {
        self.bucket(bucket).await?.set(key, value).await
    }

    /// Deleting an absent key is not an error (it writes a delete marker).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.bucket(bucket).await?.delete(key).await
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    /// Keys in byte order of their decoded form, `LIST_KEYS_PAGE` at a time
    /// from offset `cursor`. Each page reads the bucket's whole key list
    /// (JetStream has no ordered key index); a write between pages can
    /// shift keys across the page boundary.
    pub async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let b = self.bucket(bucket).await?;
        let list_err = |e: &dyn std::fmt::Display| KvError::List { bucket: b.name.clone(), reason: e.to_string() };
        let encoded: Vec<String> = b.store.keys().await.map_err(|e| list_err(&e))?.try_collect().await.map_err(|e| list_err(&e))?;
        let mut all: Vec<String> = encoded
            .into_iter()
            .filter_map(|k| match keys::decode(&k) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(bucket = %b.name, error = %e, "skipping a key this provider did not write");
                    None
                }
            })
            .collect();
        all.sort_unstable();
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX).min(all.len());
        let end = skip.saturating_add(LIST_KEYS_PAGE).min(all.len());
        let more = end < all.len();
        let keys = all.drain(skip..end).collect();
        Ok(KeyPage { keys, cursor: more.then_some(end as u64) })
    }

    /// Add `delta` to the decimal counter at `key` (absent: 0), atomically:
    /// a compare-and-swap loop on the entry's revision (revision 0, or the
    /// delete marker's, when the key is absent). Values are decimal text,
    /// the bytes the embedded host stores, so `get` reads the same on both.
    pub async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let b = self.bucket(bucket).await?;
        let encoded = keys::encode(key);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let entry = b.store.entry(encoded.clone()).await.map_err(|e| b.err("get", key, e))?;
            let (current, revision) = match entry {
                Some(e) if e.operation == Operation::Put => (parse_counter(key, &e.value)?, e.revision),
                Some(e) => (0, e.revision),
                None => (0, 0),
            };
            let next = current.saturating_add(delta);
            match b.store.update(encoded.clone(), Bytes::from(next.to_string()), revision).await {
                Ok(_) => return Ok(next),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    tracing::trace!(bucket = %b.name, key, attempt, "increment lost a race, retrying");
                    if attempt >= 2 {
                        tokio::time::sleep(backoff::jitter(attempt.min(10))).await;
                    }
                }
                Err(e) => return Err(b.err("update", key, e)),
            }
        }
        Err(KvError::Contention { key: key.to_string(), attempts: MAX_CAS_ATTEMPTS })
    }

    /// Values of `keys`, in order (`None` for an absent key).
    pub async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<(String, Bytes)>>, KvError> {
        let b = self.bucket(bucket).await?;
        let b = &b;
        futures::stream::iter(keys)
            .map(|key| async move { Ok(b.get(&key).await?.map(|v| (key, v))) })
            .buffered(BATCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Not atomic: on an error, some of the pairs may have been written.
    pub async fn set_many(&self, bucket: &str, key_values: Vec<(String, Bytes)>) -> Result<(), KvError> {
        let b = self.bucket(bucket).await?;
        let b = &b;
        // Written concurrently, so a key given twice keeps its last value
        // only if the earlier ones are dropped first (the embedded host
        // writes in order).
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<(String, Bytes)> =
            key_values.into_iter().rev().filter(|(k, _)| seen.insert(k.clone())).collect();
        last.reverse();
        futures::stream::iter(last)
            .map(|(key, value)| async move { b.set(&key, value).await })
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Not atomic: on an error, some of the keys may have been deleted.
    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        let b = self.bucket(bucket).await?;
        let b = &b;
        futures::stream::iter(keys)
            .map(|key| async move { b.delete(&key).await })
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect::<()>()
            .await
    }
}
