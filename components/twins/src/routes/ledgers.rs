//! Ledgers: one per (twin, account), a map of entries holding a value, a
//! reference to another ledger's entry, or an include of another of the
//! account's ledgers. Every write is one `set-many`.

use crate::access;
use crate::auth::Caller;
use crate::clock::{self, ts};
use crate::error::{ApiError, ApiResult, Subcode};
use crate::kv::{self, key, Lock, Writes};
use crate::model::{Entry, EntryKind, Ledger, Twin};
use crate::request::{field, Call, QUOTA_BYTES};
use crate::routes::{history, twins};
use crate::rule::{self, Vars};
use crate::Answer;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// The longest chain of references followed before `too_many_hops`.
const MAX_HOPS: usize = 8;

pub enum View {
    Full,
    Values,
}

pub enum Write {
    Entries,
    Values,
}

/// Entry names: `^_*[a-z0-9]+([_-][0-9a-z]+)*$`, at most 128 characters.
pub fn valid_entry_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 128 {
        return false;
    }
    let rest = name.trim_start_matches('_');
    !rest.is_empty()
        && rest.split(['_', '-']).all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

fn check_entry_name(name: &str) -> ApiResult<()> {
    if valid_entry_name(name) {
        Ok(())
    } else {
        Err(ApiError::format(format!("Entry name '{name}' does not match ^_*[a-z0-9]+([_-][0-9a-z]+)*$ (at most 128 characters).")))
    }
}

pub fn load(t: &str, a: &str) -> ApiResult<Ledger> {
    Ok(kv::get::<Ledger>(&key::ledger(t, a))?.unwrap_or_default())
}

/// What a ledger call works on: the twin, the ledger's account, the
/// caller's rule variables, the ledger and, for a write, the ledger's lock.
struct Opened {
    twin: Twin,
    account: String,
    vars: Vars,
    ledger: Ledger,
    lock: Option<Lock>,
}

/// Open ledger `l` of twin `t`: 404 unless `c` may reach the twin; writes
/// only to the caller's own ledger (403), under its lock. When the ledger's
/// account is known from the path (`personal` or a UUID), twin and ledger
/// are read in one store call.
fn open(c: &Caller, t: &str, l: &str, writing: bool) -> ApiResult<Opened> {
    let from_path = match l {
        "personal" => Some(c.account.clone()),
        other if crate::ids::is_uuid(other) && (!writing || other == c.account) => Some(other.to_string()),
        _ => None,
    };
    let Some(account) = from_path.filter(|_| crate::ids::is_uuid(t)) else {
        // Aliases and refused writes: the twin first, so an invisible twin
        // is a 404 before anything else.
        let (twin, vars) = twins::accessible(c, t)?;
        let account = c.ledger_account(l, &twin.owner, &twin.creator)?;
        if writing && account != c.account {
            return Err(ApiError::forbidden("Entries can only be written to your own (personal) Ledger."));
        }
        let lock = if writing { Some(Lock::acquire(&key::ledger(&twin.uuid, &account))?) } else { None };
        let ledger = load(&twin.uuid, &account)?;
        return Ok(Opened { twin, account, vars, ledger, lock });
    };
    let lock = if writing { Some(Lock::acquire(&key::ledger(t, &account))?) } else { None };
    let (twin_key, ledger_key) = (key::twin(t), key::ledger(t, &account));
    let (twin, ledger) = match (writing, c.prefetched(&twin_key), c.prefetched(&ledger_key)) {
        (false, Some(twin), Some(ledger)) => (kv::decode_opt::<Twin>(&twin_key, twin)?, kv::decode_opt::<Ledger>(&ledger_key, ledger)?),
        _ => kv::get2::<Twin, Ledger>(&twin_key, &ledger_key)?,
    };
    let twin = twin.ok_or_else(|| ApiError::not_found("Twin"))?;
    let vars = twins::check_accessible(c, &twin)?;
    Ok(Opened { twin, account, vars, ledger: ledger.unwrap_or_default(), lock })
}

/// Open the caller's own ledger for a write, under its lock, with the
/// request's `conditions` checked (nothing is written if one fails).
fn open_for_write(c: &Caller, t: &str, l: &str, body: &Map<String, Value>) -> ApiResult<Opened> {
    let mut opened = open(c, t, l, true)?;
    check_conditions(c, body, &opened.ledger, &mut opened.vars)?;
    Ok(opened)
}

