//! Who is calling: the User Secret, its user and role, and the role's
//! statement as the gate of every action.

use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::kv::{self, key};
use crate::model::{Role, SecretRecord, User};
use base64::Engine;
use serde_json::{Map, Value};

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
    pub user: User,
    pub role: Role,
    /// `X-TrustedTwin`, decoded (rule variable `DICT`).
    pub dict: Value,
}

impl Caller {
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

/// Authenticate a request by its `Authorization` header.
pub fn authenticate(authorization: Option<&str>, dictionary: Option<&str>) -> ApiResult<Caller> {
    let secret = authorization.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(ApiError::unauthorized)?;
    let record: SecretRecord = kv::get(&key::secret(&ids::secret_hash(secret)))?.ok_or_else(ApiError::unauthorized)?;
    if record.validity.is_some_and(|v| v <= clock::now_ms()) {
        return Err(ApiError::unauthorized());
    }
    let (user, role) = kv::get2::<User, Role>(&key::user(&record.user), &key::role(&record.role))?;
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let role = match role {
        Some(r) if r.uuid == user.role => r,
        // The user's role changed after the secret was made.
        _ => kv::get::<Role>(&key::role(&user.role))?.ok_or_else(ApiError::unauthorized)?,
    };
    Ok(Caller { account: record.account, user, role, dict: decode_dict(dictionary)? })
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
