//! Artifact blobs (`/v1/artifacts/sha256/{digest}`) and their
//! reconciliation (`/v1/admin/reconcile`).
//!
//! Uploads need the `submitter` role and stream into the store while
//! hashed; downloads need a token (any role), and each is logged as an
//! `access` event before the first byte is sent. These routes are not under
//! the request time limit (a large model takes as long as it takes); idle
//! connections are still cut off by the connection limits.

use super::extract::PathParam;
use super::openapi::{Auth, Body as BodyErrors, Common, Missing, Refused};
use super::{bearer, ApiError, AppState};
use crate::artifacts::{parse_range, BlobError, Blobs, Rehash};
use crate::audit::vocab::Role;
use crate::error::Error;
use crate::wire;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

fn blob_error(e: BlobError) -> Error {
    match e {
        BlobError::BadDigest => Error::bad("bad_digest", e.to_string()),
        BlobError::Mismatch { .. } => Error::Refused {
            code: "digest_mismatch",
            message: e.to_string(),
        },
        BlobError::TooLarge(_) => Error::TooLarge(e.to_string()),
        BlobError::NoSpace => Error::InsufficientStorage(e.to_string()),
        BlobError::CutOff(_) => Error::bad("upload_cut_off", e.to_string()),
        BlobError::NotFound(_) => Error::NotFound(e.to_string()),
        BlobError::Backend(_) => Error::Unavailable(e.to_string()),
        BlobError::Io(m) => Error::Internal(m),
    }
}

fn store(st: &AppState) -> Result<Arc<Blobs>, Error> {
    st.blobs
        .clone()
        .ok_or_else(|| Error::NotFound("this server keeps no artifacts".into()))
}

/// How much of a refused upload's body is read (and thrown away) before
/// the refusal is sent, and for how long at most. A client that is still
/// sending when the server answers and closes gets a reset and may never
/// see the answer; reading a bounded amount first lets the usual refused
/// upload (a wrong token, a wrong role, a bad digest) end with its 4xx.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

async fn drain(body: Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Everything an upload must pass before its body is read: a store, a
/// well-formed digest, the submitter role and a declared size in bounds.
async fn admit_upload(
    st: &AppState,
    digest: &str,
    headers: &HeaderMap,
) -> Result<Arc<Blobs>, Error> {
    let blobs = store(st)?;
    blobs.check(digest).map_err(blob_error)?;
    let caller = st.ledger.authenticate(bearer(headers)?).await?;
    caller.require(Role::Submitter)?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > blobs.max_bytes() {
            return Err(blob_error(BlobError::TooLarge(blobs.max_bytes())));
        }
    }
    Ok(blobs)
}

/// `PUT /v1/artifacts/sha256/{digest}` (submitter): store the body under
/// its digest. 201 when stored, 200 when the same bytes were there.
#[utoipa::path(put, path = "/v1/artifacts/sha256/{digest}", tag = "artifacts", params(("digest" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The blob's SHA-256, 64 lowercase hex digits")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The blob's bytes; they must hash to the digest"),
    security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = wire::ArtifactStored),
        (status = 200, description = "The same bytes were already stored", body = wire::ArtifactStored),
        Common, Auth, BodyErrors, Refused, Missing,
        (status = 507, description = "No space left for it (`no_space`)", body = wire::ErrorBody)))]
pub(super) async fn upload(
    State(st): State<AppState>,
    PathParam(digest): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let blobs = match admit_upload(&st, &digest, &headers).await {
        Ok(blobs) => blobs,
        Err(e) => {
            drain(body).await;
            return Err(e.into());
        }
    };
    let stored = blobs
        .put(&digest, body.into_data_stream())
        .await
        .map_err(blob_error)?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(wire::ArtifactStored {
            digest: format!("sha256:{digest}"),
            size: stored.size,
            created: stored.created,
        }),
    )
        .into_response())
}

fn common_headers(h: &mut HeaderMap, digest: &str) {
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"sha256:{digest}\"")) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
}

/// `HEAD /v1/artifacts/sha256/{digest}` (any role): size and digest.
#[utoipa::path(head, path = "/v1/artifacts/sha256/{digest}", tag = "artifacts", params(("digest" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The blob's SHA-256, 64 lowercase hex digits")),
    security(("bearer" = [])),
    responses((status = 200, description = "The blob is stored: its size in `Content-Length`, its digest in `ETag`"), Common, Auth, Missing))]
