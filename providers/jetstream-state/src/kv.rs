//! The keyvalue operations (`store`, `atomics`, `batch`) on JetStream KV.
//!
//! Every call names its bucket by the component's identifier; keys are
//! encoded with [`crate::keys`]. Single-key writes are acknowledged by
//! JetStream after they are stored (on disk, on a quorum of replicas), so a
//! client reads its own writes. `set-many` and `delete-many` are one atomic
//! batch publish each (nats-server 2.12+, ADR-50): the server stages the
//! messages and stores all of them at the commit, or none, as the embedded
//! host's batches are one redb transaction.

use crate::backoff;
use crate::buckets::Buckets;
use crate::error::KvError;
use crate::keys;
use crate::buckets::DataBucket;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Keys per `list-keys` page; the cursor is the number of keys already
/// returned (an offset into the sorted key list), as on the embedded host.
pub const LIST_KEYS_PAGE: usize = 1_000;

/// How many keys of one `get-many` are in flight at once.
pub const BATCH_CONCURRENCY: usize = 16;

/// Distinct keys per `set-many`/`delete-many`: the server's limit of
/// messages in one atomic batch (ADR-50). A larger batch is refused whole.
pub const MAX_BATCH: usize = 1_000;

/// Every this many messages of a batch (and the first) are sent as requests
/// whose empty acknowledgement is awaited: a batch the server refused stops
/// early, and the client cannot run far ahead of the server. The others are
/// plain publishes on the same connection, which keeps them in order.
const BATCH_ACK_EVERY: usize = 100;

/// How long an acknowledgement of a batch message may take. The server
/// abandons a batch that sees no message for 10 s.
const BATCH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// JetStream's "atomic publish too many inflight" (50 batches per stream,
/// 1,000 per server): nothing was staged, so the batch is tried again.
const JS_ATOMIC_TOO_MANY_INFLIGHT: u64 = 10210;
const MAX_INFLIGHT_ATTEMPTS: u32 = 8;

/// `KV-Operation: DEL`, the header that makes a publish a KV delete (what
/// async-nats' `delete` sends).
const KV_OPERATION: &str = "KV-Operation";
const KV_DELETE: &str = "DEL";

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
struct Opened(DataBucket);

impl std::ops::Deref for Opened {
    type Target = DataBucket;
    fn deref(&self) -> &DataBucket {
        &self.0
    }
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

/// One write of a batch.
#[derive(Debug, Clone)]
enum Write {
    Put(Bytes),
    Delete,
}

/// One message of a batch, ready to send.
struct BatchMessage {
    /// The component's key, for errors.
    key: String,
    subject: String,
    write: Write,
}

impl BatchMessage {
    fn payload(&self) -> Bytes {
        match &self.write {
            Write::Put(value) => value.clone(),
            Write::Delete => Bytes::new(),
        }
    }

    /// The headers of message `seq` (from 1) of batch `id` of `count`.
    fn headers(&self, id: &str, seq: usize, count: usize) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Nats-Batch-Id", id.to_string()), ("Nats-Batch-Sequence", seq.to_string())];
        if matches!(self.write, Write::Delete) {
            headers.push((KV_OPERATION, KV_DELETE.to_string()));
        }
        if seq == count {
            headers.push(("Nats-Batch-Commit", "1".to_string()));
        }
        headers
    }
}

/// Bytes of `headers` on the wire (`NATS/1.0` line, `name: value` lines,
/// blank line): the server counts them against `max_payload`.
fn headers_len(headers: &[(&str, String)]) -> usize {
    "NATS/1.0\r\n\r\n".len() + headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>()
}

fn header_map(headers: Vec<(&'static str, String)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name, value);
    }
    map
}

/// What the server answers a batch message: empty (staged), an error, or,
/// for the commit, the pub ack with the batch's id and size.
#[derive(Debug, Default, serde::Deserialize)]
struct BatchReply {
    error: Option<ApiError>,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    batch: String,
    #[serde(default)]
    count: usize,
}

