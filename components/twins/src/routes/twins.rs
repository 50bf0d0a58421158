//! Twins: create, get, update (owner only), terminate (owner only), scan.

use crate::access;
use crate::auth::Caller;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::kv::{self, key, Writes};
use crate::limits;
use crate::model::{Termination, Twin};
use crate::request::{field, Call};
use crate::rule::{self, Vars};
use crate::Answer;
use serde_json::{json, Value};

/// The twin `t` if it exists and `c` may reach it; 404 otherwise, so that
/// existence does not leak. Returns the rule variables with the twin set.
pub fn accessible(c: &Caller, t: &str) -> ApiResult<(Twin, Vars)> {
    let twin: Twin = if ids::is_uuid(t) { kv::get(&key::twin(t))? } else { None }.ok_or_else(|| ApiError::not_found("Twin"))?;
    let vars = check_accessible(c, &twin)?;
    Ok((twin, vars))
}

/// The rule variables of `c` on `twin`, or 404 if `c` may not reach it.
pub fn check_accessible(c: &Caller, twin: &Twin) -> ApiResult<Vars> {
    let mut vars = access::caller_vars(c);
    access::set_twin(&mut vars, twin);
    if !access::twin_accessible(c, twin, &vars) {
        return Err(ApiError::not_found("Twin"));
    }
    Ok(vars)
}

pub fn create(c: &Caller, call: &Call) -> ApiResult<Answer> {
    c.require("create_twin")?;
    let body = call.body()?;
    let description = match body.get("description") {
        Some(v) => field::description(v, "description")?,
        None => None,
    };
    let now = clock::now_ms();
    let twin = Twin {
        uuid: ids::uuid4(),
        owner: c.account.clone(),
        creator: c.account.clone(),
        description,
        created: now,
        updated: now,
        terminated: None,
    };
    store_new(&twin)?;
    Answer::created(twin.to_json())
}

/// Store a new twin and its place in its account's scan order.
pub fn store_new(twin: &Twin) -> ApiResult<()> {
    let mut w = Writes::new();
    stage_new(&mut w, twin)?;
    w.commit()
}

/// Stage a new twin into `w` (its scan position is taken now).
pub fn stage_new(w: &mut Writes, twin: &Twin) -> ApiResult<()> {
    let seq = kv::increment(&key::twin_count(&twin.owner))?;
    w.put(key::twin(&twin.uuid), twin)?;
    w.put(key::twin_index(&twin.owner, seq), &twin.uuid)
}

pub fn get(c: &Caller, t: &str, call: &Call) -> ApiResult<Answer> {
    c.require("get_twin")?;
    let show_terminated = call.flag("show_terminated", true)?;
    let (twin, _) = accessible(c, t)?;
    if twin.terminated.is_some() && !show_terminated {
        return Err(ApiError::not_found("Twin"));
    }
    Answer::ok(twin.to_json())
}

pub fn update(c: &Caller, t: &str, call: &Call) -> ApiResult<Answer> {
    c.require("update_twin")?;
    let body = call.body()?;
    let (mut twin, _) = accessible(c, t)?;
    if twin.owner != c.account {
        return Err(ApiError::forbidden("Only the owner of the Twin can update it."));
    }
    if let Some(v) = body.get("description") {
        if twin.terminated.is_some() {
            return Err(ApiError::not_allowed("The description of a terminated Twin cannot be changed."));
        }
        twin.description = field::description(v, "description")?;
        twin.updated = clock::now_ms();
        let mut w = Writes::new();
        w.put(key::twin(&twin.uuid), &twin)?;
        w.commit()?;
    }
    Answer::ok(twin.to_json())
}

