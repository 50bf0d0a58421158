//! Who is calling: the User Secret, its user and role, and the role's
//! statement as the gate of every action.

use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::kv::{self, key};
use crate::model::{Role, SecretRecord, User};
use base64::Engine;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// Every action a role statement may name: the client's method names.
pub const ACTIONS: &[&str] = &[
    "get_account", "update_account", "get_batches", "create_batch", "get_batch", "delete_batch", "update_batch",
    "trace", "who_am_i", "get_users", "create_user", "get_user", "delete_user", "update_user", "get_user_secret",
    "create_user_secret_pin", "delete_user_secret", "update_user_secret", "create_user_secret",
    "create_user_token", "refresh_user_token", "get_user_roles", "create_user_role", "get_user_role",
    "delete_user_role", "update_user_role", "resolve_twin_identity", "scan_twins", "create_twin", "get_twin",
    "terminate_twin", "update_twin", "get_twin_identities", "create_twin_identity", "get_twin_identity",
    "delete_twin_identity", "update_twin_identity", "get_twin_ledger_entry", "add_twin_ledger_entry",
    "delete_twin_ledger_entry", "update_twin_ledger_entry", "get_twin_ledger_entry_value",
    "update_twin_ledger_entry_value", "get_twin_ledger_entry_history", "get_twin_docs", "attach_twin_doc",
    "delete_twin_docs", "get_twin_doc", "delete_twin_doc", "update_twin_doc", "download_doc",
    "create_upload_url", "invalidate_upload_url", "get_databases", "get_database", "update_database",
    "get_database_access", "update_database_user_access", "update_database_ip_access", "get_timeseries_table",
    "delete_timeseries_table", "update_timeseries_table", "get_timeseries_tables", "create_timeseries_table",
    "truncate_timeseries_table", "update_timeseries_access", "get_log", "update_notifications_account_access",
    "get_notifications_access", "webhook_subscribe", "webhook_confirm_subscription", "webhook_unsubscribe",
    "webhook_refresh_subscription", "get_indexes_table", "delete_indexes_table", "update_indexes_table",
    "get_indexes_tables", "create_indexes_table", "truncate_indexes_table", "update_indexes_access",
    "get_account_usage", "get_user_usage", "put_sticker", "get_sticker", "get_stickers", "remove_sticker",
    "list_stickers",
];

/// The authenticated caller of one request.
pub struct Caller {
    pub account: String,
    pub user: Rc<User>,
    pub role: Rc<Role>,
    /// `X-TrustedTwin`, decoded (rule variable `DICT`).
    pub dict: Value,
    /// Records the route asked to read along with the secret (see
    /// `authenticate`), by key.
    prefetched: RefCell<Vec<(String, Option<Vec<u8>>)>>,
}

impl Caller {
    /// A record read along with the secret, if the route asked for it and
    /// this instance knew the caller's account in time. `None`: read it.
    pub fn prefetched(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let mut p = self.prefetched.borrow_mut();
        let at = p.iter().position(|(k, _)| k == key)?;
        Some(p.swap_remove(at).1)
    }

    /// Refuse with 403 unless the role's statement allows `action`.
    pub fn require(&self, action: &str) -> ApiResult<()> {
        if self.role.statement.allows(action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("Action '{action}' is not allowed by the role statement.")))
        }
    }

    /// The caller's account's ledger id for a `{ledger}` path segment.
    pub fn ledger_account(&self, ledger: &str, twin_owner: &str, twin_creator: &str) -> ApiResult<String> {
        match ledger {
            "personal" => Ok(self.account.clone()),
            "owner" => Ok(twin_owner.to_string()),
            "creator" => Ok(twin_creator.to_string()),
            other if ids::is_uuid(other) => Ok(other.to_string()),
            _ => Err(ApiError::format("Ledger must be 'personal', 'owner', 'creator' or an account UUID.")),
        }
    }
}

/// Counter bumped after every change of a user or a role, so instances
/// know when the users and roles they remember are out of date.
const AUTH_EPOCH: &str = "auth-epoch";

