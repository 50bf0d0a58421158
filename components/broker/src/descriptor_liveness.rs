//! Liveness in the registry: each registered AAS's descriptor carries the
//! extension `twinlattice:liveness` (`online` | `offline`), rewritten only
//! when its state changes. A heartbeat or registration marks an AAS online
//! at once; `sweep`, called periodically by the host, finds the leases that
//! ran out and marks those AAS offline. The last state written is kept in
//! the `broker` bucket (`state/{id}`), so a sweep reads but never writes
//! for an AAS whose state did not change. Descriptors of AAS that never
//! spoke to the broker are never touched.

use crate::bindings::twinlattice::registry::shells;
use crate::bindings::twinlattice::registry::types::Dialect;
use crate::bindings::wasi::keyvalue::store;
use crate::bindings::wasi::logging::logging::{log, Level};
use crate::lease;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::cell::OnceCell;

/// The name of the descriptor extension.
pub const EXTENSION: &str = "twinlattice:liveness";

thread_local! {
    static BUCKET: OnceCell<Option<store::Bucket>> = const { OnceCell::new() };
}

fn with_bucket<R>(f: impl FnOnce(&store::Bucket) -> Option<R>) -> Option<R> {
    BUCKET.with(|cell| cell.get_or_init(|| store::open("broker").ok()).as_ref().and_then(f))
}

fn state_key(id: &str) -> String {
    format!("state/{}", B64.encode(id))
}

fn word(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

/// Write `online` into `id`'s descriptor when it differs from what was last
/// written. Returns whether the descriptor changed.
pub fn mark(id: &str, online: bool) -> bool {
    let key = state_key(id);
    let last = with_bucket(|b| b.get(&key).ok().flatten());
    if last.as_deref() == Some(word(online).as_bytes()) {
        return false;
    }
    let Some(mut descriptor) = shells::get(id).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()) else {
        return false;
    };
    let Some(object) = descriptor.as_object_mut() else { return false };
    let extensions = object.entry("extensions").or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = extensions.as_array_mut() else { return false };
    list.retain(|e| e.get("name").and_then(Value::as_str) != Some(EXTENSION));
    list.push(json!({ "name": EXTENSION, "valueType": "xs:string", "value": word(online) }));
    match shells::put(id, &descriptor.to_string(), Dialect::V3) {
        Ok(_) => {
            with_bucket(|b| b.set(&key, word(online).as_bytes()).ok());
            true
        }
        Err(e) => {
            log(Level::Warn, "broker", &format!("could not mark {id:?} {}: {e:?}", word(online)));
            false
        }
    }
}

/// Forget what was last written for `id` (its descriptor was replaced).
pub fn forget(id: &str) {
    with_bucket(|b| b.delete(&state_key(id)).ok());
}

/// Mark every AAS whose state changed; returns how many changed. Only AAS
/// known to the broker (with a lease: registered or heartbeating through
/// it) are marked: descriptors registered through the REST API alone are
/// left exactly as their owners wrote them.
pub fn sweep() -> u32 {
    let mut changed = 0;
    let now = crate::clock::now_ms();
    crate::route::for_each_registered(|id| {
        let Some(l) = lease::get(&id) else { return };
        if mark(&id, l.expires_ms > now) {
            changed += 1;
        }
    });
    changed
}
