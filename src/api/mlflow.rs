//! `POST /v1/integrations/mlflow`: MLflow's model registry webhooks in.
//!
//! A delivery is checked in this order, and nothing is appended unless it
//! passes every step: the three MLflow headers (401 when missing), the
//! HMAC signature (401), the timestamp within `max_age` of now (401
//! `stale`), a delivery id not seen before (409 `replayed`), a body MLflow
//! could have sent (400). It is then mapped ([`crate::mlflow::map`]) and
//! appended with the integration's token, through the same ledger path as
//! any client's event: the token's roles, the privacy rules and the
//! registry's gates apply. A refused promotion is logged as `deny` and
//! answered 422, which MLflow records as a failed delivery and does not
//! retry; event types this log does not record are answered 200 and
//! counted. Deliveries answered with a 5xx are not remembered, so MLflow's
//! retry of the same delivery is processed.

use super::openapi::{Body as BodyErrors, Common};
use super::{receipt, ApiError, AppState, MAX_BODY_BYTES};
use crate::audit::event;
use crate::error::Error;
use crate::ledger::Submitted;
use crate::mlflow::{self, Mapped, WebhookError, WebhookSettings};
use crate::wire;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most delivery ids remembered (those of the last `max_age`).
const MAX_REMEMBERED: usize = 100_000;

/// The integration's settings and the delivery ids it has seen.
#[derive(Debug)]
pub struct MlflowHook {
    settings: WebhookSettings,
    seen: Mutex<HashMap<String, u64>>,
}

impl MlflowHook {
    pub fn new(settings: WebhookSettings) -> Self {
        MlflowHook {
            settings,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, Error> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .ok_or_else(|| webhook_error(WebhookError::Missing(name)))
}

fn webhook_error(e: WebhookError) -> Error {
    match e {
        WebhookError::Missing(_) => Error::NotAuthentic {
            code: "unsigned",
            message: e.to_string(),
        },
        WebhookError::BadSignature => Error::NotAuthentic {
            code: "bad_signature",
            message: e.to_string(),
        },
        WebhookError::Malformed(m) => Error::bad("bad_delivery", m),
    }
}

/// `POST /v1/integrations/mlflow`: one MLflow webhook delivery.
#[utoipa::path(post, path = "/v1/integrations/mlflow", tag = "integrations",
    params(("X-MLflow-Delivery-Id" = String, Header, description = "The delivery's id: once only"),
           ("X-MLflow-Timestamp" = String, Header, description = "Unix seconds when MLflow signed it"),
           ("X-MLflow-Signature" = String, Header, description = "`v1,` and base64 of HMAC-SHA256(secret, `<delivery id>.<timestamp>.<body>`)")),
    request_body(content = Object, content_type = "application/json",
        description = "MLflow's payload: `entity`, `action`, `timestamp` and `data`"),
    responses((status = 200, description = "Recorded (the receipts of what it appended) or ignored (an event type the log does not record)", body = wire::MlflowDelivery),
        (status = 401, description = "Unsigned, wrongly signed or stale (`unsigned`, `bad_signature`, `stale`)", body = wire::ErrorBody),
        (status = 409, description = "Already recorded (`replayed`)", body = wire::ErrorBody),
        (status = 422, description = "A promotion the registry's rules refused, logged as `deny`", body = wire::ErrorBody),
        (status = 404, description = "The integration is not configured", body = wire::ErrorBody),
        Common, BodyErrors))]
pub(super) async fn deliver(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let hook = st
        .mlflow
        .clone()
        .ok_or_else(|| Error::NotFound("the MLflow integration is not configured".into()))?;
    let delivery = header(&headers, mlflow::DELIVERY_HEADER)?.to_string();
    let timestamp = header(&headers, mlflow::TIMESTAMP_HEADER)?.to_string();
    let signature = header(&headers, mlflow::SIGNATURE_HEADER)?.to_string();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Error::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes")))?;
    mlflow::verify_signature(
        &hook.settings.secret,
        &delivery,
        &timestamp,
        &bytes,
        &signature,
    )
    .map_err(webhook_error)?;
    let now = now_secs();
    let stale = |message: String| Error::NotAuthentic {
        code: "stale",
        message,
    };
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| stale(format!("the timestamp {timestamp:?} is not unix seconds")))?;
    if sent.abs_diff(now) > hook.settings.max_age.as_secs() {
        return Err(stale(format!(
            "the delivery was signed at {sent}, more than {} s from now ({now})",
            hook.settings.max_age.as_secs()
        ))
        .into());
    }
    if hook.seen().contains_key(&delivery) {
        return Err(Error::Replayed(format!("delivery {delivery} was already recorded")).into());
    }
    let answer = record(&st, &hook, &delivery, &bytes).await;
    // A 5xx is retried by MLflow with the same delivery id: not remembered.
    let remember = match &answer {
        Ok(_) => true,
        Err(e) => ApiError::status_and_code(&e.0).0.is_client_error(),
    };
    if remember {
        let mut seen = hook.seen();
        let horizon = now.saturating_sub(hook.settings.max_age.as_secs() + 60);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, t| *t >= horizon);
        }
        if seen.len() < MAX_REMEMBERED {
            seen.insert(delivery, sent);
        }
    }
    answer
}

/// Map and append one verified delivery.
async fn record(
    st: &AppState,
    hook: &MlflowHook,
    delivery: &str,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let mapped = mlflow::map(
        bytes,
        delivery,
        &hook.settings.aliases,
        &event::now_rfc3339(),
    )
    .map_err(webhook_error)?;
    let events = match mapped {
        Mapped::Ignored(kind) => {
            st.log.metrics().mlflow_ignored.inc();
            return Ok((
                StatusCode::OK,
                Json(wire::MlflowDelivery {
                    delivery_id: delivery.to_string(),
                    ignored: Some(kind),
                    receipts: Vec::new(),
                }),
            )
                .into_response());
        }
        Mapped::Events(e) => e,
    };
    let token = {
        let path = hook.settings.token_file.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::read_secret(&path))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| {
                Error::Unavailable(format!(
                    "the MLflow integration has no usable token yet: {e}"
                ))
            })?
    };
    let token = token.as_str();
    let caller = st.ledger.authenticate(token).await?;
    let mut receipts = Vec::new();
    for mut ev in events {
        ev["actor"] = serde_json::json!({"type": caller.principal.kind, "id": caller.principal.id});
        let ev = if st.ledger.privacy().is_active() {
            st.ledger.apply_privacy(ev).await?
        } else {
            ev
        };
        let canonical = serde_json::to_vec(&ev).map_err(|e| Error::Internal(e.to_string()))?;
        let prepared = event::prepare(&canonical)
            .map_err(|e| Error::bad("bad_delivery", format!("the mapped event: {e}")))?;
        match st.ledger.submit(token, prepared).await? {
            Submitted::Accepted(r) => receipts.push(receipt(&r, None)?),
            Submitted::Denied {
                reasons,
                receipt: deny,
            } => return Ok(super::denied(reasons, &deny)?),
        }
    }
    st.log.metrics().mlflow_deliveries.inc();
    Ok((
        StatusCode::OK,
        Json(wire::MlflowDelivery {
            delivery_id: delivery.to_string(),
            ignored: None,
            receipts,
        }),
    )
        .into_response())
}
