//! Liveness in the registry: each registered AAS's descriptor carries the
//! extension `twinlattice:liveness` (`online` | `offline`), rewritten only
//! when its state changes. A heartbeat or registration marks an AAS online
//! at once; `sweep`, called periodically by the host, finds the leases that
//! ran out and marks those AAS offline. The state last written is kept in
//! the AAS's lease (`lease::Lease::shown`), and the sweep walks the leases,
//! not the registry: its cost follows the AAS that speak to the broker and
//! reads no descriptor whose state did not change, however many (and how
//! large) the registered descriptors are. Descriptors of AAS that never
//! spoke to the broker are never touched.

use crate::bindings::twinlattice::registry::shells;
use crate::bindings::twinlattice::registry::types::{Dialect, Error as RegistryError};
use crate::bindings::wasi::logging::logging::{log, Level};
use crate::lease;
use serde_json::{json, Value};

/// The name of the descriptor extension.
pub const EXTENSION: &str = "twinlattice:liveness";

fn word(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

/// Write `online` into `id`'s descriptor when it differs from what its
/// lease (just renewed by the caller) says was last written. Returns whether
/// the descriptor changed.
pub fn mark(id: &str, online: bool, lease: Option<&lease::Lease>) -> bool {
    match lease {
        Some(l) if l.shown == Some(online) => false,
        Some(l) => write(id, online, l),
        None => false,
    }
}

/// Write the extension, then record it in the lease.
fn write(id: &str, online: bool, lease: &lease::Lease) -> bool {
    let text = match shells::get(id) {
        Ok(text) => text,
        Err(RegistryError::NotFound(_)) => {
            // The descriptor is gone: so is the AAS, for the broker. Its
            // lease would only be swept again and again, its queue never
            // drained.
            lease::remove(id);
            crate::queue::clear(id);
            return false;
        }
        Err(_) => return false,
    };
    let Some(mut descriptor) = serde_json::from_str::<Value>(&text).ok() else {
        return false;
    };
    let Some(object) = descriptor.as_object_mut() else { return false };
    let extensions = object.entry("extensions").or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = extensions.as_array_mut() else { return false };
    list.retain(|e| e.get("name").and_then(Value::as_str) != Some(EXTENSION));
    list.push(json!({ "name": EXTENSION, "valueType": "xs:string", "value": word(online) }));
    match shells::put(id, &descriptor.to_string(), Dialect::V3) {
        Ok(_) => {
            lease::put(id, &lease::Lease { shown: Some(online), ..lease.clone() });
            true
        }
        Err(e) => {
            log(Level::Warn, "broker", &format!("could not mark {id:?} {}: {e:?}", word(online)));
            false
        }
    }
}

/// Mark every AAS whose state changed; returns how many changed. Only AAS
/// known to the broker (with a lease: registered or heartbeating through
/// it) are marked: descriptors registered through the REST API alone are
/// left exactly as their owners wrote them.
///
/// The queues of offline AAS are tended on the way (`route::tend_queue`):
/// their expired messages go back to the senders without waiting for a
/// heartbeat that may never come.
pub fn sweep() -> u32 {
    let mut changed = 0;
    let now = crate::clock::now_ms();
    let budget = crate::route::Budget::start();
    lease::for_each(|id, l| {
        let online = l.online(now);
        if l.shown != Some(online) && write(&id, online, &l) {
            changed += 1;
        }
        if !online {
            crate::route::tend_queue(&id, &budget);
        }
    });
    changed
}
