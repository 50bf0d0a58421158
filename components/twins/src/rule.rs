//! Rules as the twin API uses them: parsed once per instance (cached),
//! checked at write time, evaluated against the variables of one request.

use crate::error::{ApiError, ApiResult};
use rules::{EvalError, RuleCache, Scope};
use serde_json::Value;
use std::cell::RefCell;

thread_local! {
    static CACHE: RefCell<RuleCache> = RefCell::new(RuleCache::new());
}

/// Refuse a rule that does not parse, naming the position.
pub fn check(what: &str, source: &str) -> ApiResult<()> {
    CACHE.with(|c| c.borrow_mut().get_or_parse(source).map(|_| ()))
        .map_err(|e| ApiError::format(format!("Invalid rule in '{what}': {e}.")))
}

/// Whether `source` holds for `vars`. A rule that cannot be parsed (stored
/// before a parser change) or fails while evaluating is false.
pub fn holds(source: &str, vars: &Vars) -> bool {
    let rule = CACHE.with(|c| c.borrow_mut().get_or_parse(source).ok());
    rule.is_some_and(|r| r.is_true(vars))
}

/// Whether a scan's `match` rule holds for `vars`. As in `holds`, an
/// evaluation error is false (a twin without the data the rule reads does
/// not match), except an exceeded limit: that says the rule costs too much,
/// not that this twin fails it, so the request is refused with a 400 naming
/// the limit instead of scanning on at the limit's cost per twin.
pub fn matches(source: &str, vars: &Vars) -> ApiResult<bool> {
    let rule = CACHE
        .with(|c| c.borrow_mut().get_or_parse(source))
        .map_err(|e| ApiError::format(format!("Invalid rule in 'match': {e}.")))?;
    match rule.test(vars) {
        Ok(holds) => Ok(holds),
        Err(EvalError::Limit(limit)) => Err(ApiError::format(format!("Rule in 'match' exceeds a limit: {limit}."))),
        Err(_) => Ok(false),
    }
}

/// The truth of a rule that reads no variable (`"true"`, `1 == 1`), so
/// callers can skip building the variables; `None` if it reads any.
pub fn constant(source: &str) -> Option<bool> {
    let rule = CACHE.with(|c| c.borrow_mut().get_or_parse(source).ok())?;
    if rule.variables().next().is_some() {
        return None;
    }
    Some(rule.is_true(&Vars::default()))
}

/// Whether a rule mentions `variable` (so callers build `LEDGER` only when
/// it is used).
pub fn uses(source: &str, variable: &str) -> bool {
    let rule = CACHE.with(|c| c.borrow_mut().get_or_parse(source).ok());
    rule.is_some_and(|r| r.uses(variable))
}

/// The rule variables of one evaluation. Request-wide ones are set once;
/// entry and identity ones are changed per item.
#[derive(Default)]
pub struct Vars {
    pub account: Value,
    pub user: Value,
    pub role: Value,
    /// Read from the clock the first time a rule asks for it.
    pub now: std::cell::OnceCell<Value>,
    pub user_desc: Value,
    pub dict: Value,
    pub twin: Value,
    pub twin_status: Value,
    pub twin_created_ts: Value,
    pub twin_updated_ts: Value,
    pub twin_desc: Value,
    pub ledger: Value,
    pub ledger_values: Value,
    pub entry_name: Value,
    pub entry_value: Value,
    pub entry_created_ts: Value,
    pub entry_updated_ts: Value,
    pub value_changed_ts: Value,
    pub identity: Value,
    pub validity_ts: Value,
}

impl Scope for Vars {
    fn variable(&self, name: &str) -> Option<&Value> {
        let v = match name {
            "account" => &self.account,
            "user" => &self.user,
            "role" => &self.role,
            "now" => self.now.get_or_init(|| Value::from(crate::clock::ts(crate::clock::now_ms()))),
            "USER" => &self.user_desc,
            "DICT" => &self.dict,
            "twin" => &self.twin,
            "twin_status" => &self.twin_status,
            "twin_created_ts" => &self.twin_created_ts,
            "twin_updated_ts" => &self.twin_updated_ts,
            "TWIN" => &self.twin_desc,
            "ledger" => &self.ledger,
            "LEDGER" => &self.ledger_values,
            "entry_name" => &self.entry_name,
            "entry_value" => &self.entry_value,
            "entry_created_ts" => &self.entry_created_ts,
            "entry_updated_ts" => &self.entry_updated_ts,
            "value_changed_ts" => &self.value_changed_ts,
            "identity" => &self.identity,
            "validity_ts" => &self.validity_ts,
            _ => return None,
        };
        Some(v)
    }
}
