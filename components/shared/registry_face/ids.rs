//! Identifiers in paths and queries: base64url (RFC 4648 §5) of the UTF-8
//! id, accepted padded, unpadded or with `%3D` padding; emitted unpadded.

use super::result_body::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

/// Decode a base64url path segment or query value to the identifier.
pub fn decode(segment: &str) -> Result<String, ApiError> {
    let unescaped = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("identifier {segment:?} is not valid base64url")))?;
    let trimmed = unescaped.trim_end_matches('=');
    let bytes = B64
        .decode(trimmed)
        .map_err(|_| ApiError::bad_request(format!("identifier {segment:?} is not valid base64url")))?;
    let id = String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("identifier {segment:?} does not decode to UTF-8")))?;
    if id.is_empty() {
        return Err(ApiError::bad_request("the identifier is empty"));
    }
    Ok(id)
}

/// Encode an identifier for a path segment (unpadded base64url).
pub fn encode(id: &str) -> String {
    B64.encode(id)
}

/// A RIC path segment: raw or %-encoded id.
pub fn decode_raw(segment: &str) -> Result<String, ApiError> {
    let id = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("identifier {segment:?} is not UTF-8")))?
        .into_owned();
    if id.is_empty() {
        return Err(ApiError::bad_request("the identifier is empty"));
    }
    Ok(id)
}

/// %-encode an id for a RIC path.
pub fn encode_raw(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}
