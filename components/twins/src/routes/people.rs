//! The account, roles and users.

use crate::auth::{Caller, ACTIONS};
use crate::clock;
use crate::error::{ApiError, ApiResult, Subcode};
use crate::kv::{self, key, Lock, Writes};
use crate::limits;
use crate::model::{Account, Effect, Role, RuleKeys, Statement, User};
use crate::request::{field, Call};
use crate::rights;
use crate::rule;
use crate::Answer;
use serde_json::{json, Map, Value};

/// Users one account may have (API.md, "Accounts"). The account's lists of
/// users and roles (`au:`, `ar:`) are rewritten whole on every create and
/// delete, and a role's delete and a Super Admin's demotion read every user
/// of the account (review L7): the bounds keep that finite. The config keys
/// `max-users-per-account` and `max-roles-per-account` may lower them.
const MAX_USERS: usize = 10_000;
/// Roles one account may have.
const MAX_ROLES: usize = 1_000;

/// Refuse one more member of a list that holds `len` of at most `max`.
fn require_room(len: usize, max: usize, what: &str) -> ApiResult<()> {
    if len >= max {
        return Err(ApiError::new(Subcode::QuotaViolation, format!("An account may have at most {max} {what}.")));
    }
    Ok(())
}

pub fn get_account(c: &Caller) -> ApiResult<Answer> {
    c.require("get_account")?;
    let a: Account = kv::get(&key::account(&c.account))?.ok_or_else(|| ApiError::not_found("Account"))?;
    Answer::ok(json!({
        "uuid": a.uuid, "name": a.name, "resource_access_log": null,
        "created_ts": clock::ts(a.created), "updated_ts": clock::ts(a.updated),
    }))
}

pub fn update_account(c: &Caller, call: &Call) -> ApiResult<Answer> {
    c.require("update_account")?;
    let body = call.body()?;
    if body.get("resource_access_log").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::new(crate::error::Subcode::ServiceDisabled, "Resource access logging is not available on this server."));
    }
    get_account(c)
}

// ---- roles ------------------------------------------------------------

/// Parse a role body's statement.
fn statement(body: &Map<String, Value>, default: Option<&Statement>) -> ApiResult<Statement> {
    let Some(v) = body.get("statement") else {
        return Ok(default.cloned().unwrap_or(Statement { effect: Effect::Deny, actions: None }));
    };
    let o = v.as_object().ok_or_else(|| ApiError::format("'statement' must be an object."))?;
    let effect = match o.get("effect").and_then(Value::as_str) {
        Some("allow") => Effect::Allow,
        Some("deny") | None => Effect::Deny,
        Some(other) => return Err(ApiError::format(format!("'statement.effect' must be 'allow' or 'deny', not '{other}'."))),
    };
    let actions = match o.get("actions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let name = item.as_str().ok_or_else(|| ApiError::format("'statement.actions' must be a list of strings."))?;
                if !ACTIONS.contains(&name) {
                    return Err(ApiError::format(format!("Unknown action '{name}' in 'statement.actions'.")));
                }
                if !out.iter().any(|x| x == name) {
                    out.push(name.to_string());
                }
            }
            Some(out)
        }
        Some(_) => return Err(ApiError::format("'statement.actions' must be a list or null.")),
    };
    Ok(Statement { effect, actions })
}

