//! Entry history, in chunks of `CHUNK` values per store record
//! (`h:{twin}:{account}:{entry}:{chunk}`, chunk = sequence number / CHUNK).
//! Appending rewrites the newest chunk inside the write's `set-many`;
//! reading the newest N values costs about N / CHUNK + 1 records whatever
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
/// Values per store record.
const CHUNK: u64 = 32;
/// Values kept per entry, whatever its retention: Trusted Twin keeps the
/// most recent 1,000. Older ones are hidden at once and their chunks
/// dropped, so no entry's history (the AAS mirror's included) grows
/// without bound.
const MAX_VALUES: u64 = 1_000;
/// The largest value kept whole in a history (see `push_item`).
const MAX_ITEM_BYTES: usize = 64 * 1024;
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

/// One stored history value: its time (8 bytes, little-endian
/// milliseconds), the length of its JSON text (4 bytes) and the text, so a
/// read splices the text into the answer without parsing it.
///
/// A value larger than `MAX_ITEM_BYTES` (only the AAS mirror's descriptors
/// can be: ledger bodies are within the 64 KB quota) is kept as a summary,
/// `{"omitted": "larger than … bytes", "bytes": N}`: the newest version is
/// the entry's value, and a thousand full copies of a 1 MiB descriptor
/// would be a gigabyte per shell.
pub fn push_item(chunk: &mut Vec<u8>, at: i64, value: &Value) -> ApiResult<()> {
    let mut json = serde_json::to_vec(value).map_err(ApiError::storage)?;
    if json.len() > MAX_ITEM_BYTES {
        let summary = json!({ "omitted": format!("larger than {MAX_ITEM_BYTES} bytes"), "bytes": json.len() });
        json = serde_json::to_vec(&summary).map_err(ApiError::storage)?;
    }
    let len = u32::try_from(json.len()).map_err(|_| ApiError::storage("history value too large"))?;
    chunk.extend_from_slice(&at.to_le_bytes());
    chunk.extend_from_slice(&len.to_le_bytes());
    chunk.extend_from_slice(&json);
    Ok(())
}

/// The values of a chunk, oldest first.
fn items(chunk: &[u8]) -> Vec<(i64, &str)> {
    let mut out = Vec::new();
    let mut rest = chunk;
    while let Some((time, tail)) = rest.split_first_chunk::<8>() {
        let Some((len, tail)) = tail.split_first_chunk::<4>() else { break };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((json, tail)) = (tail.len() >= len).then(|| tail.split_at(len)) else { break };
        if let Ok(text) = std::str::from_utf8(json) {
            out.push((i64::from_le_bytes(*time), text));
        }
        rest = tail;
    }
    out
}

/// Append the entry's current value to its history, if it keeps one.
pub fn record(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry, now: i64) -> ApiResult<()> {
    let (Some(_), EntryKind::Value { value }) = (&entry.history, &entry.kind) else { return Ok(()) };
    let at = now.max(entry.hlast + 1);
    let seq = entry.hnext;
    let chunk_key = key::history(t, a, name, seq / CHUNK);
    // The newest chunk is read under the ledger's lock, so no append is lost.
    let mut chunk = if seq % CHUNK == 0 {
        Vec::new()
    } else {
        kv::get_many_raw(std::slice::from_ref(&chunk_key))?.pop().flatten().unwrap_or_default()
    };
    push_item(&mut chunk, at, value)?;
    w.put_raw(chunk_key, chunk);
    entry.hnext += 1;
    entry.hlast = at;
    entry.changed = at;
    cap(w, t, a, name, entry);
    if seq % CHUNK == 0 {
        prune(w, t, a, name, entry, now)?;
    }
    Ok(())
}

/// Keep the newest `MAX_VALUES` values: older ones drop out of reads
/// (`hlow`), and chunks holding only those are deleted.
fn cap(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry) {
    let Some(low) = entry.hnext.checked_sub(MAX_VALUES) else { return };
    if low <= entry.hlow {
        return;
    }
    for c in entry.hlow / CHUNK..low / CHUNK {
        w.delete(key::history(t, a, name, c));
    }
    entry.hlow = low;
}

