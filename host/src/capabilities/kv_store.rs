//! The durable store behind `wasi:keyvalue`: redb, an embedded, pure-Rust,
//! ACID key-value store. Every write is one transaction committed with
//! `Durability::Immediate` (fsync) before the guest sees `ok`, and redb's
//! copy-on-write B-trees with a double-buffered commit slot make a crash at
//! any point leave either the old or the new state, never a torn one.
//!
//! Buckets are redb tables named `bucket:<name>`; keys are strings, values
//! bytes. Counters (`wasi:keyvalue/atomics.increment`) are stored as decimal
//! text, as wasmCloud's keyvalue providers do, so values stay portable.

use redb::{Database, Durability, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why a store operation failed. Guests see these as `wasi:keyvalue` `other`
/// errors; none of them is a trap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the store at {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    /// A transaction could not start, read, write or commit.
    #[error("store transaction failed: {0}")]
    Transaction(String),
    /// The data directory's or the store file's permissions could not be
    /// read or made private.
    #[error("cannot make {path} private to this user: {source}")]
    Permissions { path: String, source: std::io::Error },
    /// `increment` found a value that is not a decimal counter.
    #[error("value of {key:?} is not a counter")]
    NotACounter { key: String },
}

fn tx_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Transaction(e.to_string())
}

/// A bucket name, validated and turned into its table name.
fn table_name(bucket: &str) -> String {
    format!("bucket:{bucket}")
}

/// The store: one redb database file in the data directory.
pub struct KvStore {
    db: Database,
    fsync: bool,
    /// Commits so far. A read snapshot taken before the latest commit is
    /// stale and is never reused.
    generation: AtomicU64,
    /// Read snapshots ready for reuse. Starting a redb read transaction and
    /// opening a table cost more than the lookup itself (a sixth of the
    /// host's CPU time per registry GET when measured), so reads reuse them
    /// until the next commit.
    snapshots: Mutex<Vec<Snapshot>>,
}

/// Idle read snapshots kept: about one per thread that reads at once.
const MAX_IDLE_SNAPSHOTS: usize = 16;

type Table = ReadOnlyTable<&'static str, &'static [u8]>;

/// A read transaction and the tables opened in it so far.
struct Snapshot {
    generation: u64,
    tx: ReadTransaction,
    tables: FxHashMap<String, Table>,
}

impl Snapshot {
    /// The bucket's table, `None` when it does not exist (yet).
    fn table(&mut self, bucket: &str) -> Result<Option<&Table>, StoreError> {
        if !self.tables.contains_key(bucket) {
            let name = table_name(bucket);
            let table_def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
            match self.tx.open_table(table_def) {
                Ok(table) => {
                    self.tables.insert(bucket.to_string(), table);
                }
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(tx_err(e)),
            }
        }
        Ok(self.tables.get(bucket))
    }
}

impl KvStore {
    /// Open (or create) the store file `path`. With `fsync` false, commits
    /// reach the OS but are not flushed to disk before `ok` (bulk loads and
    /// benchmarks; a power loss can lose the latest writes, never tear one).
    ///
    /// The file and its directory are made private to this user first
    /// (`private::make_private`).
    pub fn open(path: &Path, fsync: bool) -> Result<KvStore, StoreError> {
        private::make_private(path)?;
        let db = Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        Ok(KvStore { db, fsync, generation: AtomicU64::new(0), snapshots: Mutex::new(Vec::new()) })
    }

    fn idle_snapshots(&self) -> std::sync::MutexGuard<'_, Vec<Snapshot>> {
        // A panic while holding the lock leaves only a Vec of snapshots.
        self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `read` on the bucket's table (`None` when the bucket has never
    /// been written) in a snapshot that has every commit acknowledged so far.
    fn read<R>(&self, bucket: &str, read: impl FnOnce(Option<&Table>) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let current = self.generation.load(Ordering::Acquire);
        let reused = {
            let mut idle = self.idle_snapshots();
            // A reader that checked the generation just before a commit
            // can give its snapshot back just after the commit emptied the
            // pool; such a stale one is dropped here rather than reused.
            idle.retain(|s| s.generation == current);
            idle.pop()
        };
        // Labelled with the generation read before it began: a commit in
        // between only makes it newer than its label, never older.
        let mut snapshot = match reused {
            Some(snapshot) => snapshot,
            None => Snapshot { generation: current, tx: self.db.begin_read().map_err(tx_err)?, tables: FxHashMap::default() },
        };
        let result = read(snapshot.table(bucket)?);
        if snapshot.generation == self.generation.load(Ordering::Acquire) {
            let mut idle = self.idle_snapshots();
            if idle.len() < MAX_IDLE_SNAPSHOTS {
                idle.push(snapshot);
            }
        }
        result
    }

