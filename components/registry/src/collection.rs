//! A collection of descriptors in the key-value store, kept in creation
//! order so that paging is stable and each page costs the same.
//!
//! Key layout (ids are base64url-encoded so keys stay within the character
//! set every wasi:keyvalue backend accepts, NATS KV included):
//!
//! | key                     | value                                   |
//! |-------------------------|-----------------------------------------|
//! | `{p}/d/{id}`            | the descriptor, canonical JSON          |
//! | `{p}/s/{id}`            | its sequence number, decimal            |
//! | `{p}/o/{seq:020}`       | the id at that place in the order       |
//! | `{p}/n`                 | the last sequence number handed out     |
//! | `{p}/a/short/{idShort}` | id of the latest descriptor with it     |
//! | `{p}/a/asset/{assetId}` | id of the latest shell with that globalAssetId |
//!
//! Paging walks `{p}/o/…` from the cursor's sequence number with batched
//! reads; holes left by deletes are skipped.

use crate::bindings::twinlattice::registry::types::{Error, Page, PageRequest, PutOutcome, Violation};
use crate::bindings::wasi::config::store as config;
use crate::descriptor::{global_asset_id_of, id_short_of, Kind, Parsed};
use crate::kv;
use crate::lock::Lock;
use crate::twin_mirror;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::Value;

/// The largest stored descriptor: the `max-body-bytes` config value (what
/// one request may carry), by default 1 MiB.
fn max_document_bytes() -> usize {
    config::get("max-body-bytes").ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(1 << 20)
}

/// A page holds at most this many bytes of descriptors (and at least one
/// descriptor), so a page of large descriptors cannot outgrow the memory
/// of the component that reads it (or answers it).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

pub fn page_limit(page: &PageRequest) -> Result<usize, Error> {
    Ok(page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize)
}

/// Opaque paging cursors: base64url of a versioned position.
pub mod cursor {
    use super::*;

    pub fn encode(position: u64) -> String {
        B64.encode(format!("c1:{position}"))
    }

    pub fn decode(cursor: &str) -> Result<u64, Error> {
        let bad = || Error::BadCursor(cursor.to_string());
        let bytes = B64.decode(cursor.trim_end_matches('=')).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        text.strip_prefix("c1:").and_then(|n| n.parse().ok()).ok_or_else(bad)
    }

    /// Cursor into a list held inside one document: the position of the
    /// next item, the id of the last item returned and of the next one.
    pub fn encode_nested(position: u64, last_id: &str, next_id: &str) -> String {
        let json = serde_json::json!(["n1", position, last_id, next_id]);
        B64.encode(json.to_string())
    }

    pub fn decode_nested(cursor: &str) -> Result<(u64, String, String), Error> {
        let bad = || Error::BadCursor(cursor.to_string());
        let bytes = B64.decode(cursor.trim_end_matches('=')).map_err(|_| bad())?;
        let parsed: (String, u64, String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if parsed.0 != "n1" {
            return Err(bad());
        }
        Ok((parsed.1, parsed.2, parsed.3))
    }
}

pub struct Collection {
    prefix: &'static str,
    kind: Kind,
}

fn enc(s: &str) -> String {
    B64.encode(s)
}

impl Collection {
    pub const SHELLS: Collection = Collection { prefix: "shell", kind: Kind::Shell };
    pub const SUBMODELS: Collection = Collection { prefix: "sm", kind: Kind::Submodel };

    fn doc_key(&self, id: &str) -> String {
        format!("{}/d/{}", self.prefix, enc(id))
    }
    fn seq_key(&self, id: &str) -> String {
        format!("{}/s/{}", self.prefix, enc(id))
    }
    fn order_key(&self, seq: u64) -> String {
        format!("{}/o/{seq:020}", self.prefix)
    }
    fn counter_key(&self) -> String {
        format!("{}/n", self.prefix)
    }
    fn alias_keys(&self, d: &Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(s) = id_short_of(d) {
            keys.push(format!("{}/a/short/{}", self.prefix, enc(s)));
        }
        if self.kind == Kind::Shell {
            if let Some(g) = global_asset_id_of(d) {
                keys.push(format!("{}/a/asset/{}", self.prefix, enc(g)));
            }
        }
        keys
    }

