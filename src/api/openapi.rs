//! `GET /openapi.json`: the API's OpenAPI 3.1 description, generated from
//! the handlers themselves. Each handler carries its `#[utoipa::path]`
//! (method, path, parameters, bodies, answers); the router is built from
//! those same annotations ([`super::router`]), so a route cannot exist
//! without its description, nor a description without its route. Bodies
//! and answers are the [`crate::wire`] types; query parameters are the
//! [`super::extract::QueryParams`] types the handlers parse with.

use crate::wire::ErrorBody;
use std::collections::BTreeMap;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema};

/// What the description starts from: its title, the bearer scheme and the
/// routes that the router adds by hand (the tile path is a wildcard).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "modeltrail",
        description = "A tamper-evident, append-only audit log for machine-learning model \
registries: registry events in an RFC 6962 Merkle tree, signed C2SP checkpoints, inclusion and \
consistency proofs, static tiles and offline receipts. Errors are always \
`{\"error\": {\"code\", \"message\"}}` with a stable code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(super::log::tile),
    modifiers(&Bearer),
    tags(
        (name = "log", description = "Checkpoint, tiles, entries, proofs and receipts: public reads"),
        (name = "events", description = "Appending registry events"),
        (name = "registry", description = "Model state, search and lineage, derived from the log"),
        (name = "admin", description = "Tokens, service keys and reconciliations"),
        (name = "artifacts", description = "Content-addressed artifact blobs"),
        (name = "privacy", description = "Private values behind commitments"),
        (name = "integrations", description = "Webhooks from other systems"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the write and admin paths name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made by `POST /v1/admin/tokens` (the first admin token is \
                         printed once when the server starts on an empty data folder)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Error answers: each status with its meaning, all with [`ErrorBody`].
fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ErrorBody::schema()))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: $(($status:expr, $text:expr)),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                errors(&[$(($status, $text)),+])
            }
        }
    };
}

error_set!(
    /// Any request: bad input, overload or the request time limit.
    Common: (400, "Bad input: the code says which (`bad_query`, `bad_number`, `bad_path`, …)"),
    (503, "Overloaded or past the request time limit (`overloaded`, `unavailable`); retry later"),
);
error_set!(
    /// Reads of something that may not exist.
    Missing: (404, "Not found"),
);
error_set!(
    /// Requests that need a token; reads need one too when the server
    /// keeps them private.
    Auth: (401, "No token, or an unknown, expired or revoked one (`unauthorized`)"),
    (403, "The token's roles do not allow this (`forbidden`)"),
);
error_set!(
    /// Requests with a body.
    Body: (413, "The body is too large (`too_large`)"),
    (415, "The body is not `application/json` (`unsupported_media_type`)"),
);
error_set!(
    /// Requests the registry's rules or the log's contents can refuse.
    Refused: (409, "Conflicts with what the log holds (`conflict`)"),
    (422, "Refused by the registry's rules (`denied`, with the reasons and the receipt of the \
           logged `deny` event) or by a check (`digest_mismatch`, …)"),
);

/// The description, as served.
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let api = super::routes(std::time::Duration::from_secs(1)).into_openapi();
        // Serialising a value the crate built cannot fail.
        api.to_pretty_json().unwrap_or_default()
    })
}

/// `GET /openapi.json`: this description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "log",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json", body = Object))
)]
pub(super) async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}
