//! One twin core: every AAS shell in the registry is a Twin of the
//! registry's own account, its descriptor and liveness are entries of that
//! account's Ledger, and its ids resolve as Identities.

use crate::admin;
use crate::bindings::exports::twinlattice::twins::aas_twins::{Guest, MirrorError};
use crate::clock;
use crate::error::ApiError;
use crate::ids;
use crate::kv::{self, key, Lock, Writes};
use crate::model::{Entry, EntryKind, Identity, IdentityRef, Ledger, Termination, Twin};
use crate::routes::{history, identities, twins};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The descriptor extension the broker writes liveness into.
const LIVENESS_EXTENSION: &str = "twinlattice:liveness";
/// How long the registry account's ledger keeps descriptor and liveness
/// history.
const RETENTION: &str = "1Y";
const PUBLIC: &str = "true";

impl From<ApiError> for MirrorError {
    fn from(e: ApiError) -> Self {
        MirrorError::Storage(e.internal())
    }
}

thread_local! {
    /// The registry's account never changes once made: read it once.
    static REGISTRY_ACCOUNT: std::cell::OnceCell<String> = const { std::cell::OnceCell::new() };
}

fn registry_account() -> Result<String, MirrorError> {
    if let Some(a) = REGISTRY_ACCOUNT.with(|c| c.get().cloned()) {
        return Ok(a);
    }
    let account = find_or_create_registry_account()?;
    REGISTRY_ACCOUNT.with(|c| c.get_or_init(|| account.clone()).clone());
    Ok(account)
}

fn find_or_create_registry_account() -> Result<String, MirrorError> {
    if let Some(a) = kv::get::<String>("registry-account")? {
        return Ok(a);
    }
    // The first shells may arrive at once: one of them creates the account.
    let lock = Lock::acquire("registry-account")?;
    if let Some(a) = kv::get::<String>("registry-account")? {
        return Ok(a);
    }
    let creds = admin::new_account("AAS registry").map_err(|e| MirrorError::Storage(format!("{e:?}")))?;
    let mut w = Writes::new();
    w.release(lock);
    w.put("registry-account", &creds.account)?;
    w.commit()?;
    Ok(creds.account)
}

fn shell_key(id: &str) -> String {
    format!("aas:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id))
}

/// `KIND#id` when the id fits the identity pattern, else a hashed identity.
pub fn identity_name(kind: &str, id: &str) -> String {
    let plain = format!("{kind}#{id}");
    if identities::valid_name(&plain) {
        plain
    } else {
        ids::hashed_identity(kind, id)
    }
}

fn liveness_of(d: &Value) -> Option<Value> {
    d.get("extensions")?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(LIVENESS_EXTENSION))
        .and_then(|e| e.get("value").cloned())
}

fn description_of(id: &str, d: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("aas_id".into(), json!(id));
    for (field, name) in [("idShort", "id_short"), ("assetKind", "asset_kind"), ("assetType", "asset_type"), ("globalAssetId", "global_asset_id")] {
        if let Some(v) = d.get(field).filter(|v| !v.is_null()) {
            m.insert(name.into(), v.clone());
        }
    }
    m
}

/// Set `name` to `value` in `ledger`, appending history on change.
fn set_entry(w: &mut Writes, twin: &str, account: &str, ledger: &mut Ledger, name: &str, value: Value, now: i64) -> Result<(), ApiError> {
    match ledger.entries.get_mut(name) {
        Some(entry) => {
            if entry.own_value() != Some(&value) {
                entry.kind = EntryKind::Value { value };
                entry.changed = now;
                entry.updated = now;
                history::record(w, twin, account, name, entry, now)?;
            }
        }
        None => {
            let mut entry = Entry::value(value, Some(PUBLIC.into()), Some(RETENTION.into()), now);
            history::record(w, twin, account, name, &mut entry, now)?;
            ledger.entries.insert(name.into(), entry);
        }
    }
    Ok(())
}

/// The shell's identities not yet attached to its twin.
fn missing_identities(twin: &str, account: &str, names: Vec<String>, now: i64) -> Result<Vec<Identity>, ApiError> {
    let mut out = Vec::new();
    for name in names {
        if kv::get::<Identity>(&key::identity(twin, account, &name))?.is_none() {
            out.push(Identity {
                name,
                twin: twin.into(),
                account: account.into(),
                visibility: Some(PUBLIC.into()),
                validity: None,
                created: now,
                updated: now,
            });
        }
    }
    Ok(out)
}