/// Write `ledger` (within its quota) with `w`'s other writes in one
/// commit, then let the next writer in.
fn commit(mut w: Writes, twin: &Twin, account: &str, ledger: &Ledger, lock: Option<Lock>) -> ApiResult<()> {
    w.put_raw(key::ledger(&twin.uuid, account), check_quota(ledger)?);
    w.release_all(lock);
    w.commit()
}

fn entries_of(body: &Map<String, Value>) -> ApiResult<&Map<String, Value>> {
    match body.get("entries") {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ApiError::format("'entries' must be an object.")),
        None => Err(ApiError::format("'entries' is required.")),
    }
}

fn opt_retention(spec: &Map<String, Value>, name: &str) -> ApiResult<Option<Option<String>>> {
    match spec.get("history") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if history::retention_ms(s).is_some() => Ok(Some(Some(s.clone()))),
        Some(_) => Err(ApiError::format(format!("'{name}.history' must match ^([1-9][0-9]{{0,2}}[DWMY]|INF)$ or be null."))),
    }
}

/// Parse `twin://{twin}/{account}/{entry}` (reference) or
/// `twin://{twin}/{entry}` (include).
fn parse_source(source: &str, parts: usize) -> Option<Vec<&str>> {
    let rest = source.strip_prefix("twin://")?;
    let p: Vec<&str> = rest.split('/').collect();
    (p.len() == parts && p.iter().all(|s| !s.is_empty())).then_some(p)
}

fn source_of<'a>(spec: &'a Map<String, Value>, kind: &str, name: &str) -> ApiResult<(&'a str, Option<&'a Map<String, Value>>)> {
    let o = spec.get(kind).and_then(Value::as_object).ok_or_else(|| ApiError::format(format!("'{name}.{kind}' must be an object.")))?;
    let s = o.get("source").and_then(Value::as_str).ok_or_else(|| ApiError::format(format!("'{name}.{kind}.source' must be a string.")))?;
    Ok((s, Some(o)))
}

/// A new entry from its add spec.
fn new_entry(c: &Caller, twin: &str, name: &str, spec: &Value, now: i64) -> ApiResult<Entry> {
    let spec = spec.as_object().ok_or_else(|| ApiError::format(format!("Entry '{name}' must be an object.")))?;
    let mut visibility = field::opt_rule(spec, "visibility", name)?.flatten();
    let kind = if spec.contains_key("ref") {
        let (source, inner) = source_of(spec, "ref", name)?;
        let p = parse_source(source, 3)
            .ok_or_else(|| ApiError::format(format!("'{name}.ref.source' must be twin://{{twin}}/{{account}}/{{entry}}.")))?;
        if p[0] == twin && p[1] == c.account {
            return Err(ApiError::not_allowed("A reference cannot point into its own Ledger."));
        }
        if visibility.is_none() {
            if let Some(inner) = inner {
                visibility = field::opt_rule(inner, "visibility", &format!("{name}.ref"))?.flatten();
            }
        }
        EntryKind::Reference { source: source.to_string() }
    } else if spec.contains_key("include") {
        let (source, _) = source_of(spec, "include", name)?;
        let p = parse_source(source, 2)
            .ok_or_else(|| ApiError::format(format!("'{name}.include.source' must be twin://{{twin}}/{{entry}}.")))?;
        if p[0] == twin {
            return Err(ApiError::not_allowed("An include cannot point into its own Ledger."));
        }
        EntryKind::Include { source: source.to_string() }
    } else {
        EntryKind::Value { value: spec.get("value").cloned().unwrap_or(Value::Null) }
    };
    let history = opt_retention(spec, name)?.flatten();
    Ok(Entry {
        kind,
        timeseries: spec.get("timeseries").cloned().filter(|v| !v.is_null()),
        publish: spec.get("publish").cloned().filter(|v| !v.is_null()),
        ..Entry::value(Value::Null, visibility, history, now)
    })
}

