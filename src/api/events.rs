//! `POST /v1/events`: append one event and answer with its receipt.

use super::extract::{query_params, Query};
use super::openapi::{Auth, Body as BodyErrors, Common, Refused};
use super::{bearer, blocking, receipt, receipt_response, ApiError, AppState, MAX_BODY_BYTES};
use crate::audit::event::{self, EventError};
use crate::error::Error;
use crate::ledger::Submitted;
use crate::wire;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

fn prepare_error(e: EventError) -> Error {
    match e {
        EventError::TooLarge(_) => Error::TooLarge(e.to_string()),
        EventError::Json(_) => Error::bad("invalid_json", e.to_string()),
        EventError::Field { .. } => Error::bad("invalid_event", e.to_string()),
        EventError::Digest(_) => Error::Refused {
            code: "digest_mismatch",
            message: e.to_string(),
        },
    }
}

/// What to wait for before answering.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) enum Wait {
    /// A checkpoint cosigned by the witnesses, at most the server's
    /// witness wait (`witnessed` in the receipt says whether it came).
    Witnessed,
}

/// `POST /v1/events`: its parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct AppendParams {
    #[param(inline)]
    wait: Option<Wait>,
}

query_params!(AppendParams);

/// `POST /v1/events`: append one event; the answer is its receipt, given
/// once the event is durable.
#[utoipa::path(post, path = "/v1/events", tag = "events", params(AppendParams),
    request_body(content = crate::audit::Event, content_type = "application/json",
        description = "One event, at most 64 KiB; its actor must be the token's principal"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Appended", body = wire::Receipt),
        (status = 200, description = "Already in the log (the same event_id and content): the stored receipt", body = wire::Receipt),
        Common, Auth, BodyErrors, Refused))]
pub(super) async fn append(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    // Fail fast on a bad token, before reading the body; the ledger checks
    // the token again when it appends.
    let token = bearer(&headers)?;
    st.ledger.authenticate(token).await?;
    // Appends in flight are bounded, so their bodies and copies are too.
    let _slot = st.append_slot()?;
    let q = Query::of::<AppendParams>(q.as_deref())?;
    let wait_witnessed = match q.str("wait") {
        None => false,
        Some("witnessed") => true,
        Some(_) => return Err(Error::bad("bad_query", "wait must be \"witnessed\"").into()),
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(
            Error::UnsupportedMediaType("Content-Type must be application/json".into()).into(),
        );
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Error::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes")))?;
    // Refused fields are refused and committed fields replaced by their
    // commitments before the event is canonicalised: a sensitive value
    // never reaches a leaf.
    let prepared = if st.ledger.privacy().is_active() {
        let value = event::parse_strict(&bytes).map_err(prepare_error)?;
        let value = st.ledger.apply_privacy(value).await?;
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))?;
        event::prepare(&bytes)
    } else {
        event::prepare(&bytes)
    }
    .map_err(prepare_error)?;
    let r = match st.ledger.submit(token, prepared).await? {
        Submitted::Accepted(r) => r,
        Submitted::Denied {
            reasons,
            receipt: deny,
        } => return Ok(super::denied(reasons, &deny)?),
    };
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if !wait_witnessed {
        return Ok(receipt_response(status, &r, None)?);
    }
    // The event is durable; now wait (bounded) for a cosigned checkpoint
    // that covers it. On time-out the log-signed receipt is still valid.
    let index = r.index;
    let head = match st.witnessed.clone() {
        Some(mut rx) => tokio::time::timeout(st.limits.witness_wait, async move {
            rx.wait_for(|h| h.size > index)
                .await
                .ok()
                .map(|h| h.clone())
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    let (r, witnessed) = match head {
        Some(head) => {
            let created = r.created;
            let mut w = blocking(&st.log, move |log| log.receipt_at(index, head)).await?;
            w.created = created;
            (w, true)
        }
        None => (r, false),
    };
    Ok((status, Json(receipt(&r, Some(witnessed))?)).into_response())
}
