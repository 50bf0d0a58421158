//! Entry history: one store record per value change
//! (`h:{twin}:{account}:{entry}:{seq}`), so appending is one more key in
//! the write's `set-many`, and reading the newest N costs N keys whatever
//! the history's length.

use crate::auth::Caller;
use crate::clock::{self, python_float};
use crate::error::{ApiError, ApiResult};
use crate::kv::{self, key, Writes};
use crate::model::{Entry, EntryKind};
use crate::request::Call;
use crate::routes::ledgers;
use crate::Answer;
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;
/// Most values one read returns, and the default.
const MAX_LIMIT: usize = 100;
/// Expired values are dropped every this many appends.
const PRUNE_EVERY: u64 = 64;
const NOT_ACCESSIBLE: &str = "Entry not accessible.";

/// A retention string (`^([1-9][0-9]{0,2}[DWMY]|INF)$`) as milliseconds;
/// `Some(None)` is `INF`.
pub fn retention_ms(s: &str) -> Option<Option<i64>> {
    if s == "INF" {
        return Some(None);
    }
    let (digits, unit) = s.split_at(s.len().checked_sub(1)?);
    let ok = !digits.is_empty() && digits.len() <= 3 && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let days = match unit {
        "D" => 1,
        "W" => 7,
        "M" => 30,
        "Y" => 365,
        _ => return None,
    };
    Some(Some(n * days * DAY_MS))
}

/// Oldest time still kept by `entry`'s retention.
fn cutoff(entry: &Entry, now: i64) -> i64 {
    match entry.history.as_deref().and_then(retention_ms) {
        Some(Some(window)) => now - window,
        _ => i64::MIN,
    }
}

/// A stored history value: its time (8 bytes, little-endian milliseconds)
/// then its JSON text, so a read splices the text into the answer without
/// parsing it.
pub fn item(at: i64, value: &Value) -> ApiResult<Vec<u8>> {
    let mut bytes = at.to_le_bytes().to_vec();
    serde_json::to_writer(&mut bytes, value).map_err(ApiError::storage)?;
    Ok(bytes)
}

/// A stored history value's time and JSON text.
fn parse_item(bytes: &[u8]) -> Option<(i64, &str)> {
    let (time, json) = bytes.split_first_chunk::<8>()?;
    Some((i64::from_le_bytes(*time), std::str::from_utf8(json).ok()?))
}

/// Append the entry's current value to its history, if it keeps one.
pub fn record(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry, now: i64) -> ApiResult<()> {
    let (Some(_), EntryKind::Value { value }) = (&entry.history, &entry.kind) else { return Ok(()) };
    let at = now.max(entry.hlast + 1);
    w.put_raw(key::history(t, a, name, entry.hnext), item(at, value)?);
    entry.hnext += 1;
    entry.hlast = at;
    entry.changed = at;
    if entry.hnext % PRUNE_EVERY == 0 {
        prune(w, t, a, name, entry, now)?;
    }
    Ok(())
}

/// Drop values older than the retention window, oldest first.
fn prune(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry, now: i64) -> ApiResult<()> {
    let cut = cutoff(entry, now);
    while entry.hlow < entry.hnext {
        let upto = (entry.hlow + PRUNE_EVERY).min(entry.hnext);
        let keys: Vec<String> = (entry.hlow..upto).map(|s| key::history(t, a, name, s)).collect();
        for (k, raw) in keys.iter().zip(kv::get_many_raw(&keys)?) {
            let at = raw.as_deref().and_then(parse_item).map(|(at, _)| at);
            if at.is_some_and(|at| at >= cut) {
                return Ok(());
            }
            w.delete(k.clone());
            entry.hlow += 1;
        }
    }
    Ok(())
}

/// A retention change. Turning history off hides what was kept (it is
/// dropped as garbage on the entry's deletion).
pub fn set_retention(entry: &mut Entry, retention: Option<String>) {
    if retention.is_none() {
        entry.hlow = entry.hnext;
    }
    entry.history = retention;
}

/// Drop a deleted entry's history.
pub fn forget(w: &mut Writes, t: &str, a: &str, name: &str, entry: &Entry) {
    for seq in entry.hlow..entry.hnext {
        w.delete(key::history(t, a, name, seq));
    }
}

pub fn get(c: &Caller, t: &str, l: &str, call: &Call) -> ApiResult<Answer> {
    c.require("get_twin_ledger_entry_history")?;
    let ge = call.time_bound("ge", true)?.unwrap_or(i64::MIN);
    let le = call.time_bound("le", false)?.unwrap_or(i64::MAX);
    let limit = match call.number("limit")? {
        None => MAX_LIMIT,
        Some(n) if (1.0..=MAX_LIMIT as f64).contains(&n) && n.fract() == 0.0 => n as usize,
        Some(_) => return Err(ApiError::format("'limit' must be an integer from 1 to 100.")),
    };
    let (twin, vars) = crate::routes::twins::accessible(c, t)?;
    let mut vars = vars;
    let account = c.ledger_account(l, &twin.owner, &twin.creator)?;
    let ledger = ledgers::load(&twin.uuid, &account)?;
    let wanted = call.list("entries");
    let visible = ledgers::visible_names(c, &account, &ledger, &mut vars, wanted.as_deref(), |_| true);
    let mut names: Vec<String> = match wanted {
        Some(w) => w,
        None => visible.clone(),
    };
    // The answer is an object: each name once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let now = clock::now_ms();
    let mut out = String::from("{\"entries\":{");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json!(name).to_string());
        out.push(':');
        match ledger.entries.get(name).filter(|e| e.history.is_some() && visible.contains(name)) {
            Some(e) => newest(&mut out, &twin.uuid, &account, name, e, ge.max(cutoff(e, now)), le, limit)?,
            None => out.push_str(&json!(NOT_ACCESSIBLE).to_string()),
        }
    }
    out.push_str("}}");
    Answer::ok_text(out)
}

/// Up to `limit` values with `ge <= time <= le`, newest first, written to
/// `out` as a JSON object of time → value.
#[allow(clippy::too_many_arguments)]
fn newest(out: &mut String, t: &str, a: &str, name: &str, e: &Entry, ge: i64, le: i64, limit: usize) -> ApiResult<()> {
    out.push('{');
    let mut count = 0;
    let mut top = e.hnext;
    if le != i64::MAX {
        top = first_after(t, a, name, e, le)?;
    }
    'pages: while top > e.hlow && count < limit {
        let low = top.saturating_sub((limit - count) as u64).max(e.hlow);
        let keys: Vec<String> = (low..top).rev().map(|s| key::history(t, a, name, s)).collect();
        for raw in kv::get_many_raw(&keys)? {
            let Some((at, value)) = raw.as_deref().and_then(parse_item) else { continue };
            if at < ge {
                break 'pages;
            }
            if at <= le && count < limit {
                if count > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(&python_float(at));
                out.push_str("\":");
                out.push_str(value);
                count += 1;
            }
        }
        top = low;
    }
    out.push('}');
    Ok(())
}

/// The lowest sequence number whose value is newer than `le` (history times
/// only grow), by binary search over the stored keys.
fn first_after(t: &str, a: &str, name: &str, e: &Entry, le: i64) -> ApiResult<u64> {
    let (mut lo, mut hi) = (e.hlow, e.hnext);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let raw = kv::get_many_raw(&[key::history(t, a, name, mid)])?.pop().flatten();
        let at = raw.as_deref().and_then(parse_item).map(|(at, _)| at);
        match at {
            Some(at) if at > le => hi = mid,
            _ => lo = mid + 1,
        }
    }
    Ok(lo)
}
