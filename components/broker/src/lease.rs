//! Heartbeat leases, one per AAS, in the `broker` bucket: `lease/{id}` holds
//! `{"last": ms, "expires": ms}`. Online means the lease has not run out;
//! it is judged when read, so nothing has to wake up to mark an AAS offline.

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::store;
use crate::clock;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::cell::OnceCell;

/// Lease length when the `heartbeat-ttl-secs` config key is absent: three
/// of the RIC clients' 5 s heartbeat intervals.
const DEFAULT_TTL_SECS: u64 = 15;

thread_local! {
    static BUCKET: OnceCell<Option<store::Bucket>> = const { OnceCell::new() };
}

fn with_bucket<R>(f: impl FnOnce(&store::Bucket) -> R) -> Option<R> {
    BUCKET.with(|cell| cell.get_or_init(|| store::open("broker").ok()).as_ref().map(f))
}

fn key(id: &str) -> String {
    format!("lease/{}", B64.encode(id))
}

fn ttl_ms() -> u64 {
    config::get("heartbeat-ttl-secs")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TTL_SECS)
        * 1000
}

/// A lease as stored.
pub struct Lease {
    pub last_ms: u64,
    pub expires_ms: u64,
}

/// Renew `id`'s lease from now. Returns false when storage failed.
pub fn renew(id: &str) -> bool {
    let now = clock::now_ms();
    let value = json!({ "last": now, "expires": now + ttl_ms() }).to_string();
    with_bucket(|b| b.set(&key(id), value.as_bytes()).is_ok()).unwrap_or(false)
}

pub fn get(id: &str) -> Option<Lease> {
    let bytes = with_bucket(|b| b.get(&key(id)).ok().flatten()).flatten()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some(Lease { last_ms: v.get("last")?.as_u64()?, expires_ms: v.get("expires")?.as_u64()? })
}

pub fn is_online(id: &str) -> bool {
    get(id).is_some_and(|l| l.expires_ms > clock::now_ms())
}
