//! Maps [`crate::Error`] to a status and a JSON body. Internal details are
//! logged here and replaced by a generic message.

use crate::error::Error;
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Refused { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, *code),
            Error::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let body = serde_json::json!({"error": {"code": code, "message": self.0.to_string()}});
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        match self.0 {
            Error::Overloaded | Error::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
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
