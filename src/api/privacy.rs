//! Private values: reveals (`GET /v1/reveal`, auditors and admins, each
//! logged as an `access` event) and erasure (`POST /v1/admin/erase`,
//! admins, logged as an `erase` event naming only the commitment).

use super::extract::{query_params, Query};
use super::openapi::{Auth, Body, Common, Missing};
use super::{bearer, read_json, receipt, ApiError, AppState};
use crate::error::Error;
use crate::wire;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;

/// `GET /v1/reveal`: its parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct RevealParams {
    /// The entry.
    #[param(minimum = 0)]
    index: u64,
    /// Where in its event: `actor.id` or `metadata.<path>`.
    field: String,
}

query_params!(RevealParams);

/// `GET /v1/reveal?index=N&field=metadata.customer_email`.
#[utoipa::path(get, path = "/v1/reveal", tag = "privacy", params(RevealParams),
    security(("bearer" = [])),
    responses((status = 200, description = "The value behind a commitment, its salt and the entry's receipt; logged first as an `access` event", body = wire::Reveal),
        (status = 404, description = "No such entry or commitment (`not_found`), or the value was erased (`erased`)", body = wire::ErrorBody),
        Common, Auth))]
pub(super) async fn reveal(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::Reveal>, ApiError> {
    let token = bearer(&headers)?;
    let q = Query::of::<RevealParams>(q.as_deref())?;
    let index = q
        .u64("index")?
        .ok_or_else(|| Error::bad("bad_query", "index is required"))?;
    let field = q.str("field").ok_or_else(|| {
        Error::bad(
            "bad_query",
            "field is required (actor.id or metadata.<path>)",
        )
    })?;
    let r = st.ledger.reveal(token, index, field).await?;
    Ok(Json(wire::Reveal {
        field: r.field,
        commitment: r.opening.commitment,
        value: r.opening.value,
        salt: r.opening.salt,
        subject: r.opening.subject,
        receipt: receipt(&r.receipt, None)?,
        access_index: r.access_index,
    }))
}

/// `POST /v1/admin/erase` with `{"subject": "user:alice"}`.
#[utoipa::path(post, path = "/v1/admin/erase", tag = "privacy",
    request_body(content = wire::EraseRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 200, description = "Erased; logged as an `erase` event naming only the commitment", body = wire::Erased),
        Common, Auth, Body, Missing))]
pub(super) async fn erase(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<wire::Erased>, ApiError> {
    let token = bearer(&headers)?;
    st.ledger.authenticate(token).await?;
    let req: wire::EraseRequest = read_json(body).await?;
    let (t, r) = st.ledger.erase(Some(token), &req.subject).await?;
    Ok(Json(wire::Erased {
        commitment: t.commitment,
        kind: t.kind,
        erase_index: r.index,
    }))
}
