//! The python-aas-registry ("RIC") descriptor dialect, converted to the
//! canonical AAS Part 2 v3.0 form on write.
//!
//! The RIC writes `identification: {id, idType}`, snake_case
//! `protocol_information` with `endpointAddress` (or `endpoint_address`),
//! `assetInformation.globalAssetId` as a Reference, and
//! `specificAssetIds` as `{key, value}` pairs. Fields with no v3 home are
//! dropped; the v3 schema check after conversion catches anything left odd.

use serde_json::{json, Map, Value};

fn text<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str))
}

fn identification(v: &Value) -> Option<String> {
    match v.get("identification") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(obj) => obj.get("id").and_then(Value::as_str).map(str::to_owned),
        None => None,
    }
}

fn endpoint(e: &Value) -> Option<Value> {
    let info = e.get("protocol_information").or_else(|| e.get("protocolInformation"))?;
    let href = text(info, &["endpointAddress", "endpoint_address", "href"])?;
    let mut pi = Map::new();
    pi.insert("href".into(), json!(href));
    if let Some(p) = text(info, &["endpointProtocol", "endpoint_protocol"]) {
        pi.insert("endpointProtocol".into(), json!(p));
    }
    match info.get("endpointProtocolVersion").or_else(|| info.get("endpoint_protocol_version")) {
        Some(Value::String(s)) if !s.is_empty() => {
            pi.insert("endpointProtocolVersion".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            pi.insert("endpointProtocolVersion".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    for (from, to) in [
        ("subprotocol", "subprotocol"),
        ("subprotocolBody", "subprotocolBody"),
        ("subprotocol_body", "subprotocolBody"),
        ("subprotocolBodyEncoding", "subprotocolBodyEncoding"),
        ("subprotocol_body_encoding", "subprotocolBodyEncoding"),
    ] {
        if let Some(s) = info.get(from).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            pi.insert(to.into(), json!(s));
        }
    }
    let interface = text(e, &["interface"]).unwrap_or("AAS-3.0");
    Some(json!({ "interface": interface, "protocolInformation": Value::Object(pi) }))
}

fn common(v: &Value, out: &mut Map<String, Value>) {
    if let Some(id) = identification(v) {
        out.insert("id".into(), json!(id));
    }
    if let Some(s) = text(v, &["idShort"]) {
        out.insert("idShort".into(), json!(s));
    }
    if let Some(Value::Array(d)) = v.get("description") {
        let langs: Vec<Value> = d
            .iter()
            .filter_map(|l| Some(json!({ "language": text(l, &["language"])?, "text": text(l, &["text"])? })))
            .collect();
        if !langs.is_empty() {
            out.insert("description".into(), Value::Array(langs));
        }
    }
    if let Some(a) = v.get("administration").and_then(Value::as_object) {
        let mut admin = Map::new();
        // V2 administration values are free text ("string" in the RIC's own
        // sample data); v3 allows only up to four digits without leading
        // zeros. Values that cannot be v3 are left out rather than refusing
        // a registration the RIC accepts.
        for k in ["version", "revision"] {
            if let Some(s) = a.get(k).and_then(Value::as_str).filter(|s| is_v3_version(s)) {
                admin.insert(k.into(), json!(s));
            }
        }
        if !admin.is_empty() {
            out.insert("administration".into(), Value::Object(admin));
        }
    }
    if let Some(Value::Array(eps)) = v.get("endpoints") {
        let eps: Vec<Value> = eps.iter().filter_map(endpoint).collect();
        if !eps.is_empty() {
            out.insert("endpoints".into(), Value::Array(eps));
        }
    }
}

fn first_key_value(reference: &Value) -> Option<&str> {
    match reference {
        Value::String(s) => Some(s),
        r => r.get("keys")?.as_array()?.first()?.get("value")?.as_str(),
    }
}

/// A RIC shell descriptor in v3 form.
pub fn shell_to_v3(v: &Value) -> Value {
    let mut out = Map::new();
    common(v, &mut out);
    if let Some(info) = v.get("assetInformation") {
        if let Some(kind) = text(info, &["assetKind"]) {
            // The RIC's V2 `Template` kind has no v3 counterpart but `Type`.
            let kind = if kind == "Template" { "Type" } else { kind };
            out.insert("assetKind".into(), json!(kind));
        }
        if let Some(g) = info.get("globalAssetId").and_then(first_key_value) {
            out.insert("globalAssetId".into(), json!(g));
        }
        if let Some(Value::Array(ids)) = info.get("specificAssetIds") {
            let ids: Vec<Value> = ids
                .iter()
                .filter_map(|p| {
                    let name = text(p, &["name", "key"])?;
                    let value = text(p, &["value"])?;
                    Some(json!({ "name": name, "value": value }))
                })
                .collect();
            if !ids.is_empty() {
                out.insert("specificAssetIds".into(), Value::Array(ids));
            }
        }
    }
    if let Some(Value::Array(sms)) = v.get("submodelDescriptors") {
        let sms: Vec<Value> = sms.iter().map(submodel_to_v3).collect();
        if !sms.is_empty() {
            out.insert("submodelDescriptors".into(), Value::Array(sms));
        }
    }
    Value::Object(out)
}

/// A RIC submodel descriptor in v3 form.
pub fn submodel_to_v3(v: &Value) -> Value {
    let mut out = Map::new();
    common(v, &mut out);
    if let Some(Value::Array(keys)) = v.pointer("/semanticId/keys") {
        let keys: Vec<Value> = keys
            .iter()
            .filter_map(|k| Some(json!({ "type": "GlobalReference", "value": text(k, &["value"])? })))
            .collect();
        if !keys.is_empty() {
            out.insert("semanticId".into(), json!({ "type": "ExternalReference", "keys": keys }));
        }
    }
    Value::Object(out)
}

/// `^(0|[1-9][0-9]*)$`, at most four characters (AAS Part 1 v3.0).
fn is_v3_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}