#[derive(Debug, serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// The last write of each key, in the order of those last writes: the
/// embedded host applies a batch in order, so a key given twice keeps its
/// last value. (Two messages on one subject in one batch would also cost a
/// message each against the batch limit.)
fn last_per_key<T>(writes: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut seen = HashSet::new();
    let mut last: Vec<(String, T)> = writes.into_iter().rev().filter(|(k, _)| seen.insert(k.clone())).collect();
    last.reverse();
    last
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
        Ok(Opened(self.buckets.for_identifier(identifier).await?))
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

    /// Atomic: every pair is written, or none (see [`KeyValue::write_batch`]).
    pub async fn set_many(&self, bucket: &str, key_values: Vec<(String, Bytes)>) -> Result<(), KvError> {
        let writes = key_values.into_iter().map(|(k, v)| (k, Write::Put(v))).collect();
        self.write_batch(bucket, writes).await
    }

    /// Atomic: every key is deleted, or none. Deleting an absent key is not
    /// an error (it writes a delete marker).
    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        let writes = keys.into_iter().map(|k| (k, Write::Delete)).collect();
        self.write_batch(bucket, writes).await
    }

    /// Apply `writes` as one atomic batch publish: the server stages the
    /// messages and stores them all at the commit, or none of them. A
    /// provider that dies before the commit leaves a staged batch the server
    /// abandons after 10 s; a refused batch (a write over the bucket's
    /// limits, a lost message, a missing stream) stores nothing. Limits are
    /// checked before anything is sent: at most [`MAX_BATCH`] distinct keys,
    /// each message within the server's `max_payload`.
    async fn write_batch(&self, identifier: &str, writes: Vec<(String, Write)>) -> Result<(), KvError> {
        let b = self.bucket(identifier).await?;
        let writes = last_per_key(writes);
        if writes.len() > MAX_BATCH {
            return Err(KvError::BatchTooLarge { bucket: b.name.clone(), count: writes.len(), max: MAX_BATCH });
        }
        if writes.is_empty() {
            return Ok(());
        }
        // 0 is what a client that has not had the server's INFO yet holds:
        // no limit known, the server's own check still applies.
        let max = match self.buckets.client().server_info().max_payload {
            0 => usize::MAX,
            max => max,
        };
        // The longest headers a message can get: a 22-character id (NUID),
        // a 4-digit sequence, the commit marker, the delete marker.
        let widest = headers_len(&[
            ("Nats-Batch-Id", "x".repeat(22)),
            ("Nats-Batch-Sequence", MAX_BATCH.to_string()),
            (KV_OPERATION, KV_DELETE.to_string()),
            ("Nats-Batch-Commit", "1".to_string()),
        ]);
        let mut messages = Vec::with_capacity(writes.len());
        for (key, write) in writes {
            let message = BatchMessage { subject: self.buckets.put_subject(&b.store, &keys::encode(&key)), key, write };
            // Checked before anything is sent: the server answers an
            // oversized message by closing the connection.
            let size = message.payload().len() + widest;
            if size > max {
                return Err(KvError::ValueTooLarge { bucket: b.name.clone(), key: message.key, size, max });
            }
            messages.push(message);
        }
        if let [message] = messages.as_slice() {
            // One message is atomic by itself: the plain single-key path.
            return match &message.write {
                Write::Put(value) => b.set(&message.key, value.clone()).await,
                Write::Delete => b.delete(&message.key).await,
            };
        }
        if !b.atomic {
            // Tried again here, not only at open: the server may have been
            // upgraded since.
            self.buckets
                .ensure_atomic(&b.name)
                .await
                .map_err(|e| KvError::AtomicUnsupported { bucket: b.name.clone(), reason: e.to_string() })?;
        }
        let mut attempt = 0;
        loop {
            match self.send_batch(&b, &messages).await {
                Err(KvError::BatchRefused { err_code: JS_ATOMIC_TOO_MANY_INFLIGHT, .. }) if attempt + 1 < MAX_INFLIGHT_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(bucket = %b.name, attempt, "too many atomic batches in flight, retrying");
                    tokio::time::sleep(backoff::jitter(attempt + 3)).await;
                }
                result => return result,
            }
        }
    }

    /// Send `messages` (at least two) as one atomic batch and check the
    /// commit's acknowledgement.
    async fn send_batch(&self, b: &Opened, messages: &[BatchMessage]) -> Result<(), KvError> {
        let client = self.buckets.client();
        // A NUID, as the other NATS clients use for batch ids: the inbox
        // name's last token is a fresh one.
        let inbox = client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or(inbox.as_str()).to_string();
        let count = messages.len();
        let refused = |err_code: u64, reason: String| KvError::BatchRefused { bucket: b.name.clone(), err_code, reason };
        for (i, message) in messages.iter().enumerate() {
            let seq = i + 1;
            let headers = header_map(message.headers(&id, seq, count));
            if seq < count && seq != 1 && seq % BATCH_ACK_EVERY != 0 {
                client
                    .publish_with_headers(message.subject.clone(), headers, message.payload())
                    .await
                    .map_err(|e| refused(0, format!("sending the write of {:?}: {e}", message.key)))?;
                continue;
            }
            let request = async_nats::Request::new().headers(headers).payload(message.payload()).timeout(Some(BATCH_ACK_TIMEOUT));
            let answer = client.send_request(message.subject.clone(), request).await;
            let reply = match answer {
                Ok(reply) => reply,
                // Before the commit, or when no server took the commit,
                // nothing is stored.
                Err(e) if seq < count || e.kind() == RequestErrorKind::NoResponders => {
                    return Err(refused(0, format!("message {seq} of {count} ({:?}): {e}", message.key)));
                }
                Err(e) => return Err(KvError::BatchUnconfirmed { bucket: b.name.clone(), reason: e.to_string() }),
            };
            if reply.payload.is_empty() && seq < count {
                continue;
            }
            let parsed: BatchReply = match serde_json::from_slice(&reply.payload) {
                Ok(parsed) => parsed,
                Err(e) if seq < count => return Err(refused(0, format!("unreadable answer to message {seq}: {e}"))),
                Err(e) => return Err(KvError::BatchUnconfirmed { bucket: b.name.clone(), reason: format!("unreadable commit answer: {e}") }),
            };
            if let Some(error) = parsed.error {
                return Err(refused(error.err_code, error.description));
            }
            if seq == count && (parsed.stream.is_empty() || parsed.batch != id || parsed.count != count) {
                // Not an ack of this batch: a server that ignored the batch
                // headers would have stored each message on its own.
                return Err(KvError::BatchUnconfirmed {
                    bucket: b.name.clone(),
                    reason: format!("the commit's ack names batch {:?} of {} messages, not {id:?} of {count}", parsed.batch, parsed.count),
                });
            }
        }
        Ok(())
    }
}