/// Write a whole history at once (demo data): `values` oldest first.
pub fn seed(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry, values: &[(i64, Value)]) -> ApiResult<()> {
    for (i, part) in values.chunks(CHUNK as usize).enumerate() {
        let mut chunk = Vec::new();
        for (at, v) in part {
            push_item(&mut chunk, *at, v)?;
        }
        w.put_raw(key::history(t, a, name, i as u64), chunk);
    }
    entry.hlow = 0;
    entry.hnext = values.len() as u64;
    if let Some((at, _)) = values.last() {
        entry.hlast = *at;
    }
    Ok(())
}

/// Drop whole chunks older than the retention window, oldest first (a chunk
/// partly inside the window stays; reads filter by time).
fn prune(w: &mut Writes, t: &str, a: &str, name: &str, entry: &mut Entry, now: i64) -> ApiResult<()> {
    let cut = cutoff(entry, now);
    if cut == i64::MIN {
        return Ok(());
    }
    // The chunk being written is never dropped.
    let newest = (entry.hnext - 1) / CHUNK;
    while entry.hlow / CHUNK < newest {
        let c = entry.hlow / CHUNK;
        let k = key::history(t, a, name, c);
        let raw = kv::get_many_raw(std::slice::from_ref(&k))?.pop().flatten();
        let last = raw.as_deref().map(items).and_then(|i| i.last().map(|(at, _)| *at));
        if last.is_some_and(|at| at >= cut) {
            break;
        }
        w.delete(k);
        entry.hlow = (c + 1) * CHUNK;
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
    if entry.hnext == 0 {
        return;
    }
    for c in entry.hlow / CHUNK..=(entry.hnext - 1) / CHUNK {
        w.delete(key::history(t, a, name, c));
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
    // Sequence numbers below `top` are candidates.
    let top = if le == i64::MAX { e.hnext } else { first_after(t, a, name, e, le)? };
    let mut next_chunk = if top > e.hlow { Some((top - 1) / CHUNK) } else { None };
    'reading: while let Some(newest_chunk) = next_chunk {
        if count >= limit {
            break;
        }
        // Enough chunks for what is still wanted, plus one for a partial
        // newest chunk.
        let wanted = ((limit - count) as u64).div_ceil(CHUNK) + 1;
        let oldest_chunk = newest_chunk.saturating_sub(wanted - 1).max(e.hlow / CHUNK);
        let keys: Vec<String> = (oldest_chunk..=newest_chunk).rev().map(|c| key::history(t, a, name, c)).collect();
        for (c, raw) in (oldest_chunk..=newest_chunk).rev().zip(kv::get_many_raw(&keys)?) {
            let Some(raw) = raw else { continue };
            for (i, (at, value)) in items(&raw).into_iter().enumerate().rev() {
                let seq = c * CHUNK + i as u64;
                if seq >= top || seq < e.hlow {
                    continue;
                }
                if at < ge || count >= limit {
                    break 'reading;
                }
                if at <= le {
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
        }
        next_chunk = oldest_chunk.checked_sub(1).filter(|c| (c + 1) * CHUNK > e.hlow);
    }
    out.push('}');
    Ok(())
}

/// The lowest sequence number whose value is newer than `le` (history times
/// only grow): a binary search over chunks by their newest value, then a
/// scan of one chunk.
fn first_after(t: &str, a: &str, name: &str, e: &Entry, le: i64) -> ApiResult<u64> {
    if e.hnext == 0 {
        return Ok(0);
    }
    let chunk = |c: u64| -> ApiResult<Vec<u8>> {
        Ok(kv::get_many_raw(&[key::history(t, a, name, c)])?.pop().flatten().unwrap_or_default())
    };
    let (mut lo, mut hi) = (e.hlow / CHUNK, (e.hnext - 1) / CHUNK + 1);
    // The first chunk whose newest value is after `le`.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let newest = items(&chunk(mid)?).last().map(|(at, _)| *at);
        match newest {
            Some(at) if at > le => hi = mid,
            _ => lo = mid + 1,
        }
    }
    if lo * CHUNK >= e.hnext {
        return Ok(e.hnext);
    }
    let raw = chunk(lo)?;
    let i = items(&raw).iter().position(|(at, _)| *at > le).unwrap_or(CHUNK as usize);
    Ok((lo * CHUNK + i as u64).min(e.hnext))
}
