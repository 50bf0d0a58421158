//! User Secrets: the PIN flow, and the secret's metadata. The store keeps a
//! secret's hash only; the secret itself is answered once.

use crate::auth::Caller;
use crate::clock::{self, ts};
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::kv::{self, key, Writes};
use crate::model::{Pin, SecretRecord, User};
use crate::routes::people::load_user;
use crate::request::{field, Call};
use crate::Answer;
use serde_json::json;

/// A PIN is good for ten minutes.
const PIN_LIFETIME_MS: i64 = 10 * 60 * 1000;

pub fn create_pin(c: &Caller, u: &str, call: &Call) -> ApiResult<Answer> {
    c.require("create_user_secret_pin")?;
    let body = call.body()?;
    let user = load_user(c, u)?;
    let validity = field::opt_ts(&body, "validity_ts")?;
    let pin = ids::new_pin();
    let record = Pin { user: user.uuid, validity, expires: clock::now_ms() + PIN_LIFETIME_MS };
    let mut w = Writes::new();
    w.put(key::pin(&c.account, &pin), &record)?;
    w.commit()?;
    Answer::created(json!({ "pin": pin }))
}

/// `POST /secrets/{account}/{pin}`: no authentication; the PIN is the proof.
pub fn create_secret(account: &str, pin: &str) -> ApiResult<Answer> {
    let now = clock::now_ms();
    let pin_key = key::pin(account, pin);
    let record: Pin = match kv::get::<Pin>(&pin_key)? {
        Some(p) if p.expires > now => p,
        _ => return Err(ApiError::not_found("User Secret PIN")),
    };
    let user: User = kv::get(&key::user(&record.user))?
        .filter(|u: &User| u.account == account)
        .ok_or_else(|| ApiError::not_found("User Secret PIN"))?;
    let secret = ids::new_secret();
    let secret_record = new_secret_record(&user, &secret, record.validity, now);
    let mut w = Writes::new();
    let old = kv::get::<String>(&key::user_secret(&user.uuid))?;
    w.put(key::secret(&secret_record.hash), &secret_record)?;
    w.put(key::user_secret(&user.uuid), &secret_record.hash)?;
    w.delete(pin_key);
    if let Some(old) = old {
        w.delete(key::secret(&old));
    }
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

fn load_secret(c: &Caller, u: &str) -> ApiResult<SecretRecord> {
    let user = load_user(c, u)?;
    let hash: String = kv::get(&key::user_secret(&user.uuid))?.ok_or_else(|| ApiError::not_found("User Secret"))?;
    kv::get(&key::secret(&hash))?.ok_or_else(|| ApiError::not_found("User Secret"))
}

pub fn get(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("get_user_secret")?;
    Answer::ok(load_secret(c, u)?.to_json())
}

pub fn update(c: &Caller, u: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_user_secret")?;
    let body = call.body()?;
    let mut record = load_secret(c, u)?;
    if body.contains_key("validity_ts") {
        record.validity = field::opt_ts(&body, "validity_ts")?;
    }
    record.updated = clock::now_ms();
    let mut w = Writes::new();
    w.put(key::secret(&record.hash), &record)?;
    w.commit()?;
    Answer::ok(record.to_json())
}

pub fn delete(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("delete_user_secret")?;
    let record = load_secret(c, u)?;
    let mut w = Writes::new();
    w.delete(key::secret(&record.hash));
    w.delete(key::user_secret(&record.user));
    w.commit()?;
    Answer::ok(record.to_json())
}
