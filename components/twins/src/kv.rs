//! The component's view of `wasi:keyvalue`: one bucket, typed JSON records,
//! and writes gathered into one `set-many` (one durable transaction in the
//! embedded host).

use crate::bindings::wasi::config::store as config;
use crate::bindings::twinlattice::coordination::locks;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::error::{ApiError, ApiResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::OnceCell;
use std::time::{Duration, Instant};

thread_local! {
    static BUCKET: OnceCell<store::Bucket> = const { OnceCell::new() };
}

fn with_bucket<R>(f: impl FnOnce(&store::Bucket) -> Result<R, store::Error>) -> ApiResult<R> {
    BUCKET.with(|cell| {
        if cell.get().is_none() {
            let name = config::get("twins-bucket").ok().flatten().unwrap_or_else(|| "twins".into());
            let bucket = store::open(&name).map_err(storage)?;
            let _ = cell.set(bucket);
        }
        let bucket = cell.get().ok_or_else(|| ApiError::storage("bucket not open"))?;
        f(bucket).map_err(storage)
    })
}

fn storage(e: store::Error) -> ApiError {
    ApiError::storage(match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(s) => s,
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::storage(format!("record {key:?} is corrupt: {e}")))
}

/// A record read elsewhere (e.g. prefetched), decoded.
pub fn decode_opt<T: DeserializeOwned>(key: &str, bytes: Option<Vec<u8>>) -> ApiResult<Option<T>> {
    bytes.map(|b| decode(key, &b)).transpose()
}

/// The value of a revoked record (see `Writes::revoke`) until its delete
/// lands: empty, which no JSON record is. Read as absent.
const TOMBSTONE: &[u8] = b"";

/// A stored value, with a tombstone read as absent.
fn live(bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
    bytes.filter(|b| b.as_slice() != TOMBSTONE)
}

/// The record at `key`, if any.
pub fn get<T: DeserializeOwned>(key: &str) -> ApiResult<Option<T>> {
    match live(with_bucket(|b| b.get(key))?) {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Raw values of `keys`, in order, in one call.
pub fn get_many_raw(keys: &[String]) -> ApiResult<Vec<Option<Vec<u8>>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let found = with_bucket(|b| batch::get_many(b, keys))?;
    Ok(found.into_iter().map(|kv| live(kv.map(|(_, v)| v))).collect())
}

/// The records at `keys` that exist, in order, in one call.
pub fn get_all<T: DeserializeOwned>(keys: Vec<String>) -> ApiResult<Vec<T>> {
    let found = get_many_raw(&keys)?;
    keys.iter().zip(found).filter_map(|(k, raw)| raw.map(|b| decode(k, &b))).collect()
}

/// Two records in one call.
pub fn get2<A: DeserializeOwned, B: DeserializeOwned>(a: &str, b: &str) -> ApiResult<(Option<A>, Option<B>)> {
    let mut found = get_many_raw(&[a.to_string(), b.to_string()])?.into_iter();
    let first = match found.next().flatten() {
        Some(bytes) => Some(decode(a, &bytes)?),
        None => None,
    };
    let second = match found.next().flatten() {
        Some(bytes) => Some(decode(b, &bytes)?),
        None => None,
    };
    Ok((first, second))
}

pub fn increment(key: &str) -> ApiResult<u64> {
    increment_by(key, 1)
}

pub fn increment_by(key: &str, delta: u64) -> ApiResult<u64> {
    with_bucket(|b| atomics::increment(b, key, delta))
}

/// How long a lock may be held before its holder is presumed dead (a
/// trapped instance) and the lock passes on. Far above any live holder's
/// read-modify-write (milliseconds; seconds only on a disk whose fsync
/// stalls), like the registry's descriptor locks: a lease that runs out
/// under a live holder is what lets two writers overlap (review M1).
const LOCK_LEASE_MS: u32 = 10_000;

/// A holder commits only while this much of its lease is left, so that the
/// commit itself (one `set-many`, an fsync) lands before the lock can pass
/// on. A holder past it gives up instead: nothing is written and the caller
/// gets a storage error (the client's retry then starts over, under the
/// lock). This is fencing by the holder's own clock; a commit that stalls
/// longer than the margin can still overlap the next holder, which only a
/// store that checks the token with the write could rule out
/// (`wasi:keyvalue@0.2.0-draft` has no conditional write).
const COMMIT_MARGIN_MS: u32 = 4_000;

/// Whether a lock held for `held` still has a lease covering a commit.
fn lease_covers_commit(held: Duration, lease_ms: u32, margin_ms: u32) -> bool {
    held + Duration::from_millis(u64::from(margin_ms)) <= Duration::from_millis(u64::from(lease_ms))
}

/// A short exclusive lock on one read-modify-write (a ledger, an index),
/// from `twinlattice:coordination/locks` (`wasi:keyvalue@0.2.0-draft` has no
/// compare-and-swap). Waiters are served in arrival order. It is released
/// right after the commit of the writes it guards, or when dropped.
pub struct Lock {
    name: String,
    token: u64,
    /// When `acquire` returned: the lease began at most a hand-over
    /// earlier (the host starts it when it grants the lock).
    taken: Instant,
}

impl Lock {
    pub fn acquire(name: &str) -> ApiResult<Lock> {
        match locks::acquire(name, LOCK_LEASE_MS) {
            Ok(token) => Ok(Lock { name: name.to_string(), token, taken: Instant::now() }),
            Err(locks::LockError::Unavailable(why)) => Err(ApiError::storage(format!("lock service: {why}"))),
        }
    }

    /// `Ok` while this holder may still commit (see `COMMIT_MARGIN_MS`).
    fn check_lease(&self) -> ApiResult<()> {
        if lease_covers_commit(self.taken.elapsed(), LOCK_LEASE_MS, COMMIT_MARGIN_MS) {
            Ok(())
        } else {
            Err(ApiError::storage(format!(
                "lock {:?} held for {} ms, too close to its {LOCK_LEASE_MS} ms lease to commit; nothing written",
                self.name,
                self.taken.elapsed().as_millis()
            )))
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        locks::release(&self.name, self.token);
    }
}

/// Writes gathered for one commit, with the locks it releases.
#[derive(Default)]
pub struct Writes {
    sets: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
    locks: Vec<Lock>,
}

impl Writes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put<T: Serialize + ?Sized>(&mut self, key: impl Into<String>, value: &T) -> ApiResult<()> {
        let bytes = serde_json::to_vec(value).map_err(ApiError::storage)?;
        self.put_raw(key, bytes);
        Ok(())
    }

    /// The last write of a key wins: a put after a delete or revoke of the
    /// same key keeps the key (its delete is dropped).
    pub fn put_raw(&mut self, key: impl Into<String>, bytes: Vec<u8>) {
        let key = key.into();
        if !self.deletes.is_empty() {
            self.deletes.retain(|k| k != &key);
        }
        self.sets.push((key, bytes));
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.deletes.push(key.into());
    }

    /// Delete `key` in the same transaction as the sets: it is overwritten
    /// with a tombstone (read as absent) among the sets, then deleted. For
    /// what must stop working together with the sets (a spent PIN, a
    /// replaced or revoked secret): `wasi:keyvalue` has no call that sets
    /// and deletes at once, and a crash between two calls must not leave a
    /// PIN or a secret usable.
    pub fn revoke(&mut self, key: impl Into<String>) {
        let key = key.into();
        self.sets.push((key.clone(), TOMBSTONE.to_vec()));
        self.deletes.push(key);
    }

    /// Release `lock` with this commit (or when the commit fails).
    pub fn release(&mut self, lock: Lock) {
        self.locks.push(lock);
    }

    pub fn release_all(&mut self, locks: impl IntoIterator<Item = Lock>) {
        self.locks.extend(locks);
    }

    /// Commit: all sets (revocations' tombstones included) in one
    /// transaction, then the deletes. Deletes only drop records nothing
    /// points to any more or already revoked, so a crash between the two
    /// leaves garbage, never a dangling reference or a live secret.
    ///
    /// A lock whose lease is nearly spent fails the commit before anything
    /// is written (M1: its successor may already be reading).
    pub fn commit(mut self) -> ApiResult<()> {
        for lock in &self.locks {
            lock.check_lease()?;
        }
        if !self.sets.is_empty() {
            with_bucket(|b| batch::set_many(b, &self.sets))?;
        }
        // The guarded writes are committed: let the next writer in.
        self.locks.clear();
        if !self.deletes.is_empty() {
            with_bucket(|b| batch::delete_many(b, &self.deletes))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_needs_the_margin_left_on_the_lease() {
        let ms = Duration::from_millis;
        assert!(lease_covers_commit(ms(0), 10_000, 4_000));
        assert!(lease_covers_commit(ms(6_000), 10_000, 4_000));
        assert!(!lease_covers_commit(ms(6_001), 10_000, 4_000));
        assert!(!lease_covers_commit(ms(60_000), 10_000, 4_000));
        // the configured margin leaves a holder most of its lease
        assert!(COMMIT_MARGIN_MS < LOCK_LEASE_MS / 2);
    }
}

/// The store's keys, in one place.
pub mod key {
    pub fn account(a: &str) -> String {
        format!("a:{a}")
    }
    pub fn account_users(a: &str) -> String {
        format!("au:{a}")
    }
    pub fn account_roles(a: &str) -> String {
        format!("ar:{a}")
    }
    pub fn secret(hash: &str) -> String {
        format!("s:{hash}")
    }
    pub fn user_secret(u: &str) -> String {
        format!("us:{u}")
    }
    /// A PIN's record, named by the PIN's hash: the store (and any error
    /// or log naming a key) never holds a live PIN.
    pub fn pin(a: &str, pin: &str) -> String {
        format!("p:{a}:{}", crate::ids::secret_hash(pin))
    }
    /// The live PINs of a user (their keys).
    pub fn user_pins(u: &str) -> String {
        format!("up:{u}")
    }
    pub fn user(u: &str) -> String {
        format!("u:{u}")
    }
    pub fn role(r: &str) -> String {
        format!("r:{r}")
    }
    pub fn twin(t: &str) -> String {
        format!("t:{t}")
    }
    pub fn twin_count(a: &str) -> String {
        format!("tc:{a}")
    }
    pub fn twin_index(a: &str, seq: u64) -> String {
        format!("ti:{a}:{seq:012}")
    }
    pub fn ledger(t: &str, a: &str) -> String {
        format!("l:{t}:{a}")
    }
    pub fn history(t: &str, a: &str, entry: &str, seq: u64) -> String {
        format!("h:{t}:{a}:{entry}:{seq:012}")
    }
    pub fn identity(t: &str, a: &str, name: &str) -> String {
        format!("i:{t}:{a}:{name}")
    }
    pub fn twin_identities(t: &str) -> String {
        format!("il:{t}")
    }
    pub fn resolve(name: &str) -> String {
        format!("rs:{name}")
    }
    pub fn demo() -> String {
        "demo".into()
    }
}