/// Apply a role body's `rules` to `role`: keys in either spelling; absent
/// keys are null on create and unchanged on update.
fn apply_rules(role: &mut Role, body: &Map<String, Value>, creating: bool) -> ApiResult<()> {
    let Some(v) = body.get("rules") else { return Ok(()) };
    let rules = match v {
        Value::Null => Map::new(),
        Value::Object(o) => o.clone(),
        _ => return Err(ApiError::format("'rules' must be an object or null.")),
    };
    let mut spelling = None;
    for (k, v) in &rules {
        let (slot, keys) = match k.as_str() {
            "twin_rule" => (&mut role.twin_rule, RuleKeys::Suffixed),
            "entry_rule" => (&mut role.entry_rule, RuleKeys::Suffixed),
            "identity_rule" => (&mut role.identity_rule, RuleKeys::Suffixed),
            "twin" => (&mut role.twin_rule, RuleKeys::Short),
            "entry" => (&mut role.entry_rule, RuleKeys::Short),
            "identity" => (&mut role.identity_rule, RuleKeys::Short),
            other => return Err(ApiError::format(format!("Unknown rule '{other}' in 'rules'."))),
        };
        spelling.get_or_insert(keys);
        *slot = match v {
            Value::Null => None,
            Value::String(s) => {
                rule::check(&format!("rules.{k}"), s)?;
                Some(s.clone())
            }
            _ => return Err(ApiError::format(format!("'rules.{k}' must be a string or null."))),
        };
    }
    if let Some(keys) = spelling {
        role.keys = keys;
    }
    if creating && v.is_null() {
        role.twin_rule = None;
        role.entry_rule = None;
        role.identity_rule = None;
    }
    Ok(())
}

/// A user cannot hand out, change or act on a role that reaches beyond its
/// own: no action its own statement lacks, no rule that could see more
/// (see `rights` and API.md, "Rights") → 403.
fn require_within(c: &Caller, role: &Role, what: &str) -> ApiResult<()> {
    rights::within(&c.role, role, &rule::constant)
        .map_err(|e| ApiError::forbidden(format!("{what} is beyond your own rights: {}.", e.describe())))
}

/// Acting on another user (changing, deleting it, its secret) needs rights
/// covering that user's role; acting on oneself needs none beyond the
/// action. A user whose role is gone cannot sign in: nothing to protect.
pub fn require_over_user(c: &Caller, user: &User) -> ApiResult<()> {
    if user.uuid == c.user.uuid {
        return Ok(());
    }
    match kv::get::<Role>(&key::role(&user.role))? {
        Some(role) => require_within(c, &role, "The user's role"),
        None => Ok(()),
    }
}

/// Whether a user of the account other than `leaving` keeps a Super
/// Admin-equivalent role (`rights::is_super`), with role `changed` as it
/// would become. Refusing the change that leaves none keeps the account
/// manageable.
fn admin_remains(c: &Caller, leaving: Option<&str>, changed: Option<&Role>) -> ApiResult<bool> {
    let list: Vec<String> = kv::get(&key::account_users(&c.account))?.unwrap_or_default();
    let users = kv::get_all::<User>(list.iter().filter(|u| Some(u.as_str()) != leaving).map(|u| key::user(u)).collect())?;
    let mut role_ids: Vec<&str> = users.iter().map(|u| u.role.as_str()).collect();
    role_ids.sort_unstable();
    role_ids.dedup();
    let roles = kv::get_all::<Role>(role_ids.iter().map(|r| key::role(r)).collect())?;
    Ok(roles.iter().any(|r| {
        let r = match changed {
            Some(ch) if ch.uuid == r.uuid => ch,
            _ => r,
        };
        rights::is_super(r, &rule::constant)
    }))
}

fn last_admin() -> ApiError {
    ApiError::not_allowed("This would leave the account without a Super Admin user.")
}

fn load_role(c: &Caller, r: &str) -> ApiResult<Role> {
    match kv::get::<Role>(&key::role(r))? {
        Some(role) if role.account == c.account => Ok(role),
        _ => Err(ApiError::not_found("Role")),
    }
}

pub fn create_role(c: &Caller, call: &Call) -> ApiResult<Answer> {
    c.require("create_user_role")?;
    let body = call.body()?;
    let now = clock::now_ms();
    let statement = statement(&body, None)?;
    let mut role = Role {
        uuid: crate::ids::uuid4(),
        account: c.account.clone(),
        name: field::name(&body, "User Role Name")?,
        statement,
        twin_rule: None,
        entry_rule: None,
        identity_rule: None,
        keys: RuleKeys::Suffixed,
        created: now,
        updated: now,
    };
    apply_rules(&mut role, &body, true)?;
    require_within(c, &role, "The role")?;
    let lock = Lock::acquire(&key::account_roles(&c.account))?;
    let mut list: Vec<String> = kv::get(&key::account_roles(&c.account))?.unwrap_or_default();
    require_room(list.len(), limits::bound("max-roles-per-account", MAX_ROLES), "User Roles")?;
    list.push(role.uuid.clone());
    let mut w = Writes::new();
    w.put(key::role(&role.uuid), &role)?;
    w.put(key::account_roles(&c.account), &list)?;
    w.release(lock);
    w.commit()?;
    Answer::created(role.to_json())
}

