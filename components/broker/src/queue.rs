//! Durable per-receiver queues for offline receivers, in the `broker`
//! bucket. A message for a receiver whose lease has run out and that cannot
//! be reached (or that already has messages waiting, to keep their order)
//! is appended to its queue; the receiver's next heartbeat or registration
//! delivers the queue in order. Bounded (`queue-max`, default 1,000 per
//! receiver) and with expiry (`queue-ttl-secs`, default a day): an expired
//! message is dropped with an error message to its sender — at the next
//! drain, or by the liveness sweep (`expire`) for a receiver that never comes
//! back. A receiver whose descriptor is gone loses its queue (`clear`).
//! Delivery is at least once: a crash between a delivery and the head's
//! advance delivers that message again.
//!
//! Keys, with the receiver id base64url-encoded:
//! `queue/{id}/next` — the last sequence number handed out (atomics);
//! `queue/{id}/head` — the first sequence number not yet delivered;
//! `queue/{id}/msg/{seq:020}` — `{"message": text, "expires": ms}`;
//! `queue/{id}/drain` — held while a drain runs, so two heartbeats arriving
//! together cannot deliver a message twice; `queue/{id}/drain-at` — when it
//! was taken, so a drain that died with the process (or trapped) does not
//! hold the queue for ever: a lock older than `STALE_LOCK_MS` is taken over.

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::clock;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::cell::OnceCell;

/// Messages delivered per drain; the rest wait for the next heartbeat, so a
/// long queue does not hold the heartbeat's ack back for long.
const DRAIN_BATCH: u64 = 100;
/// A drain lock older than this belongs to a drain that is gone. A live
/// drain of `DRAIN_BATCH` messages with retries ends well within it.
const STALE_LOCK_MS: u64 = 120_000;

thread_local! {
    static BUCKET: OnceCell<Option<store::Bucket>> = const { OnceCell::new() };
}

fn with_bucket<R>(f: impl FnOnce(&store::Bucket) -> Option<R>) -> Option<R> {
    BUCKET.with(|cell| cell.get_or_init(|| store::open("broker").ok()).as_ref().and_then(f))
}