pub(super) async fn head(
    State(st): State<AppState>,
    PathParam(digest): PathParam<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let blobs = store(&st)?;
    blobs.check(&digest).map_err(blob_error)?;
    st.ledger.authenticate(bearer(&headers)?).await?;
    let size = blobs.size(&digest).await.map_err(blob_error)?;
    let mut r = StatusCode::OK.into_response();
    common_headers(r.headers_mut(), &digest);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(r)
}

/// `GET /v1/artifacts/sha256/{digest}` (any role), with an optional
/// single `Range`. The download is logged first, as an `access` event.
#[utoipa::path(get, path = "/v1/artifacts/sha256/{digest}", tag = "artifacts", params(("digest" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The blob's SHA-256, 64 lowercase hex digits")),
    security(("bearer" = [])),
    responses((status = 200, description = "The blob", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The byte range asked for with `Range`", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 416, description = "The range is outside the blob (`range_not_satisfiable`)", body = wire::ErrorBody),
        Common, Auth, Missing))]
pub(super) async fn download(
    State(st): State<AppState>,
    PathParam(digest): PathParam<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let blobs = store(&st)?;
    blobs.check(&digest).map_err(blob_error)?;
    let caller = st.ledger.authenticate(bearer(&headers)?).await?;
    let size = blobs.size(&digest).await.map_err(blob_error)?;
    let range_header = match headers.get(header::RANGE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::bad("bad_range", "the Range header is not ASCII"))?,
        ),
        None => None,
    };
    let range = parse_range(range_header, size)
        .map_err(|message| Error::RangeNotSatisfiable { size, message })?;
    let (start, len) = match range {
        Some((a, b)) => (a, b - a + 1),
        None => (0, size),
    };
    let stream = blobs.read(&digest, start, len).await.map_err(blob_error)?;
    st.ledger.record_access(&caller, &digest, range).await?;
    let mut r = Response::new(Body::from_stream(stream));
    common_headers(r.headers_mut(), &digest);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some((a, b)) = range {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

/// `POST /v1/admin/reconcile` (admin or auditor): re-hash every blob the
/// registry's events name, log a `reconcile` event, and answer the report
/// (and post it to the webhook when something is wrong).
#[utoipa::path(post, path = "/v1/admin/reconcile", tag = "artifacts",
    security(("bearer" = [])),
    responses((status = 200, description = "Every blob the registry's events name, re-hashed; logged as a `reconcile` event", body = wire::ReconcileReport),
        Common, Auth, Missing))]
pub(super) async fn reconcile(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<wire::ReconcileReport>, ApiError> {
    let caller = st.ledger.authenticate(bearer(&headers)?).await?;
    if !(caller.has(Role::Admin) || caller.has(Role::Auditor)) {
        return Err(Error::Forbidden("reconciling needs the admin or auditor role".into()).into());
    }
    let _slot = st.heavy_slot().await?;
    Ok(Json(
        run_reconcile(&st.ledger, st.webhook.as_deref()).await?,
    ))
}

/// Reconcile, build the report, and post it to `webhook` when it found a
/// problem (a failed post is logged, not fatal).
pub async fn run_reconcile(
    ledger: &crate::ledger::Ledger,
    webhook: Option<&str>,
) -> Result<wire::ReconcileReport, Error> {
    let r = ledger.reconcile().await?;
    let mut report = wire::ReconcileReport {
        tree_size: r.tree_size,
        checked: r.checked,
        missing: Vec::new(),
        mismatched: Vec::new(),
        reconcile_index: r.receipt.index,
    };
    for (digest, events, what) in r.problems {
        let digest = format!("sha256:{digest}");
        match what {
            Rehash::Missing => report.missing.push(wire::BlobProblem {
                digest,
                actual: None,
                events,
            }),
            Rehash::Mismatch { actual } => report.mismatched.push(wire::BlobProblem {
                digest,
                actual: Some(format!("sha256:{actual}")),
                events,
            }),
            Rehash::Ok { .. } => {}
        }
    }
    if let Some(url) = webhook {
        if !report.missing.is_empty() || !report.mismatched.is_empty() {
            let sent = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())
                .map(|c| c.post(url).json(&report).send());
            match sent {
                Ok(fut) => match fut.await {
                    Ok(resp) if resp.status().is_success() => {}
                    Ok(resp) => {
                        tracing::warn!(status = %resp.status(), "reconcile webhook refused")
                    }
                    Err(e) => tracing::warn!(error = %e, "reconcile webhook failed"),
                },
                Err(e) => tracing::warn!(error = %e, "reconcile webhook client"),
            }
        }
    }
    Ok(report)
}
