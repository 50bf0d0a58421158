//! Errors of the library core. The provider binary maps them to the WIT
//! error variants (`no-such-store`, `access-denied`, `other`; locks'
//! `unavailable`) in one place.

use std::time::Duration;

/// Why a keyvalue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The identifier leaves nothing usable after sanitising (it is empty).
    #[error("bucket identifier {identifier:?} names no bucket")]
    InvalidBucket { identifier: String },
    /// The identifier maps onto a bucket the provider keeps for itself.
    #[error("bucket identifier {identifier:?} maps to {bucket}, which is reserved for the provider's locks")]
    ReservedBucket { identifier: String, bucket: String },
    /// JetStream would neither open nor create the bucket.
    #[error("cannot open or create JetStream KV bucket {bucket}: {reason}")]
    NoSuchStore { bucket: String, reason: String },
    /// `increment` found a value that is not a decimal counter.
    #[error("value of {key:?} is not a counter")]
    NotACounter { key: String },
    /// `increment` lost the compare-and-swap race too many times in a row.
    #[error("increment of {key:?} gave up after {attempts} conflicting writes")]
    Contention { key: String, attempts: u32 },
    /// A JetStream request failed (connection, timeout, refused key, ...).
    #[error("JetStream {op} of {key:?} in bucket {bucket} failed: {reason}")]
    JetStream { op: &'static str, bucket: String, key: String, reason: String },
    /// A batch has more distinct keys than JetStream takes in one atomic
    /// batch; nothing was written.
    #[error("batch of {count} keys for bucket {bucket} is over the limit of {max} per atomic batch; nothing was written")]
    BatchTooLarge { bucket: String, count: usize, max: usize },
    /// One write of a batch would be over the server's `max_payload`;
    /// nothing was written.
    #[error("value of {key:?} in a batch for bucket {bucket} is {size} bytes with its headers, over the server's max_payload of {max}; nothing was written")]
    ValueTooLarge { bucket: String, key: String, size: usize, max: usize },
    /// The bucket's stream does not take atomic batches (server older than
    /// 2.12, a mirror, or the update was refused); nothing was written.
    #[error("bucket {bucket} cannot take atomic batches ({reason}); nothing was written")]
    AtomicUnsupported { bucket: String, reason: String },
    /// JetStream refused the batch, or it could not be sent whole; nothing
    /// was written. `err_code` is JetStream's (0 when the refusal did not
    /// come from the server).
    #[error("batch for bucket {bucket} refused: {reason} (JetStream error {err_code}); nothing was written")]
    BatchRefused { bucket: String, err_code: u64, reason: String },
    /// The commit was sent but its acknowledgement did not come (timeout,
    /// lost connection): the batch was applied whole or not at all, but
    /// which is unknown.
    #[error("batch for bucket {bucket} was committed but not acknowledged ({reason}): it is applied whole or not at all, read to find out")]
    BatchUnconfirmed { bucket: String, reason: String },
    /// Reading the bucket's keys failed.
    #[error("listing the keys of bucket {bucket} failed: {reason}")]
    List { bucket: String, reason: String },
}

/// Why a lock could not be taken (release never fails to the caller; its
/// failures are logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The locks bucket could not be opened or created.
    #[error(transparent)]
    Bucket(#[from] KvError),
    /// The lock stayed held past the provider's wait limit.
    #[error("lock {name:?} still held after waiting {waited:?}")]
    Timeout { name: String, waited: Duration },
    /// A JetStream request failed.
    #[error("JetStream {op} of lock {name:?} failed: {reason}")]
    JetStream { op: &'static str, name: String, reason: String },
}