    fn last_seq(&self) -> Result<u64, Error> {
        Ok(kv::get(&self.counter_key())?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0))
    }

    pub fn get(&self, id: &str) -> Result<String, Error> {
        let bytes = kv::get(&self.doc_key(id))?.ok_or_else(|| Error::NotFound(id.to_string()))?;
        String::from_utf8(bytes).map_err(|_| Error::Storage(format!("stored descriptor {id:?} is not UTF-8")))
    }

    pub fn get_value(&self, id: &str) -> Result<Value, Error> {
        let text = self.get(id)?;
        serde_json::from_str(&text).map_err(|e| Error::Storage(format!("stored descriptor {id:?} is not JSON: {e}")))
    }

    /// The id of the descriptor whose id, idShort or globalAssetId is `key`.
    pub fn resolve(&self, key: &str) -> Result<String, Error> {
        if kv::exists(&self.doc_key(key))? {
            return Ok(key.to_string());
        }
        for kind in ["short", "asset"] {
            if let Some(id) = kv::get(&format!("{}/a/{kind}/{}", self.prefix, enc(key)))? {
                let id = String::from_utf8(id).map_err(|_| Error::Storage("alias is not UTF-8".into()))?;
                if kv::exists(&self.doc_key(&id))? {
                    return Ok(id);
                }
            }
        }
        Err(Error::NotFound(key.to_string()))
    }

    /// Hold the lock of descriptor `id` while `f` reads and rewrites it.
    pub fn locked<R>(&self, id: &str, f: impl FnOnce() -> Result<R, Error>) -> Result<R, Error> {
        let _lock = Lock::descriptor(self.prefix, id)?;
        f()
    }

    pub fn create(&self, parsed: Parsed) -> Result<String, Error> {
        let _lock = Lock::descriptor(self.prefix, &parsed.id)?;
        if kv::exists(&self.doc_key(&parsed.id))? {
            return Err(Error::Conflict(parsed.id));
        }
        let text = parsed.value.to_string();
        self.insert_new(&parsed, &text)?;
        Ok(text)
    }

    fn insert_new(&self, parsed: &Parsed, text: &str) -> Result<(), Error> {
        let seq = kv::increment(&self.counter_key())?;
        let mut pairs = vec![
            (self.doc_key(&parsed.id), text.as_bytes().to_vec()),
            (self.seq_key(&parsed.id), seq.to_string().into_bytes()),
            (self.order_key(seq), parsed.id.as_bytes().to_vec()),
        ];
        pairs.extend(self.alias_keys(&parsed.value).into_iter().map(|k| (k, parsed.id.as_bytes().to_vec())));
        kv::set_many(pairs)?;
        twin_mirror::stored(self.kind, text);
        Ok(())
    }

    pub fn put(&self, id: &str, parsed: Parsed) -> Result<PutOutcome, Error> {
        if parsed.id != id {
            return Err(Error::IdMismatch(format!(
                "the path names descriptor {id:?} but the body's id is {:?}",
                parsed.id
            )));
        }
        let _lock = Lock::descriptor(self.prefix, id)?;
        match self.get_value(id) {
            Ok(old) => {
                // The document and its current aliases in one transaction;
                // aliases it no longer has are removed after it (a crash in
                // between leaves an alias that still resolves to this id).
                let text = parsed.value.to_string();
                let new_keys = self.alias_keys(&parsed.value);
                let stale: Vec<String> = self.alias_keys(&old).into_iter().filter(|k| !new_keys.contains(k)).collect();
                let stale = self.aliases_pointing_at(id, stale)?;
                let mut pairs = vec![(self.doc_key(id), text.clone().into_bytes())];
                pairs.extend(new_keys.into_iter().map(|k| (k, id.as_bytes().to_vec())));
                kv::set_many(pairs)?;
                if !stale.is_empty() {
                    kv::delete_many(stale)?;
                }
                twin_mirror::stored(self.kind, &text);
                Ok(PutOutcome::Replaced)
            }
            Err(Error::NotFound(_)) => {
                self.insert_new(&parsed, &parsed.value.to_string())?;
                Ok(PutOutcome::Created)
            }
            Err(e) => Err(e),
        }
    }

