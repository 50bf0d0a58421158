//! The python-aas-registry ("RIC") routes under `/registry`, with its bugs
//! fixed: JSON bodies everywhere, real status codes, no duplicates, PUT
//! creates or replaces. Identifiers are raw or %-encoded (not base64url) and
//! may be a shell's id, idShort or globalAssetId; ids may contain `/`.

use super::aas_api::put_response;
use crate::bindings::twinlattice::registry::types::{Dialect, PageRequest};
use crate::registry_calls::shells;
use crate::http_io::Response;
use super::result_body::ApiError;
use super::{ids, Request};

const BASE: &str = "/registry/shell-descriptors";
const SUB: &str = "/submodel-descriptors";

/// Which dialect a body is in: the RIC's has an `identification`.
fn dialect_of(body: &str) -> Dialect {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.get("identification").is_some() => Dialect::Ric,
        _ => Dialect::V3,
    }
}

/// The most a RIC list answers in one response. The RIC answers its whole
/// list; past this, the answer ends early and says where to go on.
const MAX_LIST_BYTES: usize = 32 << 20;

/// Every page of a list, as one JSON array, up to `MAX_LIST_BYTES`; a list
/// cut there carries `x-next-cursor`, which `?cursor=` continues from.
fn all_pages(
    start: Option<String>,
    mut next: impl FnMut(PageRequest) -> Result<crate::bindings::twinlattice::registry::types::Page, ApiError>,
) -> Result<Response, ApiError> {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = start;
    loop {
        let page = next(PageRequest { limit: Some(1_000), cursor: cursor.take() })?;
        bytes += page.items.iter().map(|i| i.len() + 1).sum::<usize>();
        items.extend(page.items);
        match page.cursor {
            Some(c) if bytes >= MAX_LIST_BYTES => {
                let mut response = Response::json(200, format!("[{}]", items.join(",")));
                response.headers.push(("x-next-cursor", c.into()));
                return Ok(response);
            }
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(Response::json(200, format!("[{}]", items.join(","))))
}

/// The `cursor` query parameter, for a list cut by `MAX_LIST_BYTES`.
fn start_cursor(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned())
}

pub fn route(req: &mut Request, path: &str) -> Option<Result<Response, ApiError>> {
    let rest = path.strip_prefix(BASE)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.trim_start_matches('/');
    let method = req.method.clone();
    let method: &str = &method;
    if rest.is_empty() {
        return Some(match method {
            "GET" => all_pages(start_cursor(&req.query), |p| Ok(shells::list(&no_filter(), &p)?)),
            "POST" => (|| {
                let body = req.body_text()?;
                let text = shells::create(&body, dialect_of(&body))?;
                let id = super::id_in(&text).unwrap_or_default();
                Ok(Response::json(201, text).with_header("location", format!("{BASE}/{}", ids::encode_raw(&id))))
            })(),
            _ => Err(super::not_allowed("GET, POST")),
        });
    }
    // Split "<aas>[/submodel-descriptors[/<sm>]]"; the aas key may hold '/'.
    let (aas_part, sub) = match rest.find(SUB) {
        Some(at) if rest[at + SUB.len()..].is_empty() || rest[at + SUB.len()..].starts_with('/') => {
            (&rest[..at], Some(rest[at + SUB.len()..].trim_start_matches('/')))
        }
        _ => (rest, None),
    };
    Some((|| {
        let key = ids::decode_raw(aas_part)?;
        match sub {
            None => match method {
                "GET" => Ok(Response::json(200, shells::get(&shells::resolve(&key)?)?)),
                "PUT" => {
                    let body = req.body_text()?;
                    // PUT names the shell by any of its keys; an unknown key
                    // names a new shell by id.
                    let id = match shells::resolve(&key) {
                        Ok(id) => id,
                        Err(_) => key.clone(),
                    };
                    let outcome = shells::put(&id, &body, dialect_of(&body))?;
                    Ok(put_response(outcome, format!("{BASE}/{}", ids::encode_raw(&id))))
                }
                "DELETE" => {
                    shells::delete(&shells::resolve(&key)?)?;
                    Ok(Response::empty(204))
                }
                _ => Err(super::not_allowed("GET, PUT, DELETE")),
            },
            Some("") => {
                let id = shells::resolve(&key)?;
                match method {
                    "GET" => all_pages(start_cursor(&req.query), |p| Ok(shells::list_submodels(&id, &p)?)),
                    "POST" => {
                        let body = req.body_text()?;
                        let text = shells::create_submodel(&id, &body, dialect_of(&body))?;
                        let sm = super::id_in(&text).unwrap_or_default();
                        let location = format!("{BASE}/{}{SUB}/{}", ids::encode_raw(&id), ids::encode_raw(&sm));
                        Ok(Response::json(201, text).with_header("location", location))
                    }
                    _ => Err(super::not_allowed("GET, POST")),
                }
            }
            Some(sm_part) => {
                let id = shells::resolve(&key)?;
                let sm_key = ids::decode_raw(sm_part)?;
                match method {
                    "GET" => Ok(Response::json(200, find_submodel(&id, &sm_key)?)),
                    "PUT" => {
                        let body = req.body_text()?;
                        let outcome = shells::put_submodel(&id, &sm_key, &body, dialect_of(&body))?;
                        let location = format!("{BASE}/{}{SUB}/{}", ids::encode_raw(&id), ids::encode_raw(&sm_key));
                        Ok(put_response(outcome, location))
                    }
                    "DELETE" => {
                        let sm_id = submodel_id(&id, &sm_key)?;
                        shells::delete_submodel(&id, &sm_id)?;
                        Ok(Response::empty(204))
                    }
                    _ => Err(super::not_allowed("GET, PUT, DELETE")),
                }
            }
        }
    })())
}

/// A nested submodel descriptor by id or idShort, as the RIC matches them.
fn find_submodel(shell_id: &str, key: &str) -> Result<String, ApiError> {
    match shells::get_submodel(shell_id, key) {
        Ok(text) => Ok(text),
        Err(_) => {
            let id = submodel_id(shell_id, key)?;
            Ok(shells::get_submodel(shell_id, &id)?)
        }
    }
}

fn submodel_id(shell_id: &str, key: &str) -> Result<String, ApiError> {
    let shell: serde_json::Value = serde_json::from_str(&shells::get(shell_id)?)
        .map_err(|e| ApiError::new(500, format!("stored descriptor is not JSON: {e}")))?;
    shell
        .get("submodelDescriptors")
        .and_then(|v| v.as_array())
        .and_then(|all| {
            all.iter().find(|d| {
                d.get("id").and_then(|v| v.as_str()) == Some(key) || d.get("idShort").and_then(|v| v.as_str()) == Some(key)
            })
        })
        .and_then(|d| d.get("id").and_then(|v| v.as_str()).map(str::to_owned))
        .ok_or_else(|| ApiError::new(404, format!("no submodel descriptor {key:?} in shell {shell_id:?}")))
}

fn no_filter() -> crate::bindings::twinlattice::registry::types::ShellFilter {
    crate::bindings::twinlattice::registry::types::ShellFilter { asset_kind: None, asset_type: None, asset_ids: Vec::new() }
}
