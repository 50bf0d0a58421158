//! The AAS registry's HTTP face: the AAS Part 2 routes (`aas_api`), the
//! RIC's routes (`ric_api`), base64url ids, query parsing and the AAS error
//! body. Compiled into two components:
//!
//! - the gateway, which reaches the registry through the imported
//!   `twinlattice:registry/{shells,submodels}` interfaces (on a lattice, and
//!   with the host's `--http-entry wasi-http`);
//! - the registry itself, which answers its routes with its own functions
//!   when the embedded host enters it through `twinlattice:http-face` (one
//!   Wasm call per request instead of two).
//!
//! Each component says what `registry_calls::{shells, submodels}` are, with
//! the signatures of the imported interfaces; the routes are the same code,
//! so both answer alike (`tests/test_http_entries.py` checks it).

pub mod aas_api;
pub mod ids;
pub mod query;
pub mod result_body;
pub mod ric_api;

use crate::bindings::wasi::config::store as config;
use crate::http_io::{BodyError, Incoming, Response};
use result_body::ApiError;
use std::borrow::Cow;

/// Request bodies larger than this are refused with 413 unless the
/// `max-body-bytes` config key says otherwise.
const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// The parts of a request the routes look at; the body is read on demand.
pub struct Request {
    pub method: Cow<'static, str>,
    pub query: String,
    incoming: Incoming,
}

impl Request {
    /// The body as UTF-8 text, within the configured size limit.
    pub fn body_text(&mut self) -> Result<String, ApiError> {
        let limit = config::get("max-body-bytes")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BODY);
        match self.incoming.read_body(limit) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8")),
            Err(BodyError::TooLarge { limit }) => {
                Err(ApiError::new(413, format!("the body is larger than the limit of {limit} bytes")))
            }
            Err(BodyError::Broken) => Err(ApiError::bad_request("the body could not be read")),
        }
    }
}

pub fn not_allowed(allow: &str) -> ApiError {
    ApiError::new(405, format!("method not allowed here; allowed: {allow}"))
}

/// The `id` of a descriptor the registry returned.
pub fn id_in(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_str::<IdOnly>(text).ok().map(|d| d.id)
}

/// Routes served besides the registry's (the gateway's broker inbox).
pub type ExtraRoutes = fn(&mut Request, &str) -> Option<Result<Response, ApiError>>;

fn dispatch(req: &mut Request, path: &str, extra: ExtraRoutes) -> Result<Response, ApiError> {
    if let Some(answer) = ric_api::route(req, path) {
        return answer;
    }
    if let Some(answer) = extra(req, path) {
        return answer;
    }
    let (prefix, rest) = match path.strip_prefix("/api/v3.0") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => ("/api/v3.0", rest),
        _ => ("", path),
    };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let segments: &[&str] = if segments.last() == Some(&"") { &segments[..segments.len() - 1] } else { &segments };
    match aas_api::route(req, prefix, segments) {
        Some(answer) => answer,
        None => Err(ApiError::new(404, format!("no route {path:?}"))),
    }
}

/// Route one request and answer it; errors become the AAS error body.
pub fn answer(mut incoming: Incoming, extra: ExtraRoutes) -> Response {
    let target = incoming.take_target();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    // HEAD is GET without the body, which the server leaves out.
    let method = match incoming.method() {
        m if m == "HEAD" => Cow::Borrowed("GET"),
        m => m,
    };
    let mut req = Request { method, query: query.to_string(), incoming };
    dispatch(&mut req, path, extra).unwrap_or_else(|e| {
        let allow = (e.status == 405).then(|| e.texts[0].rsplit("allowed: ").next().unwrap_or("").to_string());
        let response = e.into_response();
        match allow {
            Some(a) => response.with_header("allow", a),
            None => response,
        }
    })
}
