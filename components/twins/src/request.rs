//! One decoded API call: query parameters and the JSON body, read the way
//! the Trusted Twin client sends them.

use crate::bindings::exports::twinlattice::twins::api::Request as WitRequest;
use crate::error::{ApiError, ApiResult, Subcode};
use serde_json::{Map, Value};

/// Bodies (and ledgers) larger than this are refused with 400141.
pub const QUOTA_BYTES: usize = 64 * 1024;

pub struct Call {
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub dictionary: Option<String>,
    body: String,
}

impl Call {
    pub fn new(req: &mut WitRequest) -> Call {
        Call {
            query: std::mem::take(&mut req.query),
            authorization: req.authorization.take(),
            dictionary: req.dictionary.take(),
            body: std::mem::take(&mut req.body),
        }
    }

    /// The body as a JSON object; no body is `{}`.
    pub fn body(&self) -> ApiResult<Map<String, Value>> {
        if self.body.len() > QUOTA_BYTES {
            return Err(ApiError::new(Subcode::QuotaViolation, "Request body exceeds the 64 kB quota."));
        }
        let text = self.body.as_str();
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => Err(ApiError::format("Request body must be a JSON object.")),
            Err(e) => Err(ApiError::new(Subcode::NotAValidJson, format!("Request body is not valid JSON: {e}."))),
        }
    }

    /// The last value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter (`True`/`false`/`1`/…), `default` if absent.
    pub fn flag(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| ApiError::format(format!("Query parameter '{name}' must be a boolean."))),
        }
    }

    /// A time query parameter (float seconds) as milliseconds, rounded
    /// towards the inside of the bound: `up` for a lower bound (`ge`), down
    /// for an upper one (`le`). The slack absorbs float error at 1e12 ms.
    pub fn time_bound(&self, name: &str, up: bool) -> ApiResult<Option<i64>> {
        Ok(self.number(name)?.map(|s| {
            let ms = s * 1000.0;
            if up { (ms - 0.001).ceil() as i64 } else { (ms + 0.001).floor() as i64 }
        }))
    }

    /// A number query parameter, `None` if absent.
    pub fn number(&self, name: &str) -> ApiResult<Option<f64>> {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::format(format!("Query parameter '{name}' must be a number."))),
        }
    }

    /// Every value of a list parameter, repeated (`a=1&a=2`) or comma-joined
    /// (`a=1,2`). `None` when the parameter is absent.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let mut out: Option<Vec<String>> = None;
        for (k, v) in &self.query {
            if k == name || k == &format!("{name}[]") {
                let items = out.get_or_insert_with(Vec::new);
                items.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
            }
        }
        out
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Field accessors for request bodies, each failing with 400589 naming the
/// field.
pub mod field {
    use super::*;

    /// An optional string (`null` = absent).
    pub fn opt_str(o: &Map<String, Value>, name: &str) -> ApiResult<Option<String>> {
        match o.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::format(format!("'{name}' must be a string or null."))),
        }
    }

    /// An optional rule (`null` = no rule), refused with the position of the
    /// error when it does not parse. `Ok(None)`: the field is absent.
    pub fn opt_rule(o: &Map<String, Value>, field: &str, what: &str) -> ApiResult<Option<Option<String>>> {
        match o.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => {
                crate::rule::check(&format!("{what}.{field}"), s)?;
                Ok(Some(Some(s.clone())))
            }
            Some(_) => Err(ApiError::format(format!("'{what}.{field}' must be a string or null."))),
        }
    }

    /// An optional timestamp in float seconds, as milliseconds.
    pub fn opt_ts(o: &Map<String, Value>, name: &str) -> ApiResult<Option<i64>> {
        match o.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| Some(crate::clock::ms(f)))
                .ok_or_else(|| ApiError::format(format!("'{name}' must be a non-negative number or null."))),
            Some(_) => Err(ApiError::format(format!("'{name}' must be a number or null."))),
        }
    }

    /// A description dict: keys `^[a-z_][0-9a-z_]{0,63}$`, any values.
    /// `Ok(None)` for `null`.
    pub fn description(v: &Value, what: &str) -> ApiResult<Option<Map<String, Value>>> {
        match v {
            Value::Null => Ok(None),
            Value::Object(o) => {
                if let Some(bad) = o.keys().find(|k| !is_description_key(k)) {
                    return Err(ApiError::format(format!(
                        "'{what}' key '{bad}' does not match ^[a-z_][0-9a-z_]{{0,63}}$."
                    )));
                }
                Ok(Some(o.clone()))
            }
            _ => Err(ApiError::format(format!("'{what}' must be an object or null."))),
        }
    }

    fn is_description_key(k: &str) -> bool {
        let b = k.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && (b[0].is_ascii_lowercase() || b[0] == b'_')
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
    }

    /// A role or user name: `^[0-9A-Za-z][0-9A-Za-z_ \-]{0,30}[0-9A-Za-z]$`.
    pub fn name(o: &Map<String, Value>, default: &str) -> ApiResult<String> {
        let name = opt_str(o, "name")?.unwrap_or_else(|| default.to_string());
        let b = name.as_bytes();
        let ok = b.len() >= 2
            && b.len() <= 32
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b' ' | b'-'));
        if ok {
            Ok(name)
        } else {
            Err(ApiError::format("'name' does not match ^[0-9A-Za-z][0-9A-Za-z_ \\-]{0,30}[0-9A-Za-z]$."))
        }
    }
}
