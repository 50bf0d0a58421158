//! User Secrets: the PIN flow, and the secret's metadata. The store keeps a
//! secret's hash only; the secret itself is answered once.

use crate::auth::Caller;
use crate::clock::{self, ts};
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::kv::{self, key, Lock, Writes};
use crate::model::{Pin, SecretRecord, User};
use crate::routes::people::{load_user, require_over_user};
use crate::request::{field, Call};
use crate::Answer;
use serde::Deserialize;
use serde_json::json;

/// A PIN is good for ten minutes.
const PIN_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// What `us:{user}` holds: the hashes of every secret of the user (one,
/// normally). Older stores kept a single hash.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretIndex {
    One(String),
    Many(Vec<String>),
}

/// The hashes of every secret of user `u`.
pub fn secret_hashes(u: &str) -> ApiResult<Vec<String>> {
    Ok(match kv::get::<SecretIndex>(&key::user_secret(u))? {
        None => Vec::new(),
        Some(SecretIndex::One(h)) => vec![h],
        Some(SecretIndex::Many(v)) => v,
    })
}

/// Revoke, in `w`'s transaction, every secret and live PIN of user `u`
/// (the caller holds the lock `key::user_secret(u)`).
pub fn revoke_all(w: &mut Writes, u: &str) -> ApiResult<()> {
    for hash in secret_hashes(u)? {
        w.revoke(key::secret(&hash));
    }
    w.revoke(key::user_secret(u));
    revoke_pins(w, u)
}

/// Revoke every PIN minted for user `u` and not yet spent.
fn revoke_pins(w: &mut Writes, u: &str) -> ApiResult<()> {
    let pins: Vec<String> = kv::get(&key::user_pins(u))?.unwrap_or_default();
    for pin_key in pins {
        w.revoke(pin_key);
    }
    w.revoke(key::user_pins(u));
    Ok(())
}

/// `POST /users/{user}/secrets`: a new PIN for the user. It replaces any
/// earlier PIN of the user not yet spent, so a user has one live PIN at
/// most (a brute-force guess has one target per user, M7).
pub fn create_pin(c: &Caller, u: &str, call: &Call) -> ApiResult<Answer> {
    c.require("create_user_secret_pin")?;
    let body = call.body()?;
    let user = load_user(c, u)?;
    // A PIN becomes the user's secret: only for oneself or a user whose
    // role is within the caller's rights.
    require_over_user(c, &user)?;
    let validity = field::opt_ts(&body, "validity_ts")?;
    let pin = ids::new_pin();
    let record = Pin { user: user.uuid.clone(), validity, expires: clock::now_ms() + PIN_LIFETIME_MS };
    let pin_key = key::pin(&c.account, &pin);
    let lock = Lock::acquire(&key::user_secret(&user.uuid))?;
    let mut w = Writes::new();
    w.release(lock);
    revoke_pins(&mut w, &user.uuid)?;
    w.put(pin_key.clone(), &record)?;
    w.put(key::user_pins(&user.uuid), &vec![pin_key])?;
    w.commit()?;
    Answer::created(json!({ "pin": pin }))
}