impl Guest for crate::Component {
    fn shell_stored(descriptor_json: String) -> Result<String, MirrorError> {
        let d: Value = serde_json::from_str(&descriptor_json).map_err(|e| MirrorError::Invalid(e.to_string()))?;
        let id = d.get("id").and_then(Value::as_str).ok_or_else(|| MirrorError::Invalid("no string id".into()))?;
        let account = registry_account()?;
        let now = clock::now_ms();
        let description = description_of(id, &d);
        // Everything below is one commit (plus the new twin's scan position),
        // under the shell's lock and then the twin's and the names' index
        // locks (in the order of `identities`' module comment).
        let mut w = Writes::new();
        w.release(Lock::acquire(&shell_key(id))?);
        let twin = match kv::get::<String>(&shell_key(id))?.and_then(|t| kv::get::<Twin>(&key::twin(&t)).ok().flatten()) {
            Some(mut twin) => {
                if twin.description.as_ref() != Some(&description) {
                    twin.description = Some(description);
                    twin.updated = now;
                    w.put(key::twin(&twin.uuid), &twin)?;
                }
                twin
            }
            None => {
                let twin = Twin {
                    uuid: ids::uuid4(),
                    owner: account.clone(),
                    creator: account.clone(),
                    description: Some(description),
                    created: now,
                    updated: now,
                    terminated: None,
                };
                twins::stage_new(&mut w, &twin)?;
                w.put(shell_key(id), &twin.uuid)?;
                twin
            }
        };
        let mut ledger = kv::get::<Ledger>(&key::ledger(&twin.uuid, &account))?.unwrap_or_default();
        set_entry(&mut w, &twin.uuid, &account, &mut ledger, "descriptor", d.clone(), now)?;
        if let Some(l) = liveness_of(&d) {
            set_entry(&mut w, &twin.uuid, &account, &mut ledger, "liveness", l, now)?;
        }
        w.put(key::ledger(&twin.uuid, &account), &ledger)?;
        let mut names = vec![identity_name("AAS", id)];
        if let Some(g) = d.get("globalAssetId").and_then(Value::as_str) {
            names.push(identity_name("ASSET", g));
        }
        w.release_all(identities::lock_indexes(&twin.uuid, names.iter().map(String::as_str))?);
        // A shell is stored even when its asset id already names the most
        // shells one name may: that identity is left out (the registry's
        // own look-ups do not use identities).
        identities::attach(&mut w, &missing_identities(&twin.uuid, &account, names, now)?, identities::OverBound::Skip)?;
        w.commit()?;
        Ok(twin.uuid)
    }

    fn shell_removed(id: String) -> Result<(), MirrorError> {
        let shell_lock = Lock::acquire(&shell_key(&id))?;
        let Some(t) = kv::get::<String>(&shell_key(&id))? else { return Ok(()) };
        let account = registry_account()?;
        let now = clock::now_ms();
        let mut w = Writes::new();
        w.release(shell_lock);
        // The twin's index lock, then (with its refs fixed by that lock) the
        // locks of the names to drop, in order.
        w.release(Lock::acquire(&key::twin_identities(&t))?);
        if let Some(mut twin) = kv::get::<Twin>(&key::twin(&t))? {
            twin.terminated = Some(Termination { issuer: account.clone(), at: now });
            twin.updated = now;
            w.put(key::twin(&t), &twin)?;
        }
        let mut on_twin: Vec<IdentityRef> = kv::get(&key::twin_identities(&t))?.unwrap_or_default();
        let mut names: Vec<&str> = on_twin.iter().filter(|r| r.account == account).map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            w.release(Lock::acquire(&key::resolve(name))?);
        }
        for r in on_twin.iter().filter(|r| r.account == account) {
            let mut by_name: Vec<IdentityRef> = kv::get(&key::resolve(&r.name))?.unwrap_or_default();
            by_name.retain(|x| x != r);
            w.put(key::resolve(&r.name), &by_name)?;
            w.delete(key::identity(&t, &account, &r.name));
        }
        on_twin.retain(|r| r.account != account);
        w.put(key::twin_identities(&t), &on_twin)?;
        w.delete(shell_key(&id));
        w.commit()?;
        Ok(())
    }
}
