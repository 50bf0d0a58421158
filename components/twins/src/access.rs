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

/// Names of the entries of `ledger` (account `ledger_account`'s) that
/// `caller` sees, among those `keep` accepts, in ledger order (see API.md,
/// "Who sees what"). Sets the ledger and entry variables as it goes.
///
/// In a foreign ledger an entry is first judged by its own visibility rule
/// (written by the ledger's owner, so it may read the whole ledger as
/// `LEDGER`), and only then by the caller's role entry rule, which the
/// caller's account writes: there `LEDGER` holds the entries the caller
/// already sees by their visibility alone, never a private one. Otherwise
/// the caller's own rule would be an oracle on private values (H2).
pub fn visible_entries(
    caller: &Caller,
    ledger_account: &str,
    ledger: &Ledger,
    vars: &mut Vars,
    keep: impl Fn(&str, &Entry) -> bool,
) -> Vec<String> {
    let role_rule = caller.role.entry_rule.as_deref();
    let role_uses_ledger = role_rule.is_some_and(|r| rule::uses(r, "LEDGER"));
    let role_ok = |vars: &Vars| role_rule.is_none_or(|r| rule::holds(r, vars));
    if ledger_account == caller.account {
        set_ledger(vars, ledger_account, ledger, role_uses_ledger);
        let mut out = Vec::new();
        for (name, entry) in ledger.entries.iter().filter(|(n, e)| keep(n, e)) {
            set_entry(vars, name, entry);
            if role_ok(vars) {
                out.push(name.clone());
            }
        }
        return out;
    }
    let visibility_uses_ledger =
        ledger.entries.values().any(|e| e.visibility.as_deref().is_some_and(|v| rule::uses(v, "LEDGER")));
    set_ledger(vars, ledger_account, ledger, visibility_uses_ledger);
    // Judged by visibility alone: every entry when the role's rule reads
    // LEDGER (it gets them all), else only the kept ones.
    let shown: Vec<(&String, &Entry)> = ledger
        .entries
        .iter()
        .filter(|(n, e)| role_uses_ledger || keep(n, e))
        .filter(|(n, e)| {
            set_entry(vars, n, e);
            e.visibility.as_deref().is_some_and(|v| rule::holds(v, vars))
        })
        .collect();
    if role_uses_ledger {
        let m: Map<String, Value> =
            shown.iter().map(|(n, e)| ((*n).clone(), e.own_value().cloned().unwrap_or(Value::Null))).collect();
        vars.ledger_values = Value::Object(m);
    }
    let mut out = Vec::new();
    for (name, entry) in shown.into_iter().filter(|(n, e)| keep(n, e)) {
        set_entry(vars, name, entry);
        if role_ok(vars) {
            out.push(name.clone());
        }
    }
    out
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
