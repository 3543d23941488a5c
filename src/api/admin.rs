//! Tokens (`/v1/admin/tokens`) and services' signing keys (`/v1/keys`).
//! Every change is appended to the log by the ledger before it takes
//! effect; the answers carry the receipt of that event.

use super::extract::{parse_uuid, PathParam};
use super::openapi::{Auth, Body, Common, Missing, Refused};
use super::{bearer, read_json, receipt, ApiError, AppState};
use crate::access::{NewToken, RegisteredKey, TokenRecord};
use crate::error::Error;
use crate::wire;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

fn token(t: &TokenRecord) -> wire::Token {
    wire::Token {
        token_id: t.token_id.clone(),
        principal: t.principal.clone(),
        roles: t.roles.clone(),
        created_at: t.created_at.clone(),
        expires_at: t.expires_at.clone(),
        revoked_at: t.revoked_at.clone(),
        granted_by: t.granted_by.clone(),
        grant_index: t.grant_index,
        revoke_index: t.revoke_index,
        token: None,
        receipt: None,
    }
}

fn key(k: &RegisteredKey) -> wire::Key {
    wire::Key {
        public_key: k.public_key.clone(),
        registered_at: k.registered_at.clone(),
        index: k.index,
    }
}

fn token_id(id: &str) -> Result<String, Error> {
    parse_uuid(id, "bad_token_id", "token_id")?;
    Ok(id.to_string())
}

/// `POST /v1/admin/tokens` (admin): make a token for a principal with
/// roles. The secret is in this answer only; the grant is logged first.
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin",
    request_body(content = NewToken, content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 201, description = "The token, with its secret (shown only here) and the receipt of its `grant_access` event", body = wire::Token),
        Common, Auth, Body, Refused))]
pub(super) async fn grant_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let t = bearer(&headers)?;
    st.ledger.authenticate(t).await?;
    let req: NewToken = read_json(body).await?;
    let g = st.ledger.grant(t, req).await?;
    let mut out = token(&g.record);
    out.token = Some(g.secret);
    out.receipt = Some(receipt(&g.receipt, None)?);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/admin/tokens` (admin or auditor): every token, no secrets.
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = wire::TokenList), Common, Auth))]
pub(super) async fn list_tokens(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<wire::TokenList>, ApiError> {
    let list = st.ledger.tokens(bearer(&headers)?).await?;
    Ok(Json(wire::TokenList {
        tokens: list.iter().map(token).collect(),
    }))
}

/// `PATCH /v1/admin/tokens/{token_id}` (admin): `{"roles": [...]}`
/// replaces a live token's roles; logged first as `grant_access`.
#[utoipa::path(patch, path = "/v1/admin/tokens/{token_id}", tag = "admin", params(("token_id" = uuid::Uuid, Path, description = "The token's id (not its secret)")),
    request_body(content = wire::NewRoles, content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 200, description = "The token, with the receipt of the change", body = wire::Token),
        Common, Auth, Body, Missing, Refused))]
pub(super) async fn change_roles(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    body: axum::body::Body,
) -> Result<Json<wire::Token>, ApiError> {
    let t = bearer(&headers)?;
    st.ledger.authenticate(t).await?;
    let id = token_id(&id)?;
    let req: wire::NewRoles = read_json(body).await?;
    let (record, r) = st.ledger.set_roles(t, &id, &req.roles).await?;
    let mut out = token(&record);
    out.receipt = Some(receipt(&r, None)?);
    Ok(Json(out))
}

/// `DELETE /v1/admin/tokens/{token_id}` (admin): revoke; logged first.
#[utoipa::path(delete, path = "/v1/admin/tokens/{token_id}", tag = "admin", params(("token_id" = uuid::Uuid, Path, description = "The token's id (not its secret)")),
    security(("bearer" = [])),
    responses((status = 200, description = "The token, with the receipt of its `revoke_access` event", body = wire::Token),
        Common, Auth, Missing, Refused))]
pub(super) async fn revoke_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Json<wire::Token>, ApiError> {
    let t = bearer(&headers)?;
    st.ledger.authenticate(t).await?;
    let id = token_id(&id)?;
    let (record, r) = st.ledger.revoke(t, &id).await?;
    let mut out = token(&record);
    out.receipt = Some(receipt(&r, None)?);
    Ok(Json(out))
}

/// `POST /v1/keys` (a service, for itself): register an Ed25519 public key
/// for signed attestations; logged as a `register_key` event first.
#[utoipa::path(post, path = "/v1/keys", tag = "admin",
    request_body(content = wire::NewKey, content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 201, body = wire::KeyRegistered), Common, Auth, Body, Refused))]
pub(super) async fn register_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let t = bearer(&headers)?;
    st.ledger.authenticate(t).await?;
    let req: wire::NewKey = read_json(body).await?;
    let (service, k, r) = st.ledger.register_key(t, &req.public_key).await?;
    let out = wire::KeyRegistered {
        service: service.id,
        public_key: k.public_key,
        registered_at: k.registered_at,
        index: k.index,
        receipt: receipt(&r, None)?,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/keys/{service}` (public): the keys a service has registered,
/// each with the index of its `register_key` event.
#[utoipa::path(get, path = "/v1/keys/{service}", tag = "admin",
    params(("service" = String, Path, description = "The service principal's id")),
    responses((status = 200, body = wire::KeyList), Common))]
pub(super) async fn service_keys(
    State(st): State<AppState>,
    PathParam(service): PathParam<String>,
) -> Result<Json<wire::KeyList>, ApiError> {
    if service.is_empty() || service.len() > 256 {
        return Err(Error::bad("bad_path", "service id must be 1..=256 bytes").into());
    }
    let keys = st.ledger.keys_of(&service).await;
    Ok(Json(wire::KeyList {
        service,
        keys: keys.iter().map(key).collect(),
    }))
}

/// `POST /v1/admin/reconciled` (admin or auditor): log the counts of a
/// reconciliation against another system (`modeltrail reconcile mlflow
/// --append`) as a `reconcile` event; its receipt.
#[utoipa::path(post, path = "/v1/admin/reconciled", tag = "admin",
    request_body(content = wire::Reconciled, content_type = "application/json"),
    security(("bearer" = [])),
    responses((status = 200, description = "The receipt of the logged `reconcile` event", body = wire::Receipt),
        Common, Auth, Body, Refused))]
pub(super) async fn reconciled(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<wire::Receipt>, ApiError> {
    let t = bearer(&headers)?;
    st.ledger.authenticate(t).await?;
    let r: wire::Reconciled = read_json(body).await?;
    let receipt_ = st
        .ledger
        .record_reconciliation(
            t,
            &r.source,
            &r.target,
            [
                ("checked", r.checked),
                ("differences", r.differences),
                ("tree_size", r.tree_size),
            ],
        )
        .await?;
    Ok(Json(receipt(&receipt_, None)?))
}