/// How many secrets' users and roles an instance remembers.
const REMEMBERED: usize = 64;

struct Remembered {
    /// The secret itself, so that a known caller costs no hashing. It lives
    /// only in this instance's memory, as the request that carried it did.
    secret: String,
    hash: String,
    account: String,
    epoch: u64,
    user: Rc<User>,
    role: Rc<Role>,
}

thread_local! {
    static REMEMBER: RefCell<Vec<Remembered>> = const { RefCell::new(Vec::new()) };
}

/// Mark every remembered user and role out of date; call after the commit
/// that changed one.
pub fn users_or_roles_changed() -> ApiResult<()> {
    kv::increment(AUTH_EPOCH).map(drop)
}

/// Authenticate a request by its `Authorization` header.
///
/// The secret's record is read on every call, so a revoked or expired
/// secret stops at once; its user and role come from this instance's memory
/// while no user or role has changed since. For a caller this instance
/// knows, the records `prefetch(account)` names are read in the same store
/// call (see `Caller::prefetched`).
pub fn authenticate(
    authorization: Option<&str>,
    dictionary: Option<&str>,
    prefetch: &dyn Fn(&str) -> Vec<String>,
) -> ApiResult<Caller> {
    let secret = authorization.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(ApiError::unauthorized)?;
    let known = REMEMBER.with(|r| {
        r.borrow().iter().find(|m| ids::constant_time_eq(m.secret.as_bytes(), secret.as_bytes())).map(|m| (m.hash.clone(), m.account.clone()))
    });
    let hash = known.as_ref().map(|(h, _)| h.clone()).unwrap_or_else(|| ids::secret_hash(secret));
    let mut keys = vec![key::secret(&hash), AUTH_EPOCH.to_string()];
    if let Some((_, account)) = &known {
        keys.extend(prefetch(account));
    }
    let mut found = kv::get_many_raw(&keys)?.into_iter();
    let record: SecretRecord = match found.next().flatten() {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ApiError::storage(format!("secret record: {e}")))?,
        None => return Err(ApiError::unauthorized()),
    };
    if record.validity.is_some_and(|v| v <= clock::now_ms()) {
        return Err(ApiError::unauthorized());
    }
    let epoch: u64 = found
        .next()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let prefetched: Vec<(String, Option<Vec<u8>>)> = keys.into_iter().skip(2).zip(found).collect();
    let remembered = REMEMBER.with(|r| {
        r.borrow().iter().find(|m| m.hash == hash && m.epoch == epoch).map(|m| (m.user.clone(), m.role.clone()))
    });
    let (user, role) = match remembered {
        Some(pair) => pair,
        None => {
            let user: User = kv::get(&key::user(&record.user))?.ok_or_else(ApiError::unauthorized)?;
            let role: Role = kv::get(&key::role(&user.role))?.ok_or_else(ApiError::unauthorized)?;
            let (user, role) = (Rc::new(user), Rc::new(role));
            REMEMBER.with(|r| {
                let mut r = r.borrow_mut();
                r.retain(|m| m.hash != hash && m.epoch == epoch);
                if r.len() >= REMEMBERED {
                    r.remove(0);
                }
                r.push(Remembered {
                    secret: secret.to_string(),
                    hash: hash.clone(),
                    account: record.account.clone(),
                    epoch,
                    user: user.clone(),
                    role: role.clone(),
                });
            });
            (user, role)
        }
    };
    Ok(Caller {
        account: record.account,
        user,
        role,
        dict: decode_dict(dictionary)?,
        prefetched: RefCell::new(prefetched),
    })
}

/// `X-TrustedTwin`: base64 of a JSON object.
fn decode_dict(header: Option<&str>) -> ApiResult<Value> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(Value::Object(Map::new()));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(h)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(h))
        .map_err(|_| ApiError::format("X-TrustedTwin header is not base64."))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::format("X-TrustedTwin header is not a base64-encoded JSON object.")),
    }
}
