//! The broker's HTTP face: the I4.0 inbox `POST /i40commu` (the RIC's path)
//! and the liveness view `GET /status`.

use crate::bindings::twinlattice::broker::liveness;
use crate::bindings::twinlattice::transport::inbound::{self, Envelope};
use crate::bindings::twinlattice::transport::types::Protocol;
use crate::http_io::Response;
use crate::registry_face::result_body::ApiError;
use crate::registry_face::Request;
use serde_json::json;

pub fn route(req: &mut Request, path: &str) -> Option<Result<Response, ApiError>> {
    match path {
        "/i40commu" => Some(match &*req.method {
            "POST" => inbox(req),
            _ => Err(crate::registry_face::not_allowed("POST")),
        }),
        "/status" => Some(match &*req.method {
            "GET" => Ok(status()),
            _ => Err(crate::registry_face::not_allowed("GET")),
        }),
        _ => None,
    }
}

/// The answer goes back in the response: an ack or error message (200),
/// nothing for a routed message (202), the AAS error body for input that is
/// not an I4.0 message (400).
fn inbox(req: &mut Request) -> Result<Response, ApiError> {
    let message = req.body_text()?;
    let envelope = Envelope { protocol: Protocol::Http, peer: String::new(), message };
    match inbound::receive(&envelope) {
        Ok(Some(reply)) => Ok(Response::json(200, reply.message)),
        Ok(None) => Ok(Response::empty(202)),
        Err(bad) => Err(ApiError::bad_request(bad.reason)),
    }
}

fn status() -> Response {
    let aas: Vec<_> = liveness::status()
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "online": s.online,
                "lastHeartbeat": s.last_heartbeat,
                "leaseExpires": s.lease_expires,
            })
        })
        .collect();
    Response::json(200, json!({ "aas": aas }).to_string())
}
