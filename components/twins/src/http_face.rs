//! The twin API's HTTP face (Trusted Twin compatible, at the root path):
//! take the request apart — segments percent-decoded after splitting on `/`,
//! query pairs, the `Authorization` and `X-TrustedTwin` headers, the body —
//! and serve it as one `api.request`. Served directly (not through the
//! gateway): the twin API's paths are routed to this component by the host,
//! or on a lattice by the http-server provider, saving a component hop on
//! every call.

use crate::bindings::exports::twinlattice::http_face::handler as face;
use crate::bindings::exports::twinlattice::twins::api::{Method, Request};
use crate::bindings::exports::wasi::http::incoming_handler::Guest as WasiHttp;
use crate::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use crate::bindings::wasi::config::store as config;
use crate::error::{ApiError, Subcode};
use crate::request::QUOTA_BYTES;
use crate::http_io::{self, BodyError, Incoming, Response};
use percent_encoding::percent_decode_str;

/// The twins component refuses bodies over 64 kB itself; this bound only
/// keeps an endless body from being read at all. The `max-body-bytes`
/// config key, which every HTTP component and the host's typed entry honour,
/// lowers it.
const READ_LIMIT: usize = 1024 * 1024;

fn read_limit() -> usize {
    let configured = config::get("max-body-bytes").ok().flatten().and_then(|v| v.parse().ok());
    configured.map_or(READ_LIMIT, |c: usize| c.min(READ_LIMIT))
}

impl WasiHttp for crate::Component {
    fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
        http_io::send(out, answer(Incoming::Wasi(incoming)));
    }
}

impl face::Guest for crate::Component {
    fn handle(request: face::Request) -> face::Response {
        http_io::into_face(answer(Incoming::Whole(request)))
    }
}

fn answer(incoming: Incoming) -> Response {
    match request_of(incoming) {
        Ok(request) => {
            let answer = crate::serve(request);
            Response::json(answer.status, answer.body.into_bytes())
        }
        Err(e) => Response::json(e.status(), e.body(&crate::ids::uuid4()).into_bytes()),
    }
}

fn request_of(mut incoming: Incoming) -> Result<Request, ApiError> {
    let target = incoming.take_target();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let method = match &*incoming.method() {
        "GET" | "HEAD" => Method::Get,
        "POST" => Method::Post,
        "PATCH" => Method::Patch,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    // GET carries no body in this API; not reading one saves the stream's
    // host calls on the hottest path.
    let body = if method == Method::Get {
        String::new()
    } else {
        let bytes = incoming.read_body(read_limit()).map_err(|e| match e {
            BodyError::TooLarge { limit } if limit < QUOTA_BYTES => {
                ApiError::new(Subcode::QuotaViolation, format!("Request body exceeds the limit of {limit} bytes."))
            }
            BodyError::TooLarge { .. } => ApiError::new(Subcode::QuotaViolation, "Request body exceeds the 64 kB quota."),
            BodyError::Broken => ApiError::format("Request body could not be read."),
        })?;
        String::from_utf8(bytes)
            .map_err(|_| ApiError::new(Subcode::InvalidCharacters, "Request body contains invalid characters."))?
    };
    let [authorization, dictionary] = incoming.headers(["authorization", "x-trustedtwin"]);
    Ok(Request {
        method,
        path: segments,
        query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        authorization,
        dictionary,
        body,
    })
}
