//! Descriptor documents: parsing a request body in either dialect into the
//! canonical v3 form, validating it, and the read-side helpers (filters,
//! nested submodel descriptors).

use crate::bindings::twinlattice::registry::types::{
    AssetKind, Dialect, Error, Page, PageRequest, ShellFilter, SubmodelFilter,
};
use crate::bindings::twinlattice::validation::validator::{self, Violation};
use crate::collection::{cursor, page_limit};
use crate::ric;
use serde_json::Value;

/// Which kind of descriptor a body must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shell,
    Submodel,
}

impl Kind {
    fn schema(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Kind::Shell, Dialect::V3) => "aas-v3.0/shell-descriptor",
            (Kind::Submodel, Dialect::V3) => "aas-v3.0/submodel-descriptor",
            (Kind::Shell, Dialect::Ric) => "ric/shell-descriptor",
            (Kind::Submodel, Dialect::Ric) => "ric/submodel-descriptor",
        }
    }
}

/// A request body turned into a valid canonical v3 descriptor.
pub struct Parsed {
    pub id: String,
    pub value: Value,
}

impl Parsed {
    /// Parse `body`, validate it in its dialect, convert it to v3 and check
    /// the result against the v3 schema too (a RIC descriptor must also make
    /// a valid v3 one).
    pub fn from_body(body: &str, dialect: Dialect, kind: Kind) -> Result<Parsed, Error> {
        validate(kind.schema(dialect), body)?;
        let value: Value = serde_json::from_str(body).map_err(|e| {
            Error::Malformed(validator::SyntaxError {
                line: e.line() as u32,
                column: e.column() as u32,
                message: e.to_string(),
            })
        })?;
        let value = match dialect {
            Dialect::V3 => value,
            Dialect::Ric => {
                let converted = match kind {
                    Kind::Shell => ric::shell_to_v3(&value),
                    Kind::Submodel => ric::submodel_to_v3(&value),
                };
                validate(kind.schema(Dialect::V3), &converted.to_string())?;
                converted
            }
        };
        let id = id_of(&value)
            .map(str::to_owned)
            .ok_or_else(|| Error::Invalid(vec![Violation { pointer: "/id".into(), reason: "\"id\" is required".into() }]))?;
        Ok(Parsed { id, value })
    }
}

fn validate(schema: &str, document: &str) -> Result<(), Error> {
    match validator::validate(schema, document) {
        Ok(violations) if violations.is_empty() => Ok(()),
        Ok(violations) => Err(Error::Invalid(violations)),
        Err(validator::Error::NotJson(e)) => Err(Error::Malformed(e)),
        Err(validator::Error::UnknownSchema(s)) => Err(Error::Storage(format!("validator lacks schema {s}"))),
    }
}

/// The `id` of a descriptor.
pub fn id_of(value: &Value) -> Option<&str> {
    value.get("id").and_then(Value::as_str)
}

/// The `idShort` of a descriptor.
pub fn id_short_of(value: &Value) -> Option<&str> {
    value.get("idShort").and_then(Value::as_str)
}

/// The `globalAssetId` of a shell descriptor.
pub fn global_asset_id_of(value: &Value) -> Option<&str> {
    value.get("globalAssetId").and_then(Value::as_str)
}

fn asset_kind_name(kind: AssetKind) -> &'static str {
    match kind {
        AssetKind::Instance => "Instance",
        AssetKind::Type => "Type",
        AssetKind::NotApplicable => "NotApplicable",
    }
}

/// Whether a shell descriptor passes every filter given.
pub fn matches_shell_filter(d: &Value, f: &ShellFilter) -> bool {
    if let Some(kind) = f.asset_kind {
        if d.get("assetKind").and_then(Value::as_str) != Some(asset_kind_name(kind)) {
            return false;
        }
    }
    if let Some(t) = &f.asset_type {
        if d.get("assetType").and_then(Value::as_str) != Some(t.as_str()) {
            return false;
        }
    }
    f.asset_ids.iter().all(|wanted| {
        if wanted.name == "globalAssetId" {
            return global_asset_id_of(d) == Some(wanted.value.as_str());
        }
        d.get("specificAssetIds").and_then(Value::as_array).is_some_and(|ids| {
            ids.iter().any(|id| {
                id.get("name").and_then(Value::as_str) == Some(wanted.name.as_str())
                    && id.get("value").and_then(Value::as_str) == Some(wanted.value.as_str())
            })
        })
    })
}

/// Whether a submodel descriptor passes every filter given.
pub fn matches_submodel_filter(d: &Value, f: &SubmodelFilter) -> bool {
    match &f.semantic_id {
        None => true,
        Some(wanted) => d
            .pointer("/semanticId/keys")
            .and_then(Value::as_array)
            .is_some_and(|keys| keys.iter().any(|k| k.get("value").and_then(Value::as_str) == Some(wanted.as_str()))),
    }
}

/// The nested submodel descriptors of a shell, created empty when absent.
pub fn nested_mut(shell: &mut Value) -> &mut Vec<Value> {
    let object = shell.as_object_mut().expect("stored shell descriptors are objects");
    let entry = object.entry("submodelDescriptors").or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    entry.as_array_mut().expect("just made an array")
}

/// One nested submodel descriptor by id.
pub fn find_nested<'a>(shell: &'a Value, id: &str) -> Option<&'a Value> {
    shell
        .get("submodelDescriptors")
        .and_then(Value::as_array)?
        .iter()
        .find(|d| id_of(d) == Some(id))
}

/// A page of the nested submodel descriptors. The cursor names the last
/// descriptor returned and the one after it (and the position, used only if
/// both were deleted since), so deleting descriptors between pages neither
/// skips nor repeats any.
pub fn page_nested(shell: &Value, page: &PageRequest) -> Result<Page, Error> {
    let limit = page_limit(page)?;
    let all = shell.get("submodelDescriptors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let start = match &page.cursor {
        None => 0,
        Some(c) => {
            let (position, last_id, next_id) = cursor::decode_nested(c)?;
            let find = |id: &str| all.iter().position(|d| id_of(d) == Some(id));
            match (find(&last_id), find(&next_id)) {
                (Some(at), _) => at + 1,
                (None, Some(at)) => at,
                (None, None) => (position as usize).min(all.len()),
            }
        }
    };
    let items: Vec<&Value> = all.iter().skip(start).take(limit).collect();
    let next = start + items.len();
    let cursor = match items.last() {
        Some(last) if next < all.len() => Some(cursor::encode_nested(
            next as u64,
            id_of(last).unwrap_or(""),
            id_of(&all[next]).unwrap_or(""),
        )),
        _ => None,
    };
    Ok(Page { items: items.into_iter().map(Value::to_string).collect(), cursor })
}
