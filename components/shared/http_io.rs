//! Requests and responses of an HTTP component, whichever entry delivered
//! them: `wasi:http` resources (a lattice's http-server provider, or the
//! embedded host when asked to) or one typed `twinlattice:http-face`
//! call (the embedded host's default). The routes see only `Incoming` and
//! `Response`, so both entries answer alike.

use crate::bindings::exports::twinlattice::http_face::handler as face;
use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use std::borrow::Cow;

/// A response ready to send.
pub struct Response {
    pub status: u16,
    /// Names are the project's own constants; values mostly too, so the
    /// common answer allocates nothing for its headers.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: vec![("content-type", Cow::Borrowed("application/json"))], body: body.into() }
    }

    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, Cow::Owned(value.into())));
        self
    }
}

/// Why a request body could not be read.
pub enum BodyError {
    /// Larger than the limit (HTTP 413).
    TooLarge { limit: usize },
    /// The stream broke (HTTP 400).
    Broken,
}

/// A request from either entry.
pub enum Incoming {
    Wasi(IncomingRequest),
    /// Read whole by the host; the body is taken out when read.
    Whole(face::Request),
}

impl Incoming {
    /// The method, upper case (`GET`, …; others as sent).
    pub fn method(&self) -> Cow<'static, str> {
        match self {
            Incoming::Whole(r) => match &r.method {
                face::Method::Get => Cow::Borrowed("GET"),
                face::Method::Head => Cow::Borrowed("HEAD"),
                face::Method::Post => Cow::Borrowed("POST"),
                face::Method::Put => Cow::Borrowed("PUT"),
                face::Method::Delete => Cow::Borrowed("DELETE"),
                face::Method::Patch => Cow::Borrowed("PATCH"),
                face::Method::Options => Cow::Borrowed("OPTIONS"),
                face::Method::Other(s) => Cow::Owned(s.clone()),
            },
            Incoming::Wasi(r) => match r.method() {
                Method::Get => Cow::Borrowed("GET"),
                Method::Head => Cow::Borrowed("HEAD"),
                Method::Post => Cow::Borrowed("POST"),
                Method::Put => Cow::Borrowed("PUT"),
                Method::Delete => Cow::Borrowed("DELETE"),
                Method::Connect => Cow::Borrowed("CONNECT"),
                Method::Options => Cow::Borrowed("OPTIONS"),
                Method::Trace => Cow::Borrowed("TRACE"),
                Method::Patch => Cow::Borrowed("PATCH"),
                Method::Other(s) => Cow::Owned(s),
            },
        }
    }

    /// Path and query, still percent-encoded. A typed request's target is
    /// taken out rather than copied, so call this once per request.
    pub fn take_target(&mut self) -> String {
        match self {
            Incoming::Whole(r) => std::mem::take(&mut r.target),
            Incoming::Wasi(r) => r.path_with_query().unwrap_or_else(|| "/".into()),
        }
    }

    /// The first value of each header in `names` (lower case), in order;
    /// one lookup pass for all of them.
    #[allow(dead_code)] // shared code: not every component reads headers
    pub fn headers<const N: usize>(&self, names: [&str; N]) -> [Option<String>; N] {
        match self {
            Incoming::Whole(r) => names.map(|n| header_in_block(&r.headers, n)),
            Incoming::Wasi(r) => wasi_headers(r, names),
        }
    }

    /// Read the whole body, refusing more than `limit` bytes. A second read
    /// finds it empty.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        match self {
            Incoming::Whole(r) => match std::mem::replace(&mut r.body, face::Body::None) {
                face::Body::None => Ok(Vec::new()),
                face::Body::Complete(bytes) if bytes.len() <= limit => Ok(bytes),
                face::Body::Complete(_) => Err(BodyError::TooLarge { limit }),
                // The host's limit is the same config key; report the lower.
                face::Body::TooLarge(host) => Err(BodyError::TooLarge { limit: limit.min(host as usize) }),
                face::Body::Unreadable => Err(BodyError::Broken),
            },
            Incoming::Wasi(r) => read_stream(r, limit),
        }
    }
}

/// The first value of header `name` (lower case) in a header block of
/// `name: value\n` lines (`twinlattice:http-face`'s `request.headers`).
fn header_in_block(block: &str, name: &str) -> Option<String> {
    block.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n == name).then(|| v.strip_prefix(' ').unwrap_or(v).to_string())
    })
}

fn read_stream(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let [length] = wasi_headers(request, ["content-length"]);
    if let Some(len) = length.and_then(|v| v.trim().parse::<usize>().ok()) {
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
    }
    // A second read finds the body consumed: empty, as for `Whole`.
    let Ok(body) = request.consume() else { return Ok(Vec::new()) };
    let stream = body.stream().map_err(|_| BodyError::Broken)?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError::Broken),
        }
    }
    drop(stream);
    Ok(out)
}

fn wasi_headers<const N: usize>(request: &IncomingRequest, names: [&str; N]) -> [Option<String>; N] {
    // One `headers` resource for all lookups.
    let fields = request.headers();
    names.map(|n| fields.get(n).first().map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// The typed entry's answer, its headers as one `name: value\n` block.
pub fn into_face(response: Response) -> face::Response {
    let mut headers = String::with_capacity(response.headers.iter().map(|(n, v)| n.len() + v.len() + 3).sum());
    for (name, value) in &response.headers {
        headers.push_str(name);
        headers.push_str(": ");
        headers.push_str(value);
        headers.push('\n');
    }
    face::Response { status: response.status, headers, body: response.body }
}

/// Send `response` through `out` (the `wasi:http` entry).
pub fn send(out: ResponseOutparam, response: Response) {
    let mut entries: Vec<(String, Vec<u8>)> =
        response.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
    entries.push(("content-length".into(), response.body.len().to_string().into_bytes()));
    // One host call for all headers. A header we built ourselves is always
    // valid; should one not be, send the response without headers rather
    // than none at all.
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else { return };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        // `blocking-write-and-flush` takes at most 4096 bytes per call.
        for chunk in response.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}
