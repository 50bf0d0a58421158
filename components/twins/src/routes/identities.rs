//! Identities: names attached to twins by an account, resolvable back to
//! twins. Stored per (twin, account, name), with two indexes: the twin's
//! identities (`il:`) and a name's attachments (`rs:`).
//!
//! Bounds (review M9): an account attaches at most `MAX_PER_TWIN`
//! identities to one twin and one name to at most `MAX_TWINS_PER_NAME`
//! twins, so every index record holds at most that many refs per account
//! (accounts are made by the operator only), and its whole-record rewrite
//! on each attach stays bounded. The bounds are per account so that a
//! foreign account, which may attach its own identities to any twin it can
//! access (as in Trusted Twin), cannot use up the owner's share.
//!
//! Locks: each index record has its own lock, named by its key. A write
//! touches one twin: it takes that twin's `il:` lock first, then the `rs:`
//! locks of the names it changes in name order (the AAS mirror takes its
//! shell's lock before both). Everyone takes them in that one order, so no
//! two writers wait on each other in a cycle; and writers of different
//! twins and names (other tenants, the registry) no longer queue behind one
//! global lock.

use crate::access;
use crate::auth::Caller;
use crate::clock;
use crate::error::{ApiError, ApiResult, Subcode};
use crate::ids;
use crate::kv::{self, key, Lock, Writes};
use crate::model::{Identity, IdentityRef, Twin};
use crate::request::{field, parse_bool, Call};
use crate::routes::twins;
use crate::Answer;
use serde_json::{json, Map, Value};

/// Identities one account may attach to one twin (API.md, "Identities").
pub const MAX_PER_TWIN: usize = 1_000;
/// Twins one account may attach one identity name to.
pub const MAX_TWINS_PER_NAME: usize = 1_000;

/// `^[A-Za-z_][0-9A-Za-z_]{0,7}#[0-9A-Za-z_=+-]{1,128}$`
pub fn valid_name(name: &str) -> bool {
    let Some((kind, id)) = name.split_once('#') else { return false };
    let kb = kind.as_bytes();
    !kb.is_empty()
        && kb.len() <= 8
        && (kb[0].is_ascii_alphabetic() || kb[0] == b'_')
        && kb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'+' | b'-'))
}

fn own(c: &Caller, t: &str, name: &str) -> ApiResult<(Twin, Identity)> {
    let (twin, _) = twins::accessible(c, t)?;
    let identity = kv::get::<Identity>(&key::identity(&twin.uuid, &c.account, name))?
        .ok_or_else(|| ApiError::not_found("Identity"))?;
    Ok((twin, identity))
}

/// The names of the locks an identity write of `twin` touching `names`
/// takes, in the order it takes them (see the module comment).
fn lock_order<'a>(twin: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    std::iter::once(key::twin_identities(twin)).chain(names.into_iter().map(key::resolve)).collect()
}

/// Take the index locks of an identity write of `twin` touching `names`.
pub fn lock_indexes<'a>(twin: &str, names: impl IntoIterator<Item = &'a str>) -> ApiResult<Vec<Lock>> {
    lock_order(twin, names).iter().map(|name| Lock::acquire(name)).collect()
}

/// Whether `refs` would hold more than `max` refs of `account` with
/// `adding` more.
fn over_bound(refs: &[IdentityRef], account: &str, adding: usize, max: usize) -> bool {
    refs.iter().filter(|r| r.account == account).count() + adding > max
}

fn quota(why: String) -> ApiError {
    ApiError::new(Subcode::QuotaViolation, why)
}

/// What `attach` does with an identity over a bound.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OverBound {
    /// Refuse the whole call (the API: 400, nothing stored).
    Refuse,
    /// Leave that identity out (the AAS mirror: a shell is stored even when
    /// its asset id already names `MAX_TWINS_PER_NAME` shells).
    Skip,
}