pub fn terminate(c: &Caller, t: &str) -> ApiResult<Answer> {
    c.require("terminate_twin")?;
    let (mut twin, _) = accessible(c, t)?;
    if twin.owner != c.account {
        return Err(ApiError::forbidden("Only the owner of the Twin can terminate it."));
    }
    if twin.terminated.is_some() {
        return Err(ApiError::exists("Twin already terminated."));
    }
    let now = clock::now_ms();
    twin.terminated = Some(Termination { issuer: c.account.clone(), at: now });
    twin.updated = now;
    let mut w = Writes::new();
    w.put(key::twin(&twin.uuid), &twin)?;
    w.commit()?;
    Answer::ok(twin.to_json())
}

/// Twins one scan request examines at most (review L6): a `match` that few
/// twins pass would otherwise walk the whole account in one request. The
/// page then holds what matched so far, possibly nothing, and a cursor to
/// go on from. The config key `max-twins-scanned` may lower it.
const MAX_SCANNED: usize = 10_000;

/// The last sequence number a scan starting after `start` examines, with
/// `last` twins made and at most `window` to examine.
fn scan_end(start: u64, last: u64, window: usize) -> u64 {
    start.saturating_add(window as u64).min(last)
}

/// `GET /twins`: the caller's account's twins in creation order.
pub fn scan(c: &Caller, call: &Call) -> ApiResult<Answer> {
    c.require("scan_twins")?;
    let count = match call.number("count")? {
        None => 100,
        Some(n) if (1.0..=1000.0).contains(&n) && n.fract() == 0.0 => n as u64,
        Some(_) => return Err(ApiError::format("'count' must be an integer from 1 to 1000.")),
    };
    let start = match call.param("cursor").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| ApiError::format("'cursor' is not a cursor this server made."))?,
    };
    let matcher = call.param("match").filter(|s| !s.trim().is_empty()).map(str::to_string);
    if let Some(m) = &matcher {
        rule::check("match", m)?;
    }
    let details = call.flag("details", false)?;
    let last: u64 = kv::get::<u64>(&key::twin_count(&c.account))?.unwrap_or(0);
    let mut found: Vec<Value> = Vec::new();
    let mut vars = access::caller_vars(c);
    let end = scan_end(start, last, limits::bound("max-twins-scanned", MAX_SCANNED));
    let mut seq = start;
    while seq < end && (found.len() as u64) < count {
        let upto = (seq + count.max(16)).min(end);
        let keys: Vec<String> = (seq + 1..=upto).map(|s| key::twin_index(&c.account, s)).collect();
        let slots: Vec<Option<String>> = kv::get_many_raw(&keys)?
            .into_iter()
            .map(|raw| raw.and_then(|b| serde_json::from_slice::<String>(&b).ok()))
            .collect();
        let twin_keys: Vec<String> = slots.iter().flatten().map(|u| key::twin(u)).collect();
        let mut twins = kv::get_many_raw(&twin_keys)?.into_iter();
        for slot in slots {
            seq += 1;
            // A hole is a creation that never finished: step over it.
            if slot.is_none() {
                continue;
            }
            let Some(twin) = twins.next().flatten().and_then(|b| serde_json::from_slice::<Twin>(&b).ok()) else {
                continue;
            };
            access::set_twin(&mut vars, &twin);
            if !access::twin_accessible(c, &twin, &vars) {
                continue;
            }
            if let Some(m) = matcher.as_deref() {
                if !rule::matches(m, &vars)? {
                    continue;
                }
            }
            found.push(if details { twin.to_json() } else { json!(twin.uuid) });
            if found.len() as u64 >= count {
                break;
            }
        }
    }
    let cursor = if seq < last { Some(seq.to_string()) } else { None };
    Answer::ok(json!({ "cursor": cursor, "twins": found }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_examines_at_most_its_window() {
        assert_eq!(scan_end(0, 25, 10), 10);
        assert_eq!(scan_end(20, 25, 10), 25);
        assert_eq!(scan_end(0, 0, 10), 0);
        assert_eq!(scan_end(u64::MAX - 1, u64::MAX, 10), u64::MAX);
    }
}