/// `conditions`: every rule must hold for its entry's current state.
fn check_conditions(c: &Caller, body: &Map<String, Value>, ledger: &Ledger, vars: &mut Vars) -> ApiResult<()> {
    let Some(conditions) = body.get("conditions").filter(|v| !v.is_null()) else { return Ok(()) };
    let conditions = conditions.as_object().ok_or_else(|| ApiError::format("'conditions' must be an object."))?;
    for (name, rule_text) in conditions {
        let rule_text = rule_text.as_str().ok_or_else(|| ApiError::format(format!("'conditions.{name}' must be a string.")))?;
        rule::check(&format!("conditions.{name}"), rule_text)?;
        let ok = ledger.entries.get(name).is_some_and(|entry| {
            access::set_ledger(vars, &c.account, ledger, rule::uses(rule_text, "LEDGER"));
            access::set_entry(vars, name, entry);
            rule::holds(rule_text, vars)
        });
        if !ok {
            return Err(ApiError::new(Subcode::OperationOrderViolation, format!("Condition for entry '{name}' is not met.")));
        }
    }
    Ok(())
}

fn check_quota(ledger: &Ledger) -> ApiResult<Vec<u8>> {
    let bytes = serde_json::to_vec(ledger).map_err(ApiError::storage)?;
    if bytes.len() > QUOTA_BYTES {
        return Err(ApiError::new(Subcode::QuotaViolation, "The Ledger would exceed the 64 kB quota."));
    }
    Ok(bytes)
}

pub fn add(c: &Caller, t: &str, l: &str, call: &Call) -> ApiResult<Answer> {
    c.require("add_twin_ledger_entry")?;
    let body = call.body()?;
    let specs = entries_of(&body)?;
    let Opened { twin, account, mut ledger, lock, .. } = open_for_write(c, t, l, &body)?;
    let now = clock::now_ms();
    let mut w = Writes::new();
    let mut added = Vec::new();
    for (name, spec) in specs {
        check_entry_name(name)?;
        if ledger.entries.contains_key(name) {
            return Err(ApiError::exists(format!("Entry '{name}' already exists.")));
        }
        let mut entry = new_entry(c, &twin.uuid, name, spec, now)?;
        history::record(&mut w, &twin.uuid, &account, name, &mut entry, now)?;
        ledger.entries.insert(name.clone(), entry);
        added.push(name.clone());
    }
    commit(w, &twin, &account, &ledger, lock)?;
    Answer::created(json!({ "entries": render(&twin, &account, &ledger, added.iter().map(String::as_str), View::Full) }))
}

pub fn update(c: &Caller, t: &str, l: &str, call: &Call, mode: Write) -> ApiResult<Answer> {
    c.require(match mode {
        Write::Entries => "update_twin_ledger_entry",
        Write::Values => "update_twin_ledger_entry_value",
    })?;
    let body = call.body()?;
    let specs = entries_of(&body)?;
    let Opened { twin, account, mut ledger, lock, .. } = open_for_write(c, t, l, &body)?;
    let now = clock::now_ms();
    let mut w = Writes::new();
    let mut updated = Vec::new();
    for (name, spec) in specs {
        let spec = spec.as_object().ok_or_else(|| ApiError::format(format!("Entry '{name}' must be an object.")))?;
        let entry = ledger.entries.get_mut(name).ok_or_else(|| ApiError::not_found(&format!("Entry '{name}'")))?;
        if matches!(mode, Write::Values) && !spec.contains_key("value") {
            return Err(ApiError::format(format!("'{name}.value' is required.")));
        }
        if spec.contains_key("ref") || spec.contains_key("include") {
            return Err(ApiError::not_allowed(format!("The type of entry '{name}' cannot be changed.")));
        }
        if let Some(new_value) = spec.get("value") {
            match &mut entry.kind {
                EntryKind::Value { value } => {
                    if value != new_value {
                        *value = new_value.clone();
                        entry.changed = now;
                        history::record(&mut w, &twin.uuid, &account, name, entry, now)?;
                    }
                }
                _ => return Err(ApiError::not_allowed(format!("The value of reference or include entry '{name}' cannot be written."))),
            }
        }
        if matches!(mode, Write::Entries) {
            if let Some(v) = field::opt_rule(spec, "visibility", name)? {
                entry.visibility = v;
            }
            if let Some(h) = opt_retention(spec, name)? {
                history::set_retention(entry, h);
            }
            if let Some(v) = spec.get("timeseries") {
                entry.timeseries = Some(v.clone()).filter(|v| !v.is_null());
            }
            if let Some(v) = spec.get("publish") {
                entry.publish = Some(v.clone()).filter(|v| !v.is_null());
            }
        }
        entry.updated = now;
        updated.push(name.clone());
    }
    commit(w, &twin, &account, &ledger, lock)?;
    let view = match mode {
        Write::Entries => View::Full,
        Write::Values => View::Values,
    };
    Answer::ok(json!({ "entries": render(&twin, &account, &ledger, updated.iter().map(String::as_str), view) }))
}

