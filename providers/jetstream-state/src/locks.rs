//! `twinlattice:coordination/locks` on a JetStream KV bucket.
//!
//! A lock is the key of its name in the locks bucket; its value is a
//! [`LockRecord`] (when the lease ends). Every write is revision-checked:
//!
//! - acquire: write the record expecting the key absent (revision 0, or the
//!   revision of the delete marker a release left) — JetStream's `create` —
//!   or, when the holder's lease has run out, expecting the holder's
//!   revision (takeover). Of racing writers exactly one succeeds. The
//!   revision the write got is the holder's token.
//! - release: delete expecting the token as the key's last revision, so
//!   only the current holder's token releases; any other is ignored.
//! - waiting: a watch on the key (created before the key is re-read, so no
//!   release is missed) wakes the waiter on any change; the holder's lease
//!   end wakes it too. Waiters then race: the order is not FIFO (see the
//!   README).
//!
//! Lease ends are wall-clock times written by the acquirer, so providers
//! on several hosts need clocks that agree to well under a lease.

use crate::backoff;
use crate::buckets::{BucketSpec, Buckets};
use crate::error::LockError;
use crate::keys;
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Longest lease a caller may ask for (as on the embedded host).
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// How long `acquire` waits by default before answering `unavailable`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// What the locks bucket keeps for a held lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRecord {
    /// When the lease ends, in milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    /// The lease the holder asked for (for operators reading the bucket).
    pub lease_ms: u64,
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What `acquire` found at the key.
enum Observed {
    /// Free (absent, deleted, or its lease ran out): write expecting this
    /// revision.
    Free { revision: u64 },
    /// Held for this much longer.
    Held { remaining: Duration },
}

fn observe(entry: Option<kv::Entry>, now_ms: u64) -> Observed {
    match entry {
        None => Observed::Free { revision: 0 },
        Some(e) if e.operation != Operation::Put => Observed::Free { revision: e.revision },
        Some(e) => match serde_json::from_slice::<LockRecord>(&e.value) {
            Ok(r) if r.expires_unix_ms > now_ms => {
                Observed::Held { remaining: Duration::from_millis(r.expires_unix_ms - now_ms) }
            }
            // Expired, or not a record this provider wrote: take it over.
            _ => Observed::Free { revision: e.revision },
        },
    }
}

/// Named locks in one JetStream KV bucket.
#[derive(Clone)]
pub struct Locks {
    buckets: Arc<Buckets>,
    bucket: String,
    max_wait: Duration,
}

/// Entries older than the longest lease are dead; a day's age limit
/// clears markers of locks no longer used without touching live ones.
const LOCKS_BUCKET: BucketSpec = BucketSpec { max_age: Duration::from_secs(24 * 3600) };

impl Locks {
    pub fn new(buckets: Arc<Buckets>, bucket: &str, max_wait: Duration) -> Locks {
        Locks { buckets, bucket: bucket.to_string(), max_wait }
    }

    async fn store(&self) -> Result<kv::Store, LockError> {
        Ok(self.buckets.open(&self.bucket, LOCKS_BUCKET).await?)
    }

    /// Wait until `name` is free and take it for `lease` (clamped to
    /// 1 ms..=[`MAX_LEASE`]). Returns the holder's token.
    pub async fn acquire(&self, name: &str, lease: Duration) -> Result<u64, LockError> {
        let lease = lease.clamp(Duration::from_millis(1), MAX_LEASE);
        let store = self.store().await?;
        let key = keys::encode(name);
        let js_err = |op: &'static str, e: &dyn std::fmt::Display| LockError::JetStream {
            op,
            name: name.to_string(),
            reason: e.to_string(),
        };
        let started = Instant::now();
        let deadline = started + self.max_wait;
        let mut watch: Option<kv::Watch> = None;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let entry = store.entry(key.clone()).await.map_err(|e| js_err("get", &e))?;
            let now_ms = now_unix_ms();
            match observe(entry, now_ms) {
                Observed::Free { revision } => {
                    let lease_ms = lease.as_millis() as u64;
                    let record = LockRecord { expires_unix_ms: now_ms.saturating_add(lease_ms), lease_ms };
                    let value = serde_json::to_vec(&record).map_err(|e| js_err("encode", &e))?;
                    match store.update(key.clone(), Bytes::from(value), revision).await {
                        Ok(token) => {
                            tracing::debug!(lock = name, token, attempt, "lock acquired");
                            return Ok(token);
                        }
                        // Another contender wrote first: look again.
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {}
                        Err(e) => return Err(js_err("update", &e)),
                    }
                }
                Observed::Held { remaining } => {
                    if Instant::now() >= deadline {
                        return Err(LockError::Timeout { name: name.to_string(), waited: started.elapsed() });
                    }
                    let wake = (Instant::now() + remaining + Duration::from_millis(1)).min(deadline);
                    match watch.as_mut() {
                        None => match store.watch(key.clone()).await {
                            // Read the key again now that changes are seen.
                            Ok(w) => watch = Some(w),
                            Err(e) => {
                                tracing::warn!(lock = name, error = %e, "cannot watch the lock, polling");
                                let pause = backoff::jitter(attempt.min(8)).max(Duration::from_millis(5));
                                tokio::time::sleep_until((Instant::now() + pause).min(wake)).await;
                            }
                        },
                        Some(w) => match tokio::time::timeout_at(wake, w.next()).await {
                            Ok(Some(Ok(_))) | Err(_) => {}
                            Ok(Some(Err(e))) => {
                                tracing::debug!(lock = name, error = %e, "lock watch failed, renewing it");
                                watch = None;
                            }
                            Ok(None) => watch = None,
                        },
                    }
                }
            }
        }
    }

    /// Release `name` if `token` still holds it. Returns whether it did; a
    /// token that no longer holds the lock is ignored.
    pub async fn release(&self, name: &str, token: u64) -> Result<bool, LockError> {
        if token == 0 {
            // Revision 0 would mean "expect the key absent": not a token.
            return Ok(false);
        }
        let store = self.store().await?;
        match store.delete_expect_revision(keys::encode(name), Some(token)).await {
            Ok(()) => {
                tracing::debug!(lock = name, token, "lock released");
                Ok(true)
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::debug!(lock = name, token, "release by a token that does not hold the lock, ignored");
                Ok(false)
            }
            Err(e) => Err(LockError::JetStream { op: "delete", name: name.to_string(), reason: e.to_string() }),
        }
    }
}
