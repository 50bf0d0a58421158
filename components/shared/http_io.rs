//! Reading requests from and writing responses to `wasi:http` resources.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;

/// A response ready to send.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
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

/// The first value of header `name`.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values.first().map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Read the whole body, refusing more than `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = header(request, "content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
    }
    let body = request.consume().map_err(|_| BodyError::Broken)?;
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

/// Send `response` through `out`.
pub fn send(out: ResponseOutparam, response: Response) {
    let mut entries: Vec<(String, Vec<u8>)> =
        response.headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
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
