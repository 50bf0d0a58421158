//! Heartbeat leases, one per AAS, in a bucket of their own
//! (`broker-leases`, so the liveness sweep lists exactly the leases): the
//! key is the AAS id base64url-encoded, the value
//! `{"last": ms, "expires": ms, "shown": "online" | "offline" | null}`.
//! Online means the lease has not run out; it is judged when read, so
//! nothing has to wake up to mark an AAS offline. `shown` is the liveness
//! last written into the AAS's descriptor (see `descriptor_liveness`).

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{batch, store};
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
    BUCKET.with(|cell| cell.get_or_init(|| store::open("broker-leases").ok()).as_ref().map(f))
}

fn key(id: &str) -> String {
    B64.encode(id)
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
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub last_ms: u64,
    pub expires_ms: u64,
    /// The liveness last written into the descriptor (`Some(true)`: online).
    pub shown: Option<bool>,
}

impl Lease {
    fn parse(bytes: &[u8]) -> Option<Lease> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let shown = match v.get("shown").and_then(Value::as_str) {
            Some("online") => Some(true),
            Some("offline") => Some(false),
            _ => None,
        };
        Some(Lease { last_ms: v.get("last")?.as_u64()?, expires_ms: v.get("expires")?.as_u64()?, shown })
    }

    fn text(&self) -> String {
        let shown = self.shown.map(|online| if online { "online" } else { "offline" });
        json!({ "last": self.last_ms, "expires": self.expires_ms, "shown": shown }).to_string()
    }

    pub fn online(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Store `lease` as `id`'s. Returns false when storage failed.
pub fn put(id: &str, lease: &Lease) -> bool {
    with_bucket(|b| b.set(&key(id), lease.text().as_bytes()).is_ok()).unwrap_or(false)
}

/// Renew `id`'s lease from now. With `keep_shown` the old lease's record of
/// what the descriptor shows is kept (one read); without it (a registration
/// just replaced the descriptor) it is unknown and no read is needed. Returns the new
/// lease, or `None` when storage failed.
pub fn renew(id: &str, keep_shown: bool) -> Option<Lease> {
    let now = clock::now_ms();
    let shown = if keep_shown { get(id).and_then(|l| l.shown) } else { None };
    let lease = Lease { last_ms: now, expires_ms: now + ttl_ms(), shown };
    put(id, &lease).then_some(lease)
}

/// Drop `id`'s lease (its AAS is no longer registered).
pub fn remove(id: &str) {
    with_bucket(|b| b.delete(&key(id)).ok());
}

pub fn get(id: &str) -> Option<Lease> {
    let bytes = with_bucket(|b| b.get(&key(id)).ok().flatten()).flatten()?;
    Lease::parse(&bytes)
}

pub fn is_online(id: &str) -> bool {
    get(id).is_some_and(|l| l.online(clock::now_ms()))
}

/// Call `f` with every lease, a page of keys at a time (what the bucket's
/// `list-keys` gives), values read in one batch per page.
pub fn for_each(mut f: impl FnMut(String, Lease)) {
    let mut cursor = None;
    loop {
        let Some(Ok(page)) = with_bucket(|b| b.list_keys(cursor)) else { return };
        let values = with_bucket(|b| batch::get_many(b, &page.keys).ok()).flatten().unwrap_or_default();
        for found in values.into_iter().flatten() {
            let (k, bytes) = found;
            let id = B64.decode(&k).ok().and_then(|raw| String::from_utf8(raw).ok());
            if let (Some(id), Some(lease)) = (id, Lease::parse(&bytes)) {
                f(id, lease);
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return,
        }
    }
}