/// Store new identities of one twin and their index entries (into `w`,
/// one commit for all of them). The caller holds `lock_indexes` of the
/// twin and the names: the existence checks and the bounds are read under
/// them. An identity that exists already is an error (400358).
pub fn attach(w: &mut Writes, new: &[Identity], over: OverBound) -> ApiResult<()> {
    let Some(first) = new.first() else { return Ok(()) };
    let keys: Vec<String> = new.iter().map(|i| key::identity(&i.twin, &i.account, &i.name)).collect();
    if let Some((identity, _)) = new.iter().zip(kv::get_many_raw(&keys)?).find(|(_, found)| found.is_some()) {
        return Err(ApiError::exists(format!("Identity '{}' already exists.", identity.name)));
    }
    let mut on_twin: Vec<IdentityRef> = kv::get(&key::twin_identities(&first.twin))?.unwrap_or_default();
    if over_bound(&on_twin, &first.account, new.len(), MAX_PER_TWIN) {
        return Err(quota(format!("An account may attach at most {MAX_PER_TWIN} Identities to a Twin.")));
    }
    let mut by_name: std::collections::BTreeMap<&str, Vec<IdentityRef>> = std::collections::BTreeMap::new();
    for identity in new {
        debug_assert_eq!(identity.twin, first.twin);
        debug_assert_eq!(identity.account, first.account);
        let r = IdentityRef { twin: identity.twin.clone(), account: identity.account.clone(), name: identity.name.clone() };
        if !by_name.contains_key(identity.name.as_str()) {
            by_name.insert(&identity.name, kv::get(&key::resolve(&identity.name))?.unwrap_or_default());
        }
        let list = by_name.get_mut(identity.name.as_str()).ok_or_else(|| ApiError::storage("index"))?;
        if !list.contains(&r) {
            if over_bound(list, &identity.account, 1, MAX_TWINS_PER_NAME) {
                match over {
                    OverBound::Refuse => {
                        return Err(quota(format!(
                            "Identity '{}' is attached to {MAX_TWINS_PER_NAME} Twins of this account already.",
                            identity.name
                        )))
                    }
                    OverBound::Skip => continue,
                }
            }
            list.push(r.clone());
        }
        if !on_twin.contains(&r) {
            on_twin.push(r);
        }
        w.put(key::identity(&identity.twin, &identity.account, &identity.name), identity)?;
    }
    w.put(key::twin_identities(&first.twin), &on_twin)?;
    for (name, list) in by_name {
        w.put(key::resolve(name), &list)?;
    }
    Ok(())
}

pub fn create(c: &Caller, t: &str, call: &Call) -> ApiResult<Answer> {
    c.require("create_twin_identity")?;
    let body = call.body()?;
    let (twin, _) = twins::accessible(c, t)?;
    let specs = match body.get("identities") {
        Some(Value::Object(o)) => o,
        _ => return Err(ApiError::format("'identities' must be an object.")),
    };
    // Over the bound on its own: refused before any lock is taken (this
    // also bounds the locks one call takes).
    if specs.len() > MAX_PER_TWIN {
        return Err(quota(format!("An account may attach at most {MAX_PER_TWIN} Identities to a Twin.")));
    }
    let now = clock::now_ms();
    let mut new = Vec::new();
    for (name, spec) in specs {
        if !valid_name(name) {
            return Err(ApiError::format(format!(
                "Identity '{name}' does not match ^[A-Za-z_][0-9A-Za-z_]{{0,7}}#[0-9A-Za-z_=+-]{{1,128}}$."
            )));
        }
        let spec = match spec {
            Value::Object(o) => o.clone(),
            Value::Null => Map::new(),
            _ => return Err(ApiError::format(format!("Identity '{name}' must be an object."))),
        };
        new.push(Identity {
            name: name.clone(),
            twin: twin.uuid.clone(),
            account: c.account.clone(),
            visibility: field::opt_rule(&spec, "visibility", name)?.flatten(),
            validity: crate::request::field::opt_ts(&spec, "validity_ts")?,
            created: now,
            updated: now,
        });
    }
    let mut w = Writes::new();
    w.release_all(lock_indexes(&twin.uuid, new.iter().map(|i| i.name.as_str()))?);
    attach(&mut w, &new, OverBound::Refuse)?;
    w.commit()?;
    Answer::created(json!({ "identities": new.iter().map(|i| &i.name).collect::<Vec<_>>() }))
}

