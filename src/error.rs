//! The error of the service layer (access, registry, ledger, trace
//! building, the log's read and append paths): what went wrong, in the
//! categories a caller can act on. Each variant maps to one HTTP status
//! (`api::error`); `Internal` details are logged, not sent.
//!
//! Error styles by layer:
//! - the pure core (tree, note, store, tiles, witness protocol) has one
//!   typed `thiserror` enum per module, saying exactly what failed;
//! - the service layer uses this [`Error`];
//! - verifiers and clients (verify, auditor, monitor, client, CLI) use
//!   `verify::Failure` and `auditor::AuditError`, which say whether the
//!   input was malformed, failed verification or could not be fetched (the
//!   CLI's exit codes).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400, with a stable machine-readable code.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 404 with the code `erased`: a private value that was erased.
    #[error("{0}")]
    Erased(String),
    /// 405: the path exists, the method does not.
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// 409: the event id is in the log with other content.
    #[error("event id already in the log at index {index} with different content")]
    Conflict { index: u64 },
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 401.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 401 for a request authenticated otherwise than by a bearer token
    /// (a signed webhook), with a stable code.
    #[error("{message}")]
    NotAuthentic { code: &'static str, message: String },
    /// 409: a signed delivery that was already recorded.
    #[error("{0}")]
    Replayed(String),
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 422: well-formed, but refused (a signature that does not verify, a
    /// policy that is not met).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// 503 with Retry-After: the append queue is full.
    #[error("the log is busy; retry shortly")]
    Overloaded,
    /// 503: shutting down, or recovering from a storage failure.
    #[error("{0}")]
    Unavailable(String),
    /// 416: a `Range` outside the resource of `size` bytes.
    #[error("{message}")]
    RangeNotSatisfiable { size: u64, message: String },
    /// 507: no space to store the upload (nothing was stored).
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500: details are logged server-side only.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<crate::tree::TreeError> for Error {
    fn from(e: crate::tree::TreeError) -> Self {
        use crate::tree::TreeError::*;
        match e {
            IndexOutOfRange { .. } | BadSizes { .. } | EmptyTree => {
                Error::bad("bad_range", e.to_string())
            }
            MissingNode { .. } | Storage(_) => Error::Internal(e.to_string()),
        }
    }
}
