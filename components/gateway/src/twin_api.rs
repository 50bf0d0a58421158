//! The twin API's HTTP face (Trusted Twin compatible, at the root path):
//! take the request apart — segments percent-decoded after splitting on `/`,
//! query pairs, the `Authorization` and `X-TrustedTwin` headers, the body —
//! and hand it to the twins component.

use crate::bindings::twinlattice::twins::api::{self, Method};
use crate::http_io::{self, BodyError, Response};
use crate::Request;
use percent_encoding::percent_decode_str;

/// First path segments that belong to the twin API.
const FAMILIES: &[&str] = &[
    "whoami", "account", "roles", "users", "secrets", "token", "twins", "resolve", "trace", "batches", "cache",
    "download", "log", "notifications", "usage", "stickers",
];

/// The twins component refuses bodies over 64 kB itself; this bound only
/// keeps an endless body from being read at all.
const READ_LIMIT: usize = 1024 * 1024;

pub fn route(req: &mut Request, path: &str) -> Option<Response> {
    let trimmed = path.trim_start_matches('/');
    let first = trimmed.split('/').next().unwrap_or("");
    if !FAMILIES.contains(&first) {
        return None;
    }
    let segments: Vec<String> = trimmed
        .trim_end_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let method = match req.method.as_str() {
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
        let bytes = match http_io::read_body(&req.incoming, READ_LIMIT) {
            Ok(b) => b,
            Err(BodyError::TooLarge { .. }) => return Some(error(400, 400141, "Request body exceeds the 64 kB quota.")),
            Err(BodyError::Broken) => return Some(error(400, 400793, "Request body could not be read.")),
        };
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => return Some(error(400, 400314, "Request body contains invalid characters.")),
        }
    };
    // One headers resource for both lookups.
    let headers = req.incoming.headers();
    let first = |name: &str| headers.get(name).first().map(|v| String::from_utf8_lossy(v).into_owned());
    let request = api::Request {
        method,
        path: segments,
        query: form_urlencoded::parse(req.query.as_bytes()).into_owned().collect(),
        authorization: first("authorization"),
        dictionary: first("x-trustedtwin"),
        body,
    };
    let answer = api::handle(&request);
    Some(Response::json(answer.status, answer.body.into_bytes()))
}

/// The twin API's error body, for the few errors raised before the call.
fn error(status: u16, subcode: u32, description: &str) -> Response {
    let body = serde_json::json!({
        "subcode": subcode, "trace": trace_id(), "description": description, "help": null,
    });
    Response::json(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// A UUIDv4 naming this error instance.
fn trace_id() -> String {
    let mut b = crate::bindings::wasi::random::random::get_random_bytes(16);
    b.resize(16, 0);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