    /// Commit `tx`, then retire every read snapshot taken before it, so a
    /// read that starts after the writer saw `ok` sees the write (and old
    /// snapshots do not keep the pages it freed from reuse).
    fn commit(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        tx.commit().map_err(tx_err)?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        let stale = std::mem::take(&mut *self.idle_snapshots());
        drop(stale);
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(tx_err)?;
        if !self.fsync {
            tx.set_durability(Durability::Eventual);
        }
        Ok(tx)
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(bucket, |table| match table {
            Some(table) => Ok(table.get(key).map_err(tx_err)?.map(|v| v.value().to_vec())),
            None => Ok(None),
        })
    }

    pub fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(bucket, |table| match table {
            Some(table) => keys
                .iter()
                .map(|k| Ok(table.get(k.as_str()).map_err(tx_err)?.map(|v| v.value().to_vec())))
                .collect(),
            None => Ok(vec![None; keys.len()]),
        })
    }

    /// Write and delete in one durable transaction.
    pub fn write(&self, bucket: &str, set: &[(String, Vec<u8>)], delete: &[String]) -> Result<(), StoreError> {
        let name = table_name(bucket);
        let table_def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let tx = self.begin_write()?;
        {
            let mut table = tx.open_table(table_def).map_err(tx_err)?;
            for (k, v) in set {
                table.insert(k.as_str(), v.as_slice()).map_err(tx_err)?;
            }
            for k in delete {
                table.remove(k.as_str()).map_err(tx_err)?;
            }
        }
        self.commit(tx)
    }

    /// Add `delta` to the decimal counter at `key` (absent = 0), atomically.
    ///
    /// The commit is not flushed on its own (`Durability::None`): it becomes
    /// durable with the next durable write, which is where a counter's value
    /// matters — components take sequence numbers with it and then
    /// write what they guard. A crash can only forget increments that nothing
    /// durable depends on. This takes a sequence number at the cost
    /// of a page write instead of an fsync.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, StoreError> {
        let name = table_name(bucket);
        let table_def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let mut tx = self.db.begin_write().map_err(tx_err)?;
        tx.set_durability(Durability::None);
        let next = {
            let mut table = tx.open_table(table_def).map_err(tx_err)?;
            let current = match table.get(key).map_err(tx_err)? {
                None => 0,
                Some(v) => std::str::from_utf8(v.value())
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| StoreError::NotACounter { key: key.to_string() })?,
            };
            let next = current.saturating_add(delta);
            table.insert(key, next.to_string().as_bytes()).map_err(tx_err)?;
            next
        };
        self.commit(tx)?;
        Ok(next)
    }

    /// Keys in order, starting after the first `skip` keys, at most `max`.
    /// Returns the keys and whether more follow.
    pub fn list_keys(&self, bucket: &str, skip: u64, max: usize) -> Result<(Vec<String>, bool), StoreError> {
        self.read(bucket, |table| {
            let Some(table) = table else { return Ok((Vec::new(), false)) };
            let mut keys = Vec::new();
            let mut more = false;
            for entry in table.iter().map_err(tx_err)?.skip(skip as usize) {
                if keys.len() == max {
                    more = true;
                    break;
                }
                let (k, _) = entry.map_err(tx_err)?;
                keys.push(k.value().to_string());
            }
            Ok((keys, more))
        })
    }
}

/// The store holds every tenant's data and the hashes of live PINs and
/// secrets: only the user running the host may read it (review L3). redb
/// creates its file with the umask's bits (usually 0644) and the data
/// directory is made with them too, so both are set here.
mod private {
    use super::StoreError;
    use std::path::Path;

    /// The mode bits left of `current` when only `allowed` may be set,
    /// `None` when none beyond `allowed` are set.
    pub(super) fn tightened(current: u32, allowed: u32) -> Option<u32> {
        let current = current & 0o7777;
        (current & !allowed != 0).then_some(current & allowed)
    }

