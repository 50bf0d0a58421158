//! The twin API's HTTP face (Trusted Twin compatible, at the root path):
//! take the request apart — segments percent-decoded after splitting on `/`,
//! query pairs, the `Authorization` and `X-TrustedTwin` headers, the body —
//! and serve it as one `api.request`. Served directly (not through the
//! gateway): the twin API's paths are routed to this component by the host,
//! or on a lattice by the http-server provider, saving a component hop on
//! every call.

use crate::bindings::exports::twinlattice::twins::api::{Method, Request};
use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::bindings::wasi::http::types::{IncomingRequest, Method as HttpMethod, ResponseOutparam};
use crate::error::{ApiError, Subcode};
use crate::http_io::{self, BodyError, Response};
use percent_encoding::percent_decode_str;

/// The twins component refuses bodies over 64 kB itself; this bound only
/// keeps an endless body from being read at all.
const READ_LIMIT: usize = 1024 * 1024;

impl Guest for crate::Component {
    fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
        let response = match request_of(&incoming) {
            Ok(request) => {
                let answer = crate::serve(request);
                Response::json(answer.status, answer.body.into_bytes())
            }
            Err(e) => Response::json(e.status(), e.body().into_bytes()),
        };
        http_io::send(out, response);
    }
}

fn request_of(incoming: &IncomingRequest) -> Result<Request, ApiError> {
    let target = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let method = match incoming.method() {
        HttpMethod::Get | HttpMethod::Head => Method::Get,
        HttpMethod::Post => Method::Post,
        HttpMethod::Patch => Method::Patch,
        HttpMethod::Put => Method::Put,
        HttpMethod::Delete => Method::Delete,
        _ => Method::Other,
    };
    // GET carries no body in this API; not reading one saves the stream's
    // host calls on the hottest path.
    let body = if method == Method::Get {
        String::new()
    } else {
        let bytes = http_io::read_body(incoming, READ_LIMIT).map_err(|e| match e {
            BodyError::TooLarge { .. } => ApiError::new(Subcode::QuotaViolation, "Request body exceeds the 64 kB quota."),
            BodyError::Broken => ApiError::format("Request body could not be read."),
        })?;
        String::from_utf8(bytes)
            .map_err(|_| ApiError::new(Subcode::InvalidCharacters, "Request body contains invalid characters."))?
    };
    // One headers resource for both lookups.
    let headers = incoming.headers();
    let first = |name: &str| headers.get(name).first().map(|v| String::from_utf8_lossy(v).into_owned());
    Ok(Request {
        method,
        path: segments,
        query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        authorization: first("authorization"),
        dictionary: first("x-trustedtwin"),
        body,
    })
}
