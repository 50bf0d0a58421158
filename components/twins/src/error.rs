//! The API's errors: an HTTP status, a Trusted Twin subcode and a
//! description, answered as `{"subcode", "trace", "description", "help"}`.


/// The subcodes of the Trusted Twin API (names from `trustedtwin-utils`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Subcode {
    Unauthorized = 401000,
    InvalidCharacters = 400314,
    QuotaViolation = 400141,
    NotAValidJson = 400415,
    OperationOrderViolation = 400592,
    NotFound = 404653,
    AccessForbidden = 403535,
    IdempotencyViolation = 400358,
    RequestFormat = 400589,
    OperationNotAllowed = 400897,
    ServiceDisabled = 400979,
    General = 500000,
}

impl Subcode {
    fn status(self) -> u16 {
        (self as u32 / 1000) as u16
    }
}

/// An expected failure of an API call. Never a trap, never a 5xx unless the
/// store itself failed.
#[derive(Debug, thiserror::Error)]
#[error("{description}")]
pub struct ApiError {
    pub subcode: Subcode,
    pub description: String,
    /// What went wrong inside (a storage error's cause, which may name
    /// store keys): logged and passed to local callers, never put in an
    /// HTTP error body (L2).
    pub detail: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(subcode: Subcode, description: impl Into<String>) -> Self {
        ApiError { subcode, description: description.into(), detail: None }
    }

    pub fn unauthorized() -> Self {
        Self::new(Subcode::Unauthorized, "Authentication required.")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Subcode::NotFound, format!("{what} not found."))
    }

    pub fn forbidden(why: impl Into<String>) -> Self {
        Self::new(Subcode::AccessForbidden, why)
    }

    pub fn format(why: impl Into<String>) -> Self {
        Self::new(Subcode::RequestFormat, why)
    }

    pub fn not_allowed(why: impl Into<String>) -> Self {
        Self::new(Subcode::OperationNotAllowed, why)
    }

    pub fn exists(why: impl Into<String>) -> Self {
        Self::new(Subcode::IdempotencyViolation, why)
    }

    pub fn storage(why: impl std::fmt::Display) -> Self {
        ApiError {
            subcode: Subcode::General,
            description: "Internal storage error.".into(),
            detail: Some(format!("Internal storage error: {why}")),
        }
    }

    /// The full account of the error, for logs and local callers (the
    /// admin export, the AAS mirror).
    pub fn internal(&self) -> String {
        self.detail.clone().unwrap_or_else(|| self.description.clone())
    }

    pub fn status(&self) -> u16 {
        self.subcode.status()
    }

    /// The error body, with trace id `trace`.
    pub fn body(&self, trace: &str) -> String {
        serde_json::to_string(&serde_json::json!({
            "subcode": self.subcode as u32,
            "trace": trace,
            "description": self.description,
            "help": null,
        }))
        .unwrap_or_default()
    }
}