pub fn delete(c: &Caller, t: &str, l: &str, call: &Call) -> ApiResult<Answer> {
    c.require("delete_twin_ledger_entry")?;
    let body = call.body()?;
    let Opened { twin, account, mut ledger, lock, .. } = open_for_write(c, t, l, &body)?;
    let names: Vec<String> = match call.list("entries") {
        Some(list) => list.into_iter().filter(|n| ledger.entries.contains_key(n)).collect(),
        None => ledger.entries.keys().cloned().collect(),
    };
    let answer = render(&twin, &account, &ledger, names.iter().map(String::as_str), View::Full);
    let mut w = Writes::new();
    for name in &names {
        if let Some(entry) = ledger.entries.shift_remove(name) {
            history::forget(&mut w, &twin.uuid, &account, name, &entry);
        }
    }
    commit(w, &twin, &account, &ledger, lock)?;
    Answer::ok(json!({ "entries": answer }))
}

pub fn get(c: &Caller, t: &str, l: &str, call: &Call, view: View) -> ApiResult<Answer> {
    c.require(match view {
        View::Full => "get_twin_ledger_entry",
        View::Values => "get_twin_ledger_entry_value",
    })?;
    let Opened { twin, account, mut vars, ledger, .. } = open(c, t, l, false)?;
    let own = account == c.account;
    let (show_refs, show_public, show_private) = if own {
        (call.flag("show_references", true)?, call.flag("show_public", true)?, call.flag("show_private", true)?)
    } else {
        (true, true, true)
    };
    let wanted = call.list("entries");
    let names = visible_names(c, &account, &ledger, &mut vars, wanted.as_deref(), |e| {
        (show_refs || !matches!(e.kind, EntryKind::Reference { .. }))
            && if e.visibility.is_some() { show_public } else { show_private }
    });
    Answer::ok(json!({ "entries": render(&twin, &account, &ledger, names.iter().map(String::as_str), view) }))
}

/// Names of the entries of `ledger` that `c` sees, among `wanted` (all if
/// none) and passing `keep`, in ledger order.
pub fn visible_names(
    c: &Caller,
    account: &str,
    ledger: &Ledger,
    vars: &mut Vars,
    wanted: Option<&[String]>,
    keep: impl Fn(&Entry) -> bool,
) -> Vec<String> {
    let wanted_and_kept = |name: &str, entry: &Entry| wanted.is_none_or(|w| w.iter().any(|x| x == name)) && keep(entry);
    // Own ledger and an entry rule that reads nothing: no per-entry variables.
    if account == c.account {
        let all = match c.role.entry_rule.as_deref() {
            None => Some(true),
            Some(r) => rule::constant(r),
        };
        if let Some(all) = all {
            if !all {
                return Vec::new();
            }
            return ledger.entries.iter().filter(|(n, e)| wanted_and_kept(n, e)).map(|(n, _)| n.clone()).collect();
        }
    }
    access::visible_entries(c, account, ledger, vars, wanted_and_kept)
}

