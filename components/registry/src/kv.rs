//! The component's view of `wasi:keyvalue`: one bucket per instance, opened
//! once, and errors mapped to the registry's `storage` error.

use crate::bindings::twinlattice::registry::types::Error;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use std::cell::OnceCell;

thread_local! {
    static BUCKET: OnceCell<store::Bucket> = const { OnceCell::new() };
}

/// The bucket named by the `registry-bucket` config key (default
/// `aas-registry`), opened on first use and kept for the instance's life.
fn with_bucket<R>(f: impl FnOnce(&store::Bucket) -> Result<R, store::Error>) -> Result<R, Error> {
    BUCKET.with(|cell| {
        if cell.get().is_none() {
            let name = config::get("registry-bucket").ok().flatten().unwrap_or_else(|| "aas-registry".into());
            let bucket = store::open(&name).map_err(storage)?;
            let _ = cell.set(bucket);
        }
        let bucket = cell.get().ok_or_else(|| Error::Storage("bucket not open".into()))?;
        f(bucket).map_err(storage)
    })
}

fn storage(e: store::Error) -> Error {
    Error::Storage(match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(s) => s,
    })
}

pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    with_bucket(|b| b.get(key))
}

pub fn exists(key: &str) -> Result<bool, Error> {
    with_bucket(|b| b.exists(key))
}

/// Values of `keys`, in order; `None` where a key is absent.
pub fn get_many(keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let found = with_bucket(|b| batch::get_many(b, &keys))?;
    Ok(found.into_iter().map(|kv| kv.map(|(_, v)| v)).collect())
}

/// Write all pairs at once. The embedded host commits them in one durable
/// transaction, so a crash leaves all or none of them.
pub fn set_many(pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
    with_bucket(|b| batch::set_many(b, &pairs))
}

pub fn delete_many(keys: Vec<String>) -> Result<(), Error> {
    with_bucket(|b| batch::delete_many(b, &keys))
}

pub fn increment(key: &str) -> Result<u64, Error> {
    with_bucket(|b| atomics::increment(b, key, 1))
}
