//! AAS Part 2 API v3.0 routes: the shell descriptor registry (with the
//! submodel-descriptor superpath), the submodel descriptor registry and
//! `/description`. Served at the root and under `/api/v3.0`.

use crate::bindings::twinlattice::registry::types::{Dialect, Page, PutOutcome};
use crate::registry_calls::{shells, submodels};
use crate::http_io::Response;
use super::query::Query;
use super::result_body::ApiError;
use super::{ids, Request};
use serde_json::json;

/// `GET /description`: the service profiles this registry implements. A
/// constant, so it is written once here rather than built per request.
const DESCRIPTION: &str = concat!(
    r#"{"profiles":["#,
    r#""https://admin-shell.io/aas/API/3/0/AssetAdministrationShellRegistryServiceSpecification/SSP-001","#,
    r#""https://admin-shell.io/aas/API/3/0/SubmodelRegistryServiceSpecification/SSP-001""#,
    "]}",
);

/// The paged-result body, assembled without re-parsing the descriptors.
pub fn paged(page: Page) -> Response {
    let mut body = String::with_capacity(page.items.iter().map(|i| i.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"paging_metadata\":");
    body.push_str(&match &page.cursor {
        Some(c) => json!({ "cursor": c }).to_string(),
        None => "{}".into(),
    });
    body.push_str(",\"result\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    Response::json(200, body)
}

pub fn put_response(outcome: PutOutcome, location: String) -> Response {
    match outcome {
        PutOutcome::Created => Response::empty(201).with_header("location", location),
        PutOutcome::Replaced => Response::empty(204),
    }
}

fn created(prefix: &str, collection: &str, text: String) -> Response {
    let id = super::id_in(&text).unwrap_or_default();
    Response::json(201, text).with_header("location", format!("{prefix}/{collection}/{}", ids::encode(&id)))
}

/// Dispatch `segments` (the path after the prefix). `None` when the path is
/// not one of these routes.
pub fn route(req: &mut Request, prefix: &str, segments: &[&str]) -> Option<Result<Response, ApiError>> {
    let method = req.method.clone();
    let method: &str = &method;
    Some(match segments {
        ["description"] => match method {
            "GET" => Ok(Response::json(200, DESCRIPTION)),
            _ => Err(super::not_allowed("GET")),
        },
        ["shell-descriptors"] => match method {
            "GET" => (|| {
                let q = Query::parse(&req.query);
                Ok(paged(shells::list(&q.shell_filter()?, &q.page()?)?))
            })(),
            "POST" => (|| {
                let body = req.body_text()?;
                Ok(created(prefix, "shell-descriptors", shells::create(&body, Dialect::V3)?))
            })(),
            _ => Err(super::not_allowed("GET, POST")),
        },
        ["shell-descriptors", aas] => (|| {
            let id = ids::decode(aas)?;
            match method {
                "GET" => Ok(Response::json(200, shells::get(&id)?)),
                "PUT" => {
                    let body = req.body_text()?;
                    let outcome = shells::put(&id, &body, Dialect::V3)?;
                    Ok(put_response(outcome, format!("{prefix}/shell-descriptors/{}", ids::encode(&id))))
                }
                "DELETE" => shells::delete(&id).map(|()| Response::empty(204)).map_err(Into::into),
                _ => Err(super::not_allowed("GET, PUT, DELETE")),
            }
        })(),
        ["shell-descriptors", aas, "submodel-descriptors"] => (|| {
            let id = ids::decode(aas)?;
            match method {
                "GET" => {
                    let q = Query::parse(&req.query);
                    Ok(paged(shells::list_submodels(&id, &q.page()?)?))
                }
                "POST" => {
                    let body = req.body_text()?;
                    let text = shells::create_submodel(&id, &body, Dialect::V3)?;
                    let sm = super::id_in(&text).unwrap_or_default();
                    let location = format!("{prefix}/shell-descriptors/{aas}/submodel-descriptors/{}", ids::encode(&sm));
                    Ok(Response::json(201, text).with_header("location", location))
                }
                _ => Err(super::not_allowed("GET, POST")),
            }
        })(),
        ["shell-descriptors", aas, "submodel-descriptors", sm] => (|| {
            let id = ids::decode(aas)?;
            let sm_id = ids::decode(sm)?;
            match method {
                "GET" => Ok(Response::json(200, shells::get_submodel(&id, &sm_id)?)),
                "PUT" => {
                    let body = req.body_text()?;
                    let outcome = shells::put_submodel(&id, &sm_id, &body, Dialect::V3)?;
                    let location = format!("{prefix}/shell-descriptors/{aas}/submodel-descriptors/{}", ids::encode(&sm_id));
                    Ok(put_response(outcome, location))
                }
                "DELETE" => shells::delete_submodel(&id, &sm_id).map(|()| Response::empty(204)).map_err(Into::into),
                _ => Err(super::not_allowed("GET, PUT, DELETE")),
            }
        })(),
        ["submodel-descriptors"] => match method {
            "GET" => (|| {
                let q = Query::parse(&req.query);
                Ok(paged(submodels::list(&q.submodel_filter()?, &q.page()?)?))
            })(),
            "POST" => (|| {
                let body = req.body_text()?;
                Ok(created(prefix, "submodel-descriptors", submodels::create(&body, Dialect::V3)?))
            })(),
            _ => Err(super::not_allowed("GET, POST")),
        },
        ["submodel-descriptors", sm] => (|| {
            let id = ids::decode(sm)?;
            match method {
                "GET" => Ok(Response::json(200, submodels::get(&id)?)),
                "PUT" => {
                    let body = req.body_text()?;
                    let outcome = submodels::put(&id, &body, Dialect::V3)?;
                    Ok(put_response(outcome, format!("{prefix}/submodel-descriptors/{}", ids::encode(&id))))
                }
                "DELETE" => submodels::delete(&id).map(|()| Response::empty(204)).map_err(Into::into),
                _ => Err(super::not_allowed("GET, PUT, DELETE")),
            }
        })(),
        _ => return None,
    })
}