    /// Make the store file `path` 0600 (created so before redb opens it)
    /// and its directory 0700. Looser bits are taken away; where the store
    /// existed already (its data was exposed) that is logged at warn, for a
    /// new store (a directory just made with the umask's bits) at debug.
    #[cfg(unix)]
    pub(super) fn make_private(path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |p: &Path, source| StoreError::Permissions { path: p.display().to_string(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let existed = path.exists();
        tighten(dir, 0o700, existed).map_err(|e| err(dir, e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(path, e))?;
        tighten(path, 0o600, existed).map_err(|e| err(path, e))
    }

    #[cfg(not(unix))]
    pub(super) fn make_private(_path: &Path) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(unix)]
    fn tighten(path: &Path, allowed: u32, warn: bool) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)?.permissions().mode();
        let Some(mode) = tightened(current, allowed) else { return Ok(()) };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        let (was, now) = (format!("{:#o}", current & 0o7777), format!("{mode:#o}"));
        if warn {
            tracing::warn!(path = %path.display(), was, now, "the store was readable by other users: permissions tightened");
        } else {
            tracing::debug!(path = %path.display(), was, now, "permissions of the new store tightened");
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_bits_beyond_the_allowed_are_taken() {
            assert_eq!(tightened(0o755, 0o700), Some(0o700));
            assert_eq!(tightened(0o644, 0o600), Some(0o600));
            assert_eq!(tightened(0o40755, 0o700), Some(0o700));
            assert_eq!(tightened(0o700, 0o700), None);
            assert_eq!(tightened(0o600, 0o600), None);
            assert_eq!(tightened(0o400, 0o600), None);
            assert_eq!(tightened(0o1777, 0o700), Some(0o700));
        }

        #[cfg(unix)]
        #[test]
        fn a_loose_directory_and_store_are_made_private() -> Result<(), StoreError> {
            use std::os::unix::fs::PermissionsExt;
            let root = tempfile::tempdir().expect("tempdir");
            let dir = root.path().join("data");
            std::fs::create_dir(&dir).expect("mkdir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let file = dir.join("kv.redb");
            make_private(&file)?;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            make_private(&file)?;
            assert_eq!(mode(&file), 0o600);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_delete_and_count() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open(&dir.path().join("kv.redb"), true)?;
        assert_eq!(store.get("b", "k")?, None);
        store.write("b", &[("k".into(), b"v".to_vec()), ("j".into(), b"w".to_vec())], &[])?;
        assert_eq!(store.get("b", "k")?, Some(b"v".to_vec()));
        assert_eq!(store.get_many("b", &["j".into(), "x".into()])?, vec![Some(b"w".to_vec()), None]);
        store.write("b", &[], &["k".into()])?;
        assert_eq!(store.get("b", "k")?, None);
        assert_eq!(store.increment("b", "n", 1)?, 1);
        assert_eq!(store.increment("b", "n", 5)?, 6);
        assert!(matches!(store.increment("b", "j", 1), Err(StoreError::NotACounter { .. })));
        let (keys, more) = store.list_keys("b", 0, 1)?;
        assert_eq!((keys, more), (vec!["j".to_string()], true));
        Ok(())
    }

    #[test]
    fn reads_reuse_a_snapshot_until_the_next_commit() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open(&dir.path().join("kv.redb"), false)?;
        store.write("b", &[("k".into(), b"1".to_vec())], &[])?;
        assert_eq!(store.get("b", "k")?, Some(b"1".to_vec()));
        assert_eq!(store.idle_snapshots().len(), 1, "the read's snapshot is kept");
        assert_eq!(store.get("b", "k")?, Some(b"1".to_vec()));
        assert_eq!(store.idle_snapshots().len(), 1, "and reused, not joined by another");
        store.write("b", &[("k".into(), b"2".to_vec())], &[])?;
        assert_eq!(store.idle_snapshots().len(), 0, "a commit retires it");
        assert_eq!(store.get("b", "k")?, Some(b"2".to_vec()));
        assert_eq!(store.increment("b", "n", 1)?, 1);
        assert_eq!(store.get("b", "n")?, Some(b"1".to_vec()));
        // A snapshot held across a commit is not given back.
        let held = store.read("b", |_| {
            store.write("b", &[("k".into(), b"3".to_vec())], &[])?;
            Ok(())
        });
        assert!(held.is_ok());
        assert_eq!(store.idle_snapshots().len(), 0);
        assert_eq!(store.get("b", "k")?, Some(b"3".to_vec()));
        Ok(())
    }

    #[test]
    fn survives_reopen() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kv.redb");
        KvStore::open(&path, true)?.write("b", &[("k".into(), b"v".to_vec())], &[])?;
        assert_eq!(KvStore::open(&path, true)?.get("b", "k")?, Some(b"v".to_vec()));
        Ok(())
    }
}
