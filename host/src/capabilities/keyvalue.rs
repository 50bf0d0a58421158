//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) on the redb store.
//!
//! This is the interface version wasmCloud v1 forwards to keyvalue
//! providers, so a component that runs here runs on a lattice unchanged.

use super::kv_store::{KvStore, StoreError};
use crate::bindings::keyvalue::{atomics, batch, store};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

/// Keys returned per `list-keys` call; the cursor is the number of keys
/// already returned.
const LIST_KEYS_PAGE: usize = 1_000;

/// An open bucket, as a guest resource.
pub struct BucketHandle {
    name: String,
}

/// Guest-visible keyvalue errors (mapped to `wasi:keyvalue/store.error`).
pub enum KvError {
    NoSuchStore,
    Other(String),
}

impl From<ResourceTableError> for KvError {
    fn from(e: ResourceTableError) -> Self {
        KvError::Other(e.to_string())
    }
}

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "keyvalue operation failed");
        KvError::Other(e.to_string())
    }
}

/// What a store's data carries for keyvalue: the shared database.
pub struct KeyValueCtx {
    pub store: Arc<KvStore>,
}

/// The borrowed view host functions work on.
pub struct KeyValueView<'a> {
    ctx: &'a KeyValueCtx,
    table: &'a mut ResourceTable,
}

impl<'a> KeyValueView<'a> {
    pub fn new(ctx: &'a KeyValueCtx, table: &'a mut ResourceTable) -> Self {
        KeyValueView { ctx, table }
    }

    fn bucket(&self, b: &Resource<BucketHandle>) -> Result<&str, KvError> {
        Ok(&self.table.get(b)?.name)
    }
}

/// Bucket names: what NATS KV accepts too, so names are portable.
fn valid_bucket_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl store::Host for KeyValueView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<BucketHandle>, KvError> {
        if !valid_bucket_name(&identifier) {
            return Err(KvError::NoSuchStore);
        }
        Ok(self.table.push(BucketHandle { name: identifier })?)
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        Ok(match err {
            KvError::NoSuchStore => store::Error::NoSuchStore,
            KvError::Other(s) => store::Error::Other(s),
        })
    }
}

impl store::HostBucket for KeyValueView<'_> {
    fn get(&mut self, b: Resource<BucketHandle>, key: String) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.ctx.store.get(self.bucket(&b)?, &key)?)
    }

    fn set(&mut self, b: Resource<BucketHandle>, key: String, value: Vec<u8>) -> Result<(), KvError> {
        Ok(self.ctx.store.write(self.bucket(&b)?, &[(key, value)], &[])?)
    }

    fn delete(&mut self, b: Resource<BucketHandle>, key: String) -> Result<(), KvError> {
        Ok(self.ctx.store.write(self.bucket(&b)?, &[], &[key])?)
    }

    fn exists(&mut self, b: Resource<BucketHandle>, key: String) -> Result<bool, KvError> {
        Ok(self.ctx.store.get(self.bucket(&b)?, &key)?.is_some())
    }

    fn list_keys(&mut self, b: Resource<BucketHandle>, cursor: Option<u64>) -> Result<store::KeyResponse, KvError> {
        let skip = cursor.unwrap_or(0);
        let (keys, more) = self.ctx.store.list_keys(self.bucket(&b)?, skip, LIST_KEYS_PAGE)?;
        let next = more.then(|| skip + keys.len() as u64);
        Ok(store::KeyResponse { keys, cursor: next })
    }

    fn drop(&mut self, b: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    fn increment(&mut self, b: Resource<BucketHandle>, key: String, delta: u64) -> Result<u64, KvError> {
        Ok(self.ctx.store.increment(self.bucket(&b)?, &key, delta)?)
    }
}

impl batch::Host for KeyValueView<'_> {
    fn get_many(&mut self, b: Resource<BucketHandle>, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let values = self.ctx.store.get_many(self.bucket(&b)?, &keys)?;
        Ok(keys.into_iter().zip(values).map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    fn set_many(&mut self, b: Resource<BucketHandle>, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        Ok(self.ctx.store.write(self.bucket(&b)?, &key_values, &[])?)
    }

    fn delete_many(&mut self, b: Resource<BucketHandle>, keys: Vec<String>) -> Result<(), KvError> {
        Ok(self.ctx.store.write(self.bucket(&b)?, &[], &keys)?)
    }
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Add `wasi:keyvalue/{store,atomics,batch}` to `linker`.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, f: fn(&mut T) -> KeyValueView<'_>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKeyValue>(linker, f)?;
    atomics::add_to_linker::<_, HasKeyValue>(linker, f)?;
    batch::add_to_linker::<_, HasKeyValue>(linker, f)?;
    Ok(())
}