pub fn get_role(c: &Caller, r: &str) -> ApiResult<Answer> {
    c.require("get_user_role")?;
    Answer::ok(load_role(c, r)?.to_json())
}

pub fn list_roles(c: &Caller) -> ApiResult<Answer> {
    c.require("get_user_roles")?;
    let list: Vec<String> = kv::get(&key::account_roles(&c.account))?.unwrap_or_default();
    let mut out = Map::new();
    for role in kv::get_all::<Role>(list.iter().map(|r| key::role(r)).collect())? {
        out.insert(role.uuid.clone(), json!({
            "name": role.name, "created_ts": clock::ts(role.created), "updated_ts": clock::ts(role.updated),
        }));
    }
    Answer::ok(json!({ "roles": out }))
}

pub fn update_role(c: &Caller, r: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_user_role")?;
    let body = call.body()?;
    let mut role = load_role(c, r)?;
    // Only a role one could have made oneself may be changed (a user must
    // not narrow a stronger user's role), and only into such a role.
    require_within(c, &role, "The role")?;
    let was_super = rights::is_super(&role, &rule::constant);
    if body.contains_key("name") {
        role.name = field::name(&body, &role.name)?;
    }
    if body.contains_key("statement") {
        role.statement = statement(&body, Some(&role.statement))?;
    }
    apply_rules(&mut role, &body, false)?;
    require_within(c, &role, "The role")?;
    if was_super && !rights::is_super(&role, &rule::constant) && !admin_remains(c, None, Some(&role))? {
        return Err(last_admin());
    }
    role.updated = clock::now_ms();
    let mut w = Writes::new();
    w.put(key::role(&role.uuid), &role)?;
    w.commit()?;
    crate::auth::users_or_roles_changed()?;
    Answer::ok(role.to_json())
}

pub fn delete_role(c: &Caller, r: &str) -> ApiResult<Answer> {
    c.require("delete_user_role")?;
    let role = load_role(c, r)?;
    require_within(c, &role, "The role")?;
    let users: Vec<String> = kv::get(&key::account_users(&c.account))?.unwrap_or_default();
    if kv::get_all::<User>(users.iter().map(|u| key::user(u)).collect())?.iter().any(|user| user.role == role.uuid) {
        return Err(ApiError::not_allowed("The role is assigned to a user; reassign the user first."));
    }
    let lock = Lock::acquire(&key::account_roles(&c.account))?;
    let mut list: Vec<String> = kv::get(&key::account_roles(&c.account))?.unwrap_or_default();
    list.retain(|x| x != &role.uuid);
    let mut w = Writes::new();
    w.release(lock);
    w.put(key::account_roles(&c.account), &list)?;
    w.delete(key::role(&role.uuid));
    w.commit()?;
    crate::auth::users_or_roles_changed()?;
    Answer::ok(role.to_json())
}

// ---- users ------------------------------------------------------------

/// User `u` of the caller's account (404 otherwise).
pub fn load_user(c: &Caller, u: &str) -> ApiResult<User> {
    match kv::get::<User>(&key::user(u))? {
        Some(user) if user.account == c.account => Ok(user),
        _ => Err(ApiError::not_found("User")),
    }
}

