//! The log explorer (`GET /`): a page that shows the log, entries, search,
//! models and lineage traces, and checks every proof in the browser with a
//! key the reader pins (src/explorer). Its files are compiled into the
//! binary; no build step, no framework, nothing fetched from elsewhere.

use super::extract::PathParam;
use super::openapi::Missing;
use super::ApiError;
use crate::error::Error;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// What the page may do: load its own files and call this server, nothing
/// else (no inline script, no other origin, never framed).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const FILES: [(&str, &str, &str); 3] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../explorer/app.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("../explorer/verify.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../explorer/style.css"),
    ),
];

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Served by the binary: a new version comes with a restart.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the explorer.
#[utoipa::path(get, path = "/", tag = "log",
    responses((status = 200, description = "The log explorer: a page that verifies what it shows with the reader's pinned key", content_type = "text/html", body = String)))]
pub(super) async fn index() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("../explorer/index.html"),
    )
}

/// `GET /explorer/{file}`: the explorer's scripts and style.
#[utoipa::path(get, path = "/explorer/{file}", tag = "log",
    params(("file" = String, Path, description = "`app.js`, `verify.js` or `style.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"))),
        Missing))]
pub(super) async fn asset(PathParam(file): PathParam<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| Error::NotFound(format!("no explorer file {file:?}")).into())
}
