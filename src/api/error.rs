//! Maps [`crate::Error`] to a status and the JSON error body
//! ([`crate::wire::ErrorBody`]). Internal details are logged here and
//! replaced by a generic message.

use crate::error::Error;
use crate::wire::{ErrorBody, ErrorDetail};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// The status and the stable code of an error.
    pub fn status_and_code(e: &Error) -> (StatusCode, &'static str) {
        match e {
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Erased(_) => (StatusCode::NOT_FOUND, "erased"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::NotAuthentic { code, .. } => (StatusCode::UNAUTHORIZED, *code),
            Error::Replayed(_) => (StatusCode::CONFLICT, "replayed"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Refused { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, *code),
            Error::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            Error::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = ApiError::status_and_code(&self.0);
        if let Error::Internal(detail) = &self.0 {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.0.to_string(),
                reasons: Vec::new(),
            },
            deny_receipt: None,
        };
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        match self.0 {
            Error::Overloaded | Error::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            Error::RangeNotSatisfiable { size, .. } => {
                if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            Error::Unauthorized => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        resp
    }
}
