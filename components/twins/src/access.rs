//! Who sees what (see API.md, "Who sees what"): twin access by the role's
//! twin rule, entries and identities by their visibility rules and the
//! role's entry and identity rules.

use crate::auth::Caller;
use crate::clock::ts;
use crate::model::{Entry, Identity, Ledger, Twin};
use crate::rule::{self, Vars};
use serde_json::{json, Map, Value};

/// The request-wide rule variables of `caller`.
pub fn caller_vars(caller: &Caller) -> Vars {
    Vars {
        account: json!(caller.account),
        user: json!(caller.user.uuid),
        role: json!(caller.role.uuid),
        user_desc: caller.user.description.clone().map(Value::Object).unwrap_or(Value::Null),
        dict: caller.dict.clone(),
        ..Vars::default()
    }
}

/// Set the twin variables.
pub fn set_twin(vars: &mut Vars, twin: &Twin) {
    vars.twin = json!(twin.uuid);
    vars.twin_status = json!(twin.status());
    vars.twin_created_ts = json!(ts(twin.created));
    vars.twin_updated_ts = json!(ts(twin.updated));
    vars.twin_desc = twin.description.clone().map(Value::Object).unwrap_or(Value::Null);
}

/// Whether `caller` may reach `twin` at all.
pub fn twin_accessible(caller: &Caller, twin: &Twin, vars: &Vars) -> bool {
    match (&caller.role.twin_rule, twin.owner == caller.account) {
        (None, own) => own,
        (Some(rule), _) => rule::holds(rule, vars),
    }
}

/// Set the ledger variables: `ledger` and, if any rule in play needs it,
/// `LEDGER` (entry name → own value).
pub fn set_ledger(vars: &mut Vars, account: &str, ledger: &Ledger, needs_values: bool) {
    vars.ledger = json!(account);
    vars.ledger_values = if needs_values {
        let mut m = Map::new();
        for (name, e) in &ledger.entries {
            m.insert(name.clone(), e.own_value().cloned().unwrap_or(Value::Null));
        }
        Value::Object(m)
    } else {
        Value::Null
    };
}

pub fn set_entry(vars: &mut Vars, name: &str, entry: &Entry) {
    vars.entry_name = json!(name);
    vars.entry_value = entry.own_value().cloned().unwrap_or(Value::Null);
    vars.entry_created_ts = json!(ts(entry.created));
    vars.entry_updated_ts = json!(ts(entry.updated));
    vars.value_changed_ts = json!(ts(entry.changed));
}

/// Whether `caller` sees entry `name` of the ledger of account `ledger_account`
/// (the entry variables must be set).
pub fn entry_visible(caller: &Caller, ledger_account: &str, entry: &Entry, vars: &Vars) -> bool {
    let role_ok = caller.role.entry_rule.as_deref().is_none_or(|r| rule::holds(r, vars));
    if ledger_account == caller.account {
        return role_ok;
    }
    role_ok && entry.visibility.as_deref().is_some_and(|v| rule::holds(v, vars))
}

/// Whether any rule that decides entry visibility for `caller` mentions
/// `LEDGER`.
pub fn entry_rules_use_ledger(caller: &Caller, ledger: &Ledger) -> bool {
    caller.role.entry_rule.as_deref().is_some_and(|r| rule::uses(r, "LEDGER"))
        || ledger.entries.values().any(|e| e.visibility.as_deref().is_some_and(|v| rule::uses(v, "LEDGER")))
}

pub fn set_identity(vars: &mut Vars, identity: &Identity) {
    vars.identity = json!(identity.name);
    vars.validity_ts = json!(identity.validity.map(ts));
}

/// Whether `caller` sees `identity` (identity variables set).
pub fn identity_visible(caller: &Caller, identity: &Identity, vars: &Vars) -> bool {
    let role_ok = caller.role.identity_rule.as_deref().is_none_or(|r| rule::holds(r, vars));
    if identity.account == caller.account {
        return role_ok;
    }
    role_ok && identity.visibility.as_deref().is_some_and(|v| rule::holds(v, vars))
}
