//! The AAS Part 2 error body (`Result` with `messages`) and the one place
//! where registry errors become HTTP statuses.

use crate::bindings::twinlattice::registry::types::Error as RegistryError;
use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::random::random;
use crate::http_io::Response;
use serde_json::json;

/// An HTTP error answer: a status and one message per problem.
pub struct ApiError {
    pub status: u16,
    pub texts: Vec<String>,
}

impl ApiError {
    pub fn new(status: u16, text: impl Into<String>) -> Self {
        ApiError { status, texts: vec![text.into()] }
    }
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(400, text)
    }

    pub fn into_response(self) -> Response {
        let timestamp = rfc3339_now();
        let correlation = format!("{:016x}{:016x}", random::get_random_u64(), random::get_random_u64());
        let messages: Vec<_> = self
            .texts
            .iter()
            .map(|text| {
                json!({
                    "code": self.status.to_string(),
                    "correlationId": correlation,
                    "messageType": "Error",
                    "text": text,
                    "timestamp": timestamp,
                })
            })
            .collect();
        Response::json(self.status, json!({ "messages": messages }).to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(id) => ApiError::new(404, format!("no descriptor with id {id:?}")),
            RegistryError::Conflict(id) => ApiError::new(409, format!("a descriptor with id {id:?} exists already")),
            RegistryError::Malformed(s) => ApiError::bad_request(format!(
                "the body is not valid JSON: line {}, column {}: {}",
                s.line, s.column, s.message
            )),
            RegistryError::Invalid(violations) => ApiError {
                status: 400,
                texts: violations
                    .into_iter()
                    .map(|v| {
                        let at = if v.pointer.is_empty() { "/" } else { v.pointer.as_str() };
                        format!("{at}: {}", v.reason)
                    })
                    .collect(),
            },
            RegistryError::IdMismatch(text) => ApiError::bad_request(text),
            RegistryError::BadCursor(c) => ApiError::bad_request(format!("cursor {c:?} was not issued by this registry")),
            RegistryError::Storage(text) => ApiError::new(500, format!("storage failed: {text}")),
        }
    }
}

/// Now as `YYYY-MM-DDThh:mm:ss.sssZ` (xs:dateTime in UTC).
fn rfc3339_now() -> String {
    let now = wall_clock::now();
    guest_time::rfc3339(now.seconds, now.nanoseconds / 1_000_000)
}