pub fn get(c: &Caller, t: &str, name: &str) -> ApiResult<Answer> {
    c.require("get_twin_identity")?;
    Answer::ok(own(c, t, name)?.1.to_json())
}

pub fn update(c: &Caller, t: &str, name: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_twin_identity")?;
    let body = call.body()?;
    let (twin, _) = own(c, t, name)?;
    // Under the twin's index lock, re-read: a delete meanwhile must not be
    // undone by this write (an identity record no index points to).
    let mut w = Writes::new();
    w.release(Lock::acquire(&key::twin_identities(&twin.uuid))?);
    let mut identity = kv::get::<Identity>(&key::identity(&twin.uuid, &c.account, name))?
        .ok_or_else(|| ApiError::not_found("Identity"))?;
    if let Some(v) = field::opt_rule(&body, "visibility", "identity")? {
        identity.visibility = v;
    }
    if body.contains_key("validity_ts") {
        identity.validity = crate::request::field::opt_ts(&body, "validity_ts")?;
    }
    identity.updated = clock::now_ms();
    w.put(key::identity(&identity.twin, &identity.account, &identity.name), &identity)?;
    w.commit()?;
    Answer::ok(identity.to_json())
}

pub fn delete(c: &Caller, t: &str, name: &str) -> ApiResult<Answer> {
    c.require("delete_twin_identity")?;
    let (twin, _) = own(c, t, name)?;
    let mut w = Writes::new();
    w.release_all(lock_indexes(&twin.uuid, [name])?);
    // Re-read under the locks: of two concurrent deletes one answers 404.
    let identity = kv::get::<Identity>(&key::identity(&twin.uuid, &c.account, name))?
        .ok_or_else(|| ApiError::not_found("Identity"))?;
    let r = IdentityRef { twin: twin.uuid.clone(), account: c.account.clone(), name: name.to_string() };
    let mut on_twin: Vec<IdentityRef> = kv::get(&key::twin_identities(&twin.uuid))?.unwrap_or_default();
    let mut by_name: Vec<IdentityRef> = kv::get(&key::resolve(name))?.unwrap_or_default();
    on_twin.retain(|x| x != &r);
    by_name.retain(|x| x != &r);
    w.put(key::twin_identities(&twin.uuid), &on_twin)?;
    w.put(key::resolve(name), &by_name)?;
    w.delete(key::identity(&twin.uuid, &c.account, name));
    w.commit()?;
    Answer::ok(identity.to_json())
}

fn load_identities(refs: &[IdentityRef]) -> ApiResult<Vec<Identity>> {
    let keys: Vec<String> = refs.iter().map(|r| key::identity(&r.twin, &r.account, &r.name)).collect();
    Ok(kv::get_many_raw(&keys)?
        .into_iter()
        .filter_map(|raw| raw.and_then(|b| serde_json::from_slice::<Identity>(&b).ok()))
        .collect())
}

pub fn list(c: &Caller, t: &str, call: &Call) -> ApiResult<Answer> {
    c.require("get_twin_identities")?;
    let (twin, mut vars) = twins::accessible(c, t)?;
    let show_personal = call.flag("show_personal", true)?;
    let show_expired = call.flag("show_expired", false)?;
    let show_valid = call.flag("show_valid", true)?;
    let show_public = call.flag("show_public", true)?;
    let show_private = call.flag("show_private", true)?;
    // `show_foreign`: a boolean, or the one account whose identities to show.
    let foreign: Option<Option<String>> = match call.param("show_foreign") {
        None => None,
        Some(v) => match parse_bool(v) {
            Some(true) => Some(None),
            Some(false) => None,
            None if ids::is_uuid(v) => Some(Some(v.to_string())),
            None => return Err(ApiError::format("'show_foreign' must be a boolean or an account UUID.")),
        },
    };
    let mut refs: Vec<IdentityRef> = kv::get(&key::twin_identities(&twin.uuid))?.unwrap_or_default();
    // Foreign accounts' identities are read only when asked for: the
    // owner's list costs its own identities, whatever others attached.
    match &foreign {
        None => refs.retain(|r| r.account == c.account),
        Some(Some(a)) => refs.retain(|r| r.account == c.account || &r.account == a),
        Some(None) => {}
    }
    let now = clock::now_ms();
    let mut out = Map::new();
    for identity in load_identities(&refs)? {
        access::set_identity(&mut vars, &identity);
        let shown = if identity.account == c.account {
            let expired = identity.expired(now);
            show_personal
                && (if expired { show_expired } else { show_valid })
                && (if identity.visibility.is_some() { show_public } else { show_private })
                && access::identity_visible(c, &identity, &vars)
        } else {
            foreign.as_ref().is_some_and(|f| f.as_ref().is_none_or(|a| a == &identity.account))
                && !identity.expired(now)
                && access::identity_visible(c, &identity, &vars)
        };
        if !shown || out.contains_key(&identity.name) && identity.account != c.account {
            continue;
        }
        let mut item = identity.list_json();
        if identity.account != c.account {
            item["account"] = json!(identity.account);
        }
        out.insert(identity.name.clone(), item);
    }
    Answer::ok(json!({ "identities": out }))
}