    /// Store a new version of an existing descriptor (nested submodel
    /// descriptors changed); keeps its place in the order. The caller holds
    /// the descriptor's lock (`locked`) across its read and this write.
    pub fn replace_value(&self, id: &str, value: Value) -> Result<(), Error> {
        let text = value.to_string();
        // Each request is bounded by max-body-bytes; without this bound,
        // nested descriptors added one request at a time would grow a shell
        // past what any page, mirror or reader can hold.
        let limit = max_document_bytes();
        if text.len() > limit {
            return Err(Error::Invalid(vec![Violation {
                pointer: "/submodelDescriptors".into(),
                reason: format!("the shell descriptor would be {} bytes, over the limit of {limit} bytes", text.len()),
            }]));
        }
        kv::set_many(vec![(self.doc_key(id), text.clone().into_bytes())])?;
        twin_mirror::stored(self.kind, &text);
        Ok(())
    }

    /// Those of `keys` whose alias currently points at `id`.
    fn aliases_pointing_at(&self, id: &str, keys: Vec<String>) -> Result<Vec<String>, Error> {
        let current = kv::get_many(keys.clone())?;
        let mine: Vec<String> = keys
            .into_iter()
            .zip(current)
            .filter(|(_, v)| v.as_deref() == Some(id.as_bytes()))
            .map(|(k, _)| k)
            .collect();
        Ok(mine)
    }

    pub fn delete(&self, id: &str) -> Result<(), Error> {
        let _lock = Lock::descriptor(self.prefix, id)?;
        let seq = kv::get(&self.seq_key(id))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let old = self.get_value(id)?;
        let mut keys = vec![self.doc_key(id), self.seq_key(id), self.order_key(seq)];
        keys.extend(self.aliases_pointing_at(id, self.alias_keys(&old))?);
        kv::delete_many(keys)?;
        twin_mirror::removed(self.kind, id);
        Ok(())
    }

    /// One page in creation order. `filter`, when given, is applied to each
    /// descriptor; unfiltered pages never parse descriptors.
    pub fn list(&self, page: &PageRequest, filter: Option<&dyn Fn(&Value) -> bool>) -> Result<Page, Error> {
        let limit = page_limit(page)?;
        let mut next_seq = match &page.cursor {
            Some(c) => cursor::decode(c)? + 1,
            None => 1,
        };
        let last = self.last_seq()?;
        let mut items: Vec<(u64, String)> = Vec::with_capacity(limit + 1);
        let mut bytes = 0usize;
        let mut full = false;
        while next_seq <= last && items.len() <= limit && !full {
            let want = (limit + 1 - items.len()).max(64).min(2_048) as u64;
            let end = last.min(next_seq + want - 1);
            let seqs: Vec<u64> = (next_seq..=end).collect();
            let ids = kv::get_many(seqs.iter().map(|s| self.order_key(*s)).collect())?;
            let present: Vec<(u64, String)> = seqs
                .into_iter()
                .zip(ids)
                .filter_map(|(s, id)| Some((s, String::from_utf8(id?).ok()?)))
                .collect();
            let docs = kv::get_many(present.iter().map(|(_, id)| self.doc_key(id)).collect())?;
            for ((seq, _), doc) in present.into_iter().zip(docs) {
                let Some(text) = doc.and_then(|d| String::from_utf8(d).ok()) else { continue };
                if let Some(keep) = filter {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(v) if keep(&v) => {}
                        _ => continue,
                    }
                }
                if !items.is_empty() && bytes + text.len() > MAX_PAGE_BYTES {
                    // This one starts the next page.
                    full = true;
                    break;
                }
                bytes += text.len();
                items.push((seq, text));
                if items.len() > limit {
                    break;
                }
            }
            next_seq = end + 1;
        }
        let cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(seq, _)| cursor::encode(*seq))
        } else if full {
            items.last().map(|(seq, _)| cursor::encode(*seq))
        } else {
            None
        };
        Ok(Page { items: items.into_iter().map(|(_, t)| t).collect(), cursor })
    }
}
