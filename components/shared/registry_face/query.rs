//! Query parameters of the list routes.

use crate::bindings::twinlattice::registry::types::{AssetId, AssetKind, PageRequest, ShellFilter, SubmodelFilter};
use super::ids;
use super::result_body::ApiError;
use serde::Deserialize;

pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: &str) -> Query {
        Query { pairs: form_urlencoded::parse(query.as_bytes()).into_owned().collect() }
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.one("limit") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => Some(n.min(u32::MAX as i64) as u32),
                _ => return Err(ApiError::bad_request(format!("limit must be a positive integer, not {v:?}"))),
            },
        };
        let cursor = match self.one("cursor") {
            Some("") => return Err(ApiError::bad_request("cursor must not be empty (AASa-001)")),
            c => c.map(str::to_owned),
        };
        Ok(PageRequest { limit, cursor })
    }

    pub fn shell_filter(&self) -> Result<ShellFilter, ApiError> {
        let asset_kind = match self.one("assetKind") {
            None => None,
            Some("Instance") => Some(AssetKind::Instance),
            Some("Type") => Some(AssetKind::Type),
            Some("NotApplicable") => Some(AssetKind::NotApplicable),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "assetKind must be Instance, Type or NotApplicable, not {other:?}"
                )))
            }
        };
        let asset_type = self.one("assetType").map(ids::decode).transpose()?;
        let asset_ids = self.all("assetIds").map(asset_id).collect::<Result<Vec<_>, _>>()?;
        Ok(ShellFilter { asset_kind, asset_type, asset_ids })
    }

    pub fn submodel_filter(&self) -> Result<SubmodelFilter, ApiError> {
        Ok(SubmodelFilter { semantic_id: self.one("semanticId").map(ids::decode).transpose()? })
    }
}

#[derive(Deserialize)]
struct SpecificAssetId {
    name: String,
    value: String,
}

/// `assetIds` value: base64url of a JSON SpecificAssetId.
fn asset_id(encoded: &str) -> Result<AssetId, ApiError> {
    let json = ids::decode(encoded)?;
    let bad = |why: String| ApiError::bad_request(format!("assetIds must be base64url of a JSON SpecificAssetId {{name, value}}: {why}"));
    // Parse to a value first: serde would also take `["name", "value"]` for
    // the struct, which is not a SpecificAssetId.
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    let parsed: SpecificAssetId = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    Ok(AssetId { name: parsed.name, value: parsed.value })
}