pub fn create_user(c: &Caller, call: &Call) -> ApiResult<Answer> {
    c.require("create_user")?;
    let body = call.body()?;
    let role = field::opt_str(&body, "role")?.ok_or_else(|| ApiError::format("'role' is required."))?;
    let role = load_role(c, &role)?;
    require_within(c, &role, "The role")?;
    let now = clock::now_ms();
    let user = User {
        uuid: crate::ids::uuid4(),
        account: c.account.clone(),
        role: role.uuid,
        name: field::name(&body, "User Name")?,
        description: match body.get("description") {
            Some(v) => field::description(v, "description")?,
            None => None,
        },
        activity: body.get("activity").cloned().filter(|v| !v.is_null()),
        created: now,
        updated: now,
    };
    let lock = Lock::acquire(&key::account_users(&c.account))?;
    let mut list: Vec<String> = kv::get(&key::account_users(&c.account))?.unwrap_or_default();
    require_room(list.len(), limits::bound("max-users-per-account", MAX_USERS), "Users")?;
    list.push(user.uuid.clone());
    let mut w = Writes::new();
    w.release(lock);
    w.put(key::user(&user.uuid), &user)?;
    w.put(key::account_users(&c.account), &list)?;
    w.commit()?;
    Answer::created(user.to_json())
}

pub fn get_user(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("get_user")?;
    Answer::ok(load_user(c, u)?.to_json())
}

pub fn list_users(c: &Caller) -> ApiResult<Answer> {
    c.require("get_users")?;
    let list: Vec<String> = kv::get(&key::account_users(&c.account))?.unwrap_or_default();
    let mut out = Map::new();
    for user in kv::get_all::<User>(list.iter().map(|u| key::user(u)).collect())? {
        out.insert(user.uuid.clone(), json!({
            "name": user.name, "role": user.role,
            "created_ts": clock::ts(user.created), "updated_ts": clock::ts(user.updated),
        }));
    }
    Answer::ok(json!({ "users": out }))
}

pub fn update_user(c: &Caller, u: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_user")?;
    let body = call.body()?;
    let mut user = load_user(c, u)?;
    require_over_user(c, &user)?;
    if body.contains_key("name") {
        user.name = field::name(&body, &user.name)?;
    }
    if let Some(v) = body.get("description") {
        user.description = field::description(v, "description")?;
    }
    if let Some(v) = body.get("activity") {
        user.activity = Some(v.clone()).filter(|v| !v.is_null());
    }
    if let Some(r) = field::opt_str(&body, "role")? {
        let new = load_role(c, &r)?;
        require_within(c, &new, "The role")?;
        if new.uuid != user.role {
            let old = kv::get::<Role>(&key::role(&user.role))?;
            let demoted = old.is_some_and(|o| rights::is_super(&o, &rule::constant)) && !rights::is_super(&new, &rule::constant);
            if demoted && !admin_remains(c, Some(&user.uuid), None)? {
                return Err(last_admin());
            }
        }
        user.role = new.uuid;
    }
    let mut w = Writes::new();
    user.updated = clock::now_ms();
    w.put(key::user(&user.uuid), &user)?;
    w.commit()?;
    crate::auth::users_or_roles_changed()?;
    Answer::ok(user.to_json())
}

pub fn delete_user(c: &Caller, u: &str) -> ApiResult<Answer> {
    c.require("delete_user")?;
    let user = load_user(c, u)?;
    require_over_user(c, &user)?;
    let lock = Lock::acquire(&key::account_users(&c.account))?;
    let is_admin = kv::get::<Role>(&key::role(&user.role))?.is_some_and(|r| rights::is_super(&r, &rule::constant));
    if is_admin && !admin_remains(c, Some(&user.uuid), None)? {
        return Err(last_admin());
    }
    let secrets_lock = Lock::acquire(&key::user_secret(&user.uuid))?;
    let mut list: Vec<String> = kv::get(&key::account_users(&c.account))?.unwrap_or_default();
    list.retain(|x| x != &user.uuid);
    let mut w = Writes::new();
    w.release(lock);
    w.release(secrets_lock);
    w.put(key::account_users(&c.account), &list)?;
    // Revoked in the same transaction as the list change: a crash cannot
    // leave a user gone from the list whose secret still signs in.
    w.revoke(key::user(&user.uuid));
    crate::routes::secrets::revoke_all(&mut w, &user.uuid)?;
    w.commit()?;
    crate::auth::users_or_roles_changed()?;
    Answer::ok(user.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_place_is_given_and_no_more() {
        assert!(require_room(4, 5, "Users").is_ok());
        assert_eq!(require_room(5, 5, "Users").map_err(|e| e.subcode), Err(Subcode::QuotaViolation));
    }
}