pub fn resolve(c: &Caller, name: &str, call: &Call) -> ApiResult<Answer> {
    c.require("resolve_twin_identity")?;
    let details = call.flag("details", false)?;
    let contexts: Vec<String> = call.list("context").unwrap_or_else(|| vec!["personal".into()]);
    for ctx in &contexts {
        if !(ctx == "personal" || ctx == "system" || ids::is_uuid(ctx)) {
            return Err(ApiError::format("'context' must be 'personal', 'system' or an account UUID."));
        }
    }
    let in_context = |account: &str| {
        contexts.iter().any(|ctx| match ctx.as_str() {
            "personal" => account == c.account,
            "system" => true,
            uuid => account == uuid,
        })
    };
    let refs: Vec<IdentityRef> = kv::get(&key::resolve(name))?.unwrap_or_default();
    let refs: Vec<IdentityRef> = refs.into_iter().filter(|r| in_context(&r.account)).collect();
    let now = clock::now_ms();
    let identities: Vec<Identity> = load_identities(&refs)?.into_iter().filter(|i| !i.expired(now)).collect();
    let twins: Vec<Twin> = kv::get_all(identities.iter().map(|i| key::twin(&i.twin)).collect())?;
    let mut twins_seen: Vec<String> = Vec::new();
    let mut details_out = Map::new();
    let mut vars = access::caller_vars(c);
    for identity in identities {
        if twins_seen.contains(&identity.twin) {
            continue;
        }
        let Some(twin) = twins.iter().find(|t| t.uuid == identity.twin) else { continue };
        access::set_twin(&mut vars, twin);
        access::set_identity(&mut vars, &identity);
        if !access::identity_visible(c, &identity, &vars) {
            continue;
        }
        twins_seen.push(twin.uuid.clone());
        if details && access::twin_accessible(c, twin, &vars) {
            details_out.insert(twin.uuid.clone(), twin.to_json());
        }
    }
    if details && !details_out.is_empty() {
        Answer::ok(json!({ "twins": details_out }))
    } else {
        Answer::ok(json!({ "twins": twins_seen }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(account: &str, name: &str) -> IdentityRef {
        IdentityRef { twin: "t".into(), account: account.into(), name: name.into() }
    }

    #[test]
    fn locks_are_taken_twin_first_then_names_in_order_once() {
        assert_eq!(lock_order("T", ["b#1", "a#1", "b#1"]), vec!["il:T", "rs:a#1", "rs:b#1"]);
        assert_eq!(lock_order("T", []), vec!["il:T"]);
    }

    #[test]
    fn bounds_count_only_the_accounts_own_refs() {
        let mut refs: Vec<IdentityRef> = (0..3).map(|i| r("b", &format!("X#{i}"))).collect();
        refs.push(r("a", "A#1"));
        assert!(!over_bound(&refs, "a", 2, 3));
        assert!(over_bound(&refs, "a", 3, 3));
        assert!(over_bound(&refs, "b", 1, 3));
        assert!(!over_bound(&refs, "c", 3, 3));
    }
}