/// `POST /secrets/{account}/{pin}`: no authentication; the PIN is the proof.
///
/// Single use under any concurrency: redemptions of one PIN are serialized
/// by the PIN's lock, and every change of the user's secrets by the user's
/// lock; the PIN is re-read under both, and spent (tombstoned) in the same
/// transaction that stores the new secret and revokes the old ones.
pub fn create_secret(account: &str, pin: &str) -> ApiResult<Answer> {
    let not_found = || ApiError::not_found("User Secret PIN");
    // Not a PIN at all: no lock, no store call.
    if pin.len() != 6 || !pin.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) || !ids::is_uuid(account) {
        return Err(not_found());
    }
    let pin_key = key::pin(account, pin);
    let pin_lock = Lock::acquire(&pin_key)?;
    let Some(first) = kv::get::<Pin>(&pin_key)? else { return Err(not_found()) };
    let user_lock = Lock::acquire(&key::user_secret(&first.user))?;
    // Re-read under the user's lock: a new PIN for the user may have
    // replaced this one meanwhile.
    let now = clock::now_ms();
    let mut w = Writes::new();
    w.release(user_lock);
    w.release(pin_lock);
    let record = match kv::get::<Pin>(&pin_key)? {
        Some(p) if p.expires > now && p.user == first.user => p,
        Some(_) => {
            // Expired: purge it while we are here.
            w.revoke(pin_key);
            w.commit()?;
            return Err(not_found());
        }
        None => return Err(not_found()),
    };
    let Some(user) = kv::get::<User>(&key::user(&record.user))?.filter(|u| u.account == account) else {
        return Err(not_found());
    };
    let secret = ids::new_secret();
    let secret_record = new_secret_record(&user, &secret, record.validity, now);
    // One secret per user: the new one replaces every earlier one. The PIN
    // is spent in the same transaction.
    w.revoke(pin_key);
    revoke_all(&mut w, &user.uuid)?;
    w.put(key::secret(&secret_record.hash), &secret_record)?;
    w.put(key::user_secret(&user.uuid), &vec![&secret_record.hash])?;
    w.commit()?;
    Answer::created(json!({
        "account": account, "user": user.uuid, "secret": secret,
        "validity_ts": record.validity.map(ts), "created_ts": ts(now), "updated_ts": ts(now),
    }))
}

/// The stored form of a new secret.
pub fn new_secret_record(user: &User, secret: &str, validity: Option<i64>, now: i64) -> SecretRecord {
    SecretRecord {
        account: user.account.clone(),
        user: user.uuid.clone(),
        hash: ids::secret_hash(secret),
        fingerprint: secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect(),
        validity,
        created: now,
        updated: now,
    }
}

/// The metadata of user `u`'s (newest) secret.
fn load_secret(c: &Caller, u: &str) -> ApiResult<SecretRecord> {
    let user = load_user(c, u)?;
    let hashes = secret_hashes(&user.uuid)?;
    let hash = hashes.last().ok_or_else(|| ApiError::not_found("User Secret"))?;
    kv::get(&key::secret(hash))?.ok_or_else(|| ApiError::not_found("User Secret"))
}

pub fn get(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("get_user_secret")?;
    Answer::ok(load_secret(c, u)?.to_json())
}

/// PATCH: the new validity applies to every secret of the user.
pub fn update(c: &Caller, u: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_user_secret")?;
    let body = call.body()?;
    require_over_user(c, &load_user(c, u)?)?;
    let lock = Lock::acquire(&key::user_secret(u))?;
    let mut record = load_secret(c, u)?;
    let now = clock::now_ms();
    let validity = if body.contains_key("validity_ts") { Some(field::opt_ts(&body, "validity_ts")?) } else { None };
    let mut w = Writes::new();
    w.release(lock);
    for stored in kv::get_all::<SecretRecord>(secret_hashes(&record.user)?.iter().map(|h| key::secret(h)).collect())? {
        let mut stored = stored;
        if let Some(v) = validity {
            stored.validity = v;
        }
        stored.updated = now;
        w.put(key::secret(&stored.hash), &stored)?;
    }
    if let Some(v) = validity {
        record.validity = v;
    }
    record.updated = now;
    w.commit()?;
    Answer::ok(record.to_json())
}

/// DELETE: revokes every secret (and live PIN) of the user in one
/// transaction.
pub fn delete(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("delete_user_secret")?;
    require_over_user(c, &load_user(c, u)?)?;
    let lock = Lock::acquire(&key::user_secret(u))?;
    let record = load_secret(c, u)?;
    let mut w = Writes::new();
    w.release(lock);
    revoke_all(&mut w, &record.user)?;
    w.commit()?;
    Answer::ok(record.to_json())
}