/// The answer for `names` of `ledger`, references resolved.
fn render<'a>(twin: &Twin, account: &str, ledger: &Ledger, names: impl Iterator<Item = &'a str>, view: View) -> Map<String, Value> {
    let mut out = Map::new();
    for name in names {
        let Some(entry) = ledger.entries.get(name) else { continue };
        let (value, changed, link) = match &entry.kind {
            EntryKind::Value { value } => (value.clone(), entry.changed, None),
            EntryKind::Reference { source } => {
                let mut seen = HashSet::from([(twin.uuid.clone(), account.to_string(), name.to_string())]);
                let r = resolve_reference(account, source, &mut seen, 0);
                (r.value, r.changed.unwrap_or(entry.changed), Some(("ref", source, r.status)))
            }
            EntryKind::Include { source } => {
                let r = resolve_include(account, source);
                (r.value, r.changed.unwrap_or(entry.changed), Some(("include", source, r.status)))
            }
        };
        let mut o = Map::new();
        if let (View::Full, Some((kind, source, status))) = (&view, &link) {
            o.insert((*kind).into(), json!({ "source": source, "status": status }));
        }
        o.insert("value".into(), value);
        if let View::Full = view {
            o.insert("visibility".into(), json!(entry.visibility));
            if let Some(h) = &entry.history {
                o.insert("history".into(), json!(h));
            }
            if let Some(v) = &entry.timeseries {
                o.insert("timeseries".into(), v.clone());
            }
            if let Some(v) = &entry.publish {
                o.insert("publish".into(), v.clone());
            }
        }
        o.insert("entry_created_ts".into(), json!(ts(entry.created)));
        o.insert("entry_updated_ts".into(), json!(ts(entry.updated)));
        o.insert("value_changed_ts".into(), json!(ts(changed)));
        out.insert(name.to_string(), Value::Object(o));
    }
    out
}

struct Resolved {
    status: &'static str,
    value: Value,
    changed: Option<i64>,
}

impl Resolved {
    fn missing(status: &'static str) -> Resolved {
        Resolved { status, value: Value::Null, changed: None }
    }
}

/// Follow a reference made by `owner`'s ledger. The source entry must be
/// visible to `owner` (its visibility rule, for a foreign source).
fn resolve_reference(owner: &str, source: &str, seen: &mut HashSet<(String, String, String)>, hops: usize) -> Resolved {
    if hops >= MAX_HOPS {
        return Resolved::missing("too_many_hops");
    }
    let Some(p) = parse_source(source, 3) else { return Resolved::missing("not_found") };
    let (t, a, e) = (p[0].to_string(), p[1].to_string(), p[2].to_string());
    if !seen.insert((t.clone(), a.clone(), e.clone())) {
        return Resolved::missing("loop_detected");
    }
    let twin: Option<Twin> = kv::get(&key::twin(&t)).ok().flatten();
    let Some(twin) = twin.filter(|t| t.terminated.is_none()) else { return Resolved::missing("not_found") };
    let Ok(ledger) = load(&t, &a) else { return Resolved::missing("not_found") };
    let Some(entry) = ledger.entries.get(&e) else { return Resolved::missing("not_found") };
    if a != owner {
        // The source's rule judges the referencing account alone: the
        // reader's user, role, USER and DICT are not the referencing
        // account's, and would let a reader pass a rule meant for it (M10).
        let mut vars = Vars { account: json!(owner), ..Vars::default() };
        access::set_twin(&mut vars, &twin);
        let needs = entry.visibility.as_deref().is_some_and(|v| rule::uses(v, "LEDGER"));
        access::set_ledger(&mut vars, &a, &ledger, needs);
        access::set_entry(&mut vars, &e, entry);
        if !entry.visibility.as_deref().is_some_and(|v| rule::holds(v, &vars)) {
            return Resolved::missing("not_found");
        }
    }
    match &entry.kind {
        EntryKind::Value { value } => Resolved { status: "ok", value: value.clone(), changed: Some(entry.changed) },
        EntryKind::Reference { source } => resolve_reference(&a, source, seen, hops + 1),
        EntryKind::Include { source } => resolve_include(&a, source),
    }
}

/// An include reads another ledger of the same account, of a twin that is
/// not terminated (as a reference does; security review L8).
fn resolve_include(account: &str, source: &str) -> Resolved {
    let Some(p) = parse_source(source, 2) else { return Resolved::missing("not_found") };
    let twin: Option<Twin> = kv::get(&key::twin(p[0])).ok().flatten();
    if !twin.is_some_and(|t| t.terminated.is_none()) {
        return Resolved::missing("not_found");
    }
    let Ok(ledger) = load(p[0], account) else { return Resolved::missing("not_found") };
    match ledger.entries.get(p[1]).map(|e| (&e.kind, e.changed)) {
        Some((EntryKind::Value { value }, changed)) => Resolved { status: "ok", value: value.clone(), changed: Some(changed) },
        _ => Resolved::missing("not_found"),
    }
}