fn config_u64(key: &str, default: u64) -> u64 {
    config::get(key).ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn key(id: &str, part: &str) -> String {
    format!("queue/{}/{part}", B64.encode(id))
}

fn read_u64(k: &str) -> u64 {
    with_bucket(|b| b.get(k).ok().flatten())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Messages waiting for `id`.
pub fn len(id: &str) -> u64 {
    let next = read_u64(&key(id, "next"));
    let head = read_u64(&key(id, "head")).max(1);
    (next + 1).saturating_sub(head)
}

/// Why a message could not be queued.
pub enum QueueError {
    Full(u64),
    Storage,
}

/// Append `message` to `id`'s queue.
pub fn push(id: &str, message: &str) -> Result<(), QueueError> {
    let max = config_u64("queue-max", 1_000);
    if len(id) >= max {
        return Err(QueueError::Full(max));
    }
    let expires = clock::now_ms() + config_u64("queue-ttl-secs", 86_400) * 1000;
    let entry = json!({ "message": message, "expires": expires }).to_string();
    let seq = with_bucket(|b| atomics::increment(b, &key(id, "next"), 1).ok()).ok_or(QueueError::Storage)?;
    // Concurrent pushes all passed the check above: the sequence number,
    // handed out atomically, decides. One past the bound leaves a hole that
    // a drain skips.
    if seq.saturating_sub(read_u64(&key(id, "head")).max(1)) >= max {
        return Err(QueueError::Full(max));
    }
    with_bucket(|b| b.set(&key(id, &format!("msg/{seq:020}")), entry.as_bytes()).ok()).ok_or(QueueError::Storage)
}

/// A queued message, as `drain` hands it to its caller.
pub enum Queued {
    /// Deliver it; return true when it was delivered (it is then removed;
    /// otherwise the drain stops and it stays first in line).
    Deliver(String),
    /// It expired; the caller tells its sender. It is removed.
    Expired(String),
}

/// Deliver `id`'s queue in order through `handle`, at most `DRAIN_BATCH`
/// messages. Returns how many left the queue.
pub fn drain(id: &str, mut handle: impl FnMut(Queued) -> bool) -> u64 {
    if len(id) == 0 {
        return 0;
    }
    let Some(_lock) = QueueLock::take(id) else { return 0 };
    let head_key = key(id, "head");
    let mut head = read_u64(&head_key).max(1);
    let next = read_u64(&key(id, "next"));
    let mut done = 0;
    while head <= next && done < DRAIN_BATCH {
        if let Some(entry) = entry_at(id, head) {
            let message = entry.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
            let expired = entry.get("expires").and_then(Value::as_u64).is_some_and(|e| e <= clock::now_ms());
            let gone = if expired {
                handle(Queued::Expired(message));
                true
            } else {
                handle(Queued::Deliver(message))
            };
            if !gone {
                break;
            }
            with_bucket(|b| b.delete(&key(id, &format!("msg/{head:020}"))).ok());
        }
        head += 1;
        done += 1;
        with_bucket(|b| b.set(&head_key, head.to_string().as_bytes()).ok());
    }
    done
}

/// One message's stored entry.
fn entry_at(id: &str, seq: u64) -> Option<Value> {
    with_bucket(|b| b.get(&key(id, &format!("msg/{seq:020}"))).ok().flatten()).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Drop the expired messages at the head of `id`'s queue (at most
/// `DRAIN_BATCH`), handing each to `expired` (to tell its sender), without
/// a heartbeat of the receiver: the sweep calls it for receivers that are
/// offline. Messages expire in queue order (one TTL for all), so it stops at
/// the first live one. Returns how many left the queue.
pub fn expire(id: &str, mut expired: impl FnMut(String)) -> u64 {
    if len(id) == 0 {
        return 0;
    }
    let Some(_lock) = QueueLock::take(id) else { return 0 };
    let head_key = key(id, "head");
    let mut head = read_u64(&head_key).max(1);
    let next = read_u64(&key(id, "next"));
    let now = clock::now_ms();
    let mut done = 0;
    while head <= next && done < DRAIN_BATCH {
        if let Some(entry) = entry_at(id, head) {
            if entry.get("expires").and_then(Value::as_u64).is_some_and(|e| e > now) {
                break;
            }
            expired(entry.get("message").and_then(Value::as_str).unwrap_or_default().to_string());
            with_bucket(|b| b.delete(&key(id, &format!("msg/{head:020}"))).ok());
        }
        head += 1;
        done += 1;
        with_bucket(|b| b.set(&head_key, head.to_string().as_bytes()).ok());
    }
    done
}

/// Remove `id`'s whole queue (its AAS is gone). Returns how many messages
/// were dropped.
pub fn clear(id: &str) -> u64 {
    let Some(_lock) = QueueLock::take(id) else { return 0 };
    let head = read_u64(&key(id, "head")).max(1);
    let next = read_u64(&key(id, "next"));
    let mut keys: Vec<String> = (head..=next).map(|seq| key(id, &format!("msg/{seq:020}"))).collect();
    let dropped = keys.len() as u64;
    keys.push(key(id, "head"));
    keys.push(key(id, "next"));
    for chunk in keys.chunks(256) {
        with_bucket(|b| batch::delete_many(b, chunk).ok());
    }
    dropped
}

/// The queue's drain lock (`queue/{id}/drain`), released on drop: one drain
/// or expiry at a time per queue.
struct QueueLock {
    lock: String,
    taken_at: String,
}

impl QueueLock {
    fn take(id: &str) -> Option<QueueLock> {
        let lock = key(id, "drain");
        let taken_at = key(id, "drain-at");
        let mut mine = with_bucket(|b| atomics::increment(b, &lock, 1).ok()) == Some(1);
        if !mine {
            let since = read_u64(&taken_at);
            if since == 0 {
                // The holder may not have stamped it yet; stamp it for it, so
                // a holder that died before stamping is found stale later.
                with_bucket(|b| b.set(&taken_at, clock::now_ms().to_string().as_bytes()).ok());
                return None;
            }
            if clock::now_ms().saturating_sub(since) <= STALE_LOCK_MS {
                return None;
            }
            // Take over a stale lock. (Two takers of the same stale lock at
            // the same instant could both run; that needs a dead holder and
            // two simultaneous heartbeats of one AAS.)
            with_bucket(|b| b.delete(&lock).ok());
            mine = with_bucket(|b| atomics::increment(b, &lock, 1).ok()) == Some(1);
            if !mine {
                return None;
            }
        }
        with_bucket(|b| b.set(&taken_at, clock::now_ms().to_string().as_bytes()).ok());
        Some(QueueLock { lock, taken_at })
    }
}

impl Drop for QueueLock {
    fn drop(&mut self) {
        with_bucket(|b| b.delete(&self.taken_at).ok());
        with_bucket(|b| b.delete(&self.lock).ok());
    }
}
